"""The REST 3.0 batch wire format: commands to a JSON body, an HTTP answer to an ``Envelope``.

Pure functions, no I/O (protocol §2–§4). ``encode_batch`` writes the bare JSON array the portal
requires; ``decode_response`` reads either answer envelope and maps an error envelope to an
``AjaxError`` in one place. Neither decides whether an error is raised or returned.
"""

from __future__ import annotations

import email.utils
import json
import re
import time as _time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import attrs

from b24batch._protocols.jsonparams import check_json_keys, explain_unencodable
from b24batch.commands import Commands
from b24batch.errors import (
    AjaxError,
    AuthError,
    DecodeError,
    OperatingLimitError,
    RateLimitError,
)
from b24batch.redaction import redact as _redact_default
from b24batch.results import FieldError, Key, Time

__all__ = [
    "V3",
    "Answered",
    "Envelope",
    "Wire",
    "decode_payload",
    "decode_response",
    "encode_batch",
    "error_from_payload",
]

_ERROR_TYPES: dict[str, type[AjaxError]] = {
    "QUERY_LIMIT_EXCEEDED": RateLimitError,
    "OPERATION_TIME_LIMIT": OperatingLimitError,
}
_NO_HEADERS: Mapping[str, str] = {}
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_SNIPPET = 160


@attrs.frozen(kw_only=True)
class Envelope:
    """A decoded answer: either positional results or an error, with the batch's time.

    Attributes:
        status: HTTP status.
        result: One JSON value per command, in call order; None when ``error`` is set.
        time: The ``time`` block, if any.
        error: The portal's error, if it answered with one.
        replayed: The answer came from the portal's idempotency store
            (``Idempotent-Replayed: true``): the batch was not executed again.
    """

    status: int
    result: list[Any] | None
    time: Time | None
    error: AjaxError | None = None
    replayed: bool = False

    @property
    def limit_time(self) -> Time | None:
        """The time block the client's operating meter learns from: the batch's."""
        return self.time


class Answered(Protocol):
    """What the engine reads of either protocol's decoded answer."""

    @property
    def status(self) -> int: ...

    @property
    def error(self) -> AjaxError | None: ...

    @property
    def limit_time(self) -> Time | None: ...


E = TypeVar("E", bound=Answered)


@attrs.frozen
class Wire(Generic[E]):
    """What differs between the two batch protocols on the way to the portal and back.

    ``V3`` (here) and ``wire_v2.V2`` are the two; the client posts and decodes by them, and
    the batch engine reads ``stops_at_failure``. Everything else is shared.

    Attributes:
        name: ``"REST 3.0"`` or ``"classic"``, for messages.
        api: The URL segment after ``/rest/``: ``"api/"`` selects REST 3.0, ``""`` classic.
        content_type: The body's ``Content-Type``.
        token_in_body: The OAuth token travels as the body's ``auth`` field (classic), not
            as an ``Authorization: Bearer`` header (REST 3.0).
        stops_at_failure: An error answer means the portal ran the commands before the
            failing one and reported none of them (REST 3.0); a classic answer reports each.
        decode: ``(status, content, *, keys, request_id, headers, redact) -> envelope``.
    """

    name: str
    api: str
    content_type: str
    token_in_body: bool
    stops_at_failure: bool
    decode: Callable[..., E] = attrs.field(repr=False)


def encode_batch(commands: Commands, *, halt_on_error: bool) -> bytes:
    """Encode ``commands`` as the REST 3.0 batch body: a bare JSON array, in call order.

    Every row has ``method``, ``query`` (the params, or ``{}``) and ``parallel`` (the row's own,
    else ``not halt_on_error``, as the JS SDK sends it); ``as`` only when there is an alias.

    Raises:
        SdkError: A parameter cannot be encoded as JSON (NaN, a set, nesting past
            :data:`~b24batch.commands.MAX_PARAMS_DEPTH`, ...), or two keys of one dict would be
            written alike (``1`` and ``"1"``); the message names the row and path.
    """
    default_parallel = not halt_on_error
    rows = []
    for command, alias in zip(commands.items, commands.aliases, strict=True):
        row: dict[str, Any] = {
            "method": command.method,
            "query": {} if command.params is None else command.params,
        }
        if alias is not None:
            row["as"] = alias
        row["parallel"] = default_parallel if command.parallel is None else command.parallel
        rows.append(row)
    try:
        body = _encode(rows).encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        # The C encoder is fast but says little; only now walk the params to name the culprit.
        raise explain_unencodable(commands) from None
    check_json_keys(commands)
    return body


def decode_response(
    status: int,
    content: bytes,
    *,
    keys: Sequence[Key],
    request_id: str | None,
    headers: Mapping[str, str] = _NO_HEADERS,
    redact: Callable[[str], str] = _redact_default,
) -> Envelope:
    """Decode an HTTP answer to a batch of ``len(keys)`` commands.

    Errors are marked ``outcome_unknown`` where the batch may have run although the answer does
    not say so: a body that is not JSON on a 2xx or 5xx (but 503) status, and 5xx envelopes
    other than 503 (503 means refused before execution).

    Args:
        status: HTTP status.
        content: The raw body.
        keys: The commands' keys, in call order (for the count and for messages).
        request_id: The batch's request id, put on every error.
        headers: The answer's headers (``Content-Type``, ``Retry-After``,
            ``Idempotent-Replayed``); a case-insensitive mapping such as requests gives.
        redact: Masks secrets in any text taken from the answer.

    Returns:
        An ``Envelope`` with ``result`` (one entry per command) or ``error``.

    Raises:
        DecodeError: The body is not JSON (HTML page, truncated), has neither ``result`` nor
            ``error``, or ``result`` lacks an entry.
    """
    payload, failed = decode_payload(
        status, content, request_id=request_id, headers=headers, redact=redact
    )
    if failed is not None:
        return failed
    try:
        result = _positional(payload["result"], keys, request_id)
    except DecodeError as error:
        error.message += "; the batch was executed, but its answer does not match the commands"
        raise
    replayed = headers.get("Idempotent-Replayed", "").strip().lower() == "true"
    time = Time.from_json(payload.get("time"))
    return Envelope(status=status, result=result, time=time, replayed=replayed)


def decode_payload(
    status: int,
    content: bytes,
    *,
    request_id: str | None,
    headers: Mapping[str, str] = _NO_HEADERS,
    redact: Callable[[str], str] = _redact_default,
) -> tuple[dict[str, Any], Envelope | None]:
    """Read an answer's JSON object; an error envelope comes back as an ``Envelope`` too.

    The part both batch protocols share: REST 3.0 reads ``result`` positionally, the classic
    batch by command key.

    Returns:
        ``(payload, None)`` for a 2xx answer with ``result``, ``(payload, envelope)`` when the
        portal answered an error envelope (``envelope.error`` is set).

    Raises:
        DecodeError: The body is not JSON, not an object, or has neither ``result`` nor
            ``error`` (or ``result`` on a non-2xx status).
    """
    try:
        return _payload(status, content, request_id, headers, redact)
    except RecursionError:  # nested deeper than Python's stack: json or str() of a part
        unknown = _may_have_run(status)
        raise DecodeError(
            f"the portal answered HTTP {status} with JSON nested too deeply to decode"
            + ("; the batch may have been executed" if unknown else ""),
            request_id=request_id,
            outcome_unknown=unknown,
        ) from None


def _payload(
    status: int,
    content: bytes,
    request_id: str | None,
    headers: Mapping[str, str],
    redact: Callable[[str], str],
) -> tuple[dict[str, Any], Envelope | None]:
    try:
        payload = json.loads(content)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are ValueErrors
        unknown = _may_have_run(status)
        message = _not_json_message(status, content, headers.get("Content-Type", ""), exc, redact)
        raise DecodeError(
            message + ("; the batch may have been executed" if unknown else ""),
            request_id=request_id,
            outcome_unknown=unknown,
        ) from None
    unknown = _may_have_run(status)
    may_have_run = "; the batch may have been executed" if unknown else ""
    if not isinstance(payload, dict):
        raise DecodeError(
            f"the portal answered HTTP {status} with JSON {type(payload).__name__}, "
            f"not an object with 'result' or 'error'{may_have_run}",
            request_id=request_id,
            outcome_unknown=unknown,
        )
    time = Time.from_json(payload.get("time"))
    if payload.get("error"):
        error = error_from_payload(payload, status=status, request_id=request_id, redact=redact)
        error.retry_after = _retry_after(headers.get("Retry-After"), headers.get("Date"))
        return payload, Envelope(status=status, result=None, time=time, error=error)
    if "result" not in payload or not 200 <= status < 300:
        names = ", ".join(sorted(map(str, payload))[:8]) or "none"
        raise DecodeError(
            f"the portal answered HTTP {status} with JSON that has neither 'result' nor 'error' "
            f"(keys: {names}){may_have_run}",
            request_id=request_id,
            outcome_unknown=unknown,
        )
    return payload, None


def error_from_payload(
    payload: dict[str, Any],
    *,
    status: int,
    request_id: str | None,
    redact: Callable[[str], str] = _redact_default,
) -> AjaxError:
    """Map either error envelope to an ``AjaxError`` or the subclass its status or code names.

    ``AuthError`` for HTTP 401, ``RateLimitError`` for ``QUERY_LIMIT_EXCEEDED``,
    ``OperatingLimitError`` for ``OPERATION_TIME_LIMIT``.

    REST 3.0: ``{"error": {"code", "message", "validation": [{"field", "message"}]}}``.
    Classic: ``{"error": "CODE", "error_description": "..."}``.
    """
    error = payload["error"]
    validation: list[FieldError] = []
    if isinstance(error, dict):
        code = str(error.get("code") or "UNKNOWN_ERROR")
        message = str(error.get("message") or "")
        rows = error.get("validation")
        if isinstance(rows, list):
            for row in rows:
                if isinstance(row, dict):
                    validation.append(
                        FieldError(
                            redact(str(row.get("field") or "")),
                            redact(str(row.get("message") or "")),
                        )
                    )
                elif row is not None:
                    validation.append(FieldError("", redact(str(row))))
    else:
        code = str(error)
        message = str(payload.get("error_description") or "")
    error_type = AuthError if status == 401 else _ERROR_TYPES.get(code, AjaxError)
    return error_type(
        redact(message or code),
        code=redact(code),
        status=status,
        validation=validation,
        request_id=request_id,
        outcome_unknown=_may_have_run(status) and status >= 500,
    )


def _may_have_run(status: int) -> bool:
    """Whether an answer with ``status`` leaves open that the batch ran (protocol §5)."""
    return 200 <= status < 300 or (status >= 500 and status != 503)


def _retry_after(value: str | None, date: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number, or an HTTP date.

    A date is measured from the answer's own ``Date`` header, so the server's clock sets both
    ends and a skewed (or injected) client clock cannot stretch or cut the wait; only an
    answer without a readable ``Date`` is measured from this host's clock.
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    moment = _http_date(value)
    if moment is None:
        return None
    sent = _http_date(date) if date else None
    return max(0.0, moment - (_time.time() if sent is None else sent))


def _http_date(value: str) -> float | None:
    """Unix seconds of an HTTP date, or None when it is not one."""
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _positional(value: object, keys: Sequence[Key], request_id: str | None) -> list[Any]:
    """Return ``result`` as a list of exactly ``len(keys)`` entries (protocol §3)."""
    expected = len(keys)
    if isinstance(value, list):
        entries = value
    elif isinstance(value, dict):
        try:
            entries = [value[str(i)] for i in range(expected)]
        except KeyError as exc:
            position = int(exc.args[0])
            raise DecodeError(
                f"the portal's result has no entry for command {_name(keys, position)}",
                request_id=request_id,
            ) from None
        if len(value) != expected:
            raise DecodeError(
                f"the portal's result has {len(value)} entries for {expected} commands",
                request_id=request_id,
            )
        return entries
    else:
        raise DecodeError(
            f"the portal's result is a {type(value).__name__}; expected a list of "
            f"{expected} entries",
            request_id=request_id,
        )
    if len(entries) < expected:
        raise DecodeError(
            f"the portal's result has {len(entries)} entries for {expected} commands: "
            f"no entry for command {_name(keys, len(entries))}",
            request_id=request_id,
        )
    if len(entries) > expected:
        raise DecodeError(
            f"the portal's result has {len(entries)} entries for {expected} commands",
            request_id=request_id,
        )
    return entries


def _name(keys: Sequence[Key], position: int) -> str:
    key = keys[position]
    return str(position) if key == position else f"{position} ({key!r})"


_WHITESPACE = re.compile(r"\s+")
_TITLE = re.compile(r"(?is)<title[^>]*>(.*?)</title>")


def _not_json_message(
    status: int,
    content: bytes,
    content_type: str,
    exc: ValueError,
    redact: Callable[[str], str],
) -> str:
    kind = content_type.split(";")[0].strip() or "no content type"
    if not content:
        return f"the portal answered HTTP {status} with an empty body, not JSON"
    head = content[:4096].decode("utf-8", "replace")
    title = _TITLE.search(head)
    if "html" in kind or title or head.lstrip().startswith("<"):
        # Redacted whole, then cut: a cut first could leave part of a secret unrecognised.
        shown = title.group(1) if title else content.decode("utf-8", "replace")
        snippet = redact(_WHITESPACE.sub(" ", shown).strip())[:_SNIPPET]
        return (
            f"the portal (or a proxy before it) answered HTTP {status} with an HTML page, "
            f"not JSON: {snippet!r}"
        )
    return (
        f"the portal answered HTTP {status} ({kind}, {len(content)} bytes) with a body that is "
        f"not valid JSON, perhaps truncated: {exc.__class__.__name__} at byte "
        f"{getattr(exc, 'pos', '?')}"
    )


V3: Wire[Envelope] = Wire(
    name="REST 3.0",
    api="api/",
    content_type="application/json",
    token_in_body=False,
    stops_at_failure=True,
    decode=decode_response,
)
"""The REST 3.0 batch: a JSON array to ``/rest/api/…/batch``, one error for the whole batch."""
