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
from typing import Any

import attrs

from b24batch.commands import Commands
from b24batch.errors import (
    AjaxError,
    AuthError,
    DecodeError,
    OperatingLimitError,
    RateLimitError,
)
from b24batch.params import check_json_keys, explain_unencodable
from b24batch.redaction import redact as _redact_default
from b24batch.results import FieldError, Key, Time

__all__ = ["Envelope", "decode_response", "encode_batch", "error_from_payload"]

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
        error.retry_after = _retry_after(headers.get("Retry-After"))
        return Envelope(status=status, result=None, time=time, error=error)
    if "result" not in payload or not 200 <= status < 300:
        keys = ", ".join(sorted(map(str, payload))[:8]) or "none"
        raise DecodeError(
            f"the portal answered HTTP {status} with JSON that has neither 'result' nor 'error' "
            f"(keys: {keys}){may_have_run}",
            request_id=request_id,
            outcome_unknown=unknown,
        )
    try:
        result = _positional(payload["result"], keys, request_id)
    except DecodeError as error:
        error.message += "; the batch was executed, but its answer does not match the commands"
        raise
    replayed = headers.get("Idempotent-Replayed", "").strip().lower() == "true"
    return Envelope(status=status, result=result, time=time, replayed=replayed)


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


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - _time.time())


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
    text = content[:4096].decode("utf-8", "replace")
    title = _TITLE.search(text)
    if "html" in kind or title or text.lstrip().startswith("<"):
        shown = title.group(1) if title else text
        snippet = _WHITESPACE.sub(" ", shown).strip()[:_SNIPPET]
        return (
            f"the portal (or a proxy before it) answered HTTP {status} with an HTML page, "
            f"not JSON: {redact(snippet)!r}"
        )
    return (
        f"the portal answered HTTP {status} ({kind}, {len(content)} bytes) with a body that is "
        f"not valid JSON, perhaps truncated: {exc.__class__.__name__} at byte "
        f"{getattr(exc, 'pos', '?')}"
    )
