"""Which commands of a batch write, and which of them a failure may have run.

``reads`` is the read-only rule (a command's own ``read_only``, else the rule on method names);
``mark`` sets a raised or returned error's ``maybe_executed`` from the protocol's failure model.
Pure: no I/O, no retries.
"""

from __future__ import annotations

from b24batch._protocols.base import Prepared
from b24batch.commands import Command, Commands
from b24batch.errors import B24Error
from b24batch.results import Key
from b24batch.retry import is_read_only

__all__ = ["mark", "read_only", "reads", "writes", "writes_before_last"]


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
