"""Running a call of any number of commands: plan chunks, keep a window in flight, merge.

One run loop for both protocols and both faces' ``make`` and ``iter``: ``plan.py`` cuts the
rows into prepared chunks (reading at most two chunks ahead), the ``Window`` sends each through
``execute`` (the client's limiters and retry policy), and the answers are merged in call order
or by name. Never sleeps on its own, never drops what it fetched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from typing import Any

from b24batch._engine.call_options import CallOptions
from b24batch._engine.execute import execute
from b24batch._engine.outcomes import CallRecord, Stopped, interrupted, read_only
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
    record = CallRecord()
    window = _window(client, options, record)
    attached: BaseException | None = None
    try:
        chunks = plan(pairs, named=named, options=options, protocol=protocol)
        for outcome in window.run(chunks):
            if isinstance(outcome.error, Stopped):  # only after an interrupt: never sent
                continue
            if outcome.error is not None:
                # What was in flight with it still lands: keep it on the error.
                attached = outcome.error
                _attach(attached, _leftover(window, record, options, named, outcome))
                raise attached
            assert outcome.result is not None
            yield outcome.result
            report(len(outcome.chunk.commands))
            if outcome.result.errors and options.halt_on_error:
                window.stop()  # what is already in flight is still yielded
    except BaseException as error:  # Ctrl+C while waiting for an answer, say
        if error is not attached and not isinstance(error, GeneratorExit):
            _attach(error, _leftover(window, record, options, named))
        raise
    finally:
        report.close()


def _leftover(
    window: Window,
    record: CallRecord,
    options: CallOptions,
    named: bool,
    failed: Outcome | None = None,
) -> ChunkedResult[Any]:
    """What a lazy iteration that is raising has not handed out (for ``error.partial``): the
    chunks that landed meanwhile, by name or in call order as ``make`` gives them (even when
    none did), the chunk ``failed`` if an interrupt left it, and what was never sent."""
    record.stop()
    tally = _Tally({} if named else [], record, options)
    if failed is not None and not isinstance(failed.error, B24Error):
        tally.take(failed)  # interrupted: in doubt if it was sent, else not executed
    for outcome in window.drain():
        tally.take(outcome)
    for chunk in window.left():
        tally.abandon(chunk)
    return tally.result()


def _window(client: Client, options: CallOptions, record: CallRecord) -> Window:
    """The call's window: its size, the client's bucket for ``"auto"``, and which chunks go
    alone (writes under ``halt_on_error`` with ``"auto"``: nothing is sent after a failure)."""
    bucket = client.limiter.bucket
    limit = bucket.limit if bucket is not None else RateLimit()
    auto_halts = options.max_in_flight == "auto" and options.halt_on_error
    return Window(
        lambda chunk: _send(client, chunk, options, record),
        options.max_in_flight,
        rate=(limit.burst, limit.per_second),
        available=bucket.available if bucket is not None else lambda: 0.0,
        alone=(lambda chunk: not read_only(chunk.commands))
        if auto_halts
        else (lambda chunk: False),
        interrupt=record.stop,
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
    record = CallRecord()
    window = _window(client, options, record)
    tally = _Tally(data, record, options)
    raised: BaseException | None = None
    try:
        for outcome in window.run(iter(chunks)):
            failure = tally.take(outcome)
            if failure is not None:  # stop sending; what is in flight still lands, and counts
                raised = raised or failure
                window.stop()
                if not isinstance(failure, B24Error):
                    record.stop()  # an interrupt: nothing more leaves, not even what waits
                continue
            if outcome.result is None:  # stopped before it went out: not executed
                continue
            if raised is None:
                report(len(outcome.chunk.commands))
            if outcome.result.errors and options.halt_on_error:
                window.stop()
    except BaseException as error:  # the caller's progress callback, or Ctrl+C while waiting
        raised = raised or error
        record.stop()
        for outcome in window.drain():
            tally.take(outcome)
    # The chunks never taken, gathered once, now: gathering them after every chunk made
    # planning quadratic in the number of chunks.
    result = tally.result(chunks)
    if raised is not None:
        if isinstance(raised, B24Error):
            raised.partial = result
        else:  # Ctrl+C, or the caller's own callback
            _attach(raised, result)
        raise raised
    return result


class _Tally:
    """Where every command of a chunked call stands, from the outcomes of its chunks: each in
    ``data`` (executed), an error (failed, or in doubt: ``maybe_executed``), or
    ``not_executed`` (a halt skipped it, or it was never sent)."""

    def __init__(
        self, data: list[Any] | dict[str, Any], record: CallRecord, options: CallOptions
    ) -> None:
        self.data = data
        self._record = record
        self._options = options
        self._done: list[BatchResult[Any]] = []
        self._errors: list[ChunkError] = []
        self._unsent: list[Key] = []
        self._taken: set[int] = set()

    def take(self, outcome: Outcome) -> BaseException | None:
        """Count one chunk's outcome; the exception it raised, if any, is returned."""
        chunk, error = outcome.chunk, outcome.error
        self._taken.add(chunk.index)
        if error is None:
            assert outcome.result is not None
            self._done.append(outcome.result)
            _merge(self.data, outcome.result)
            self._errors.extend(_chunk_errors(chunk, outcome.result))
            return None
        if isinstance(error, Stopped):  # the call was stopped before it went out
            self._unsent.extend(chunk.commands.keys)
            return None
        if isinstance(error, B24Error):
            self._errors.append(ChunkError(chunk.index, chunk.commands.keys, error))
        else:  # Ctrl+C, or the caller's exception, while it was out
            self.abandon(chunk)
        return error

    def abandon(self, chunk: Chunk) -> None:
        """Count a chunk whose outcome the call never took: in doubt if it was sent, else not
        executed."""
        self._taken.add(chunk.index)
        error = self._doubt(chunk)
        if error is None:
            self._unsent.extend(chunk.commands.keys)
        else:
            self._errors.append(error)

    def result(self, chunks: Sequence[Chunk] = ()) -> ChunkedResult[Any]:
        """What the chunks gave. Each of ``chunks`` whose outcome was never taken (never sent,
        or parted from the call by an interrupt as it went out or landed) is in doubt if it
        was sent, else not executed: nothing is left out, whatever moment Ctrl+C chose.

        A classic chunk's own ``not_executed`` (after a halt) comes first: it is earlier.
        """
        skipped = [key for result in self._done for key in result.not_executed]
        errors, unsent = list(self._errors), list(self._unsent)
        for chunk in chunks:
            if chunk.index in self._taken:
                continue
            error = self._doubt(chunk)
            if error is None:
                unsent.extend(chunk.commands.keys)
            else:
                errors.append(error)
        return ChunkedResult(
            data=self.data,
            errors=tuple(errors),
            chunks=tuple(self._done),
            not_executed=(*skipped, *unsent),
        )

    def _doubt(self, chunk: Chunk) -> ChunkError | None:
        if not self._record.was_sent(chunk.index):
            return None
        request_id, _ = self._options.ids(chunk.index)
        error = interrupted(chunk.prepared, request_id)
        return ChunkError(chunk.index, chunk.commands.keys, error)


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


def _send(
    client: Client, chunk: Chunk, options: CallOptions, record: CallRecord
) -> BatchResult[Any]:
    return execute(
        client,
        chunk.prepared,
        options,
        index=chunk.index,
        positions=chunk.positions,
        record=record,
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
