"""REST 3.0: the batch as a bare JSON array, its positional answer, ``$ref``/``$refArray``.

``V3`` is the protocol value the engine holds (protocol §1–§4); ``encode_batch`` and
``decode_response`` are its wire, ``references`` and ``check_references`` its references, and
``list_row`` its list commands (§8). Pure: no I/O.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from b24batch._protocols.base import (
    METHOD_NOT_FOUND,
    NO_HEADERS,
    Answers,
    Prepared,
    Protocol,
    Spec,
    decode_payload,
)
from b24batch._protocols.jsonparams import check_json_keys, explain_unencodable
from b24batch.commands import Command, Commands
from b24batch.errors import AjaxError, DecodeError, SdkError, SdkTypeError
from b24batch.redaction import redact as _redact_default
from b24batch.results import Key, Time

__all__ = [
    "REST_V3_FAMILIES",
    "V3",
    "Envelope",
    "check_names",
    "check_references",
    "decode_response",
    "encode_batch",
    "reference_target",
    "references",
]

# check_circular=False: the encoder keeps no table of the containers it is in (a dict insert and
# delete for each); a cycle still stops it, as a RecursionError, and explain_unencodable names it.
_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
).encode
# Error envelopes the portal answers before running any row: nothing of the batch ran.
_REFUSED_BEFORE_RUNNING: Final = frozenset(
    {
        "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION",
        "BITRIX_REST_V3_EXCEPTION_INVALIDIDEMPOTENCYKEYEXCEPTION",
        "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION",
    }
)


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
            :data:`~b24batch._protocols.jsonparams.MAX_PARAMS_DEPTH`, ...), or two keys of one
            dict would be written alike (``1`` and ``"1"``); the message names the row and path.
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
    headers: Mapping[str, str] = NO_HEADERS,
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
    payload, refused = decode_payload(
        status, content, request_id=request_id, headers=headers, redact=redact
    )
    if refused is not None:
        time = Time.from_json(payload.get("time"))
        kept = None
        if 200 <= status < 300 and "result" in payload:
            # An error beside a result on a 2xx: the batch ran; keep the results it reports.
            with contextlib.suppress(DecodeError):
                kept = _positional(payload["result"], keys, request_id)
        return Envelope(status=status, result=kept, time=time, error=refused)
    try:
        result = _positional(payload["result"], keys, request_id)
    except DecodeError as error:
        # The portal ran the batch, but which result is whose cannot be read: its writes may
        # have run, and nothing of the answer can be trusted to say which.
        error.message += "; the batch was executed, but its answer does not match the commands"
        error.outcome_unknown = True
        raise
    replayed = headers.get("Idempotent-Replayed", "").strip().lower() == "true"
    time = Time.from_json(payload.get("time"))
    return Envelope(status=status, result=result, time=time, replayed=replayed)


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


_REF_KEYS = ("$ref", "$refArray")
_SCALARS = frozenset({str, int, float, bool, type(None)})  # hold no reference: never walked


def references(value: object) -> list[str]:
    """Every reference path (``$ref`` / ``$refArray``) inside ``value``, at any depth."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if len(item) == 1:
                for marker in _REF_KEYS:
                    path = item.get(marker)
                    if isinstance(path, str):
                        found.append(path)
            values: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            values = item
        else:
            continue
        for inner in values:
            if type(inner) not in _SCALARS:  # only containers (or the unknown) go on the stack
                stack.append(inner)
    return found


def check_references(commands: Commands) -> None:
    """Check that every reference of one batch points back to an earlier command in it.

    (The chunker checks references itself, with :func:`reference_target`, as it plans.)

    Raises:
        SdkError: A reference names an alias defined later or nowhere, or a position at or
            after its own.
    """
    defined: dict[str, int] = {}
    for index, (key, command, alias) in enumerate(
        zip(commands.keys, commands.items, commands.aliases, strict=True)
    ):
        for path in references(command.params) if command.params else ():
            reference_target(path, defined, index, f"calls[{key!r}]", positional=True)
        if alias is not None:
            defined[alias] = index


def reference_target(
    path: str, defined: Mapping[str, int], index: int, where: str, positional: bool
) -> int:
    """The position of the command that ``path`` references, from ``index`` at ``where``.

    Raises:
        SdkError: The reference cannot be resolved within the batch.
    """
    head = path.split(".", 1)[0]
    if head.isdigit():
        if not positional:
            raise SdkError(
                f"{where} references {path!r} by position; positions change meaning when "
                f"calls are split into chunks: give the command it means an 'as' and "
                f"reference that"
            )
        if int(head) >= index:
            raise SdkError(
                f"{where} references {path!r}, but command {head} does not run before it; "
                f"a reference points back to an earlier command"
            )
        return int(head)
    target = defined.get(head)
    if target is None:
        raise SdkError(
            f"{where} references {path!r}, but no earlier command has the alias {head!r}; "
            f"a reference points back to an earlier command's 'as' (or name)"
        )
    return target


def check_names(commands: Commands) -> None:
    """REST 3.0's naming rule: a name is a non-empty str, and an alias (a row's ``as``, else
    its name) has a letter and no dot, since references read ``alias.item.id`` and a number
    there means a position.

    Raises:
        SdkTypeError: A dict of calls names a command by an int.
        SdkError: An alias with a dot, or one that is a number; the message names the row.
    """
    if commands.named:
        for key in commands.keys:
            if not isinstance(key, str):
                raise SdkTypeError(
                    f"calls has the key {key!r}; names of REST 3.0 commands must be non-empty "
                    f"strings"
                )
    for key, command, alias in zip(commands.keys, commands.items, commands.aliases, strict=True):
        if alias is None:
            continue
        from_name = command.as_ is None
        origin = "its name, sent as 'as'," if from_name else "its 'as'"
        fix = " (or give the row its own 'as')" if from_name else ""
        where = f"calls[{key!r}]"
        if "." in alias:
            raise SdkError(
                f"{where}: {origin} {alias!r} contains '.'; references read 'alias.item.id', "
                f"so an alias cannot contain a dot{fix}"
            )
        if alias.isdigit():
            raise SdkError(
                f"{where}: {origin} {alias!r} is a number; numbers already name commands by "
                f"position in references ('0.item.id'), so use a name with a letter{fix}"
            )


REST_V3_FAMILIES: Final = (
    "tasks.",
    "note.",
    "mail.",
    "humanresources.",
    "main.eventlog.",
    "call.followup.",
    "timeman.record.",
    "rest.scope.list",
    "rest.documentation.openapi",
)
"""The method families REST 3.0 serves (protocol §9); everything else is classic-only."""


class _RestV3(Protocol):
    """REST 3.0: a JSON array to ``/rest/api/…/batch``; one error for the whole batch."""

    name = "REST 3.0"
    api = "api/"
    content_type = "application/json"
    token_in_body = False
    stops_at_failure = True
    refused_before_running = _REFUSED_BEFORE_RUNNING
    takes_idempotency_key = True
    id_key = "id"
    decode_response = staticmethod(decode_response)

    def reference_name(self, key: Key, alias: str | None, named: bool) -> str | None:
        return alias

    def targets(
        self, command: Command, defined: Mapping[str, int], index: int, where: str
    ) -> list[tuple[int, str]]:
        return [
            (reference_target(path, defined, index, where, positional=False), repr(path))
            for path in (references(command.params) if command.params else ())
        ]

    def referenced(self, params: object) -> list[str]:
        return [path.split(".", 1)[0] for path in references(params)]

    def prepare(
        self, commands: Commands, *, halt: bool, references_checked: bool = False
    ) -> Prepared:
        if commands.named or any(alias is not None for alias in commands.aliases):
            check_names(commands)
        body = encode_batch(commands, halt_on_error=halt)
        if not references_checked and b'"$ref' in body:  # a C-speed scan skips the walk
            check_references(commands)
        return Prepared(
            protocol=self, commands=commands, wire_keys=commands.keys, halt=halt, body=body
        )

    def encode(self, commands: Commands, wire_keys: Sequence[Key], *, halt: bool) -> bytes:
        return encode_batch(commands, halt_on_error=halt)

    def encode_call(self, commands: Commands) -> bytes:
        """The params as a JSON object (``{}`` for none), checked as a batch row's are."""
        params = commands.items[0].params
        try:
            body = _encode({} if params is None else params).encode("utf-8")
        except (TypeError, ValueError, RecursionError):
            raise explain_unencodable(commands, single=True) from None
        check_json_keys(commands, single=True)
        return body

    def answers(self, envelope: Envelope, prepared: Prepared) -> Answers:
        return Answers(
            status=envelope.status,
            time=envelope.time,
            limit_time=envelope.time,
            replayed=envelope.replayed,
            error=envelope.error,
            entries=envelope.result,
        )

    def hint(self, error: AjaxError, prepared: Prepared) -> str:
        if error.code.upper() not in METHOD_NOT_FOUND:
            return ""
        commands = prepared.commands
        for key, command in zip(commands.keys, commands.items, strict=True):
            if command.method.lower().startswith(REST_V3_FAMILIES):
                continue
            if prepared.single:
                return (
                    f"{command.method} is not a REST 3.0 method: CRM, users, disk and most of "
                    f"the API are classic, so call it with CallV2"
                )
            return (
                f"calls[{key!r}] ({command.method}) is not a REST 3.0 method: CRM, users, "
                f"disk and most of the API are classic, so send it with BatchV2 (or "
                f"BatchByChunkV2; run --v2 on the command line)"
            )
        return ""

    def list_filter(self, value: Any, id_key: str) -> tuple[Any, int | None, int | None]:
        if value is None:
            return [], None, None
        if not isinstance(value, list):
            raise SdkTypeError(
                f"params['filter'] is a {type(value).__name__}; a REST 3.0 filter is a list of "
                f"[field, operator, value] conditions, e.g. [['responsibleId', '=', 7]]"
            )
        return list(value), None, None

    def list_row(
        self, spec: Spec, low: int | None, high: int | None, descending: bool
    ) -> tuple[str, dict[str, Any]]:
        conditions = list(spec.filter)
        if low is not None:
            conditions.append([spec.id_key, ">=", low])
        if high is not None:
            conditions.append([spec.id_key, "<", high])
        params = dict(spec.params)
        params["filter"] = conditions
        params["order"] = {spec.id_key: "DESC" if descending else "ASC"}
        params["pagination"] = {"limit": spec.page_size}
        return spec.method, params


V3: Final[Protocol] = _RestV3()
"""The REST 3.0 batch."""
