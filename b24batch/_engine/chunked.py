"""Running a call of any number of commands: plan chunks, keep a window in flight, merge.

One run loop for both protocols and both faces' ``make`` and ``iter``: ``plan.py`` cuts the
rows into prepared chunks (reading at most two chunks ahead), the ``Window`` sends each through
``execute`` (the client's limiters and retry policy), and the answers are merged in call order
or by name. Never sleeps on its own, never drops what it fetched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sized
from typing import Any

from b24batch._engine.call_options import CallOptions
from b24batch._engine.execute import execute
from b24batch._engine.outcomes import read_only
from b24batch._engine.plan import Chunk, plan
from b24batch._engine.port import Client
from b24batch._engine.window import Outcome, Window
from b24batch._limits.policy import RateLimit
from b24batch._protocols.base import Protocol
from b24batch.commands import refuse_js_object
from b24batch.errors import B24Error, SdkTypeError
from b24batch.progress import Progress
from b24batch.progress import Report as _Report
from b24batch.progress import progress_report as _progress
from b24batch.results import BatchResult, ChunkedResult, ChunkError, Key

__all__ = ["iterate", "make"]


def iterate(
    client: Client,
    protocol: Protocol,
    calls: Iterable[object] | Mapping[str, object],
    options: CallOptions,
    progress: Progress,
) -> Iterator[BatchResult[Any]]:
    """Plan ``calls`` lazily and yield each chunk's result as it lands (the faces' ``iter``).

    Raises:
        SdkTypeError: ``calls`` is not an iterable of rows or a dict (at once).
        SdkError: A bad row, when its chunk is planned (after the chunks before it).
        B24Error: What a chunk raised, with what landed meanwhile in ``error.partial``.
    """
    named, pairs = _pairs(calls)
    total = len(calls) if isinstance(calls, Sized) else None
    return _iter(client, protocol, pairs, named, options, _progress(progress, total))


def _iter(
    client: Client,
    protocol: Protocol,
    pairs: Iterator[tuple[Key, object]],
    named: bool,
    options: CallOptions,
    report: _Report,
) -> Iterator[BatchResult[Any]]:
    window = _window(client, options)
    try:
        chunks = plan(pairs, named=named, options=options, protocol=protocol)
        for outcome in window.run(chunks):
            if outcome.error is not None:
                # What was in flight with it still lands: keep it on the error.
                _attach(outcome.error, _landed(window.drain(), named))
                raise outcome.error
            assert outcome.result is not None
            yield outcome.result
            report(len(outcome.chunk.commands))
            if outcome.result.errors and options.halt_on_error:
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


def _window(client: Client, options: CallOptions) -> Window:
    """The call's window: its size, the client's bucket for ``"auto"``, and which chunks go
    alone (writes under ``halt_on_error`` with ``"auto"``: nothing is sent after a failure)."""
    bucket = client.limiter.bucket
    limit = bucket.limit if bucket is not None else RateLimit()
    auto_halts = options.max_in_flight == "auto" and options.halt_on_error
    return Window(
        lambda chunk: _send(client, chunk, options),
        options.max_in_flight,
        rate=(limit.burst, limit.per_second),
        available=bucket.available if bucket is not None else lambda: 0.0,
        alone=(lambda chunk: not read_only(chunk.commands))
        if auto_halts
        else (lambda chunk: False),
    )


def make(
    client: Client, protocol: Protocol, calls: object, options: CallOptions, progress: Progress
) -> ChunkedResult[Any]:
    """Plan every chunk of ``calls``, send them through the window, merge (the faces' ``make``).

    Raises:
        SdkError: Bad input, found before anything is sent.
        B24Error: What a chunk raised, with what landed in ``error.partial``.
    """
    named, pairs = _pairs(calls)
    rows = list(pairs)
    chunks = list(plan(iter(rows), named=named, options=options, protocol=protocol))
    report = _progress(progress, len(rows))
    try:
        return _run(client, chunks, options, report, {} if named else [])
    finally:
        report.close()


def _run(
    client: Client,
    chunks: list[Chunk],
    options: CallOptions,
    report: _Report,
    data: list[Any] | dict[str, Any],
) -> ChunkedResult[Any]:
    """Send the planned chunks through the window and merge what they return (``make``)."""
    done: list[BatchResult[Any]] = []
    errors: list[ChunkError] = []
    window = _window(client, options)

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
            if outcome.result.errors and options.halt_on_error:
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


def _send(client: Client, chunk: Chunk, options: CallOptions) -> BatchResult[Any]:
    return execute(client, chunk.prepared, options, index=chunk.index, positions=chunk.positions)


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
