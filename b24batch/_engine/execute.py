"""One batch of either protocol: prepare it, send it, re-send what is safe, build its result.

The one path every face takes — ``BatchV3``/``BatchV2``, a single call (``CallV3``/``CallV2``:
one command sent to its method's own URL), each chunk of a chunked call, each batch of a list
walk, and every part ``isolate_errors`` sends. Decides what is returned and what is raised: an
error envelope the portal answered (other than 401, 429 and 5xx, which ``send.py`` raises)
comes back in the result's ``errors``, unless the call raises them (``raise_errors``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from b24batch._engine.build import Builder
from b24batch._engine.call_options import CallOptions
from b24batch._engine.isolate import Isolation
from b24batch._engine.outcomes import CallRecord, mark, reads
from b24batch._engine.port import Client
from b24batch._engine.send import send
from b24batch._protocols.base import Answers, Prepared, Protocol
from b24batch.commands import Command, Commands, normalize
from b24batch.errors import AjaxError, B24Error, OperatingLimitError, RateLimitError, SdkError
from b24batch.results import AjaxResult, BatchResult, check_type

__all__ = ["call", "check_isolation", "check_result_types", "execute", "make", "prepare"]

_LIMITS = (RateLimitError, OperatingLimitError)


def make(
    client: Client, protocol: Protocol, calls: object, options: CallOptions
) -> BatchResult[Any]:
    """Check, prepare and execute ``calls`` as one batch (``BatchV3.make``, ``BatchV2.make``).

    Raises:
        SdkError: ``calls`` are wrong for one batch of ``protocol`` (nothing is sent).
        B24Error: As :func:`execute`.
    """
    commands = normalize(calls, what=protocol.name)
    result = execute(client, prepare(protocol, commands, options), options)
    return result.raise_for_errors() if options.raises(client) else result


def call(
    client: Client,
    protocol: Protocol,
    method: object,
    params: object,
    read_only: object,
    options: CallOptions,
) -> AjaxResult:
    """Check and send one method to its own URL (``CallV3.make``, ``CallV2.make``).

    The engine sends it as a batch of one command (the protocol's ``prepare_call`` says where
    it goes and how it reads), so the limits, repeats and outcome rules are the batch's.

    Raises:
        SdkError: The method, params or an option is wrong (nothing is sent).
        B24Error: As :func:`execute`; an error envelope too when the call raises its errors.
    """
    row = {"method": method, "params": params, "read_only": read_only}
    command = Command.from_row(row, "the call")
    prepared = protocol.prepare_call(command)
    result = execute(client, prepared, attrs.evolve(options, return_ajax_result=True))
    entry: AjaxResult | None = result.data[0] if result.data else None
    answer = AjaxResult(
        key=0,
        method=command.method,
        params=command.params or {},
        result=None if entry is None else entry.result,
        time=result.time if entry is None else entry.time,
        status=result.status,
        error=result.errors[0] if result.errors else None,
        total=None if entry is None else entry.total,
        next=None if entry is None else entry.next,
        request_id=result.request_id,
    )
    return answer.raise_for_errors() if options.raises(client) else answer


def prepare(
    protocol: Protocol, commands: Commands, options: CallOptions, *, planned: bool = False
) -> Prepared:
    """Check what the call's options ask of ``commands``, then let ``protocol`` prepare them.

    ``planned``: the chunk planner has already resolved every reference.

    Raises:
        SdkError: A command's own ``result_type`` is not a type; ``isolate_errors`` for a
            batch it cannot re-send in parts; what ``protocol.prepare`` refuses.
    """
    check_result_types(commands)
    if options.isolate_errors:
        check_isolation(protocol, commands)
    return protocol.prepare(commands, halt=options.halt_on_error, references_checked=planned)


def execute(
    client: Client,
    prepared: Prepared,
    options: CallOptions,
    *,
    index: int | None = None,
    positions: range | None = None,
    record: CallRecord | None = None,
    observe: Callable[[Answers, int, float], None] | None = None,
) -> BatchResult[Any]:
    """Send one prepared batch and build its result.

    Args:
        client: The client it goes through.
        prepared: The batch.
        options: The call's options.
        index: The batch's number in a call of many (its request id and idempotency key get
            ``.{index}``); None for a call of one batch.
        positions: The positions in the whole call the batch covers (chunked calls).
        record: The call's record: its stop signal, and the batches it has on the wire.
        observe: Given the answers, sends and seconds waited the result is built from, each
            time one is built (a journal keeps the last; an error raised after it wins).

    Raises:
        B24Error: What the retry loop raises (401, 429, 5xx, transport and decoding
            failures), with ``maybe_executed`` set.
    """
    request_id, key = options.ids(index)
    answers, attempts, waited, uncertain = send(client, prepared, request_id, key, record, index)
    build = Builder(
        prepared.commands,
        request_id,
        options.result_type,
        options.return_ajax_result,
        positions,
        observe,
    )
    error = answers.error
    for failed in (error, *answers.errors.values()):
        if failed is not None:
            failed.hint = prepared.protocol.hint(failed, prepared)
    if error is not None:
        if options.isolate_errors:
            return _isolated(client, prepared, answers, build, attempts, waited, record, index)
        error.attempts = attempts
        mark(error, prepared, returned=True, uncertain=uncertain)
        if answers.entries is not None:  # an error beside results (2xx): those commands ran
            keys = prepared.commands.keys
            ran = {keys[p] for p in range(len(keys)) if p not in answers.unknown}
            left = tuple(key for key in error.maybe_executed if key not in ran)
            error.set_maybe_executed(left, "unknown")
        return build(answers, attempts=attempts, waited=waited)
    if answers.errors:
        answers, attempts, waited = _resend_refused(
            client, prepared, answers, build, attempts, waited, record, index
        )
    return build(answers, attempts=attempts, waited=waited)


def _isolated(
    client: Client,
    prepared: Prepared,
    first: Answers,
    build: Builder,
    attempts: int,
    waited: float,
    record: CallRecord | None,
    index: int | None,
) -> BatchResult[Any]:
    """Find the failing commands of a failed read-only batch; build the partial result."""
    request_id = build.request_id
    commands = prepared.commands

    def send_part(positions: range) -> tuple[Answers, int, float]:
        part = prepared.part(positions)
        answers, sends, part_waited, _ = send(client, part, request_id, None, record, index)
        return answers, sends, part_waited

    isolation = Isolation(len(commands), first, commands.keys)

    def partial() -> BatchResult[Any]:
        entries = [isolation.results.get(position) for position in range(len(commands))]
        total = attempts + isolation.attempts
        for error in isolation.errors.values():
            error.attempts = total
        answers = Answers(
            status=first.status,
            time=isolation.time,
            replayed=first.replayed,
            entries=entries,
            errors=isolation.errors,
        )
        return build(answers, attempts=total, waited=waited + isolation.waited)

    try:
        isolation.run(send_part)
    except B24Error as raised:
        raised.attempts += attempts + isolation.attempts
        raised.result = partial()
        raise
    return partial()


def _resend_refused(
    client: Client,
    prepared: Prepared,
    answers: Answers,
    build: Builder,
    attempts: int,
    waited: float,
    record: CallRecord | None,
    index: int | None,
) -> tuple[Answers, int, float]:
    """Send again, in place, the commands a limit refused inside the answer (they never ran).

    Only a protocol that reports each command on its own (classic) answers such refusals.
    With ``halt`` the commands after a refused one did not run either and go with it. A
    command that references one outside the re-sent part stays as it is: its reference could
    not resolve. Each round waits what the limit implies, and stops when that would not fit in
    ``max_wait`` or the policy's attempts are used up; what is still refused stays an error.
    A re-send that raises carries what the answers so far said on ``error.result`` (the
    commands that ran, with their results), and in ``maybe_executed`` the re-sent writes its
    failure leaves in doubt.
    """
    policy = client.retry
    request_id = build.request_id
    rounds = 1
    while rounds < policy.max_attempts:
        refused = [p for p, error in sorted(answers.errors.items()) if isinstance(error, _LIMITS)]
        if not refused:
            break
        again = _resendable(prepared, answers, refused)
        if not again:
            break
        delay = _limit_delay(client, [answers.errors[p] for p in refused], rounds)
        if waited + delay > policy.max_wait:
            break
        if record is None:
            client.limiter.sleep(delay)
        else:
            record.sleep(delay, client.limiter.sleep)
        waited += delay
        try:
            part, sends, part_waited, _ = send(
                client, prepared.part(again), request_id, None, record, index
            )
        except B24Error as error:
            error.attempts += attempts
            error.result = build(answers, attempts=error.attempts, waited=waited)
            raise
        attempts += sends
        waited += part_waited
        rounds += 1
        if part.error is not None:  # the repeat was refused as a whole: keep the first
            break
        answers = answers.replaced(again, part)
    return answers, attempts, waited


def _resendable(prepared: Prepared, answers: Answers, refused: Sequence[int]) -> list[int]:
    """The positions to send again: the refused ones and, under ``halt``, those after them
    that did not run — less any that reference a command outside that part."""
    first = refused[0]
    chosen = [
        p
        for p in range(len(prepared.commands))
        if p in refused or (prepared.halt and p > first and p in answers.not_run)
    ]
    kept: list[int] = []
    inside: set[str] = set()
    referenced = prepared.protocol.referenced
    for position in chosen:
        params = prepared.commands.items[position].params
        if params and any(target not in inside for target in referenced(params)):
            continue
        kept.append(position)
        inside.add(str(prepared.wire_keys[position]))
    return kept


def _limit_delay(client: Client, errors: list[AjaxError], rounds: int) -> float:
    """How long the refusals ask to wait: the operating-time reset, or the bucket's drain."""
    if any(isinstance(error, OperatingLimitError) for error in errors):
        retry_at, delay = client.limiter.operating_retry()
        for error in errors:
            if isinstance(error, OperatingLimitError):
                error.retry_at = retry_at
        return delay
    client.limiter.after_answer(None, refused=True)  # the portal's counter is full
    return client.backoff(rounds)


def check_result_types(commands: Commands) -> None:
    """Check every command's own ``result_type`` before anything is sent."""
    for key, command in zip(commands.keys, commands.items, strict=True):
        if command.result_type is not None:
            check_type(command.result_type, f"calls[{key!r}] result_type")


def check_isolation(protocol: Protocol, commands: Commands) -> None:
    """Refuse ``isolate_errors=True`` for a batch it cannot re-send in parts safely.

    Raises:
        SdkError: A command writes (it would run again), or references another command (a
            part of the batch could lose what it references); the message names the row.
    """
    for key, command in zip(commands.keys, commands.items, strict=True):
        if not reads(command):
            raise SdkError(
                f"isolate_errors=True re-sends parts of a failed batch, which is safe only for "
                f"commands that read; calls[{key!r}] ({command.method}) writes. Send writes in "
                f"a batch of their own without isolate_errors, or mark a command that only "
                f"reads with Command(..., read_only=True)"
            )
        if command.params and protocol.referenced(command.params):
            raise SdkError(
                f"isolate_errors=True re-sends parts of a failed batch, and calls[{key!r}] "
                f"references another command, which a part may not contain; send it without "
                f"isolate_errors"
            )
