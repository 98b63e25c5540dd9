"""Sending one encoded batch until it has an answer to return, and what a failure may have run.

The one retry loop of the package, for both protocols (their ``Wire`` says how a batch travels
and how its answer reads): it waits for the limiters within ``max_wait``, repeats what is safe
(``retry.py`` classifies), renews an OAuth token once, and marks every raised error with the
writes that may have run (``maybe_executed``). No encoding, no result building.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from b24batch._protocols.v3 import Answered, Wire
from b24batch.commands import Command, Commands
from b24batch.errors import (
    AjaxError,
    AuthError,
    B24Error,
    DecodeError,
    OperatingLimitError,
    TransportError,
)
from b24batch.results import Key
from b24batch.retry import RetryKind, is_read_only, retry_kind

if TYPE_CHECKING:
    from b24batch.client import _Client

__all__ = ["mark", "read_only", "reads", "send", "writes", "writes_before_last"]

log = logging.getLogger("b24batch")
# Error envelopes the portal answers before running any row: nothing of the batch ran.
_REFUSED_BEFORE_RUNNING = frozenset(
    {
        "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION",
        "BITRIX_REST_V3_EXCEPTION_INVALIDIDEMPOTENCYKEYEXCEPTION",
        "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION",
    }
)

A = TypeVar("A", bound=Answered)


def send(
    client: _Client,
    commands: Commands,
    body: bytes,
    request_id: str,
    key: str | None,
    wire: Wire[A],
    *,
    answer_keys: Sequence[Key] | None = None,
) -> tuple[A, int, float, bool]:
    """Send until the batch has an answer to return, or raise.

    Returns ``(envelope, sends, waited, uncertain)``; ``uncertain`` says that an earlier
    attempt failed in a way that leaves open whether it ran (so a later answer does not say
    all that ran). Repeats what the policy allows: refusals before execution always, failures
    that may have executed only for read-only batches, or with an idempotency key when no write
    comes before the last command (see ``_writes_before_last``). One
    credential renewal (OAuth) is re-sent outside the budget. Never sleeps after the last
    attempt. A raised error says in ``maybe_executed`` which writes may have run.
    """
    policy = client.retry
    limiter = client.limiter
    sends = budgeted = 0
    waited = 0.0
    connecting = 0.0  # the connect timeouts of repeats after a failed connect: waits too
    renewed = uncertain = False
    while True:
        # Booked on the in-flight ledger before the limiters' waits, and taken off it however
        # the attempt ends, so batches in flight together never overrun the operating budget.
        held, charged = limiter.ledger.admit(limiter.meter, policy.max_wait - waited - connecting)
        waited += held
        try:
            try:
                waited += limiter.before_send(policy.max_wait - waited - connecting)
            except AjaxError as refused:  # a limiter's wait would not fit: nothing was sent
                refused.request_id, refused.attempts = request_id, sends
                raise
            version = client.credential_version()
            sends += 1
            budgeted += 1
            failure: B24Error
            try:
                envelope = client.send(
                    body,
                    keys=commands.keys if answer_keys is None else answer_keys,
                    request_id=request_id,
                    idempotency_key=key,
                    wire=wire,
                )
            except (TransportError, DecodeError) as exc:
                failure = exc
            else:
                error = envelope.error
                if error is None or not _raised(error.status):
                    return envelope, sends, waited, uncertain
                failure = error
        finally:
            limiter.ledger.settle(charged)  # answered, failed or refused: off the wire
        if (
            isinstance(failure, AuthError)
            and not renewed
            and _renew(client, failure, version, sends, commands, wire, uncertain)
        ):
            renewed = True
            budgeted -= 1  # the re-send after a renewal is outside the retry budget
            continue
        repeatable = read_only(commands) or (key is not None and not writes_before_last(commands))
        delay = _retry_delay(client, failure, repeatable, budgeted, waited + connecting)
        if delay is None:
            failure.attempts = sends
            mark(failure, commands, wire, returned=False, uncertain=uncertain)
            raise failure
        uncertain = uncertain or failure.outcome_unknown
        if retry_kind(failure) is RetryKind.CONNECT:
            connecting += _connect_timeout(client)
        log.warning(
            "batch %s: attempt %d of %d in %.2f s after %s",
            request_id,
            budgeted + 1,
            policy.max_attempts,
            delay,
            _cause(failure),
        )
        limiter.sleep(delay)
        waited += delay


def mark(
    error: B24Error, commands: Commands, wire: Wire[Any], *, returned: bool, uncertain: bool
) -> None:
    """Set ``error.maybe_executed``: the writes that may have run although no result says so.

    ``returned``: the portal answered ``error`` for the batch (an error envelope). In REST 3.0
    it ran the commands before the failing one, which is at the latest the last; a classic
    error envelope refuses the whole request. Otherwise nothing ran unless the error, or an
    earlier attempt (``uncertain``), leaves it open.
    """
    if uncertain or error.outcome_unknown:
        error.set_maybe_executed(writes(commands), "unknown")
    elif (
        returned
        and wire.stops_at_failure
        and getattr(error, "code", None) not in _REFUSED_BEFORE_RUNNING
    ):
        error.set_maybe_executed(writes_before_last(commands), "stopped")


def writes_before_last(commands: Commands) -> tuple[Key, ...]:
    """The writes a batch that failed at a command may have run: all but the last row's.

    An ``Idempotency-Key`` makes a repeat safe only when none exists: the portal stores only
    successful answers, so a batch that ran and failed at its third command runs its first
    two again when it is repeated.
    """
    return writes(commands, before_last=True)


def writes(commands: Commands, *, before_last: bool = False) -> tuple[Key, ...]:
    """The keys of the commands that write, in call order (without the last, if asked)."""
    count = len(commands) - 1 if before_last else len(commands)
    return tuple(
        key
        for key, command in zip(commands.keys[:count], commands.items[:count], strict=True)
        if not reads(command)
    )


def _renew(
    client: _Client,
    error: AuthError,
    version: int,
    sends: int,
    commands: Commands,
    wire: Wire[Any],
    uncertain: bool,
) -> bool:
    try:
        return client.renew(error, version)
    except B24Error as failure:
        failure.attempts = sends
        mark(failure, commands, wire, returned=False, uncertain=uncertain)
        raise


def _retry_delay(
    client: _Client, error: B24Error, repeatable: bool, attempts: int, waited: float
) -> float | None:
    """Seconds to wait before repeating after ``error``, or None to raise it now."""
    policy = client.retry
    kind = retry_kind(error)
    if isinstance(error, OperatingLimitError):
        error.retry_at, delay = client.limiter.operating_retry()  # said even when giving up
    if kind is None or (kind is RetryKind.AMBIGUOUS and not repeatable):
        return None
    if attempts >= policy.max_attempts:
        return None
    if not isinstance(error, OperatingLimitError):  # that one waits for the reset, above
        retry_after = error.retry_after if isinstance(error, AjaxError) else None
        delay = client.backoff(attempts) if retry_after is None else retry_after
    # Not started unless the whole way to the next send fits: this delay, the limiters' waits
    # after it, and (after a failed connect) the connect timeout the repeat may spend again.
    connect = _connect_timeout(client) if kind is RetryKind.CONNECT else 0.0
    ahead = delay + client.limiter.wait_after(delay) + connect
    return None if waited + ahead > policy.max_wait else delay


def _connect_timeout(client: _Client) -> float:
    timeout = client.timeout
    return timeout[0] if isinstance(timeout, tuple) else timeout


def read_only(commands: Commands) -> bool:
    """Whether every command only reads (its ``read_only``, else the name rule)."""
    return all(map(reads, commands.items))


def reads(command: Command) -> bool:
    """Whether ``command`` only reads: its ``read_only``, else the rule on method names."""
    return is_read_only(command.method) if command.read_only is None else command.read_only


def _raised(status: int) -> bool:
    """Whether an error envelope with ``status`` is raised rather than returned."""
    return status == 401 or status == 429 or status >= 500


def _cause(error: B24Error) -> str:
    return error.code if isinstance(error, AjaxError) else type(error).__name__
