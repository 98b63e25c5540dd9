"""``BatchByChunkV3`` and ``BatchByChunkV2``: any number of commands, sent in chunks of up to 50.

One run loop for both protocols: ``planning.py`` cuts the rows into encoded chunks (reading at
most two chunks ahead), each chunk goes through its protocol's execute — the client's limiters
and retry policy — and the answers are merged in call order or by name. Never sleeps on its
own, never drops what it fetched.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sized
from typing import TYPE_CHECKING, Any, TypeVar, overload

import attrs

from b24batch._limits.policy import RateLimit
from b24batch.batch import (
    check_options,
    checked_idempotency_key,
    checked_request_id,
    execute,
)
from b24batch.batch_v2 import execute_v2
from b24batch.commands import MAX_COMMANDS, refuse_js_object
from b24batch.errors import B24Error, SdkError, SdkTypeError
from b24batch.planning import CLASSIC, REST_V3, Chunk, Rules, plan
from b24batch.progress import Progress
from b24batch.progress import Report as _Report
from b24batch.progress import progress_report as _progress
from b24batch.results import BatchResult, ChunkedResult, ChunkError, Key
from b24batch.sending import read_only
from b24batch.window import InFlight, Outcome, Window, checked_in_flight

if TYPE_CHECKING:
    from b24batch.client import _Client

__all__ = ["BatchByChunkV2", "BatchByChunkV3", "Progress", "Settings"]

log = logging.getLogger("b24batch")

T = TypeVar("T")

_SUFFIX_ROOM = 10  # ".<chunk number>" appended to request ids and idempotency keys


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
        max_in_flight: InFlight = ...,
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
        max_in_flight: InFlight = ...,
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
        max_in_flight: InFlight = ...,
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
        max_in_flight: InFlight = "auto",
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
        settings = Settings.checked(
            chunk_size,
            halt_on_error,
            request_id,
            idempotency_key,
            result_type,
            isolate_errors,
            max_in_flight,
        )
        chunks = list(plan(iter(rows), named=named, settings=settings, rules=REST_V3))
        report = _progress(progress, len(rows))
        try:
            return _run(self._client, chunks, settings, report, {} if named else [])
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
        max_in_flight: InFlight = ...,
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
        max_in_flight: InFlight = ...,
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
        max_in_flight: InFlight = ...,
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
        max_in_flight: InFlight = "auto",
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
        settings = Settings.checked(
            chunk_size,
            halt_on_error,
            request_id,
            idempotency_key,
            result_type,
            isolate_errors,
            max_in_flight,
        )
        total = len(calls) if isinstance(calls, Sized) else None
        return _iter(self._client, pairs, named, settings, _progress(progress, total), REST_V3)


class BatchByChunkV2:
    """Runs any number of classic commands as consecutive batches of at most ``chunk_size``.

    Every command is sent under its global key — your name, else its ``as``, else its position
    in the whole input — so ``$result[KEY]`` references mean the same in every chunk, and a
    command is kept in the same chunk as the commands it references.

    Example:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     calls = [("crm.deal.add", {"fields": {"TITLE": f"D{n}"}}) for n in range(120)]
        ...     result = BatchByChunkV2(b24).make(calls)
        ...     result.data[:3], [len(chunk.positions) for chunk in result.chunks]
        ([1, 2, 3], [50, 50, 20])
    """

    def __init__(self, client: _Client) -> None:
        """Args: client: the portal client (B24Hook or B24OAuth) the chunks go through."""
        self._client = client

    def make(
        self,
        calls: object,
        *,
        chunk_size: int = MAX_COMMANDS,
        halt_on_error: bool = True,
        result_type: Any = None,
        request_id: str | None = None,
        progress: Progress = None,
        max_in_flight: InFlight = "auto",
    ) -> ChunkedResult[Any]:
        """Send all of ``calls``, ``chunk_size`` at a time, and merge the results.

        Every row is checked and every chunk planned and encoded before the first request.

        Args:
            calls: A list (or any iterable) of rows, or a dict of named rows, in the forms
                :meth:`BatchV2.make` takes; any number of them.
            chunk_size: Commands per batch, 1 to 50. A command is kept in the same batch as
                the commands it references, so a chunk can end early.
            halt_on_error: Each chunk is sent with ``halt=1``, and the first failed command
                stops the call: the commands after it, in its chunk and in the chunks not
                sent, are in ``not_executed``. False runs every command of every chunk.
            result_type: As in :meth:`BatchV2.make`.
            request_id: Base id; chunk ``k`` is sent as ``{request_id}.{k}``.
            progress: True for a tqdm progress bar, or a callable ``(done_commands, total)``.

        Returns:
            A :class:`ChunkedResult`: one :class:`ChunkError` per failed command, with its
            global key; results of every command that succeeded, in call order (None where a
            command has none) or by name.

        Raises:
            SdkError: Bad input or options, found before anything is sent.
            B24Error: What a chunk raised, with the chunks before it in ``error.partial``.
        """
        named, pairs = _pairs(calls)
        rows = list(pairs)
        settings = Settings.checked(
            chunk_size, halt_on_error, request_id, None, result_type, False, max_in_flight
        )
        chunks = list(plan(iter(rows), named=named, settings=settings, rules=CLASSIC))
        report = _progress(progress, len(rows))
        try:
            return _run(self._client, chunks, settings, report, {} if named else [])
        finally:
            report.close()

    def iter(
        self,
        calls: Iterable[object] | Mapping[str, object],
        *,
        chunk_size: int = MAX_COMMANDS,
        halt_on_error: bool = True,
        result_type: Any = None,
        request_id: str | None = None,
        progress: Progress = None,
        max_in_flight: InFlight = "auto",
    ) -> Iterator[BatchResult[Any]]:
        """Yield one :class:`BatchResult` per chunk as it arrives, reading ``calls`` lazily.

        As :meth:`BatchByChunkV3.iter`; arguments as for :meth:`make`. With
        ``halt_on_error`` iteration stops after the chunk with the first failed command.
        """
        named, pairs = _pairs(calls)
        settings = Settings.checked(
            chunk_size, halt_on_error, request_id, None, result_type, False, max_in_flight
        )
        total = len(calls) if isinstance(calls, Sized) else None
        return _iter(self._client, pairs, named, settings, _progress(progress, total), CLASSIC)


def _iter(
    client: _Client,
    pairs: Iterator[tuple[Key, object]],
    named: bool,
    settings: Settings,
    report: _Report,
    rules: Rules,
) -> Iterator[BatchResult[Any]]:
    window = _window(client, settings)
    try:
        for outcome in window.run(plan(pairs, named=named, settings=settings, rules=rules)):
            if outcome.error is not None:
                # What was in flight with it still lands: keep it on the error.
                _attach(outcome.error, _landed(window.drain(), named))
                raise outcome.error
            assert outcome.result is not None
            yield outcome.result
            report(len(outcome.chunk.commands))
            if outcome.result.errors and settings.halt_on_error:
                window.stop()  # what is already in flight is still yielded
    finally:
        report.close()


def _landed(outcomes: list[Outcome], named: bool) -> ChunkedResult[Any]:
    """The chunks that completed while a lazy iteration was raising (for ``error.partial``):
    their data by name or in call order, as ``make`` gives it, even when none landed."""
    results = [outcome.result for outcome in outcomes if outcome.result is not None]
    data: list[Any] | dict[str, Any] = {} if named else []
    for result in results:
        _merge(data, result)
    return ChunkedResult(data=data, chunks=tuple(results))


def _window(client: _Client, settings: Settings) -> Window:
    """The call's window: its size, the client's bucket for ``"auto"``, and which chunks go
    alone (writes under ``halt_on_error`` with ``"auto"``: nothing is sent after a failure)."""
    bucket = client.limiter.bucket
    limit = bucket.limit if bucket is not None else RateLimit()
    auto_halts = settings.max_in_flight == "auto" and settings.halt_on_error
    return Window(
        lambda chunk: _send(client, chunk, settings),
        settings.max_in_flight,
        rate=(limit.burst, limit.per_second),
        available=bucket.available if bucket is not None else lambda: 0.0,
        alone=(lambda chunk: not read_only(chunk.commands))
        if auto_halts
        else (lambda chunk: False),
    )


@attrs.frozen(kw_only=True)
class Settings:
    chunk_size: int
    halt_on_error: bool
    request_id: str
    idempotency_key: str | None
    result_type: Any
    isolate_errors: bool
    max_in_flight: InFlight = 1

    @classmethod
    def checked(
        cls,
        chunk_size: object,
        halt_on_error: object,
        request_id: object,
        idempotency_key: object,
        result_type: Any,
        isolate_errors: object = False,
        max_in_flight: object = 1,
    ) -> Settings:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
            raise SdkTypeError(f"chunk_size={chunk_size!r}: pass a whole number from 1 to 50")
        if not 1 <= chunk_size <= MAX_COMMANDS:
            raise SdkError(f"chunk_size={chunk_size}: a batch takes 1 to 50 commands")
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
            max_in_flight=checked_in_flight(max_in_flight),
        )


def _run(
    client: _Client,
    chunks: list[Chunk],
    settings: Settings,
    report: _Report,
    data: list[Any] | dict[str, Any],
) -> ChunkedResult[Any]:
    """Send the planned chunks through the window and merge what they return (``make``)."""
    done: list[BatchResult[Any]] = []
    errors: list[ChunkError] = []
    window = _window(client, settings)

    def so_far() -> ChunkedResult[Any]:
        # The keys of the chunks never sent, gathered only when the run stops early:
        # gathering them for every chunk made planning quadratic in the number of chunks.
        # A classic chunk's own not_executed (after a halt) comes first: it is earlier.
        skipped = tuple(key for result in done for key in result.not_executed)
        unsent = tuple(key for later in chunks[window.sent :] for key in later.commands.keys)
        return ChunkedResult(
            data=data, errors=tuple(errors), chunks=tuple(done), not_executed=skipped + unsent
        )

    def take(outcome: Outcome) -> BaseException | None:
        chunk = outcome.chunk
        if outcome.error is not None:
            if isinstance(outcome.error, B24Error):
                errors.append(ChunkError(chunk.index, chunk.commands.keys, outcome.error))
            return outcome.error
        assert outcome.result is not None
        done.append(outcome.result)
        _merge(data, outcome.result)
        errors.extend(_chunk_errors(chunk, outcome.result))
        return None

    raised: BaseException | None = None
    try:
        for outcome in window.run(iter(chunks)):
            failure = take(outcome)
            if failure is not None:  # stop sending; what is in flight still lands, and counts
                raised = raised or failure
                window.stop()
                continue
            if raised is None:
                report(len(outcome.chunk.commands))
            assert outcome.result is not None
            if outcome.result.errors and settings.halt_on_error:
                window.stop()
    except BaseException as error:  # the caller's progress callback, or Ctrl+C while waiting
        raised = raised or error
        for outcome in window.drain():
            take(outcome)
    if raised is not None:
        if isinstance(raised, B24Error):
            raised.partial = so_far()
        else:  # from the caller's own callback, say
            _attach(raised, so_far())
        raise raised
    return so_far()


def _chunk_errors(chunk: Chunk, result: BatchResult[Any]) -> list[ChunkError]:
    """The chunk's errors: one for the whole chunk, or one per command when the failing
    commands are known (a classic chunk, or what ``isolate_errors`` found)."""
    isolated = result.errors_by_key
    if isolated:
        return [ChunkError(chunk.index, (key,), error) for key, error in isolated.items()]
    return [ChunkError(chunk.index, chunk.commands.keys, error) for error in result.errors[:1]]


def _attach(error: BaseException, partial: ChunkedResult[Any]) -> None:
    """Put what was fetched on a foreign exception too, where it can hold an attribute."""
    with contextlib.suppress(AttributeError):
        error.partial = partial  # type: ignore[attr-defined]


def _send(client: _Client, chunk: Chunk, settings: Settings) -> BatchResult[Any]:
    request_id = f"{settings.request_id}.{chunk.index}"
    if chunk.planned is not None:
        return execute_v2(
            client,
            chunk.planned,
            request_id=request_id,
            result_type=settings.result_type,
            return_ajax_result=False,
            positions=chunk.positions,
        )
    assert chunk.body is not None
    key = settings.idempotency_key
    return execute(
        client,
        chunk.commands,
        chunk.body,
        request_id=request_id,
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
