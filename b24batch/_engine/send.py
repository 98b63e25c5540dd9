"""Sending one prepared batch until it has an answer to return: the package's one retry loop.

For both protocols (a ``Prepared`` batch carries its ``Protocol``, which says how it travels
and how its answer reads): waits for the limiters within ``max_wait``, repeats what is safe
(``retry.py`` classifies), renews an OAuth token once, and marks every raised error with the
writes that may have run (``outcomes.mark``). No encoding, no result building.
"""

from __future__ import annotations

import logging
from functools import partial

from b24batch._engine.outcomes import CallRecord, mark, read_only, writes_before_last
from b24batch._engine.port import Client
from b24batch._protocols.base import Answers, Prepared
from b24batch.errors import (
    AjaxError,
    AuthError,
    B24Error,
    DecodeError,
    OperatingLimitError,
    TransportError,
)
from b24batch.retry import RetryKind, retry_kind

__all__ = ["send"]

log = logging.getLogger("b24batch")


def send(
    client: Client,
    prepared: Prepared,
    request_id: str,
    key: str | None,
    record: CallRecord | None = None,
    index: int | None = None,
) -> tuple[Answers, int, float, bool]:
    """Send until the batch has an answer to return, or raise.

    Returns ``(answers, sends, waited, uncertain)``; ``uncertain`` says that an earlier
    attempt failed in a way that leaves open whether it ran (so a later answer does not say
    all that ran). Repeats what the policy allows: refusals before execution always, failures
    that may have executed only for read-only batches, or with an idempotency key when no write
    comes before the last command (see ``outcomes.writes_before_last``). One
    credential renewal (OAuth) is re-sent outside the budget. Never sleeps after the last
    attempt. A raised error says in ``maybe_executed`` which writes may have run.

    With a ``record`` (the call's), nothing is sent once the call is stopped: a wait in the
    limiters or a backoff ends at once and raises :class:`Stopped`, and the record counts batch
    ``index`` as sent before its request goes out.
    """
    policy = client.retry
    limiter = client.limiter
    commands = prepared.commands
    sends = budgeted = 0
    waited = 0.0
    connecting = 0.0  # the connect timeouts of repeats after a failed connect: waits too
    renewed = uncertain = False
    sleep = limiter.sleep if record is None else partial(record.sleep, sleep=limiter.sleep)
    stopped = None if record is None else lambda: record.stopped
    while True:
        if record is not None:
            record.check()
        # Booked on the in-flight ledger before the limiters' waits, and taken off it however
        # the attempt ends, so batches in flight together never overrun the operating budget.
        held, charged = limiter.ledger.admit(
            limiter.meter, policy.max_wait - waited - connecting, stop=stopped
        )
        waited += held
        try:
            try:
                if record is not None:
                    record.check()
                waited += limiter.before_send(policy.max_wait - waited - connecting, sleep=sleep)
            except AjaxError as refused:  # a limiter's wait would not fit: nothing was sent
                refused.request_id, refused.attempts = request_id, sends
                raise
            if record is not None:
                record.sending(index)  # from here on, without its outcome, it may have run
            version = client.credential_version()
            sends += 1
            budgeted += 1
            failure: B24Error
            try:
                answers = client.send(prepared, request_id=request_id, idempotency_key=key)
            except (TransportError, DecodeError) as exc:
                failure = exc  # its maybe_executed will say what may have run
            else:
                error = answers.error
                if error is None or not _raised(error.status):
                    return answers, sends, waited, uncertain
                failure = error
        finally:
            limiter.ledger.settle(charged)  # answered, failed or refused: off the wire
        if (
            isinstance(failure, AuthError)
            and not renewed
            and _renew(client, failure, version, sends, prepared, uncertain)
        ):
            renewed = True
            budgeted -= 1  # the re-send after a renewal is outside the retry budget
            continue
        repeatable = read_only(commands) or (key is not None and not writes_before_last(commands))
        delay = _retry_delay(
            client, failure, repeatable, budgeted, waited + connecting, not prepared.single
        )
        if delay is None:
            failure.attempts = sends
            mark(failure, prepared, returned=False, uncertain=uncertain)
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
        sleep(delay)
        waited += delay


def _renew(
    client: Client, error: AuthError, version: int, sends: int, prepared: Prepared, uncertain: bool
) -> bool:
    try:
        return client.renew(error, version)
    except B24Error as failure:
        failure.attempts = sends
        mark(failure, prepared, returned=False, uncertain=uncertain)
        raise


def _retry_delay(
    client: Client,
    error: B24Error,
    repeatable: bool,
    attempts: int,
    waited: float,
    metered: bool = True,
) -> float | None:
    """Seconds to wait before repeating after ``error``, or None to raise it now.

    ``metered``: the request is charged to what the client's operating meter counts (the
    method ``batch``); a single call is charged to its own method, which it does not.
    """
    policy = client.retry
    kind = retry_kind(error)
    if isinstance(error, OperatingLimitError):
        # said even when giving up
        error.retry_at, delay = client.limiter.operating_retry(metered=metered)
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


def _connect_timeout(client: Client) -> float:
    timeout = client.timeout
    return timeout[0] if isinstance(timeout, tuple) else timeout


def _raised(status: int) -> bool:
    """Whether an error envelope with ``status`` is raised rather than returned."""
    return status == 401 or status == 429 or status >= 500


def _cause(error: B24Error) -> str:
    return error.code if isinstance(error, AjaxError) else type(error).__name__
