"""Which commands of a call ran, may have run, or did not: the rules and the call's record.

``reads`` is the read-only rule (a command's own ``read_only``, else the rule on method names);
``mark`` sets an error's ``maybe_executed`` from the protocol's failure model; a ``CallRecord``
is one call's stop signal and the batches it has on the wire. No I/O, no retries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from b24batch._protocols.base import Prepared
from b24batch.commands import Command, Commands
from b24batch.errors import B24Error, TransportError
from b24batch.results import Key
from b24batch.retry import is_read_only

__all__ = [
    "CallRecord",
    "Stopped",
    "interrupted",
    "mark",
    "read_only",
    "reads",
    "writes",
    "writes_before_last",
]


def mark(error: B24Error, prepared: Prepared, *, returned: bool, uncertain: bool) -> None:
    """Set ``error.maybe_executed``: the writes that may have run although no result says so.

    ``returned``: the portal answered ``error`` for the batch (an error envelope). A protocol
    that stops at its first failure ran the commands before the failing one, which is at the
    latest the last (unless the code says it refused before running any); a classic error
    envelope refuses the whole request. Otherwise nothing ran unless the error, or an earlier
    attempt (``uncertain``), leaves it open.
    """
    commands = prepared.commands
    protocol = prepared.protocol
    if uncertain or error.outcome_unknown:
        error.set_maybe_executed(writes(commands), "unknown")
    elif (
        returned
        and protocol.stops_at_failure
        and getattr(error, "code", None) not in protocol.refused_before_running
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


def read_only(commands: Commands) -> bool:
    """Whether every command only reads (its ``read_only``, else the name rule)."""
    return all(map(reads, commands.items))


def reads(command: Command) -> bool:
    """Whether ``command`` only reads: its ``read_only``, else the rule on method names."""
    return is_read_only(command.method) if command.read_only is None else command.read_only


class Stopped(Exception):
    """A batch of a stopped call was not sent: it is not executed. Raised inside the engine
    only; what reaches the caller is the interrupt that stopped the call."""


class CallRecord:
    """One call's stop signal, and which of its batches were ever sent; shared by its threads.

    After :meth:`stop` (Ctrl+C, an abandoned iteration) no new request of the call leaves:
    a batch waiting in a limiter or a backoff wakes and is not sent (:class:`Stopped`). A batch
    that was sent and whose outcome the call never took (its answer was abandoned, or an
    interrupt came as it landed) may have run.
    """

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._sent: set[int | None] = set()

    @property
    def stopped(self) -> bool:
        """Whether the call was stopped."""
        return self._stopped.is_set()

    def stop(self) -> None:
        """Send nothing more, and wake every batch waiting to be sent. Once it returns, no
        batch of the call goes out (:meth:`sending` refuses)."""
        with self._lock:
            self._stopped.set()

    def check(self) -> None:
        """Raise :class:`Stopped` when the call was stopped (call it before sending)."""
        if self._stopped.is_set():
            raise Stopped

    def sleep(self, seconds: float, sleep: Callable[[float], None]) -> None:
        """Wait ``seconds`` unless the call is stopped meanwhile, then raise :class:`Stopped`.

        The real ``time.sleep`` becomes a wait on the stop signal, which Ctrl+C cuts short; an
        injected ``sleep`` (a test's clock) is called as it is, and the signal checked after.
        """
        if sleep is time.sleep:
            self._stopped.wait(seconds)
        elif seconds > 0:
            sleep(seconds)
        self.check()

    def sending(self, index: int | None) -> None:
        """Batch ``index`` is about to be sent: from now on, without its outcome, it may have run.

        Raises:
            Stopped: The call was stopped; the batch is not sent.
        """
        with self._lock:  # with stop()'s lock: a batch is either refused or counted as sent
            if self._stopped.is_set():
                raise Stopped
            self._sent.add(index)

    def withdraw(self, index: int | None) -> None:
        """Batch ``index`` did not leave after all (what was to precede its send failed)."""
        with self._lock:
            self._sent.discard(index)

    def was_sent(self, index: int | None) -> bool:
        """Whether batch ``index`` ever went out (in doubt if its outcome was never taken)."""
        with self._lock:
            return index in self._sent


def interrupted(prepared: Prepared, request_id: str) -> TransportError:
    """The error of a batch the call stopped waiting for (Ctrl+C): its writes may have run."""
    error = TransportError(
        "the call was interrupted after this batch was sent, before its answer was taken",
        request_id=request_id,
        outcome_unknown=True,
    )
    error.set_maybe_executed(writes(prepared.commands), "unknown")
    return error
