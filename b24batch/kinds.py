"""What kind of failure an error is: ``ErrorKind``, and the one table of the portal's codes.

Maps a portal error code (REST 3.0 or classic) and HTTP status to an
[`ErrorKind`][b24batch.ErrorKind], so a program can branch on ``error.kind`` instead of matching
substrings of codes. Pure data and one lookup function: no I/O, no knowledge of the exception
classes (``errors.py`` uses this).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["CODE_KINDS", "ErrorKind", "kind_of_code"]


class ErrorKind(enum.Enum):
    """What went wrong, in the terms a program branches on; ``error.kind`` on every error.

    Examples:
        >>> from b24batch import AjaxError, ErrorKind
        >>> error = AjaxError("Record not found", code="ENTITY_GONE", status=404)
        >>> error.kind is ErrorKind.NOT_FOUND
        True
    """

    INPUT = "input"
    """The request's content was refused: validation, a bad select, filter, order, pagination
    or reference, an unknown method. Sending it again fails again; fix the input."""
    NOT_FOUND = "not_found"
    """A record the command names does not exist (or is not visible to this user)."""
    ACCESS = "access"
    """The credential works but may not do this: access denied, a missing scope."""
    AUTH = "auth"
    """The credential itself is wrong, missing or expired (HTTP 401)."""
    LIMIT = "limit"
    """A limit: the request rate (503 ``QUERY_LIMIT_EXCEEDED``) or the operating time (429
    ``OPERATION_TIME_LIMIT``). Refused before execution; try again later (``retry_at``)."""
    PORTAL = "portal"
    """The portal's side: a 5xx, REST blocked by support (``OVERLOAD_LIMIT``), a deleted
    portal. Nothing the caller can fix; a write may have run (``outcome_unknown``)."""
    TRANSPORT = "transport"
    """No usable HTTP answer: refused, timed out, TLS, reset, a redirect."""
    DECODING = "decoding"
    """An answer that could not be read: an HTML page, truncated JSON, a result that does not
    fit ``result_type``."""
    MISUSE = "misuse"
    """The SDK was used wrongly (``SdkError``); raised before anything was sent."""


_V3 = "BITRIX_REST_V3_EXCEPTION_"

_TABLE: Final = {
    # REST 3.0 (protocol.md §1, §2, §4)
    f"{_V3}VALIDATION_REQUESTVALIDATIONEXCEPTION": ErrorKind.INPUT,
    f"{_V3}INVALIDJSONEXCEPTION": ErrorKind.INPUT,
    f"{_V3}INVALIDSELECTEXCEPTION": ErrorKind.INPUT,
    f"{_V3}UNKNOWNDTOPROPERTYEXCEPTION": ErrorKind.INPUT,
    f"{_V3}UNKNOWNFILTEROPERATOREXCEPTION": ErrorKind.INPUT,
    f"{_V3}INVALIDPAGINATIONEXCEPTION": ErrorKind.INPUT,
    f"{_V3}INVALIDFILTEREXCEPTION": ErrorKind.INPUT,
    f"{_V3}INVALIDORDEREXCEPTION": ErrorKind.INPUT,
    f"{_V3}INVALIDIDEMPOTENCYKEYEXCEPTION": ErrorKind.INPUT,
    f"{_V3}IDEMPOTENCYKEYREUSEDEXCEPTION": ErrorKind.INPUT,
    f"{_V3}METHODNOTFOUNDEXCEPTION": ErrorKind.INPUT,
    f"{_V3}ENTITYNOTFOUNDEXCEPTION": ErrorKind.NOT_FOUND,
    f"{_V3}ACCESSDENIEDEXCEPTION": ErrorKind.ACCESS,
    f"{_V3}INSUFFICIENTSCOPEEXCEPTION": ErrorKind.ACCESS,
    # Classic codes, also answered on /rest/api/ (protocol.md §1, §4, §7)
    "INVALID_REQUEST": ErrorKind.INPUT,
    "REQUEST_ENTITY_TOO_LARGE": ErrorKind.INPUT,
    "ERROR_METHOD_NOT_FOUND": ErrorKind.INPUT,
    "ERROR_BATCH_LENGTH_EXCEEDED": ErrorKind.INPUT,
    "ERROR_BATCH_METHOD_NOT_ALLOWED": ErrorKind.INPUT,
    # The classic tasks.task.* methods (b24restdocs api-reference/tasks/tasks-task-add.md,
    # -update.md, -delete.md): ERROR_CORE is a refused value (no title, a bad status, an
    # assignee not found); 1048582 is "No access to delete the task".
    "ERROR_CORE": ErrorKind.INPUT,
    "1048582": ErrorKind.ACCESS,
    "insufficient_scope": ErrorKind.ACCESS,
    "INVALID_CREDENTIALS": ErrorKind.ACCESS,
    "ACCESS_DENIED": ErrorKind.ACCESS,
    # An OAuth refresh refused because the portal's trial or subscription ended (§11): the
    # application may not work there until it is paid for; no credential of its own fixes it.
    "PAYMENT_REQUIRED": ErrorKind.ACCESS,
    "NO_AUTH_FOUND": ErrorKind.AUTH,
    "expired_token": ErrorKind.AUTH,
    "invalid_token": ErrorKind.AUTH,
    "QUERY_LIMIT_EXCEEDED": ErrorKind.LIMIT,
    "OPERATION_TIME_LIMIT": ErrorKind.LIMIT,
    "OVERLOAD_LIMIT": ErrorKind.PORTAL,
    "INTERNAL_SERVER_ERROR": ErrorKind.PORTAL,
    "ERROR_UNEXPECTED_ANSWER": ErrorKind.PORTAL,
    "PORTAL_DELETED": ErrorKind.PORTAL,
}

CODE_KINDS: Final[Mapping[str, ErrorKind]] = MappingProxyType(_TABLE)
"""Every portal error code b24batch knows, and its kind. The classic CRM methods answer with an
empty code (``""``); [`kind_of_code`][b24batch.kind_of_code] reads their message instead."""

# The classic CRM methods answer some errors with an empty code and only a message (protocol
# §7); these are the messages the portal is known to send, read as lower-case fragments.
_EMPTY_CODE_MESSAGES: Final = (
    ("not found", ErrorKind.NOT_FOUND),
    ("access denied", ErrorKind.ACCESS),
    ("is not defined or invalid", ErrorKind.INPUT),
    ("must be array", ErrorKind.INPUT),
    ("is not specified", ErrorKind.INPUT),
)
_BY_UPPER: Final = {code.upper(): kind for code, kind in _TABLE.items()}
_STATUS_KINDS: Final = {401: ErrorKind.AUTH, 403: ErrorKind.ACCESS, 404: ErrorKind.NOT_FOUND}
_HTTP_CLIENT_ERROR: Final = 400
_HTTP_TOO_MANY: Final = 429
_HTTP_SERVER_ERROR: Final = 500


def kind_of_code(code: str, status: int, message: str = "") -> ErrorKind:
    """The kind of a portal error: by its code in [`CODE_KINDS`][b24batch.CODE_KINDS], else by HTTP
    status.

    Args:
        code: The portal's error code, in any letter case.
        status: The answer's HTTP status (0 for a refusal the client made itself).
        message: The portal's message; read only for the classic empty code (``"Not found"``,
            ``"ID is not defined or invalid."``, ``"Access denied."``).

    Returns:
        The kind. An unknown code falls to its status: 401 ``AUTH``, 403 ``ACCESS``, 404
        ``NOT_FOUND``, 429 ``LIMIT``, other 4xx ``INPUT``, anything else ``PORTAL``. The empty
        code is read by its message where the message is a known one; else by its status,
        where a 2xx (a command's error inside a batch answer) counts as the 400 the method
        answers alone: ``INPUT``.

    Examples:
        >>> kind_of_code("OPERATION_TIME_LIMIT", 429)
        <ErrorKind.LIMIT: 'limit'>
        >>> kind_of_code("SOMETHING_NEW", 403)
        <ErrorKind.ACCESS: 'access'>
        >>> kind_of_code("", 400, "Not found")
        <ErrorKind.NOT_FOUND: 'not_found'>
    """
    kind = _BY_UPPER.get(code.upper())
    if kind is not None:
        return kind
    if not code:
        lowered = message.lower()
        for fragment, known in _EMPTY_CODE_MESSAGES:
            if fragment in lowered:
                return known
        if status < _HTTP_CLIENT_ERROR:
            # A command's error inside a batch answer carries the batch's 200; answered alone,
            # a method's error without a code comes with HTTP 400: the input was refused.
            return ErrorKind.INPUT
    if status in _STATUS_KINDS:
        return _STATUS_KINDS[status]
    if status == _HTTP_TOO_MANY:
        return ErrorKind.LIMIT
    if _HTTP_CLIENT_ERROR <= status < _HTTP_SERVER_ERROR:
        return ErrorKind.INPUT
    return ErrorKind.PORTAL
