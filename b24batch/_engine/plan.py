"""Cutting a stream of rows into prepared chunks, keeping every reference inside its chunk.

For both protocols: rows are validated as they are read, each command's references are found
by its ``Protocol`` (REST 3.0: ``{"$ref": "alias.…"}``; classic: ``$result[KEY]``), and a
chunk never ends between a command and one it references. At most two chunks of rows are
held. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from b24batch._engine.call_options import CallOptions
from b24batch._engine.execute import prepare
from b24batch._protocols.base import Prepared, Protocol
from b24batch.commands import Command, Commands, check_name, command_alias, name_text
from b24batch.errors import SdkError
from b24batch.results import Key

__all__ = ["Chunk", "plan"]


@attrs.frozen
class Chunk:
    """One planned chunk: its index, its commands (keyed globally), and its prepared batch.

    Attributes:
        index: The chunk's number, from 0.
        prepared: Its batch; its commands' keys are global positions or the caller's names.
        positions: The positions in the whole input it covers.
    """

    index: int
    prepared: Prepared
    positions: range

    @property
    def commands(self) -> Commands:
        """The chunk's commands."""
        return self.prepared.commands


# (global index, key, command, alias, lowest index it references)
_Entry = tuple[int, Key, Command, str | None, int]


def plan(
    pairs: Iterator[tuple[Key, object]],
    *,
    named: bool,
    options: CallOptions,
    protocol: Protocol,
) -> Iterator[Chunk]:
    """Validate rows as they are read and cut them into encoded chunks.

    Holds at most ``2 * chunk_size`` unsent rows: enough to see every reference into the
    chunk being cut, since a reference from further away could not share a batch anyway.
    """
    size = options.chunk_size
    buffer: list[_Entry] = []
    defined: dict[str, int] = {}
    seen: dict[str, str] = {}
    first_unsent = 0
    chunks = 0
    for index, (key, row) in enumerate(pairs):
        if named:
            check_name(key)  # what else a name may be is the protocol's rule, in prepare
        where = f"calls[{key!r}]"
        command = Command.from_row(row, where)
        alias = (
            command_alias(command, name_text(key) if named else None, where, seen)
            if named or command.as_ is not None
            else None  # nothing to check: the row sends no alias
        )
        name = protocol.reference_name(key, alias, named)
        low = index
        for target, reference in protocol.targets(command, defined, index, where):
            if target < first_unsent:
                raise SdkError(
                    f"{where} references {reference}, defined by a command more than "
                    f"chunk_size={size} commands back, in a batch already planned; a command "
                    f"must share a batch with the command it references"
                )
            low = min(low, target)
        if name is not None:
            defined[name] = index
        buffer.append((index, key, command, alias, low))
        if len(buffer) >= 2 * size:
            chunk, buffer = _cut(buffer, size)
            first_unsent = buffer[0][0]
            yield _prepared(chunks, chunk, named, options, protocol)
            chunks += 1
    if chunks == 0 and not buffer:  # not a single row was read
        raise SdkError("calls is empty: pass at least one command")
    while buffer:
        chunk, buffer = _cut(buffer, size)
        yield _prepared(chunks, chunk, named, options, protocol)
        chunks += 1


def _cut(buffer: list[_Entry], size: int) -> tuple[list[_Entry], list[_Entry]]:
    """Split off the longest head of at most ``size`` rows that no later row references into."""
    if len(buffer) <= size:
        return buffer, []
    # lowest[r]: the lowest index referenced by any row from r on; a cut before r is allowed
    # when nothing from r on reaches back before r.
    lowest = [0] * (len(buffer) + 1)
    lowest[-1] = buffer[-1][0] + 1
    for r in range(len(buffer) - 1, -1, -1):
        lowest[r] = min(lowest[r + 1], buffer[r][4])
    for r in range(size, 0, -1):
        if lowest[r] >= buffer[r][0]:
            return buffer[:r], buffer[r:]
    reaching = min(buffer[size:], key=lambda entry: entry[4])
    first = buffer[0]
    raise SdkError(
        f"calls[{first[1]!r}] to calls[{reaching[1]!r}] reference one another in a chain longer "
        f"than chunk_size={size}; a command must share a batch with the command it references, "
        f"so move them closer together or raise chunk_size (up to 50)"
    )


def _prepared(
    number: int, entries: list[_Entry], named: bool, options: CallOptions, protocol: Protocol
) -> Chunk:
    commands = Commands(
        items=tuple(entry[2] for entry in entries),
        keys=tuple(entry[1] for entry in entries),
        aliases=tuple(entry[3] for entry in entries),
        named=named,
    )
    start = entries[0][0]
    prepared = prepare(protocol, commands, options, planned=True)
    return Chunk(index=number, prepared=prepared, positions=range(start, start + len(entries)))
