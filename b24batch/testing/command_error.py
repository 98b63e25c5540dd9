"""``CommandError``: the REST 3.0 error a FakePortal command fails with, and the fake's codes.

Plain data, no I/O: raised by the stores, the classic batch and users' handlers; the routes turn
it into an answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = [
    "ENTITY_NOT_FOUND",
    "INTERNAL_ERROR",
    "INVALID_FILTER",
    "INVALID_ORDER",
    "INVALID_PAGINATION",
    "INVALID_SELECT",
    "METHOD_NOT_FOUND",
    "UNKNOWN_FILTER_OPERATOR",
    "UNKNOWN_PROPERTY",
    "VALIDATION",
    "VALIDATION_MESSAGE",
    "CommandError",
    "bad_batch",
]

INVALID_SELECT: Final = "BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION"
VALIDATION: Final = "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION"
ENTITY_NOT_FOUND: Final = "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"
UNKNOWN_PROPERTY: Final = "BITRIX_REST_V3_EXCEPTION_UNKNOWNDTOPROPERTYEXCEPTION"
UNKNOWN_FILTER_OPERATOR: Final = "BITRIX_REST_V3_EXCEPTION_UNKNOWNFILTEROPERATOREXCEPTION"
INVALID_FILTER: Final = "BITRIX_REST_V3_EXCEPTION_INVALIDFILTEREXCEPTION"
INVALID_ORDER: Final = "BITRIX_REST_V3_EXCEPTION_INVALIDORDEREXCEPTION"
INVALID_PAGINATION: Final = "BITRIX_REST_V3_EXCEPTION_INVALIDPAGINATIONEXCEPTION"
METHOD_NOT_FOUND: Final = "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION"
INTERNAL_ERROR: Final = "INTERNAL_SERVER_ERROR"

VALIDATION_MESSAGE: Final = "Error validating request object"


class CommandError(Exception):
    """A command failed; its error is the whole batch's answer, and the rows after it never run.

    The rows before it have run and their writes stay (protocol §4: there is no rollback).

    Raise it from a handler given to ``FakePortal.register`` to fail the batch with a REST 3.0
    error envelope ``{"error": {"code", "message", "validation"?}}``.

    Args:
        message: The ``error.message`` text.
        code: The ``error.code``, e.g. ``BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION``.
        status: The HTTP status of the whole batch response.
        validation: ``error.validation`` rows, each ``{"field": ..., "message": ...}``.

    Examples:
        >>> def handler(query):
        ...     raise FakePortal.CommandError(
        ...         "Access denied",
        ...         code="BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION",
        ...         status=403,
        ...     )
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int = 400,
        validation: Iterable[Mapping[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.validation = None if validation is None else tuple(dict(row) for row in validation)

    @classmethod
    def invalid(cls, *errors: tuple[str, str]) -> CommandError:
        """A request validation error with one ``(field, message)`` row per problem."""
        return cls(
            VALIDATION_MESSAGE,
            code=VALIDATION,
            validation=[{"field": field, "message": message} for field, message in errors],
        )

    def envelope(self) -> dict[str, Any]:
        """Return the REST 3.0 error body for this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.validation is not None:
            error["validation"] = [dict(row) for row in self.validation]
        return {"error": error}


def bad_batch(message: str) -> CommandError:
    """An ``INVALIDSELECTEXCEPTION``, the answer to a malformed batch body or reference."""
    return CommandError(message, code=INVALID_SELECT)
