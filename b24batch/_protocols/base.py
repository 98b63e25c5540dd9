"""The ``Protocol`` type both batch protocols are values of, and what they read alike.

A ``Protocol`` holds everything that differs between REST 3.0 and the classic batch: where a
batch goes and as what, how commands are named and referenced, ``prepare`` (checked commands →
a ``Prepared`` body; ``prepare_call`` for one method at its own URL) and ``decode`` (an HTTP
answer → ``Answers``, per command), the failure model and the list route. Also the JSON answer
and error envelope both protocols share. Pure: no I/O, and nothing here knows the engine.
"""

from __future__ import annotations

import abc
import email.utils
import json
import re
import time as _time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from b24batch.commands import Command, Commands
from b24batch.errors import (
    AjaxError,
    AuthError,
    DecodeError,
    OperatingLimitError,
    RateLimitError,
    SdkError,
)
from b24batch.redaction import redact as _redact_default
from b24batch.results import FieldError, Key, Time

__all__ = [
    "BATCH",
    "METHOD_NOT_FOUND",
    "NO_HEADERS",
    "PAGE_LIMIT",
    "Answers",
    "Prepared",
    "Protocol",
    "Spec",
    "classic_count",
    "decode_payload",
    "error_from_payload",
]

PAGE_LIMIT: Final = 50
"""The page a list walk asks for (REST 3.0 ``pagination.limit``; a classic page is 50)."""

NO_HEADERS: Mapping[str, str] = {}

BATCH: Final = "batch"
"""The endpoint of a batch: the last segment of its URL (a single call's is its method)."""
_METHOD_NAME: Final = re.compile(r"[A-Za-z0-9_.]+")

METHOD_NOT_FOUND: Final = frozenset(
    {"ERROR_METHOD_NOT_FOUND", "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION"}
)
"""The codes of a method the portal does not serve (in this protocol)."""

_ERROR_TYPES: dict[str, type[AjaxError]] = {
    "QUERY_LIMIT_EXCEEDED": RateLimitError,
    "OPERATION_TIME_LIMIT": OperatingLimitError,
}
_SNIPPET = 160


@attrs.frozen(kw_only=True)
class Prepared:
    """One checked batch, encoded for its protocol and ready to send.

    Attributes:
        protocol: The protocol it is encoded for.
        commands: Its commands, keyed as the caller gave them (positions or names).
        wire_keys: The key each command is sent and answered under, in the same order (the
            caller's keys for REST 3.0; ``cmd[KEY]`` for the classic batch).
        halt: Sent to stop at the first failing command (REST 3.0 stops there always).
        body: The encoded body.
        endpoint: The last segment of the URL it is posted to: ``"batch"``, or for a single
            call (one command, its params as the whole body) the command's method.
    """

    protocol: Protocol
    commands: Commands
    wire_keys: tuple[Key, ...]
    halt: bool
    body: bytes = attrs.field(repr=False)
    endpoint: str = BATCH

    @property
    def single(self) -> bool:
        """A single call: the method at its own URL, not a batch."""
        return self.endpoint != BATCH

    def part(self, positions: Sequence[int]) -> Prepared:
        """The commands at ``positions`` as a batch of their own, under the same wire keys."""
        commands = self.commands.part(positions)
        wire_keys = tuple(self.wire_keys[p] for p in positions)
        body = self.protocol.encode(commands, wire_keys, halt=self.halt)
        return attrs.evolve(self, commands=commands, wire_keys=wire_keys, body=body)


@attrs.frozen(kw_only=True)
class Answers:
    """What one answer said about a batch, by position: the engine reads only this.

    Attributes:
        status: The HTTP status of the answer.
        time: The batch's ``time`` block.
        limit_time: The ``time`` block the client's operating meter learns from.
        replayed: Answered from the idempotency store (REST 3.0).
        error: The whole batch's error, when the portal answered one (then ``entries`` is
            None); a protocol that stops at its first failure reports it only so.
        entries: One raw result per command (None where a command has none), or None.
        errors: Position -> error, one per command that failed on its own (classic); each
            error's ``key`` is the caller's key.
        not_run: Positions of the commands the answer says did not run (classic ``halt``).
        unknown: Positions of the commands the answer says nothing about although nothing
            skipped them (classic): each was sent, and may have run.
        times: The commands' own ``time`` blocks (classic), by position; else None.
        totals: The commands' ``total`` (classic lists), by position; else None.
        nexts: The commands' ``next`` (classic lists), by position; else None.
    """

    status: int
    time: Time | None
    limit_time: Time | None = None
    replayed: bool = False
    error: AjaxError | None = None
    entries: list[Any] | None = None
    errors: Mapping[int, AjaxError] = attrs.field(factory=dict)
    not_run: frozenset[int] = frozenset()
    unknown: frozenset[int] = frozenset()
    times: Sequence[Time | None] | None = None
    totals: Sequence[int | None] | None = None
    nexts: Sequence[int | None] | None = None

    def replaced(self, positions: Sequence[int], part: Answers) -> Answers:
        """These answers with the commands at ``positions`` answered as ``part`` says
        (``part`` answers exactly those commands, in that order)."""
        assert self.entries is not None
        assert part.entries is not None
        entries = list(self.entries)
        errors = dict(self.errors)
        not_run = set(self.not_run)
        unknown = set(self.unknown)
        times, totals, nexts = _listed(self.times), _listed(self.totals), _listed(self.nexts)
        for index, position in enumerate(positions):
            entries[position] = part.entries[index]
            errors.pop(position, None)
            if index in part.errors:
                errors[position] = part.errors[index]
            not_run.discard(position)
            unknown.discard(position)
            if index in part.not_run:
                not_run.add(position)
            if index in part.unknown:
                unknown.add(position)
            for mine, theirs in ((times, part.times), (totals, part.totals), (nexts, part.nexts)):
                if mine is not None and theirs is not None:
                    mine[position] = theirs[index]
        return attrs.evolve(
            self,
            entries=entries,
            errors=errors,
            not_run=frozenset(not_run),
            unknown=frozenset(unknown),
            times=times,
            totals=totals,
            nexts=nexts,
        )


def _listed(values: Sequence[Any] | None) -> list[Any] | None:
    return None if values is None else list(values)


@attrs.frozen(kw_only=True)
class Spec:
    """A checked list call: what every command of a list walk shares.

    Attributes:
        method: The list method.
        params: The caller's params without ``filter`` (``select`` completed with the id).
        filter: A REST 3.0 list of conditions, or a classic dict without the walk's id keys.
        id_key: The field holding each item's id.
        low: The caller's own classic lower bound on ``id_key`` (``>=ID``), folded into ours.
        high: Likewise the upper bound (``<ID``).
    """

    method: str
    params: Mapping[str, Any]
    filter: Any
    id_key: str
    low: int | None = None
    high: int | None = None


class Protocol(abc.ABC):
    """One batch protocol: everything that differs between REST 3.0 and the classic batch.

    Two values exist, ``_protocols.v3.V3`` and ``_protocols.v2.V2``; the engine holds one and
    never asks which.

    Attributes:
        name: ``"REST 3.0"`` or ``"classic"``, for messages.
        api: The URL segment after ``/rest/``: ``"api/"`` selects REST 3.0, ``""`` classic.
        content_type: The body's ``Content-Type``.
        token_in_body: The OAuth token travels as the body's ``auth`` field (classic), not
            as an ``Authorization: Bearer`` header (REST 3.0).
        stops_at_failure: An error answer means the portal ran the commands before the
            failing one and reported none of them (REST 3.0); a classic answer reports each.
        refused_before_running: Error codes the portal answers before running any command.
        takes_idempotency_key: The endpoint honours ``Idempotency-Key``.
        id_key: The field a list walk reads each item's id from, by default.
    """

    name: str
    api: str
    content_type: str
    token_in_body: bool
    stops_at_failure: bool
    refused_before_running: frozenset[str] = frozenset()
    takes_idempotency_key: bool
    id_key: str

    def __repr__(self) -> str:
        return f"<Protocol {self.name}>"

    # -- naming and references, for the planner ------------------------------------------------

    @abc.abstractmethod
    def reference_name(self, key: Key, alias: str | None, named: bool) -> str | None:
        """The name later commands reference a command by (None: not referenceable).

        Args:
            key: Its key in the whole call (a position or the caller's name).
            alias: Its checked ``as`` (its own, else its name in a named call), or None.
            named: The call came as a dict of names.
        """

    @abc.abstractmethod
    def targets(
        self, command: Command, defined: Mapping[str, int], index: int, where: str
    ) -> list[tuple[int, str]]:
        """``(index, how the reference reads)`` of every command ``command`` references.

        Args:
            command: The command, at ``index`` in the whole call.
            defined: Reference name -> index of the commands before it.
            index: Its index in the whole call.
            where: How messages name its row.

        Raises:
            SdkError: A reference that names no earlier command.
        """

    @abc.abstractmethod
    def referenced(self, params: object) -> list[str]:
        """The names of the commands ``params`` references, in the order found."""

    # -- one batch -----------------------------------------------------------------------------

    @abc.abstractmethod
    def prepare(
        self, commands: Commands, *, halt: bool, references_checked: bool = False
    ) -> Prepared:
        """Check what only this protocol needs and encode the batch.

        Args:
            commands: The normalised commands of one batch.
            halt: Stop at the first failing command.
            references_checked: The planner has resolved every reference already.

        Raises:
            SdkError: A command this protocol cannot carry; the message names the row.
        """

    @abc.abstractmethod
    def encode(self, commands: Commands, wire_keys: Sequence[Key], *, halt: bool) -> bytes:
        """The body for ``commands`` sent under ``wire_keys`` (checked already)."""

    # -- one method at its own URL (protocol section 10) -------------------------------------------

    def prepare_call(self, command: Command) -> Prepared:
        """A single call of ``command`` (checked by ``Command.from_row``): its params are the
        body, posted to the method's own URL; it travels and is answered as a one-command batch
        would be, so the engine sends it as one.

        Raises:
            SdkError: A method name a URL cannot carry, or params this protocol cannot encode
                (the message names ``params`` and the path).
        """
        if not _METHOD_NAME.fullmatch(command.method):
            raise SdkError(
                f"method {command.method!r}: a single call posts to the method's own URL, so "
                f"its name is letters, digits, '.' and '_' only (e.g. 'tasks.task.get')"
            )
        commands = Commands(items=(command,), keys=(0,), aliases=(None,), named=False)
        return Prepared(
            protocol=self,
            commands=commands,
            wire_keys=(0,),
            halt=True,
            body=self.encode_call(commands),
            endpoint=command.method,
        )

    @abc.abstractmethod
    def encode_call(self, commands: Commands) -> bytes:
        """The body of a single call: the one command's params, as this protocol sends them.

        Raises:
            SdkError: Params this protocol cannot encode; the message names ``params``.
        """

    def decode(
        self,
        status: int,
        content: bytes,
        *,
        prepared: Prepared,
        request_id: str | None,
        headers: Mapping[str, str] = NO_HEADERS,
        redact: Callable[[str], str] = _redact_default,
    ) -> Answers:
        """Decode the HTTP answer to ``prepared``: the protocol's envelope, then its answers.

        Raises:
            DecodeError: An answer that is not this protocol's batch answer to these commands.
        """
        if prepared.single:
            payload, error = decode_payload(
                status, content, request_id=request_id, headers=headers, redact=redact
            )
            return _call_answers(status, payload, error, headers)
        envelope = self.decode_response(
            status,
            content,
            keys=prepared.wire_keys,
            request_id=request_id,
            headers=headers,
            redact=redact,
        )
        return self.answers(envelope, prepared)

    decode_response: Callable[..., Any]
    """The protocol's wire decoder: ``(status, content, *, keys, request_id, headers, redact)``
    to its own envelope (each protocol module's ``decode_response``)."""

    @abc.abstractmethod
    def answers(self, envelope: Any, prepared: Prepared) -> Answers:
        """What the decoded ``envelope`` says about each command of ``prepared``."""

    def hint(self, error: AjaxError, prepared: Prepared) -> str:
        """What to add to ``error`` for a caller who sent a method to the wrong protocol
        (``""`` when nothing); only the protocols know which methods are theirs."""
        return ""

    # -- list walks ----------------------------------------------------------------------------

    @abc.abstractmethod
    def list_filter(self, value: Any, id_key: str) -> tuple[Any, int | None, int | None]:
        """``(filter, low, high)``: the caller's list filter, checked, with any bounds on
        ``id_key`` the walk must fold into its own ranges.

        Raises:
            SdkError: A filter of the wrong shape for this protocol.
        """

    @abc.abstractmethod
    def list_row(
        self, spec: Spec, low: int | None, high: int | None, descending: bool
    ) -> tuple[str, dict[str, Any]]:
        """The list command for ids in ``[low, high)`` (None: open), ordered by id."""


def _call_answers(
    status: int, payload: Mapping[str, Any], error: AjaxError | None, headers: Mapping[str, str]
) -> Answers:
    """A single call's answer as the answers of a one-command batch (protocol section 10):
    ``{"result", "time"}`` on both protocols, with ``total`` and ``next`` from a classic list
    method; an error envelope is the command's error (nothing ran, unless the status leaves
    it open)."""
    time = Time.from_json(payload.get("time"))
    ran = 200 <= status < 300 and "result" in payload
    entries = [payload["result"]] if ran else None
    # No limit_time: the call's operating time is its own method's (protocol §5), not the
    # figure the client's meter keeps for the method ``batch``.
    if error is not None:
        return Answers(status=status, time=time, error=error, entries=entries)
    return Answers(
        status=status,
        time=time,
        replayed=headers.get("Idempotent-Replayed", "").strip().lower() == "true",
        entries=entries,
        times=[time],
        totals=[classic_count(payload.get("total"))],
        nexts=[classic_count(payload.get("next"))],
    )


def classic_count(value: object) -> int | None:
    """A classic ``total``/``next``: an int, or digits (None for anything else)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def decode_payload(
    status: int,
    content: bytes,
    *,
    request_id: str | None,
    headers: Mapping[str, str] = NO_HEADERS,
    redact: Callable[[str], str] = _redact_default,
) -> tuple[dict[str, Any], AjaxError | None]:
    """Read an answer's JSON object, and the portal's error if it answered an error envelope.

    The part both protocols share: REST 3.0 reads ``result`` positionally, the classic batch
    by command key.

    Returns:
        ``(payload, None)`` for a 2xx answer with ``result``, ``(payload, error)`` when the
        portal answered an error envelope.

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
            + ("; the request may have been executed" if unknown else ""),
            request_id=request_id,
            outcome_unknown=unknown,
        ) from None


def _payload(
    status: int,
    content: bytes,
    request_id: str | None,
    headers: Mapping[str, str],
    redact: Callable[[str], str],
) -> tuple[dict[str, Any], AjaxError | None]:
    try:
        payload = json.loads(content)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are ValueErrors
        unknown = _may_have_run(status)
        message = _not_json_message(status, content, headers.get("Content-Type", ""), exc, redact)
        raise DecodeError(
            message + ("; the request may have been executed" if unknown else ""),
            request_id=request_id,
            outcome_unknown=unknown,
        ) from None
    unknown = _may_have_run(status)
    may_have_run = "; the request may have been executed" if unknown else ""
    if not isinstance(payload, dict):
        raise DecodeError(
            f"the portal answered HTTP {status} with JSON {type(payload).__name__}, "
            f"not an object with 'result' or 'error'{may_have_run}",
            request_id=request_id,
            outcome_unknown=unknown,
        )
    if _is_error(payload, status):
        error = error_from_payload(payload, status=status, request_id=request_id, redact=redact)
        error.retry_after = _retry_after(headers.get("Retry-After"), headers.get("Date"))
        return payload, error
    if "result" not in payload or not 200 <= status < 300:
        names = ", ".join(sorted(map(str, payload))[:8]) or "none"
        raise DecodeError(
            f"the portal answered HTTP {status} with JSON that has neither 'result' nor 'error' "
            f"(keys: {names}){may_have_run}",
            request_id=request_id,
            outcome_unknown=unknown,
        )
    return payload, None


def _is_error(payload: dict[str, Any], status: int) -> bool:
    """Whether ``payload`` is an error envelope: a non-empty ``error``, or the classic empty
    code (``{"error": "", "error_description": "Not found"}``, protocol §7) where there is no
    ``result`` or the status is not 2xx."""
    error = payload.get("error")
    if error:
        return True
    return error == "" and ("result" not in payload or not 200 <= status < 300)


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
        # A 5xx other than 503 may come after the batch ran; so may an error envelope on a
        # 2xx, which no protocol answers before running anything: its writes may have run.
        outcome_unknown=_may_have_run(status),
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
