"""The classic (v2) batch wire format: commands to a form body, an answer to outcomes.

Pure functions, no I/O (protocol §7). ``encode_batch_v2`` writes the form body
``halt=…&cmd[KEY]=METHOD?QUERY``, each query by ``form.encode_query`` (re-exported here);
``decode_response_v2`` turns the classic answer into one :class:`Outcome` per command;
``references_v2`` finds the ``$result[KEY]`` references. Error envelopes are read by ``wire.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from b24batch._protocols.phpform import MAX_DEPTH, encode_query, quote
from b24batch._protocols.v3 import Wire, decode_payload, error_from_payload
from b24batch.errors import AjaxError, DecodeError, SdkError, SdkTypeError
from b24batch.redaction import redact as _redact_default
from b24batch.results import Key, Time

__all__ = [
    "MAX_COMMANDS",
    "MAX_DEPTH",
    "V2",
    "EntryV2",
    "EnvelopeV2",
    "Outcome",
    "check_key",
    "decode_response_v2",
    "encode_batch_v2",
    "encode_query",
    "references_v2",
]

MAX_COMMANDS: Final = 50
"""The most commands one classic batch runs; the portal refuses the rest one by one."""

_SECTIONS: Final = ("result", "result_error", "result_total", "result_next", "result_time")
_NO_HEADERS: Mapping[str, str] = {}
_REFERENCE: Final = re.compile(r"\$(?:result|next|total|time|error)\[([^\]]+)\]")


# ---------------------------------------------------------------------------------------------
# Encoding


@attrs.frozen
class EntryV2:
    """One command as the classic body carries it.

    Attributes:
        key: The key sent in ``cmd[KEY]`` and used in ``$result[KEY]``: a position or a name.
        method: The classic method, e.g. ``"crm.deal.get"``.
        params: Its parameters, or None for none.
        where: How messages name the row, e.g. ``calls[2]``; by default ``calls[KEY]``.
    """

    key: Key
    method: str
    params: Mapping[Any, Any] | None = None
    where: str | None = attrs.field(default=None, kw_only=True)

    @property
    def row(self) -> str:
        return self.where if self.where is not None else f"calls[{self.key!r}]"


def check_key(key: object, where: str) -> str:
    """Return a command key's text for ``cmd[KEY]`` and ``$result[KEY]``, checked.

    Raises:
        SdkTypeError: The key is neither a str nor a non-negative int.
        SdkError: The key is empty or contains ``[``, ``]`` or NUL.
    """
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise SdkTypeError(
            f"{where} has the command key {key!r}; a key is a name (str) or a position (int)"
        )
    if isinstance(key, int):
        if key < 0:
            raise SdkError(f"{where} has the command key {key}; a position is 0 or more")
        return int.__repr__(key)
    text = str.__str__(key)
    if not text.strip():
        raise SdkError(f"{where} has an empty command key; a key is a non-empty name")
    if "[" in text or "]" in text or "\0" in text:
        raise SdkError(
            f"{where} has the command key {text!r}; the classic batch sends it as cmd[KEY] "
            f"and references it as $result[KEY], so it cannot contain '[', ']' or NUL"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SdkError(f"{where} has a command key with a lone surrogate") from None
    return text


def encode_batch_v2(entries: Sequence[EntryV2], *, halt: bool) -> bytes:
    """Encode ``entries`` as the classic batch form body ``halt=0|1&cmd[KEY]=METHOD?QUERY…``.

    The whole ``METHOD?QUERY`` is one form value, so its query is percent-encoded twice. The
    OAuth token is not part of the body built here: the transport appends ``&auth=TOKEN`` as
    it sends, so the token never sits in these frames.

    Raises:
        SdkError: No entries or more than ``MAX_COMMANDS``; a bad key, repeated key or method;
            a parameter a form cannot carry (the message names the row and the path).
        SdkTypeError: A key, method or parameter of the wrong type.

    Example:
        >>> encode_batch_v2([EntryV2("deal", "crm.deal.get", {"id": 7})], halt=True)
        b'halt=1&cmd[deal]=crm.deal.get%3Fid%3D7'
    """
    if not entries:
        raise SdkError(f"the batch is empty: a classic batch takes 1 to {MAX_COMMANDS} commands")
    if len(entries) > MAX_COMMANDS:
        raise SdkError(
            f"the batch has {len(entries)} commands; one classic batch takes at most "
            f"{MAX_COMMANDS}: split them into several batches"
        )
    parts = ["halt=1" if halt else "halt=0"]
    seen: dict[str, str] = {}
    for entry in entries:
        row = entry.row
        text = check_key(entry.key, row)
        if text in seen:
            raise SdkError(
                f"{row} is sent as cmd[{text}], as {seen[text]} is; "
                f"each command key must be unique in a batch"
            )
        seen[text] = row
        method = entry.method
        if not isinstance(method, str):
            raise SdkTypeError(f"{row} has a method of type {type(method).__name__}; use a str")
        if not method.strip():
            raise SdkError(f"{row} has an empty method name")
        if "?" in method or method != method.strip():
            raise SdkError(
                f"{row} has the method {method!r}; the portal splits METHOD?QUERY at the "
                f"first '?', so a method has no '?' and no spaces around it"
            )
        query = encode_query(entry.params, f"{row}.params")
        try:
            value = quote(f"{method}?{query}" if query else method, safe="")
        except UnicodeEncodeError:
            raise SdkError(f"{row} has a method that is not valid text") from None
        parts.append(f"cmd[{quote(text, safe='')}]={value}")
    return "&".join(parts).encode("ascii")


def references_v2(params: object) -> list[str]:
    """The command keys ``params`` references, as text, in the order found.

    Scans string keys and values at any depth for ``$result[KEY]``, ``$next[KEY]``,
    ``$total[KEY]``, ``$time[KEY]`` and ``$error[KEY]``. A position appears as its digits.

    Example:
        >>> references_v2({"fields": {"CONTACT_ID": "$result[contact]"}, "id": "$next[0]"})
        ['contact', '0']
    """
    found: list[str] = []
    stack: list[object] = [params]
    visited: set[int] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.extend(_REFERENCE.findall(item))
        elif isinstance(item, Mapping | list | tuple):
            if id(item) in visited:
                continue
            visited.add(id(item))
            if isinstance(item, Mapping):
                for key, value in reversed(list(item.items())):
                    stack.append(value)
                    stack.append(key)
            else:
                stack.extend(reversed(item))
    return found


# ---------------------------------------------------------------------------------------------
# Decoding


@attrs.frozen(kw_only=True)
class Outcome:
    """What the classic answer says about one command.

    Attributes:
        key: The command's key, as the caller sent it (a position as int).
        executed: Whether any section names it; False means it did not run.
        result: Its ``result`` entry (None when absent; ``null`` is also possible).
        error: Its ``result_error`` entry as an ``AjaxError`` (``code``, ``message``), or None.
        total: Its ``result_total`` (list methods), or None.
        next: Its ``result_next`` (when there is a next page), or None.
        time: Its own ``result_time`` block, or None.
    """

    key: Key
    executed: bool
    result: Any = None
    error: AjaxError | None = attrs.field(default=None, eq=False)
    total: int | None = None
    next: int | None = None
    time: Time | None = None


@attrs.frozen(kw_only=True)
class EnvelopeV2:
    """A decoded classic answer: one outcome per command, or a whole-request error.

    Attributes:
        status: HTTP status.
        outcomes: One :class:`Outcome` per key, in the order the keys were given; empty when
            ``error`` is set.
        time: The batch-level ``time`` block, if any.
        error: The portal's whole-request error (401, 503, …), if it answered with one.
    """

    status: int
    outcomes: tuple[Outcome, ...]
    time: Time | None
    error: AjaxError | None = attrs.field(default=None, eq=False)

    @property
    def limit_time(self) -> Time | None:
        """The time block the client's operating meter learns from: the one with the most
        operating time, of the batch's and its commands' (the portal reports it per method)."""
        times = [self.time, *(outcome.time for outcome in self.outcomes)]
        known = [time for time in times if time is not None and time.operating is not None]
        return max(known, key=lambda time: time.operating or 0.0) if known else self.time


def decode_response_v2(
    status: int,
    content: bytes,
    *,
    keys: Sequence[Key],
    request_id: str | None,
    headers: Mapping[str, str] = _NO_HEADERS,
    redact: Callable[[str], str] = _redact_default,
) -> EnvelopeV2:
    """Decode the classic answer to a batch sent with ``keys``.

    Each section may be a JSON list (keys ``0..n-1``), an object keyed by the command keys
    (``"0"``, ``"2"``, … when positions have gaps) or ``[]`` when empty (protocol §7).

    Args:
        status: HTTP status.
        content: The raw body.
        keys: The command keys sent, in call order; an outcome is returned for each.
        request_id: The batch's request id, put on every error.
        headers: The answer's headers (``Content-Type``, ``Retry-After``).
        redact: Masks secrets in any text taken from the answer.

    Raises:
        DecodeError: The body is not JSON, has neither ``result`` nor ``error``, a section is
            not a list or object, or names a command that was not sent.
    """
    payload, failed = decode_payload(
        status, content, request_id=request_id, headers=headers, redact=redact
    )
    if failed is not None:
        return EnvelopeV2(status=status, outcomes=(), time=failed.time, error=failed.error)
    by_text = {int.__repr__(k) if isinstance(k, int) else str(k): k for k in keys}
    body = payload["result"]
    if not isinstance(body, dict):
        raise _malformed(
            f"the portal's result is a {type(body).__name__}; the classic batch answers an "
            f"object with {', '.join(_SECTIONS)}",
            request_id,
        )
    sections = {name: _section(body.get(name), name, by_text, request_id) for name in _SECTIONS}
    outcomes = []
    for key in keys:
        text = int.__repr__(key) if isinstance(key, int) else str(key)
        present = [name for name in _SECTIONS if text in sections[name]]
        error = None
        if text in sections["result_error"]:
            error = _command_error(sections["result_error"][text], status, request_id, redact)
        outcomes.append(
            Outcome(
                key=key,
                executed=bool(present),
                result=sections["result"].get(text),
                error=error,
                total=_count(sections["result_total"].get(text)),
                next=_count(sections["result_next"].get(text)),
                time=Time.from_json(sections["result_time"].get(text)),
            )
        )
    return EnvelopeV2(
        status=status, outcomes=tuple(outcomes), time=Time.from_json(payload.get("time"))
    )


def _section(
    value: object, name: str, by_text: Mapping[str, Key], request_id: str | None
) -> dict[str, Any]:
    """One section as a dict keyed by the command keys' text."""
    if value is None:
        return {}
    if isinstance(value, list):
        entries = {str(index): item for index, item in enumerate(value)}
    elif isinstance(value, dict):
        entries = {str(k): item for k, item in value.items()}
    else:
        raise _malformed(
            f"the portal's result.{name} is a {type(value).__name__}; expected a list or object",
            request_id,
        )
    for text in entries:
        if text not in by_text:
            shown = ", ".join(list(by_text)[:8])
            raise _malformed(
                f"the portal's result.{name} names the command {text!r}, which was not sent "
                f"(sent: {shown})",
                request_id,
            )
    return entries


def _command_error(
    entry: object, status: int, request_id: str | None, redact: Callable[[str], str]
) -> AjaxError:
    if not isinstance(entry, dict):
        entry = {"error": "UNKNOWN_ERROR", "error_description": str(entry)}
    elif "error" not in entry:
        # Kept as sent: the classic CRM methods answer some errors with an empty code.
        entry = {**entry, "error": ""}
    return error_from_payload(entry, status=status, request_id=request_id, redact=redact)


def _count(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _malformed(message: str, request_id: str | None) -> DecodeError:
    return DecodeError(
        message + "; the batch was executed, but its answer does not match the commands",
        request_id=request_id,
    )


V2: Wire[EnvelopeV2] = Wire(
    name="classic",
    api="",
    content_type="application/x-www-form-urlencoded",
    token_in_body=True,
    stops_at_failure=False,
    decode=decode_response_v2,
)
"""The classic batch: a form to ``/rest/…/batch``, an outcome for every command."""
