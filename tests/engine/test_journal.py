"""A chunked call with a journal resumes where it stopped (#21 part 2), over the FakePortal.

Each test runs a job, stops it the way a job stops (a failed chunk, Ctrl+C, a chunk left in
doubt), runs the same call again on the same journal, and checks by the portal's own records
what ran, and by the result that every command is accounted for.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b24batch import (
    AjaxError,
    AuthError,
    B24Error,
    B24Hook,
    BatchByChunkV2,
    BatchByChunkV3,
    FieldError,
    OperatingLimitError,
    RateLimitError,
    SdkError,
    Time,
)
from b24batch._engine.journal import (
    SCHEMA_VERSION,
    Journal,
    answers_from_json,
    answers_json,
    summary,
)
from b24batch._protocols.base import Answers
from b24batch.testing import FakePortal, Fault
from tests.support.interrupts import BOUND, interrupt, when


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where the job's journal goes."""
    return tmp_path / "import.journal"


def _adds(count: int, prefix: str = "T") -> list[Any]:
    return [("tasks.task.add", {"fields": {"title": f"{prefix}{n}"}}) for n in range(count)]


def _gets(count: int) -> list[Any]:
    return [("tasks.task.get", {"id": n + 1}) for n in range(count)]


def _set_state(path: Path, index: int, state: str) -> None:
    """Leave chunk ``index`` as a killed run would have (the test's own edit of the file)."""
    with sqlite3.connect(path) as db:
        db.execute("UPDATE chunk SET state = ?, answer = NULL WHERE idx = ?", (state, index))


def test_a_job_with_a_journal_gives_the_same_result_as_without(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """A journal changes nothing of a run that goes through: data in call order."""
    result = BatchByChunkV3(client).make(_adds(120), journal=path, max_in_flight=4)
    assert result.is_success
    assert [entry["item"]["title"] for entry in result.data] == [f"T{n}" for n in range(120)]
    assert summary(path)["chunks"] == {"planned": 0, "answered": 3, "failed": 0, "sending": 0}


def test_a_complete_journal_returns_the_stored_result_and_sends_nothing(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """Run twice: the second run reads every chunk back; the portal sees no new request."""
    first = BatchByChunkV3(client).make(_adds(120), journal=path)
    sent = len(portal.requests)
    again = BatchByChunkV3(client).make(_adds(120), journal=path)
    assert len(portal.requests) == sent
    assert again.data == first.data
    assert [chunk.request_id for chunk in again.chunks] == [c.request_id for c in first.chunks]
    assert len(portal.tasks) == 120


def test_a_resumed_result_is_typed_by_the_callers_result_type(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """The journal keeps answers, not typed results: a resume structures them afresh."""
    BatchByChunkV3(client).make(_adds(3), journal=path)
    again = BatchByChunkV3(client).make(_adds(3), journal=path, result_type=dict[str, Any])
    assert again.data == [{"item": task} for task in portal.tasks.values()]


def test_a_chunk_refused_before_it_ran_is_sent_again_on_resume(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """A 503 QUERY_LIMIT_EXCEEDED raises (nothing of the chunk ran); the resume sends that
    chunk and the ones never sent, and each command ran exactly once."""
    portal.inject(Fault.delay(0.0))
    portal.inject(Fault.rate_limited())
    with pytest.raises(B24Error) as raised:
        BatchByChunkV3(client).make(_adds(150), journal=path, max_in_flight=1)
    assert len(raised.value.partial.data) == 50  # type: ignore[union-attr]
    assert summary(path)["failed"] == [1]
    result = BatchByChunkV3(client).make(_adds(150), journal=path, max_in_flight=1)
    assert result.is_success
    assert len(result.data) == 150
    assert sorted(task["title"] for task in portal.tasks.values()) == sorted(
        f"T{n}" for n in range(150)
    )


def test_after_ctrl_c_the_chunk_on_the_wire_is_in_doubt_and_not_repeated(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """Ctrl+C while chunk 1 is on the wire: the resume does not send it again, lists its
    writes in maybe_executed, and runs every other chunk once."""
    portal.inject(Fault.delay(0.0))
    portal.inject(Fault.delay(1.0))
    when(lambda: len(portal.requests) >= 2, interrupt)
    with pytest.raises(KeyboardInterrupt):
        BatchByChunkV3(client).make(_adds(200), journal=path, max_in_flight=1, halt_on_error=False)
    assert summary(path)["in_doubt"] == [1]
    _wait_for(lambda: len(portal.tasks) == 100)
    result = BatchByChunkV3(client).make(
        _adds(200), journal=path, max_in_flight=1, halt_on_error=False
    )
    assert not result.is_success
    assert result.maybe_executed == tuple(range(50, 100))
    assert [error.error.code for error in result.errors] == ["JOURNAL_IN_DOUBT"]  # type: ignore[attr-defined]
    assert len(result.data) == 150
    assert len(portal.tasks) == 200  # every command ran once; none twice
    assert summary(path)["in_doubt"] == [1]  # still in doubt: a later run may resend it


def test_a_portal_that_goes_down_mid_job_is_resumed_when_it_is_back(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """The portal stops with chunks in flight: the resume after it is back runs what surely
    did not run, reports what may have, and runs nothing twice; 'resend' runs the rest."""
    titles = [f"T{n}" for n in range(200)]
    for _ in range(8):
        portal.inject(Fault.delay(0.3))
    when(lambda: len(portal.requests) >= 3, portal.stop)
    with pytest.raises(B24Error):
        BatchByChunkV3(client).make(
            _adds(200), journal=path, chunk_size=10, max_in_flight=4, halt_on_error=False
        )
    _wait_for(lambda: not portal.running)
    stopped = summary(path)
    assert stopped["failed"] or stopped["in_doubt"]
    portal.start()
    result = BatchByChunkV3(client).make(
        _adds(200), journal=path, chunk_size=10, max_in_flight=4, halt_on_error=False
    )
    ran = [task["title"] for task in portal.tasks.values()]
    assert len(ran) == len(set(ran))  # nothing ran twice
    in_data = {entry["item"]["title"] for entry in result.data}
    in_errors = {f"T{key}" for error in result.errors for key in error.keys}
    assert in_data | in_errors == set(titles)
    assert result.maybe_executed  # the chunks cut on the wire: neither repeated nor dropped
    assert set(ran) - in_data <= {f"T{key}" for key in result.maybe_executed}
    again = BatchByChunkV3(client).make(
        _adds(200),
        journal=path,
        chunk_size=10,
        max_in_flight=4,
        halt_on_error=False,
        in_doubt="resend",
    )
    assert again.is_success
    assert {task["title"] for task in portal.tasks.values()} == set(titles)


def test_in_doubt_resend_sends_the_doubtful_chunk_again(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """``in_doubt="resend"``: the caller checked the portal; the chunk goes again."""
    BatchByChunkV3(client).make(_adds(100), journal=path)
    _set_state(path, 1, "sending")
    before = len(portal.requests)
    result = BatchByChunkV3(client).make(_adds(100), journal=path, in_doubt="resend")
    assert result.is_success
    assert len(portal.requests) == before + 1
    assert len(portal.tasks) == 150  # it had run: resending repeated it, as asked
    assert summary(path)["in_doubt"] == []


def test_an_in_doubt_chunk_that_only_reads_is_sent_again(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """A read-only chunk is safe to repeat: no error, its results are fetched again."""
    for n in range(60):
        portal.add_task(title=f"R{n}")
    BatchByChunkV3(client).make(_gets(60), journal=path)
    _set_state(path, 0, "sending")
    result = BatchByChunkV3(client).make(_gets(60), journal=path)
    assert result.is_success
    assert len(result.data) == 60


def test_an_in_doubt_chunk_with_an_idempotency_key_and_one_write_is_sent_again(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """REST 3.0, one write per chunk and a key: the portal replays it, nothing runs twice."""
    BatchByChunkV3(client).make(_adds(3), journal=path, chunk_size=1, idempotency_key=True)
    _set_state(path, 1, "sending")
    result = BatchByChunkV3(client).make(_adds(3), journal=path, chunk_size=1, idempotency_key=True)
    assert result.is_success
    assert result.chunks[1].replayed
    assert len(portal.tasks) == 3


def test_under_halt_on_error_an_in_doubt_chunk_stops_the_job_but_landed_chunks_count(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """halt_on_error: the in-doubt chunk halts the resume like a failed chunk; the chunks
    after it that an earlier run had answered are read back, the rest are not executed."""
    BatchByChunkV3(client).make(_adds(150), journal=path)
    _set_state(path, 0, "sending")
    _set_state(path, 2, "planned")
    sent = len(portal.requests)
    result = BatchByChunkV3(client).make(_adds(150), journal=path, max_in_flight=1)
    assert len(portal.requests) == sent
    assert result.maybe_executed == tuple(range(50))
    assert len(result.data) == 50  # chunk 1, read back
    assert result.not_executed == tuple(range(100, 150))


def test_different_rows_are_refused_naming_the_first_differing_row(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """Another job on the journal: SdkError naming the chunk and its first row; nothing sent."""
    BatchByChunkV3(client).make(_adds(120), journal=path)
    sent = len(portal.requests)
    rows = _adds(120)
    rows[77] = ("tasks.task.add", {"fields": {"title": "changed"}})
    with pytest.raises(SdkError, match=r"calls\[77\] differs from the row it recorded \(chunk 1\)"):
        BatchByChunkV3(client).make(rows, journal=path)
    inserted = _adds(120)
    inserted.insert(30, ("tasks.task.add", {"fields": {"title": "new"}}))
    with pytest.raises(SdkError, match=r"calls\[30\] differs .*\(chunk 0\)"):
        BatchByChunkV3(client).make(inserted, journal=path)
    with pytest.raises(SdkError, match=r"calls\[120\] differs .*\(chunk 2\)"):
        BatchByChunkV3(client).make(_adds(160), journal=path)
    with pytest.raises(SdkError, match=r"its protocol is 'REST 3\.0'"):
        BatchByChunkV2(client).make([("crm.deal.add", {})], journal=path)
    with pytest.raises(SdkError, match="its halt_on_error is True"):
        BatchByChunkV3(client).make(_adds(120), journal=path, halt_on_error=False)
    assert len(portal.requests) == sent


def test_another_portal_is_refused(portal: FakePortal, client: B24Hook, path: Path) -> None:
    """The portal's origin is part of the job: a journal does not move to another portal."""
    BatchByChunkV3(client).make(_adds(3), journal=path)
    with FakePortal() as other, B24Hook.from_webhook_url(other.webhook_url) as elsewhere:
        with pytest.raises(SdkError, match="its portal is"):
            BatchByChunkV3(elsewhere).make(_adds(3), journal=path)
        assert other.requests == []


def test_a_second_process_on_the_journal_is_refused_at_once(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """Another process holds the journal: the call refuses before sending anything."""
    code = textwrap.dedent(f"""
        import sys, time
        from b24batch._engine.journal import Journal
        journal = Journal.open({str(path)!r})
        print("locked", flush=True)
        sys.stdin.readline()
    """)
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SdkError, match="in use by another run"):
            BatchByChunkV3(client).make(_adds(3), journal=path)
        assert portal.requests == []
    finally:
        holder.communicate("\n", timeout=BOUND)
    assert BatchByChunkV3(client).make(_adds(3), journal=path).is_success  # its lock died


def test_a_journal_of_another_schema_version_is_refused(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """A file written by an older (or newer) version is refused clearly; nothing is sent."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE chunks (idx INTEGER, state TEXT)")  # a 0.x layout
    with pytest.raises(
        SdkError, match=f"older version.*schema 0; this version reads schema {SCHEMA_VERSION}"
    ):
        BatchByChunkV3(client).make(_adds(3), journal=path)
    newer = path.with_name("newer.journal")
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.execute("CREATE TABLE job (id INTEGER)")
    with pytest.raises(SdkError, match="newer version"):
        BatchByChunkV3(client).make(_adds(3), journal=newer)
    assert portal.requests == []


def test_a_file_that_is_not_sqlite_is_refused(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """A path to some other file: refused, and the file is left as it was."""
    path.write_bytes(b"title,description\n" * 100)
    with pytest.raises(SdkError, match="not an SQLite file"):
        BatchByChunkV3(client).make(_adds(3), journal=path)
    assert path.read_bytes() == b"title,description\n" * 100


def test_nothing_secret_is_written_to_the_journal(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """The webhook secret appears in no byte of the journal, its WAL or its lock."""
    portal.inject(Fault.delay(0.0))
    portal.inject(Fault.html(502))  # echoes the request path, secret and all, into an error
    with pytest.raises(Exception):  # noqa: B017,PT011 - any failure: the file is what we check
        BatchByChunkV3(client).make(_adds(120), journal=path, max_in_flight=1)
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    assert files
    for file in files:
        assert portal.secret.encode() not in file.read_bytes()
    assert summary(path)["failed"] == [1]


def test_iter_resumes_and_yields_every_chunk(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """``iter`` with a journal: stop after the first chunk, iterate again: every chunk is
    yielded, the first read back, and each command ran once."""
    chunks = BatchByChunkV3(client).iter(_adds(120), journal=path, max_in_flight=1)
    first = next(chunks)
    chunks.close()
    again = list(BatchByChunkV3(client).iter(iter(_adds(120)), journal=path, max_in_flight=1))
    assert again[0].data == first.data
    assert sum(len(chunk.data) for chunk in again) == 120
    assert len(portal.tasks) == 120


def test_iter_refuses_a_chunk_that_differs(portal: FakePortal, client: B24Hook, path: Path) -> None:
    """``iter`` checks each chunk as it is planned: a different one raises before it is sent."""
    list(BatchByChunkV3(client).iter(_adds(60), journal=path))
    sent = len(portal.requests)
    with pytest.raises(SdkError, match=r"calls\[0\] differs from the row it recorded \(chunk 0\)"):
        list(BatchByChunkV3(client).iter(_adds(60, prefix="X"), journal=path))
    assert len(portal.requests) == sent


def test_a_classic_job_resumes(portal: FakePortal, client: B24Hook, path: Path) -> None:
    """BatchByChunkV2: the same journal rules; a complete job sends nothing."""
    rows = [("crm.deal.add", {"fields": {"TITLE": f"D{n}"}}) for n in range(70)]
    first = BatchByChunkV2(client).make(rows, journal=path)
    sent = len(portal.requests)
    again = BatchByChunkV2(client).make(rows, journal=path)
    assert again.data == first.data == list(range(1, 71))
    assert len(portal.requests) == sent


def test_progress_counts_resumed_chunks_as_done(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """The progress callback of a resumed job reaches the whole job's total."""
    BatchByChunkV3(client).make(_adds(100), journal=path)
    _set_state(path, 1, "planned")
    seen: list[tuple[int, int | None]] = []
    BatchByChunkV3(client).make(
        _adds(100), journal=path, progress=lambda done, total: seen.append((done, total))
    )
    assert seen[-1] == (100, 100)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"journal": 3}, "journal is a int", id="journal-type"),
        pytest.param({"journal": ""}, "non-empty file path", id="journal-empty"),
        pytest.param({"in_doubt": "retry"}, "in_doubt='retry'", id="in-doubt"),
    ],
)
def test_bad_journal_options_are_refused(
    client: B24Hook, options: dict[str, Any], message: str
) -> None:
    """A wrong ``journal`` or ``in_doubt`` raises before anything else, naming it."""
    with pytest.raises(SdkError, match=message):
        BatchByChunkV3(client).make(_adds(1), **options)


def test_a_journal_is_locked_once_per_open(path: Path) -> None:
    """Two opens of one journal in one process: the second refuses too (flock is per open)."""
    with Journal.open(path), pytest.raises(SdkError, match="in use"):
        Journal.open(path)


def _wait_for(condition: Any) -> None:
    deadline = time.monotonic() + BOUND
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_named_calls_resume_with_their_names(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """A dict of named rows: results by name, and an in-doubt chunk names its writes."""
    rows = {f"task{n}": ("tasks.task.add", {"fields": {"title": f"N{n}"}}) for n in range(60)}
    BatchByChunkV3(client).make(rows, journal=path, halt_on_error=False)
    _set_state(path, 0, "sending")
    result = BatchByChunkV3(client).make(rows, journal=path, halt_on_error=False)
    assert sorted(result.data) == sorted(f"task{n}" for n in range(50, 60))
    assert result.maybe_executed == tuple(f"task{n}" for n in range(50))
    assert len(portal.tasks) == 60


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
_ERRORS = st.builds(
    lambda cls, code, status, unknown, maybe, key, rows: _ajax_error(
        cls, code, status, unknown, maybe, key, rows
    ),
    st.sampled_from([AjaxError, AuthError, RateLimitError, OperatingLimitError]),
    st.text(min_size=1, max_size=10),
    st.integers(min_value=0, max_value=599),
    st.booleans(),
    st.lists(st.integers(0, 60) | st.text(min_size=1, max_size=5), max_size=3),
    st.none() | st.integers(0, 60) | st.text(min_size=1, max_size=5),
    st.lists(st.tuples(st.text(max_size=5), st.text(max_size=10)), max_size=2),
)


def _ajax_error(
    cls: type[AjaxError],
    code: str,
    status: int,
    unknown: bool,
    maybe: list[Any],
    key: Any,
    rows: list[tuple[str, str]],
) -> AjaxError:
    error = cls(
        "m " + code,
        code=code,
        status=status,
        validation=[FieldError(*row) for row in rows],
        request_id="r.1",
        outcome_unknown=unknown,
    )
    error.set_maybe_executed(tuple(maybe), "unknown" if unknown else "stopped")
    if key is not None:
        error.key = key
    return error


def _error_fields(error: AjaxError | None) -> Any:
    if error is None:
        return None
    return (
        type(error),
        str(error),
        error.code,
        error.status,
        error.validation,
        error.request_id,
        error.outcome_unknown,
        error.maybe_executed,
        error.key,
    )


@given(
    entries=st.none() | st.lists(_JSON, max_size=4),
    errors=st.dictionaries(st.integers(0, 3), _ERRORS, max_size=2),
    whole=st.none() | _ERRORS,
    not_run=st.frozensets(st.integers(0, 3), max_size=2),
    status=st.integers(200, 599),
    duration=st.none() | st.floats(0, 10),
    attempts=st.integers(1, 5),
)
@settings(max_examples=60, deadline=None)
def test_stored_answers_read_back_as_they_were(
    entries: list[Any] | None,
    errors: dict[int, AjaxError],
    whole: AjaxError | None,
    not_run: frozenset[int],
    status: int,
    duration: float | None,
    attempts: int,
) -> None:
    """What the journal writes of an answer reads back equal: results, errors, what ran."""
    answers = Answers(
        status=status,
        time=None if duration is None else Time(duration=duration),
        error=whole,
        entries=entries,
        errors=errors,
        not_run=not_run,
        unknown=frozenset({9}),
        times=[Time(start=1.0), None],
    )
    text = json.dumps(answers_json(answers, attempts, 0.5))
    back, back_attempts, waited = answers_from_json(json.loads(text))
    assert (back_attempts, waited) == (attempts, 0.5)
    assert (back.status, back.time, back.entries, back.not_run, back.unknown, back.times) == (
        answers.status,
        answers.time,
        answers.entries,
        answers.not_run,
        answers.unknown,
        answers.times,
    )
    assert _error_fields(back.error) == _error_fields(answers.error)
    assert {p: _error_fields(e) for p, e in back.errors.items()} == {
        p: _error_fields(e) for p, e in answers.errors.items()
    }


def test_a_classic_in_doubt_chunk_is_reported_with_its_writes(
    portal: FakePortal, client: B24Hook, path: Path
) -> None:
    """Classic has no Idempotency-Key: an in-doubt chunk of writes is never repeated unasked."""
    rows = [("crm.deal.add", {"fields": {"TITLE": f"D{n}"}}) for n in range(70)]
    BatchByChunkV2(client).make(rows, journal=path, halt_on_error=False)
    _set_state(path, 1, "sending")
    sent = len(portal.requests)
    result = BatchByChunkV2(client).make(rows, journal=path, halt_on_error=False)
    assert len(portal.requests) == sent
    assert result.maybe_executed == tuple(range(50, 70))
    assert result.data == list(range(1, 51))


def test_a_journal_in_a_missing_folder_is_refused_as_such(client: B24Hook, tmp_path: Path) -> None:
    """A path that cannot be created says so (not that another run holds it)."""
    with pytest.raises(SdkError, match="cannot be opened: No such file or directory"):
        BatchByChunkV3(client).make(_adds(1), journal=tmp_path / "none" / "job.journal")
