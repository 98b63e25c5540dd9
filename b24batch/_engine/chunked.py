"""Running a call of any number of commands: plan chunks, keep a window in flight, merge.

One run loop for both protocols and both faces' ``make`` and ``iter``: ``plan.py`` cuts the
rows into prepared chunks (reading at most two chunks ahead), the ``Window`` sends each through
``execute`` (the client's limiters and retry policy), and the answers are merged in call order
or by name. With a journal (``journal.py``) each chunk's outcome is kept in a file, and a run
of the same job again reads back what landed and sends only the rest (see ``_send``). Never
sleeps on its own, never drops what it fetched.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any

import attrs

from b24batch._engine.build import Builder
from b24batch._engine.call_options import CallOptions
from b24batch._engine.execute import execute
from b24batch._engine.outcomes import (
    CallRecord,
    Stopped,
    interrupted,
    read_only,
    writes,
    writes_before_last,
)
from b24batch._engine.plan import Chunk, plan
from b24batch._engine.port import Client
from b24batch._engine.window import Outcome, Window
from b24batch._limits.policy import RateLimit
from b24batch._protocols.base import Answers, Protocol
from b24batch.commands import refuse_js_object
from b24batch.errors import AjaxError, B24Error, SdkTypeError
from b24batch.progress import Progress
from b24batch.progress import Report as _Report
from b24batch.progress import progress_report as _progress
from b24batch.results import BatchResult, ChunkedResult, ChunkError, Key

if TYPE_CHECKING:
    from b24batch._engine.journal import Journal, Stored

__all__ = ["SERIAL_NOTE", "iterate", "make"]

log = logging.getLogger("b24batch")

SERIAL_NOTE = "one batch at a time: halt_on_error=True"
"""What the progress bar says of a write job that ``halt_on_error`` keeps to one batch."""


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
    try:
        journal = _open(client, protocol, options, None)  # at the first next(): not before
    except BaseException:
        report.close()
        raise
    if journal is not None:
        options = _resumed(options, journal)
    record = CallRecord() if journal is None else _JournalRecord(journal, options)
    window = _window(client, options, record, journal)
    raises = options.raises(client)
    attached: BaseException | None = None
    try:
        chunks = plan(pairs, named=named, options=options, protocol=protocol)
        if journal is not None:
            chunks = _checked(chunks, journal)
        for outcome in window.run(_told(chunks, options, report)):
            if isinstance(outcome.error, Stopped):  # only after an interrupt: never sent
                continue
            if outcome.error is not None:
                # What was in flight with it still lands: keep it on the error.
                attached = outcome.error
                _attach(attached, _leftover(window, record, options, named, outcome))
                raise attached
            assert outcome.result is not None
            if raises and outcome.result.errors:
                window.stop()
                outcome.result.raise_for_errors()  # what landed meanwhile goes on .partial
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
        if journal is not None:
            window.drain()  # nothing may land in a closed journal
            journal.close()


def _open(
    client: Client, protocol: Protocol, options: CallOptions, chunks: list[Chunk] | None
) -> Journal | None:
    """The call's journal, locked and checked against the job (None without one)."""
    if options.journal is None:
        return None
    # Imported here, not at the top: the journal (and sqlite3 under it) is for jobs that pass
    # ``journal=``; every other call, and ``import b24batch``, does without it.
    from b24batch._engine.journal import Journal

    journal = Journal.open(options.journal)
    try:
        journal.begin(
            protocol=protocol,
            origin=client.origin,
            chunk_size=options.chunk_size,
            halt_on_error=options.halt_on_error,
            request_id=options.request_id,
            idempotency_key=options.idempotency_key,
            chunks=chunks,
        )
    except BaseException:
        journal.close()
        raise
    return journal


def _resumed(options: CallOptions, journal: Journal) -> CallOptions:
    """The options with the job's ids: a chunk sent again carries the key the portal saw."""
    return attrs.evolve(
        options, request_id=journal.request_id, idempotency_key=journal.idempotency_key
    )


def _checked(chunks: Iterator[Chunk], journal: Journal) -> Iterator[Chunk]:
    """The lazily planned chunks, each checked against the job's before it may be sent."""
    for chunk in chunks:
        journal.check(chunk)
        yield chunk


def _told(chunks: Iterator[Chunk], options: CallOptions, report: _Report) -> Iterator[Chunk]:
    """The chunks, saying once (an INFO line, and on the progress bar) when a write job goes
    one batch at a time because of ``halt_on_error``.

    With ``"auto"`` and ``halt_on_error=True`` a chunk with writes goes alone, so nothing is
    sent after a failed write (``_window``); a job of more than one chunk with a write among
    them is sequential, several times slower than its window. Said as the second chunk is
    reached, once per call: never for reads only, a fixed window or ``halt_on_error=False``.
    """
    if options.max_in_flight != "auto" or not options.halt_on_error:
        yield from chunks
        return
    writing = False
    for chunk in chunks:
        writing = writing or not read_only(chunk.commands)
        if writing and chunk.index > 0:
            log.info(
                "this job writes, so under halt_on_error=True its chunks go one batch at a "
                "time: nothing may be sent after a failed write. For a bulk job pass "
                "halt_on_error=False: max_in_flight batches go at once, and every error "
                "is collected"
            )
            report.note(SERIAL_NOTE)
            yield chunk
            yield from chunks
            return
        yield chunk


def _leftover(
    window: Window,
    record: CallRecord,
    options: CallOptions,
    named: bool,
    failed: Outcome | None = None,
) -> ChunkedResult[Any]:
    """What a lazy iteration that is raising has not handed out (for ``error.partial``): the
    chunks that landed meanwhile, by name or in call order as ``make`` gives them (even when
    none did), the chunk ``failed`` if an interrupt left it, and what was never sent.

    A chunk's own error leaves the chunks already handed to the window to go out and land,
    as ``make`` does; an interrupt (anything else) stops the call first.
    """
    if failed is None or not isinstance(failed.error, B24Error):
        record.stop()
    tally = _Tally({} if named else [], record, options)
    if failed is not None and not isinstance(failed.error, B24Error):
        tally.take(failed)  # interrupted: in doubt if it was sent, else not executed
    for outcome in window.drain():
        tally.take(outcome)
    for chunk in window.left():
        tally.abandon(chunk)
    return tally.result()


def _window(
    client: Client, options: CallOptions, record: CallRecord, journal: Journal | None = None
) -> Window:
    """The call's window: its size, the client's bucket for ``"auto"``, and which chunks go
    alone (writes under ``halt_on_error`` with ``"auto"``: nothing is sent after a failure)."""
    bucket = client.limiter.bucket
    limit = bucket.limit if bucket is not None else RateLimit()
    auto_halts = options.max_in_flight == "auto" and options.halt_on_error
    return Window(
        lambda chunk: _send(client, chunk, options, record, journal),
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
    journal = _open(client, protocol, options, chunks)  # before anything is sent
    if journal is not None:
        options = _resumed(options, journal)
    report = _progress(progress, len(rows))
    try:
        result = _run(client, chunks, options, report, {} if named else [], journal)
    finally:
        report.close()
        if journal is not None:
            journal.close()
    return result.raise_for_errors() if options.raises(client) else result


def _run(
    client: Client,
    chunks: list[Chunk],
    options: CallOptions,
    report: _Report,
    data: list[Any] | dict[str, Any],
    journal: Journal | None = None,
) -> ChunkedResult[Any]:
    """Send the planned chunks through the window and merge what they return (``make``)."""
    record = CallRecord() if journal is None else _JournalRecord(journal, options)
    window = _window(client, options, record, journal)
    tally = _Tally(data, record, options)
    raised: BaseException | None = None
    try:
        for outcome in window.run(_told(iter(chunks), options, report)):
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
    if journal is not None:  # a halt: what an earlier run got for them is still theirs
        _read_back(chunks[window.sent :], journal, options, tally, report)
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
        for chunk in chunks:
            if chunk.index not in self._taken:
                self.abandon(chunk)
        skipped = [key for result in self._done for key in result.not_executed]
        return ChunkedResult(
            data=self.data,
            errors=tuple(self._errors),
            chunks=tuple(self._done),
            not_executed=(*skipped, *self._unsent),
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
    client: Client,
    chunk: Chunk,
    options: CallOptions,
    record: CallRecord,
    journal: Journal | None = None,
) -> BatchResult[Any]:
    """One chunk's result: sent, or with a journal perhaps read back or left in doubt.

    What a journal holds of the chunk decides: ``answered`` is rebuilt from its answers and
    not sent; ``sending`` (no answer recorded: it may have run) and ``failed`` with writes
    that may have run are *in doubt*: sent again only when a repeat is safe (read-only, or
    an idempotency key and no write before the last command) or the caller passed
    ``in_doubt="resend"``, else reported as a ``JOURNAL_IN_DOUBT`` error whose
    ``maybe_executed`` names the writes; ``failed`` with nothing that may have run, and
    ``planned``, are sent. The journal records ``sending`` as the request leaves (the
    record's hook), then the answers or the raised error.
    """
    if journal is None:
        return execute(
            client,
            chunk.prepared,
            options,
            index=chunk.index,
            positions=chunk.positions,
            record=record,
        )
    stored = journal.stored(chunk.index)
    if stored.state == "answered":
        return _rebuilt(chunk, stored, options)
    if _in_doubt(stored) and options.in_doubt == "report" and not _repeatable(chunk, options):
        return _doubtful(chunk, stored, options)
    seen: list[tuple[Answers, int, float]] = []
    try:
        result = execute(
            client,
            chunk.prepared,
            options,
            index=chunk.index,
            positions=chunk.positions,
            record=record,
            observe=lambda *built: seen.append(built),
        )
    except B24Error as error:  # Ctrl+C or Stopped leave it as it was: 'sending' if it left
        journal.failed(chunk.index, error)
        raise
    journal.answered(chunk.index, *seen[-1])
    return result


def _in_doubt(stored: Stored) -> bool:
    if stored.state == "sending":
        return True
    return (
        stored.state == "failed" and stored.error is not None and bool(stored.error.maybe_executed)
    )


def _repeatable(chunk: Chunk, options: CallOptions) -> bool:
    """The package's rule for a repeat (``send.py``): read-only, or an idempotency key and
    no write before the last command."""
    _, key = options.ids(chunk.index)
    commands = chunk.commands
    return read_only(commands) or (key is not None and not writes_before_last(commands))


def _builder(chunk: Chunk, options: CallOptions) -> Builder:
    request_id, _ = options.ids(chunk.index)
    return Builder(
        chunk.commands,
        request_id,
        options.result_type,
        options.return_ajax_result,
        chunk.positions,
    )


def _rebuilt(chunk: Chunk, stored: Stored, options: CallOptions) -> BatchResult[Any]:
    """An answered chunk's result, from its recorded answers, typed as this call asks."""
    assert stored.answers is not None
    build = _builder(chunk, options)
    return build(stored.answers, attempts=stored.attempts, waited=stored.waited)


def _doubtful(chunk: Chunk, stored: Stored, options: CallOptions) -> BatchResult[Any]:
    """The result of an in-doubt chunk not sent again: one error, its writes maybe run."""
    request_id, _ = options.ids(chunk.index)
    if stored.state == "failed" and stored.error is not None:
        why = f"failed in an earlier run of this job ({stored.error})"
        maybe = stored.error.maybe_executed
    else:
        why = "was sent by an earlier run of this job, which stopped before its answer"
        maybe = writes(chunk.commands)
    error = AjaxError(
        f"chunk {chunk.index} {why}; it may have been executed, so it is not sent again. "
        f"Check the portal, then resume with in_doubt='resend' to send it again",
        code="JOURNAL_IN_DOUBT",
        status=0,
        request_id=request_id,
        outcome_unknown=True,
    )
    error.set_maybe_executed(maybe, "unknown")
    answers = Answers(status=0, time=None, error=error)
    return _builder(chunk, options)(answers, attempts=0, waited=0.0)


def _read_back(
    chunks: Sequence[Chunk], journal: Journal, options: CallOptions, tally: _Tally, report: _Report
) -> list[Chunk]:
    """Take the recorded answers of chunks a halt kept from the window; the rest, unsent.

    A halt stops sending, not reading: a chunk an earlier run had answered (it was in flight
    with the one that failed) ran, and must not be reported as not executed.
    """
    unsent: list[Chunk] = []
    for chunk in chunks:
        stored = journal.stored(chunk.index)
        if stored.state == "answered":
            tally.take(Outcome(chunk, result=_rebuilt(chunk, stored, options)))
            report(len(chunk.commands))
        elif stored.state == "planned" or (stored.state == "failed" and not _in_doubt(stored)):
            unsent.append(chunk)
        else:  # left in doubt by an earlier run: neither sent nor silently dropped
            tally.take(Outcome(chunk, result=_doubtful(chunk, stored, options)))
    return unsent


class _JournalRecord(CallRecord):
    """The call's record, which also makes the journal say ``sending`` as a chunk leaves."""

    def __init__(self, journal: Journal, options: CallOptions) -> None:
        super().__init__()
        self._journal = journal
        self._options = options

    def sending(self, index: int | None) -> None:
        super().sending(index)
        if index is None:
            return
        request_id, key = self._options.ids(index)
        try:
            self._journal.sending(index, request_id, key)
        except BaseException:
            self.withdraw(index)  # it never left: not sent
            raise


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
