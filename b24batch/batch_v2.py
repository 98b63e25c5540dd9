"""``BatchV2``: the classic batch — validate, encode a PHP form, send, one outcome per command.

The same calls, limiters and retry loop (``sending.py``) as ``BatchV3``; what differs is the
wire (``wire_v2``): a command's key on the wire (the caller's name, else the row's ``as``,
else its position), the form body, and an answer that reports every command on its own — so a
failed command is one error with its key, the commands a halt skipped are ``not_executed``, and
nothing of a returned answer is left in doubt. The classic endpoint has no idempotency key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import attrs

from b24batch._engine.build import Answers, Builder
from b24batch._engine.send import send
from b24batch._protocols.v2 import V2, EntryV2, EnvelopeV2, Outcome, encode_batch_v2, references_v2
from b24batch.batch import check_options, check_result_types, checked_request_id
from b24batch.commands import Commands, normalize
from b24batch.errors import AjaxError, OperatingLimitError, RateLimitError, SdkError
from b24batch.results import BatchResult, Key

if TYPE_CHECKING:
    from b24batch.client import _Client

__all__ = ["BatchV2", "Planned", "execute_v2", "plan_v2", "wire_key"]

T = TypeVar("T")
_LIMITS = (RateLimitError, OperatingLimitError)


class BatchV2:
    """Runs up to 50 commands in one classic (v2) ``batch`` request.

    CRM, users, disk, chats and most of the API exist only in the classic REST API; its batch
    reports every command on its own.

    Example:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     deal = portal.add_deal(TITLE="Big one")
        ...     calls = {"deal": ("crm.deal.get", {"id": deal}), "x": ("crm.deal.get", {"id": 99})}
        ...     result = BatchV2(b24).make(calls, halt_on_error=False)
        ...     result.data["deal"].get("TITLE"), list(result.errors_by_key)
        ('Big one', ['x'])
    """

    def __init__(self, client: _Client) -> None:
        """Args: client: the portal client (B24Hook or B24OAuth) the batches go through."""
        self._client = client

    @overload
    def make(
        self,
        calls: Mapping[str, Any],
        *,
        halt_on_error: bool = ...,
        return_ajax_result: Literal[False] = ...,
        request_id: str | None = ...,
        result_type: type[T],
        idempotency_key: None = ...,
    ) -> BatchResult[dict[str, T]]: ...

    @overload
    def make(
        self,
        calls: Iterable[Any],
        *,
        halt_on_error: bool = ...,
        return_ajax_result: Literal[False] = ...,
        request_id: str | None = ...,
        result_type: type[T],
        idempotency_key: None = ...,
    ) -> BatchResult[list[T]]: ...

    @overload
    def make(
        self,
        calls: object,
        *,
        halt_on_error: bool = ...,
        return_ajax_result: bool = ...,
        request_id: str | None = ...,
        result_type: Any = ...,
        idempotency_key: object = ...,
    ) -> BatchResult[Any]: ...

    def make(
        self,
        calls: object,
        *,
        halt_on_error: bool = True,
        return_ajax_result: bool = False,
        request_id: str | None = None,
        result_type: Any = None,
        idempotency_key: object = None,
    ) -> BatchResult[Any]:
        """Send ``calls`` as one classic batch and decode every command's outcome.

        Args:
            calls: 1 to 50 commands in the forms :meth:`BatchV3.make` takes. A command's key
                on the wire, for ``$result[KEY]`` references in later commands, is your name
                (named calls), else the row's ``as``, else its position. Params travel as a
                PHP form: no booleans (send ``"Y"``/``"N"`` or 1/0), no empty lists or dicts.
            halt_on_error: Sent as ``halt=1``: the portal stops at the first failing command
                and the ones after it are ``not_executed``. False runs every command.
            return_ajax_result: Put an :class:`AjaxResult` per executed command in ``data``,
                with its own ``time``, ``total`` and ``next``.
            request_id: Sent as ``bx24_request_id`` for tracing; a new uuid4 when None.
            result_type: What to structure each successful result into, as in ``BatchV3``.
            idempotency_key: Refused: the classic endpoint has none.

        Returns:
            A :class:`BatchResult`: ``data`` holds every result (a list with None where a
            command has none, or a dict of the commands that succeeded), ``errors`` one
            ``AjaxError`` per failed command with its ``key`` (also in ``errors_by_key``),
            ``not_executed`` the commands a halt skipped. A command refused by a limit inside
            the answer is sent again after the wait the limit implies, within ``max_wait``.

        Raises:
            SdkError: ``calls`` or an option is wrong (before anything is sent).
            AuthError: HTTP 401.
            AjaxError: HTTP 429 and 5xx envelopes.
            TransportError: Refused connection, timeout, TLS failure, reset.
            DecodeError: An answer that cannot be decoded, or does not fit ``result_type``.
        """
        if idempotency_key is not None:
            raise SdkError(
                "idempotency_key: the classic batch endpoint has no Idempotency-Key, so a "
                "classic batch with a write is never sent again after a failure that may have "
                "run it; REST 3.0 methods take one with BatchV3"
            )
        commands = normalize(calls, what="classic")
        check_options(halt_on_error, return_ajax_result)
        check_result_types(commands, result_type)
        request_id = checked_request_id(request_id)
        planned = plan_v2(commands, halt=halt_on_error)
        return execute_v2(
            self._client,
            planned,
            request_id=request_id,
            result_type=result_type,
            return_ajax_result=return_ajax_result,
        )


@attrs.frozen
class Planned:
    """A validated classic batch, ready to send: its commands, their wire keys, its body.

    Attributes:
        commands: The commands, keyed as the caller gave them (positions or names).
        wire_keys: The key each command is sent under in ``cmd[KEY]``, in the same order.
        halt: Whether the batch is sent with ``halt=1``.
        body: The encoded form.
    """

    commands: Commands
    wire_keys: tuple[Key, ...]
    halt: bool
    body: bytes = attrs.field(repr=False)

    def part(self, positions: list[int]) -> Planned:
        """The commands at ``positions`` as a batch of their own, under the same wire keys."""
        commands = Commands(
            items=tuple(self.commands.items[p] for p in positions),
            keys=tuple(self.commands.keys[p] for p in positions),
            aliases=tuple(self.commands.aliases[p] for p in positions),
            named=self.commands.named,
        )
        return _planned(commands, tuple(self.wire_keys[p] for p in positions), self.halt)


def wire_key(key: Key, alias: str | None, named: bool) -> Key:
    """The key a command is sent under: the caller's name, else the row's ``as``, else its
    position."""
    return key if named or alias is None else alias


def plan_v2(commands: Commands, *, halt: bool, references_checked: bool = False) -> Planned:
    """Check what only the classic batch needs and encode the form.

    ``references_checked``: the chunk planner has already resolved every ``$result[KEY]`` to
    an earlier command of the same chunk, so they are not walked a second time.

    Raises:
        SdkError: A row sets ``parallel`` (the classic batch has none); a ``$result[KEY]``
            reference names no earlier command of the batch (the portal would send its text
            on as a value); a parameter a form cannot carry.
    """
    keys = tuple(
        wire_key(key, alias, commands.named)
        for key, alias in zip(commands.keys, commands.aliases, strict=True)
    )
    earlier: set[str] = set()
    for key, sent_as, command in zip(commands.keys, keys, commands.items, strict=True):
        where = f"calls[{key!r}]"
        if command.parallel is not None:
            raise SdkError(
                f"{where} sets 'parallel', which the classic batch does not have; use "
                f"halt_on_error to choose whether a failure stops the batch"
            )
        walk = command.params and not references_checked
        for target in references_v2(command.params) if walk else ():
            if target not in earlier:
                raise SdkError(
                    f"{where} references $result[{target}], which names no earlier command of "
                    f"this batch; the portal would pass the text on as a value. Reference a "
                    f"command before it by its key (its name, its 'as', or its position)"
                )
        earlier.add(str(sent_as))
    return _planned(commands, keys, halt)


def _planned(commands: Commands, keys: tuple[Key, ...], halt: bool) -> Planned:
    entries = [
        EntryV2(sent_as, command.method, command.params, where=f"calls[{key!r}]")
        for key, sent_as, command in zip(commands.keys, keys, commands.items, strict=True)
    ]
    return Planned(commands, keys, halt, encode_batch_v2(entries, halt=halt))


def execute_v2(
    client: _Client,
    planned: Planned,
    *,
    request_id: str,
    result_type: Any,
    return_ajax_result: bool,
    positions: range | None = None,
) -> BatchResult[Any]:
    """Send one planned classic batch, re-send what a limit refused, build the result.

    Raises:
        B24Error: As :meth:`BatchV2.make`.
    """
    commands = planned.commands
    build = Builder(commands, request_id, result_type, return_ajax_result, positions)
    envelope, attempts, waited, _ = send(
        client, commands, planned.body, request_id, None, V2, answer_keys=planned.wire_keys
    )
    error = envelope.error
    if error is not None:  # the whole request was refused: no command ran
        error.attempts = attempts
        answers = Answers(
            status=envelope.status, time=envelope.time, entries=None, errors={0: error}
        )
        return build(answers, attempts=attempts, waited=waited)
    outcomes = list(envelope.outcomes)
    attempts, waited = _resend_refused(client, planned, outcomes, request_id, attempts, waited)
    return build(_answers(commands, envelope, outcomes), attempts=attempts, waited=waited)


def _answers(commands: Commands, envelope: EnvelopeV2, outcomes: list[Outcome]) -> Answers:
    errors: dict[int, AjaxError] = {}
    not_run: set[int] = set()
    for position, outcome in enumerate(outcomes):
        if outcome.error is not None:
            outcome.error.key = commands.keys[position]
            errors[position] = outcome.error
        elif not outcome.executed:
            not_run.add(position)
    return Answers(
        status=envelope.status,
        time=envelope.time,
        entries=[outcome.result for outcome in outcomes],
        errors=errors,
        not_run=frozenset(not_run),
        times=[outcome.time for outcome in outcomes],
        totals=[outcome.total for outcome in outcomes],
        nexts=[outcome.next for outcome in outcomes],
    )


def _resend_refused(
    client: _Client,
    planned: Planned,
    outcomes: list[Outcome],
    request_id: str,
    attempts: int,
    waited: float,
) -> tuple[int, float]:
    """Send again, in place, the commands a limit refused inside the answer (they never ran).

    With ``halt`` the commands after a refused one did not run either and go with it. A
    command that references one outside the re-sent part stays as it is: its reference could
    not resolve. Each round waits what the limit implies, and stops when that would not fit in
    ``max_wait`` or the policy's attempts are used up; what is still refused stays an error.
    """
    policy = client.retry
    rounds = 1
    while rounds < policy.max_attempts:
        refused = [p for p, o in enumerate(outcomes) if isinstance(o.error, _LIMITS)]
        if not refused:
            break
        again = _resendable(planned, outcomes, refused)
        if not again:
            break
        delay = _limit_delay(client, [outcomes[p].error for p in refused], rounds)
        if waited + delay > policy.max_wait:
            break
        client.limiter.sleep(delay)
        waited += delay
        part = planned.part(again)
        envelope, sends, part_waited, _ = send(
            client, part.commands, part.body, request_id, None, V2, answer_keys=part.wire_keys
        )
        attempts += sends
        waited += part_waited
        rounds += 1
        if envelope.error is not None:  # the repeat was refused as a whole: keep the first
            break
        for position, outcome in zip(again, envelope.outcomes, strict=True):
            outcomes[position] = outcome
    return attempts, waited


def _resendable(planned: Planned, outcomes: list[Outcome], refused: list[int]) -> list[int]:
    """The positions to send again: the refused ones and, under ``halt``, those after them
    that did not run — less any that reference a command outside that part."""
    first = refused[0]
    chosen = [
        p
        for p, outcome in enumerate(outcomes)
        if p in refused or (planned.halt and p > first and not outcome.executed)
    ]
    kept: list[int] = []
    inside: set[str] = set()
    for position in chosen:
        params = planned.commands.items[position].params
        if params and any(target not in inside for target in references_v2(params)):
            continue
        kept.append(position)
        inside.add(str(planned.wire_keys[position]))
    return kept


def _limit_delay(client: _Client, errors: list[Any], rounds: int) -> float:
    """How long the refusals ask to wait: the operating-time reset, or the bucket's drain."""
    if any(isinstance(error, OperatingLimitError) for error in errors):
        retry_at, delay = client.limiter.operating_retry()
        for error in errors:
            if isinstance(error, OperatingLimitError):
                error.retry_at = retry_at
        return delay
    client.limiter.after_answer(None, refused=True)  # the portal's counter is full
    return client.backoff(rounds)
