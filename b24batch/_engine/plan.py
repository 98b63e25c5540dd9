"""Cutting a stream of rows into encoded chunks, keeping every reference inside its chunk.

For both protocols: rows are validated as they are read, each command's references are found
(REST 3.0: ``{"$ref": "alias.…"}``; classic: ``$result[KEY]``) and a chunk never ends between a
command and one it references. What differs — how a command is named for references, how a
reference is read, how a chunk is encoded — is a ``Rules`` object per protocol. At most two
chunks of rows are held. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from b24batch._protocols.v2 import references_v2
from b24batch._protocols.v3 import encode_batch
from b24batch.batch import check_isolation, check_result_types
from b24batch.batch_v2 import Planned, plan_v2, wire_key
from b24batch.commands import (
    Command,
    Commands,
    command_alias,
    reference_target,
    references,
)
from b24batch.errors import SdkError, SdkTypeError
from b24batch.results import Key

if TYPE_CHECKING:
    from b24batch.chunks import Settings

__all__ = ["CLASSIC", "REST_V3", "Chunk", "Rules", "plan"]


@attrs.frozen
class Chunk:
    """One planned chunk: its index, its commands (keyed globally), and what goes on the wire.

    Attributes:
        index: The chunk's number, from 0.
        commands: Its commands; keys are global positions or the caller's names.
        positions: The positions in the whole input it covers.
        body: The encoded REST 3.0 body (None for a classic chunk).
        planned: The classic batch, with its wire keys and form (None for REST 3.0).
    """

    index: int
    commands: Commands
    positions: range
    body: bytes | None = attrs.field(default=None, repr=False)
    planned: Planned | None = None


class Rules(Protocol):
    """What the planner asks of a protocol."""

    name: str

    def name_of(
        self, command: Command, key: Key, index: int, named: bool, where: str, seen: dict[str, str]
    ) -> str | None:
        """The name later commands reference this one by (None: not referenceable)."""

    def targets(
        self, command: Command, defined: dict[str, int], index: int, where: str
    ) -> list[tuple[int, str]]:
        """``(global index, how the reference reads)`` of each command ``command`` references."""

    def chunk(self, number: int, commands: Commands, positions: range, settings: Settings) -> Chunk:
        """Check and encode one chunk."""


class _RestV3:
    name = "REST 3.0"

    def name_of(
        self, command: Command, key: Key, index: int, named: bool, where: str, seen: dict[str, str]
    ) -> str | None:
        return command_alias(command, str(key) if named else None, where, seen)

    def targets(
        self, command: Command, defined: dict[str, int], index: int, where: str
    ) -> list[tuple[int, str]]:
        return [
            (reference_target(path, defined, index, where, positional=False), repr(path))
            for path in (references(command.params) if command.params else ())
        ]

    def chunk(self, number: int, commands: Commands, positions: range, settings: Settings) -> Chunk:
        check_result_types(commands, settings.result_type)
        if settings.isolate_errors:
            check_isolation(commands)
        body = encode_batch(commands, halt_on_error=settings.halt_on_error)
        return Chunk(index=number, commands=commands, positions=positions, body=body)


class _Classic:
    """Commands are sent under global keys — the caller's name, else ``as``, else the global
    position — so ``$result[KEY]`` means the same command in every chunk."""

    name = "classic"

    def name_of(
        self, command: Command, key: Key, index: int, named: bool, where: str, seen: dict[str, str]
    ) -> str | None:
        alias = command_alias(command, str(key) if named else None, where, seen)
        return str(wire_key(key, alias, named))  # a list call's key is its global position

    def targets(
        self, command: Command, defined: dict[str, int], index: int, where: str
    ) -> list[tuple[int, str]]:
        found = []
        for target in references_v2(command.params) if command.params else ():
            position = defined.get(target)
            if position is None:
                raise SdkError(
                    f"{where} references $result[{target}], which names no earlier command; "
                    f"the portal would pass the text on as a value. Reference a command before "
                    f"it by its key (its name, its 'as', or its position)"
                )
            found.append((position, f"$result[{target}]"))
        return found

    def chunk(self, number: int, commands: Commands, positions: range, settings: Settings) -> Chunk:
        check_result_types(commands, settings.result_type)
        # The planner resolved every reference to an earlier command of this chunk already.
        planned = plan_v2(commands, halt=settings.halt_on_error, references_checked=True)
        return Chunk(index=number, commands=commands, positions=positions, planned=planned)


REST_V3: Rules = _RestV3()
CLASSIC: Rules = _Classic()

# (global index, key, command, name, lowest index it references)
_Entry = tuple[int, Key, Command, str | None, int]


def plan(
    pairs: Iterator[tuple[Key, object]], *, named: bool, settings: Settings, rules: Rules
) -> Iterator[Chunk]:
    """Validate rows as they are read and cut them into encoded chunks.

    Holds at most ``2 * chunk_size`` unsent rows: enough to see every reference into the
    chunk being cut, since a reference from further away could not share a batch anyway.
    """
    size = settings.chunk_size
    buffer: list[_Entry] = []
    defined: dict[str, int] = {}
    seen: dict[str, str] = {}
    first_unsent = 0
    count = 0
    chunks = 0
    for index, (key, row) in enumerate(pairs):
        if named and (not isinstance(key, str) or not key):
            raise SdkTypeError(
                f"calls has the key {key!r}; names of commands must be non-empty strings"
            )
        where = f"calls[{key!r}]"
        command = Command.from_row(row, where)
        name = rules.name_of(command, key, index, named, where, seen)
        low = index
        for target, reference in rules.targets(command, defined, index, where):
            if target < first_unsent:
                raise SdkError(
                    f"{where} references {reference}, defined by a command more than "
                    f"chunk_size={size} commands back, in a batch already planned; a command "
                    f"must share a batch with the command it references"
                )
            low = min(low, target)
        if name is not None:
            defined[name] = index
        buffer.append((index, key, command, name, low))
        count = index + 1
        if len(buffer) >= 2 * size:
            chunk, buffer = _cut(buffer, size)
            first_unsent = buffer[0][0]
            yield _encoded(chunks, chunk, named, settings, rules)
            chunks += 1
    if count == 0:
        raise SdkError("calls is empty: pass at least one command")
    while buffer:
        chunk, buffer = _cut(buffer, size)
        yield _encoded(chunks, chunk, named, settings, rules)
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


def _encoded(
    number: int, entries: list[_Entry], named: bool, settings: Settings, rules: Rules
) -> Chunk:
    # A classic chunk of list calls sends each command under its global position or 'as',
    # which is what the entry's name holds; a REST 3.0 chunk sends its aliases as 'as'.
    aliases: tuple[Any, ...] = tuple(entry[3] for entry in entries)
    if rules is CLASSIC and not named:
        aliases = tuple(entry[2].as_ for entry in entries)
    commands = Commands(
        items=tuple(entry[2] for entry in entries),
        keys=tuple(entry[1] for entry in entries),
        aliases=aliases,
        named=named,
    )
    start = entries[0][0]
    return rules.chunk(number, commands, range(start, start + len(entries)), settings)
