"""The classic (v2) batch: ``cmd[KEY]=METHOD?QUERY`` in a PHP form, an outcome per command.

``V2`` is the protocol value the engine holds (protocol §7): a command's key on the wire is
the caller's name, else the row's ``as``, else its position; ``encode_batch`` writes the form
body (each query by ``phpform.encode_query``), ``decode_response`` turns the answer into one
:class:`Outcome` per command, ``references`` finds ``$result[KEY]``. Pure: no I/O.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from b24batch._protocols.base import (
    METHOD_NOT_FOUND,
    NO_HEADERS,
    Answers,
    Prepared,
    Protocol,
    Spec,
    classic_count,
    decode_payload,
    error_from_payload,
)
from b24batch._protocols.phpform import (
    MAX_DEPTH,
    MAX_INPUT_VARS,
    count_variables,
    encode_queries,
    encode_query,
    quote,
    quote_query,
)
from b24batch.commands import MAX_COMMANDS, Command, Commands, name_text
from b24batch.errors import AjaxError, DecodeError, SdkError, SdkTypeError
from b24batch.redaction import redact as _redact_default
from b24batch.results import Key, Time

__all__ = [
    "MAX_DEPTH",
    "V2",
    "V3_ONLY_FAMILIES",
    "Entry",
    "Envelope",
    "Outcome",
    "check_key",
    "decode_response",
    "encode_batch",
    "encode_query",
    "references",
    "wire_key",
]

_log = logging.getLogger("b24batch")
_SECTIONS: Final = ("result", "result_error", "result_total", "result_next", "result_time")
_REFERENCE: Final = re.compile(r"\$(?:result|next|total|time|error)\[([^\]]+)\]")


# ---------------------------------------------------------------------------------------------
# Encoding


@attrs.frozen
class Entry:
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
            raise SdkError(
                f"{where} has the command key {key}; a key that is a number is 0 or more"
            )
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


def encode_batch(entries: Sequence[Entry], *, halt: bool, warn: bool = True) -> bytes:
    """Encode ``entries`` as the classic batch form body ``halt=0|1&cmd[KEY]=METHOD?QUERY…``.

    The whole ``METHOD?QUERY`` is one form value, so its query is percent-encoded twice. The
    OAuth token is not part of the body built here: the transport appends ``&auth=TOKEN`` as
    it sends, so the token never sits in these frames.

    A command whose query makes more than ``MAX_INPUT_VARS`` form variables is sent, but with
    ``warn`` one WARNING names it: PHP's ``parse_str`` keeps only the first 1 000, and the
    portal would answer for params cut short (a filter of fewer ids, say).

    Raises:
        SdkError: No entries or more than ``MAX_COMMANDS``; a bad key, repeated key or method;
            a parameter a form cannot carry (the message names the row and the path).
        SdkTypeError: A key, method or parameter of the wrong type.

    Examples:
        >>> encode_batch([Entry("deal", "crm.deal.get", {"id": 7})], halt=True)
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
    memo: dict[tuple[int, str], list[str]] = {}
    for entry in entries:
        part, query = _command(entry.key, entry.method, entry.params, entry.row, seen, memo)
        if warn:
            _warn_variables(query, entry.row, entry.method)
        parts.append(part)
    return "&".join(parts).encode("ascii")


def _command(
    key: object,
    method: object,
    params: Mapping[Any, Any] | None,
    row: str,
    seen: dict[str, str],
    memo: dict[tuple[int, str], list[str]],
) -> tuple[str, str]:
    """One command's ``cmd[KEY]=METHOD?QUERY`` part of the body, checked, and its query.

    Its key is recorded in ``seen``; ``memo`` is the batch's (see ``encode_queries``).
    """
    text = check_key(key, row)
    if text in seen:
        raise SdkError(
            f"{row} is sent as cmd[{text}], as {seen[text]} is; "
            f"each command key must be unique in a batch"
        )
    seen[text] = row
    if not isinstance(method, str):
        raise SdkTypeError(f"{row} has a method of type {type(method).__name__}; use a str")
    if not method.strip():
        raise SdkError(f"{row} has an empty method name")
    if "?" in method or method != method.strip():
        raise SdkError(
            f"{row} has the method {method!r}; the portal splits METHOD?QUERY at the "
            f"first '?', so a method has no '?' and no spaces around it"
        )
    query = encode_queries(params, memo)
    if query is None:  # only the exact walk can say what is wrong, or that nothing is
        query = encode_query(params, f"{row}.params")
    try:
        value = quote(method, safe="")
    except UnicodeEncodeError:
        raise SdkError(f"{row} has a method that is not valid text") from None
    if query:
        value = f"{value}%3F{quote_query(query)}"
    return f"cmd[{quote(text, safe='')}]={value}", query


def _warn_variables(query: str, row: str, method: str) -> None:
    """One WARNING when ``query`` makes more form variables than PHP's parse_str keeps."""
    if len(query) > 2 * MAX_INPUT_VARS:  # each variable takes 2 characters or more
        count = count_variables(query)
        if count > MAX_INPUT_VARS:
            _log.warning(
                "%s (%s) has %d form variables; PHP's parse_str on the portal keeps the "
                "first %d (max_input_vars) and drops the rest, so the portal would answer "
                "for params cut short: split the filter (or list) across commands of at "
                "most %d values each",
                row,
                method,
                count,
                MAX_INPUT_VARS,
                MAX_INPUT_VARS,
            )


def references(params: object) -> list[str]:
    """The command keys ``params`` references, as text, in the order found.

    Scans string keys and values at any depth for ``$result[KEY]``, ``$next[KEY]``,
    ``$total[KEY]``, ``$time[KEY]`` and ``$error[KEY]``. A position appears as its digits.

    Examples:
        >>> references({"fields": {"CONTACT_ID": "$result[contact]"}, "id": "$next[0]"})
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
class Envelope:
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


def decode_response(
    status: int,
    content: bytes,
    *,
    keys: Sequence[Key],
    request_id: str | None,
    headers: Mapping[str, str] = NO_HEADERS,
    redact: Callable[[str], str] = _redact_default,
) -> Envelope:
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
    payload, refused = decode_payload(
        status, content, request_id=request_id, headers=headers, redact=redact
    )
    time = Time.from_json(payload.get("time"))
    if refused is None:
        outcomes = _outcomes(payload, keys, status, request_id, redact)
        return Envelope(status=status, outcomes=outcomes, time=time)
    kept: tuple[Outcome, ...] = ()
    if 200 <= status < 300 and "result" in payload:
        # An error beside a result on a 2xx: the batch ran; keep every result it reports.
        with contextlib.suppress(DecodeError):
            kept = _outcomes(payload, keys, status, request_id, redact)
    return Envelope(status=status, outcomes=kept, time=time, error=refused)


def _outcomes(
    payload: Mapping[str, Any],
    keys: Sequence[Key],
    status: int,
    request_id: str | None,
    redact: Callable[[str], str],
) -> tuple[Outcome, ...]:
    """One outcome per key from the answer's ``result`` sections."""
    texts = [int.__repr__(k) if isinstance(k, int) else str(k) for k in keys]
    by_text = dict(zip(texts, keys, strict=True))
    body = payload["result"]
    if not isinstance(body, dict):
        raise _malformed(
            f"the portal's result is a {type(body).__name__}; the classic batch answers an "
            f"object with {', '.join(_SECTIONS)}",
            request_id,
        )
    results, errors, totals, nexts, times = (
        _section(body.get(name), name, by_text, request_id) for name in _SECTIONS
    )
    time_from = Time.from_json
    outcomes = []
    for key, text in zip(keys, texts, strict=True):
        error = None
        if text in errors:
            error = _command_error(errors[text], status, request_id, redact)
        # None or an int (not a bool) is the count as sent; anything else goes the checked way.
        total = totals.get(text)
        if total is not None and type(total) is not int:
            total = classic_count(total)
        following = nexts.get(text)
        if following is not None and type(following) is not int:
            following = classic_count(following)
        block = times.get(text)
        outcomes.append(
            Outcome(
                key=key,
                executed=(
                    text in results
                    or error is not None
                    or text in totals
                    or text in nexts
                    or text in times
                ),
                result=results.get(text),
                error=error,
                total=total,
                next=following,
                time=None if block is None else time_from(block),
            )
        )
    return tuple(outcomes)


_POSITIONS: Final = tuple(str(position) for position in range(MAX_COMMANDS))
"""The texts of the positions a list section can name: a list's items are its keys' texts."""


def _section(
    value: object, name: str, by_text: Mapping[str, Key], request_id: str | None
) -> Mapping[str, Any]:
    """One section as a mapping keyed by the command keys' text (read only)."""
    if value is None:
        return {}
    entries: Mapping[str, Any]
    if isinstance(value, list):
        if len(value) <= len(_POSITIONS):
            entries = dict(zip(_POSITIONS, value, strict=False))  # the first len(value)
        else:
            entries = {str(index): item for index, item in enumerate(value)}
    elif isinstance(value, dict):
        entries = value  # a JSON object's keys are its keys' text already
    else:
        raise _malformed(
            f"the portal's result.{name} is a {type(value).__name__}; expected a list or object",
            request_id,
        )
    if not by_text.keys() >= entries.keys():
        for text in entries:
            if text not in by_text:
                shown = ", ".join(list(by_text)[:8])
                raise _malformed(
                    f"the portal's result.{name} names the command {text!r}, which was not "
                    f"sent (sent: {shown})",
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
    error = error_from_payload(entry, status=status, request_id=request_id, redact=redact)
    error.outcome_unknown = False  # the answer says this command failed: nothing is in doubt
    return error


def _malformed(message: str, request_id: str | None) -> DecodeError:
    # A 200 with a result: the portal ran the batch, and this answer cannot say what each
    # command did, so every write of it may have run.
    return DecodeError(
        message + "; the batch was executed, but its answer does not match the commands",
        request_id=request_id,
        outcome_unknown=True,
    )


def wire_key(key: Key, alias: str | None, named: bool) -> Key:
    """The key a command is sent under: the caller's name, else the row's ``as``, else its
    position."""
    return key if named or alias is None else alias


V3_ONLY_FAMILIES: Final = (
    "note.",
    "humanresources.",
    "main.eventlog.",
    "call.followup.",
    "timeman.record.",
)
"""Method families only REST 3.0 serves (protocol §9): the classic batch does not find them."""


class _Classic(Protocol):
    """The classic batch: a form to ``/rest/…/batch``, an outcome for every command.

    In a chunked call every command is sent under its global key — the caller's name, else
    ``as``, else its position in the whole call — so ``$result[KEY]`` means the same command
    in every chunk.
    """

    name = "classic"
    api = ""
    content_type = "application/x-www-form-urlencoded"
    token_in_body = True
    stops_at_failure = False
    takes_idempotency_key = False
    id_key = "ID"
    list_page_fixed = True
    decode_response = staticmethod(decode_response)

    def reference_name(self, key: Key, alias: str | None, named: bool) -> str | None:
        return name_text(wire_key(key, alias, named))  # a list call's: its global position

    def targets(
        self, command: Command, defined: Mapping[str, int], index: int, where: str
    ) -> list[tuple[int, str]]:
        found = []
        for target in references(command.params) if command.params else ():
            position = defined.get(target)
            if position is None:
                raise SdkError(
                    f"{where} references $result[{target}], which names no earlier command; "
                    f"the portal would pass the text on as a value. Reference a command before "
                    f"it by its key (its name, its 'as', or its position)"
                )
            found.append((position, f"$result[{target}]"))
        return found

    def referenced(self, params: object) -> list[str]:
        return references(params)

    def prepare(
        self, commands: Commands, *, halt: bool, references_checked: bool = False
    ) -> Prepared:
        """Check what only the classic batch needs and encode the form.

        Raises:
            SdkError: A row sets ``parallel`` (the classic batch has none); a ``$result[KEY]``
                reference names no earlier command of the batch (the portal would send its
                text on as a value); a parameter a form cannot carry.
        """
        keys = tuple(
            wire_key(key, alias, commands.named)
            for key, alias in zip(commands.keys, commands.aliases, strict=True)
        )
        # One pass: each command is checked, encoded and scanned for references in turn. What
        # the encoding refuses is raised after every command's own checks and references, as
        # when those ran first; so are the WARNINGs of the commands encoded before it.
        parts = ["halt=1" if halt else "halt=0"]
        seen: dict[str, str] = {}
        memo: dict[tuple[int, str], list[str]] = {}
        warnings: list[tuple[str, str, str]] = []
        refused: SdkError | None = None
        earlier: set[str] = set()
        for key, sent_as, command in zip(commands.keys, keys, commands.items, strict=True):
            where = f"calls[{key!r}]"
            if command.parallel is not None:
                raise SdkError(
                    f"{where} sets 'parallel', which the classic batch does not have; use "
                    f"halt_on_error to choose whether a failure stops the batch"
                )
            if not commands.named and command.as_ is not None and command.as_.isdigit():
                raise SdkError(
                    f"{where}: its 'as' {command.as_!r} is a number, which in a list of calls "
                    f"names the command at that position ($result[{command.as_}]); use a name "
                    f"with a letter, or pass a dict keyed by the numbers"
                )
            query = None
            if refused is None:
                try:
                    part, query = _command(
                        sent_as, command.method, command.params, where, seen, memo
                    )
                except SdkError as error:
                    refused = error
                else:
                    parts.append(part)
                    warnings.append((query, where, command.method))
            # Every '$' of a name or value is '%24' in the query: without one, no reference.
            walk = command.params and not references_checked and (query is None or "%24" in query)
            for target in references(command.params) if walk else ():
                if target not in earlier:
                    raise SdkError(
                        f"{where} references $result[{target}], which names no earlier command "
                        f"of this batch; the portal would pass the text on as a value. "
                        f"Reference a command before it by its key (its name, its 'as', or its "
                        f"position)"
                    )
            earlier.add(name_text(sent_as))
        for warning in warnings:
            _warn_variables(*warning)
        if refused is not None:
            raise refused
        body = "&".join(parts).encode("ascii")
        return Prepared(protocol=self, commands=commands, wire_keys=keys, halt=halt, body=body)

    def encode(self, commands: Commands, wire_keys: Sequence[Key], *, halt: bool) -> bytes:
        # A part of a batch already prepared (and warned about) once: no second warning.
        return encode_batch(_entries(commands, wire_keys), halt=halt, warn=False)

    def encode_call(self, commands: Commands) -> bytes:
        """The params as the PHP form the batch's commands carry (``fields[TITLE]=…``)."""
        return encode_query(commands.items[0].params, "params").encode("ascii")

    def answers(self, envelope: Envelope, prepared: Prepared) -> Answers:
        if envelope.error is not None:  # refused whole, or an error beside what ran (2xx)
            outcomes = envelope.outcomes
            return Answers(
                status=envelope.status,
                time=envelope.time,
                limit_time=envelope.time,
                error=envelope.error,
                entries=[outcome.result for outcome in outcomes] or None,
                unknown=frozenset(p for p, o in enumerate(outcomes) if not o.executed),
            )
        errors: dict[int, AjaxError] = {}
        missing: list[int] = []
        keys = prepared.commands.keys
        for position, outcome in enumerate(envelope.outcomes):
            if outcome.error is not None:
                outcome.error.key = keys[position]
                errors[position] = outcome.error
            elif not outcome.executed:
                missing.append(position)
        # Only a halt skips commands: those after the first failing one did not run. Any other
        # command the answer leaves out was sent and nothing skipped it, so it may have run.
        halted_at = min(errors) if prepared.halt and errors else len(keys)
        not_run = frozenset(p for p in missing if p > halted_at)
        unknown = frozenset(p for p in missing if p < halted_at)
        outcomes = envelope.outcomes
        return Answers(
            status=envelope.status,
            time=envelope.time,
            limit_time=envelope.limit_time,
            entries=[outcome.result for outcome in outcomes],
            errors=errors,
            not_run=not_run,
            unknown=unknown,
            times=[outcome.time for outcome in outcomes],
            totals=[outcome.total for outcome in outcomes],
            nexts=[outcome.next for outcome in outcomes],
        )

    def hint(self, error: AjaxError, prepared: Prepared) -> str:
        commands = prepared.commands
        if error.code.upper() not in METHOD_NOT_FOUND:
            return ""
        if prepared.single:
            method = commands.items[0].method
            fix = "call it with CallV3"
        elif error.key in commands.keys:
            method = commands.items[commands.keys.index(error.key)].method
            fix = "send it with BatchV3 (or BatchByChunkV3)"
        else:
            return ""
        if not method.lower().startswith(V3_ONLY_FAMILIES):
            return ""
        return f"{method} is a REST 3.0 method: {fix}"

    def list_filter(self, value: Any, id_key: str) -> tuple[Any, int | None, int | None]:
        """The caller's filter without the ``>=ID``/``<ID`` keys the walk sets, which are
        folded into the walk's own bounds instead (a PHP array holds one value per key)."""
        if value is None:
            return {}, None, None
        if not isinstance(value, Mapping):
            raise SdkTypeError(
                f"params['filter'] is a {type(value).__name__}; a classic filter is a dict, "
                f"e.g. {{'>OPPORTUNITY': 0}}"
            )
        kept: dict[str, Any] = {}
        low = high = None
        for key, wanted in value.items():
            upper = str(key).upper()
            if upper not in (f">={id_key.upper()}", f"<{id_key.upper()}"):
                kept[key] = wanted
                continue
            text = str(wanted).strip()
            if isinstance(wanted, bool) or not text.lstrip("-").isdigit():
                raise SdkError(
                    f"params['filter'][{key!r}] = {wanted!r}: the walk combines it with its "
                    f"own id ranges, so pass a whole number"
                )
            if upper.startswith(">="):
                low = int(text)
            else:
                high = int(text)
        return kept, low, high

    def list_row(
        self, spec: Spec, low: int | None, high: int | None, descending: bool
    ) -> tuple[str, dict[str, Any]]:
        conditions = dict(spec.filter)
        low = _tighter(max, low, spec.low)
        high = _tighter(min, high, spec.high)
        if low is not None:
            conditions[f">={spec.id_key}"] = low
        if high is not None:
            conditions[f"<{spec.id_key}"] = high
        params = dict(spec.params)
        if conditions:
            params["filter"] = conditions
        params["order"] = {spec.id_key: "DESC" if descending else "ASC"}
        params["start"] = -1  # no count: the documented fast way through a large list
        return spec.method, params


def _entries(commands: Commands, wire_keys: Sequence[Key]) -> list[Entry]:
    return [
        Entry(sent_as, command.method, command.params, where=f"calls[{key!r}]")
        for key, sent_as, command in zip(commands.keys, wire_keys, commands.items, strict=True)
    ]


def _tighter(pick: Callable[[int, int], int], ours: int | None, theirs: int | None) -> int | None:
    if ours is None or theirs is None:
        return theirs if ours is None else ours
    return pick(ours, theirs)


V2: Final[Protocol] = _Classic()
"""The classic batch."""
