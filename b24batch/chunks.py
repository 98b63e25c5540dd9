"""``BatchByChunkV3``: more than 50 commands, split into batches and sent one after another.

Plans chunks from a stream of rows — validating each row, keeping every command in the same
batch as the alias it references, encoding each chunk — reading at most two chunks ahead of
what it has handed out; then sends them through ``batch.execute`` (the client's limiters and
retry policy) and merges the answers. Never sleeps on its own, never drops what it fetched.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from typing import TYPE_CHECKING, Any, TypeVar, overload

import attrs

from b24batch.batch import (
    check_isolation,
    check_options,
    check_result_types,
    checked_idempotency_key,
    checked_request_id,
    execute,
)
from b24batch.commands import (
    MAX_COMMANDS,
    Command,
    Commands,
    command_alias,
    reference_target,
    references,
    refuse_js_object,
)
from b24batch.errors import B24Error, SdkError, SdkTypeError
from b24batch.results import BatchResult, ChunkedResult, ChunkError, Key
from b24batch.wire import encode_batch

if TYPE_CHECKING:
    from b24batch.client import _Client

__all__ = ["BatchByChunkV3", "Progress"]

log = logging.getLogger("b24batch")

Progress = bool | Callable[[int, int | None], object] | None
"""``True`` for a tqdm bar, a callable ``(done_commands, total_or_None)``, or None."""

T = TypeVar("T")

_SUFFIX_ROOM = 10  # ".<chunk number>" appended to request ids and idempotency keys
_tqdm_hint_given = False


@attrs.frozen
class _Chunk:
    index: int
    commands: Commands
    body: bytes
    positions: range


class BatchByChunkV3:
    """Runs any number of commands as consecutive batches of at most ``chunk_size``.

    Example:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     calls = [("tasks.task.add", {"fields": {"title": f"T{n}"}}) for n in range(120)]
        ...     result = BatchByChunkV3(b24).make(calls)
        ...     len(result.data), [len(chunk.positions) for chunk in result.chunks]
        (120, [50, 50, 20])
    """

    def __init__(self, client: _Client) -> None:
        """Args: client: the portal client (B24Hook or B24OAuth) the chunks go through."""
        self._client = client

    @overload
    def make(
        self,
        calls: Mapping[str, Any],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: type[T],
        request_id: str | None = ...,
        progress: Progress = ...,
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
    ) -> ChunkedResult[dict[str, T]]: ...

    @overload
    def make(
        self,
        calls: Iterable[Any],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: type[T],
        request_id: str | None = ...,
        progress: Progress = ...,
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
    ) -> ChunkedResult[list[T]]: ...

    @overload
    def make(
        self,
        calls: object,
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: Any = ...,
        request_id: str | None = ...,
        progress: Progress = ...,
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
    ) -> ChunkedResult[Any]: ...

    def make(
        self,
        calls: object,
        *,
        chunk_size: int = MAX_COMMANDS,
        halt_on_error: bool = True,
        result_type: Any = None,
        request_id: str | None = None,
        progress: Progress = None,
        idempotency_key: str | bool | None = None,
        isolate_errors: bool = False,
    ) -> ChunkedResult[Any]:
        """Send all of ``calls``, ``chunk_size`` at a time, and merge the results.

        Every row is checked and every chunk planned and encoded before the first request.

        Args:
            calls: A list (or any iterable) of rows, or a dict of named rows, in the forms
                :meth:`BatchV3.make` takes; any number of them. Positional references
                (``"3.item.id"``) are refused: use ``as`` and :func:`ref`.
            chunk_size: Commands per batch, 1 to 50. A command is kept in the same batch as the
                alias it references, so a chunk can end early.
            halt_on_error: True stops after the first failed chunk and lists the commands of
                the chunks not sent in ``not_executed``; False sends every chunk. Within a
                chunk the portal always stops at the first failing command, without rollback:
                the writes before it may have run (``maybe_executed``).
            result_type: As in :meth:`BatchV3.make`.
            request_id: Base id; chunk ``k`` is sent as ``{request_id}.{k}``. A new uuid4 when
                None.
            progress: True for a tqdm progress bar (``pip install 'b24batch[progress]'``), or a
                callable given ``(done_commands, total)`` after every chunk.
            idempotency_key: A base key (chunk ``k`` sends ``{key}.{k}``) or True for a
                generated one; see :meth:`BatchV3.make`.
            isolate_errors: As in :meth:`BatchV3.make`, for each failed chunk: one
                :class:`ChunkError` per failing command. Every command must only read.

        Returns:
            A :class:`ChunkedResult`.

        Raises:
            SdkError: Bad input or options, found before anything is sent.
            B24Error: What a chunk raised (as :meth:`BatchV3.make`), with the chunks before it
                in ``error.partial``.
        """
        named, pairs = _pairs(calls)
        rows = list(pairs)
        settings = _Settings.checked(
            chunk_size, halt_on_error, request_id, idempotency_key, result_type, isolate_errors
        )
        plan = list(_plan(iter(rows), named=named, settings=settings))
        report = _progress(progress, len(rows))
        try:
            return _run(self._client, plan, settings, report, {} if named else [])
        finally:
            report.close()

    @overload
    def iter(
        self,
        calls: Mapping[str, Any],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: type[T],
        request_id: str | None = ...,
        progress: Progress = ...,
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
    ) -> Iterator[BatchResult[dict[str, T]]]: ...

    @overload
    def iter(
        self,
        calls: Iterable[Any],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: type[T],
        request_id: str | None = ...,
        progress: Progress = ...,
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
    ) -> Iterator[BatchResult[list[T]]]: ...

    @overload
    def iter(
        self,
        calls: Iterable[object] | Mapping[str, object],
        *,
        chunk_size: int = ...,
        halt_on_error: bool = ...,
        result_type: Any = ...,
        request_id: str | None = ...,
        progress: Progress = ...,
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
    ) -> Iterator[BatchResult[Any]]: ...

    def iter(
        self,
        calls: Iterable[object] | Mapping[str, object],
        *,
        chunk_size: int = MAX_COMMANDS,
        halt_on_error: bool = True,
        result_type: Any = None,
        request_id: str | None = None,
        progress: Progress = None,
        idempotency_key: str | bool | None = None,
        isolate_errors: bool = False,
    ) -> Iterator[BatchResult[Any]]:
        """Yield one :class:`BatchResult` per chunk as it arrives, reading ``calls`` lazily.

        Takes any iterable, a generator included, and reads at most two chunks ahead of what
        it has sent, so memory stays flat however many commands there are. Each row is checked
        as it is read: a bad row raises :class:`SdkError` when its chunk is planned, after
        the chunks before it were yielded. With ``halt_on_error`` iteration stops after the
        first failed chunk (which is yielded). Arguments as for :meth:`make`.

        Example:
            >>> rows = (("tasks.task.get", {"id": i}) for i in range(1, 10_001))  # doctest: +SKIP
            >>> for chunk in BatchByChunkV3(b24).iter(rows):  # doctest: +SKIP
            ...     save(chunk.data)
        """
        named, pairs = _pairs(calls)
        settings = _Settings.checked(
            chunk_size, halt_on_error, request_id, idempotency_key, result_type, isolate_errors
        )
        total = len(calls) if isinstance(calls, Sized) else None
        return self._iter(pairs, named, settings, _progress(progress, total))

    def _iter(
        self,
        pairs: Iterator[tuple[Key, object]],
        named: bool,
        settings: _Settings,
        report: _Report,
    ) -> Iterator[BatchResult[Any]]:
        try:
            for chunk in _plan(pairs, named=named, settings=settings):
                result = _send(self._client, chunk, settings)
                yield result
                report(len(chunk.commands))
                if result.errors and settings.halt_on_error:
                    return
        finally:
            report.close()


@attrs.frozen(kw_only=True)
class _Settings:
    chunk_size: int
    halt_on_error: bool
    request_id: str
    idempotency_key: str | None
    result_type: Any
    isolate_errors: bool

    @classmethod
    def checked(
        cls,
        chunk_size: object,
        halt_on_error: object,
        request_id: object,
        idempotency_key: object,
        result_type: Any,
        isolate_errors: object = False,
    ) -> _Settings:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
            raise SdkTypeError(f"chunk_size={chunk_size!r}: pass a whole number from 1 to 50")
        if not 1 <= chunk_size <= MAX_COMMANDS:
            raise SdkError(f"chunk_size={chunk_size}: a REST 3.0 batch takes 1 to 50 commands")
        check_options(halt_on_error, False, isolate_errors)
        base_id = checked_request_id(request_id)
        key = checked_idempotency_key(idempotency_key)
        for name, value in (("request_id", base_id), ("idempotency_key", key)):
            if value is not None and len(value) > 255 - _SUFFIX_ROOM:
                raise SdkError(
                    f"{name} is {len(value)} characters; chunked calls append '.<chunk>', so "
                    f"keep it to {255 - _SUFFIX_ROOM}"
                )
        return cls(
            chunk_size=chunk_size,
            halt_on_error=bool(halt_on_error),
            request_id=base_id,
            idempotency_key=key,
            result_type=result_type,
            isolate_errors=bool(isolate_errors),
        )


def _run(
    client: _Client,
    plan: list[_Chunk],
    settings: _Settings,
    report: _Report,
    data: list[Any] | dict[str, Any],
) -> ChunkedResult[Any]:
    """Send the planned chunks in order and merge what they return (``make``'s loop)."""
    done: list[BatchResult[Any]] = []
    errors: list[ChunkError] = []

    def so_far(after: int) -> ChunkedResult[Any]:
        # The keys of the chunks after ``after``, gathered only when the run stops early:
        # gathering them for every chunk made planning quadratic in the number of chunks.
        unsent = tuple(key for later in plan[after + 1 :] for key in later.commands.keys)
        return ChunkedResult(
            data=data, errors=tuple(errors), chunks=tuple(done), not_executed=unsent
        )

    for chunk in plan:
        try:
            result = _send(client, chunk, settings)
        except B24Error as error:
            errors.append(ChunkError(chunk.index, chunk.commands.keys, error))
            error.partial = so_far(chunk.index)
            raise
        except BaseException as error:  # from the caller's own on_token callback, say
            _attach(error, so_far(chunk.index))
            raise
        done.append(result)
        _merge(data, result)
        errors.extend(_chunk_errors(chunk, result))
        try:
            report(len(chunk.commands))
        except BaseException as error:  # the caller's progress callback
            _attach(error, so_far(chunk.index))
            raise
        if result.errors and settings.halt_on_error:
            return so_far(chunk.index)
    return so_far(len(plan))


def _chunk_errors(chunk: _Chunk, result: BatchResult[Any]) -> list[ChunkError]:
    """The chunk's errors: one for the whole chunk, or one per command ``isolate_errors`` found."""
    isolated = result.errors_by_key
    if isolated:
        return [ChunkError(chunk.index, (key,), error) for key, error in isolated.items()]
    return [ChunkError(chunk.index, chunk.commands.keys, error) for error in result.errors[:1]]


def _attach(error: BaseException, partial: ChunkedResult[Any]) -> None:
    """Put what was fetched on a foreign exception too, where it can hold an attribute."""
    with contextlib.suppress(AttributeError):
        error.partial = partial  # type: ignore[attr-defined]


def _send(client: _Client, chunk: _Chunk, settings: _Settings) -> BatchResult[Any]:
    key = settings.idempotency_key
    return execute(
        client,
        chunk.commands,
        chunk.body,
        request_id=f"{settings.request_id}.{chunk.index}",
        idempotency_key=None if key is None else f"{key}.{chunk.index}",
        result_type=settings.result_type,
        return_ajax_result=False,
        halt_on_error=settings.halt_on_error,
        isolate_errors=settings.isolate_errors,
        positions=chunk.positions,
    )


def _pairs(calls: object) -> tuple[bool, Iterator[tuple[Key, object]]]:
    """``(named, (key, row) pairs)`` for a dict of named rows or an iterable of rows."""
    if isinstance(calls, Mapping):
        refuse_js_object(calls)
        return True, iter(calls.items())
    if isinstance(calls, str | bytes) or not isinstance(calls, Iterable):
        raise SdkTypeError(
            f"calls is a {type(calls).__name__}; pass an iterable of rows or a dict of named rows"
        )
    return False, enumerate(calls)


def _merge(data: list[Any] | dict[str, Any], result: BatchResult[Any]) -> None:
    if isinstance(data, dict):
        data.update(result.data)
    else:
        data.extend(result.data)


# (global index, key, command, alias, lowest index it references)
_Entry = tuple[int, Key, Command, str | None, int]


def _plan(
    pairs: Iterator[tuple[Key, object]], *, named: bool, settings: _Settings
) -> Iterator[_Chunk]:
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
        alias = command_alias(command, str(key) if named else None, where, seen)
        low = index
        for path in references(command.params) if command.params else ():
            target = reference_target(path, defined, index, where, positional=False)
            if target < first_unsent:
                raise SdkError(
                    f"{where} references {path!r}, defined by a command more than chunk_size="
                    f"{size} commands back, in a batch already planned; a command must share "
                    f"a batch with the alias it references"
                )
            low = min(low, target)
        if alias is not None:
            defined[alias] = index
        buffer.append((index, key, command, alias, low))
        count = index + 1
        if len(buffer) >= 2 * size:
            chunk, buffer = _cut(buffer, size)
            first_unsent = buffer[0][0]
            yield _encoded(chunks, chunk, named, settings)
            chunks += 1
    if count == 0:
        raise SdkError("calls is empty: pass at least one command")
    while buffer:
        chunk, buffer = _cut(buffer, size)
        yield _encoded(chunks, chunk, named, settings)
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
        f"than chunk_size={size}; a command must share a batch with the alias it references, "
        f"so move them closer together or raise chunk_size (up to 50)"
    )


def _encoded(number: int, entries: list[_Entry], named: bool, settings: _Settings) -> _Chunk:
    commands = Commands(
        items=tuple(entry[2] for entry in entries),
        keys=tuple(entry[1] for entry in entries),
        aliases=tuple(entry[3] for entry in entries),
        named=named,
    )
    check_result_types(commands, settings.result_type)
    if settings.isolate_errors:
        check_isolation(commands)
    start = entries[0][0]
    return _Chunk(
        index=number,
        commands=commands,
        body=encode_batch(commands, halt_on_error=settings.halt_on_error),
        positions=range(start, start + len(entries)),
    )


class _Report:
    """Told after every chunk how many more commands are done; closed at the end."""

    def __init__(
        self,
        update: Callable[[int], object] | None = None,
        close: Callable[[], object] | None = None,
    ) -> None:
        self._update = update
        self._close = close

    def __call__(self, done: int) -> None:
        if self._update is not None:
            self._update(done)

    def close(self) -> None:
        if self._close is not None:
            self._close()


def _progress(progress: Progress, total: int | None) -> _Report:
    """The reporter for ``progress``: nothing, the caller's callback, or a tqdm bar."""
    if progress is None or progress is False:
        return _Report()
    if callable(progress):
        callback = progress
        counter = [0]

        def report(done: int) -> None:
            counter[0] += done
            callback(counter[0], total)

        return _Report(report)
    if progress is not True:
        raise SdkTypeError(f"progress={progress!r}: pass True, a callable (done, total), or None")
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        global _tqdm_hint_given
        if not _tqdm_hint_given:
            _tqdm_hint_given = True
            log.warning(
                "progress=True needs tqdm: pip install 'b24batch[progress]' "
                "(running without a progress bar)"
            )
        return _Report()
    bar = tqdm(total=total, unit="cmd", desc="b24batch")
    return _Report(bar.update, bar.close)
