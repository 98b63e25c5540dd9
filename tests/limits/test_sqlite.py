"""The SQLite limit store (b24batch._limits.sqlite): its rows, connections, locks and path.

These tests read and write the file with sqlite3 beside the store; what every store does is in
test_shared.py.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from b24batch import RateLimit, SdkError, SdkTypeError, SQLiteStore
from b24batch._limits.bucket import LeakyBucket
from b24batch._limits.shared import FUTURE_TOLERANCE, SharedBucket, SharedMeter
from tests.limits.helpers import ORIGIN, Clock, StoreFactory

# -- rows -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(("text", "more"), id="text"),
        pytest.param((float("nan"), 1.0), id="nan"),
        pytest.param((-3.0, 1.0), id="negative"),
        pytest.param((40.0, 9e99), id="future"),
        pytest.param((None, None), id="null"),
    ],
)
def test_a_foreign_sqlite_row_counts_as_empty_and_is_replaced(
    row: tuple[Any, Any], make_store: StoreFactory, tmp_path: Path, clock: Clock
) -> None:
    """Nonsense in the bucket's row reads as an empty bucket; the next booking replaces it."""
    store = make_store("sqlite")
    limit = RateLimit(burst=5, per_second=2.0)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock))
    assert bucket.available() == 3.0  # makes the tables
    path = tmp_path / "limits.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO b24batch_bucket VALUES (?, ?, ?)", (bucket.key, *row))
    assert bucket.available() == 3.0
    assert bucket.reserve() == 0.0
    with sqlite3.connect(path) as db:
        stored = db.execute("SELECT level, updated FROM b24batch_bucket").fetchall()
    assert stored == [(1.0, clock.now)]


@pytest.mark.parametrize(
    ("row", "available"),
    [
        pytest.param((0.5, 0.0), 2.5, id="below-one-request"),
        pytest.param((3.0, FUTURE_TOLERANCE), 0.0, id="dated-at-the-tolerance"),
    ],
)
def test_a_sqlite_row_within_bounds_is_kept(
    row: tuple[float, float],
    available: float,
    make_store: StoreFactory,
    tmp_path: Path,
    clock: Clock,
) -> None:
    """A level under one request, and a state dated exactly FUTURE_TOLERANCE ahead, are real."""
    store = make_store("sqlite")
    limit = RateLimit(burst=5, per_second=2.0)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock))
    assert bucket.available() == 3.0  # makes the tables
    level, ahead = row
    with sqlite3.connect(tmp_path / "limits.sqlite3") as db:
        db.execute(
            "INSERT OR REPLACE INTO b24batch_bucket VALUES (?, ?, ?)",
            (bucket.key, level, clock.now + ahead),
        )
    assert bucket.available() == available


@pytest.mark.parametrize(
    ("row", "state"),
    [
        pytest.param((-5.0, 100.0), (None, 100.0), id="negative-operating"),
        pytest.param((0.0, 100.0), (0.0, 100.0), id="zero-operating"),
    ],
)
def test_a_sqlite_meter_row_is_read_as_stored_or_dropped(
    row: tuple[float, float],
    state: tuple[float | None, float],
    make_store: StoreFactory,
    tmp_path: Path,
    clock: Clock,
) -> None:
    """A negative operating figure reads as none; zero is a figure (the reset stays)."""
    store = make_store("sqlite")
    meter = SharedMeter(store, store.meter_key(ORIGIN, "abc", "batch"), RateLimit(), clock)
    assert meter.state() == (None, None)  # makes the tables
    with sqlite3.connect(tmp_path / "limits.sqlite3") as db:
        db.execute("INSERT INTO b24batch_meter VALUES (?, ?, ?)", (meter.key, *row))
    assert meter.state() == state


# -- connections: one per thread, one per process ---------------------------------------------


def test_a_thread_keeps_its_sqlite_connection(tmp_path: Path) -> None:
    """One connection per thread, reused by each later operation; another thread has its own."""
    store = SQLiteStore(tmp_path / "limits.sqlite3")
    first = store._connection()
    assert store._connection() is first
    theirs: list[int] = []

    def other_thread() -> None:
        own = store._connection()
        theirs.append(id(own))
        own.close()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(timeout=10)
    assert len(theirs) == 1
    assert theirs[0] != id(first)


def _sqlite_child(store: SQLiteStore, parent_connection_id: int, out: Any) -> None:
    own = store._connection()
    out.put(
        (
            id(own) != parent_connection_id,
            store.bucket_op("bucket:x", "reserve", RateLimit(burst=5), 1e9, lambda: 10.0),
        )
    )


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX")
def test_a_forked_process_opens_its_own_sqlite_connection(tmp_path: Path) -> None:
    """The SQLite store never uses a connection across a fork; the child's booking counts."""
    store = SQLiteStore(tmp_path / "limits.sqlite3")
    assert store.bucket_op("bucket:x", "reserve", RateLimit(burst=5), 1e9, lambda: 10.0) == 0.0
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_sqlite_child, args=(store, id(store._connection()), out))
    child.start()
    fresh, wait = out.get(timeout=30)
    child.join(timeout=30)
    assert fresh is True
    assert wait == 0.0
    assert store.bucket_op("bucket:x", "available", RateLimit(burst=5), 0.0, lambda: 10.0) == 1.0


# -- locks ------------------------------------------------------------------------------------


def _writing(path: Path) -> sqlite3.Connection:
    """A connection in the middle of a write to a new rollback-journal file."""
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    return writer


def test_a_new_file_another_process_writes_is_waited_for(tmp_path: Path, clock: Clock) -> None:
    """SQLite refuses the switch to WAL at once, without its busy handler, while another
    connection writes the file (as when processes open one new file together); the store
    tries again until the writer is done, so none of them counts the store unreachable."""
    path = tmp_path / "limits.sqlite3"
    writer = _writing(path)
    done = threading.Timer(0.1, writer.execute, ("COMMIT",))
    done.start()
    store = SQLiteStore(path, timeout=5.0)
    try:
        assert store.bucket_op("k", "reserve", RateLimit(burst=5), 10.0, clock) == 0.0
    finally:
        done.join(timeout=5)
        writer.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT level FROM b24batch_bucket").fetchall() == [(1.0,)]


def test_only_a_lock_is_waited_for() -> None:
    """A busy or locked file is tried again; any other error is the store's failure at once
    (by SQLite's code, or on Python 3.10, whose errors carry none, by its message)."""
    from b24batch._limits.sqlite import _busy

    def error(message: str, code: int | None) -> sqlite3.OperationalError:
        made = sqlite3.OperationalError(message)
        if code is not None:
            made.sqlite_errorcode = code  # type: ignore[attr-defined]
        return made

    assert _busy(error("database is locked", 5))
    assert _busy(error("database table is locked", 6))
    assert _busy(error("database is locked", 5 | 2 << 8))  # SQLITE_BUSY_SNAPSHOT
    assert not _busy(error("attempt to write a readonly database", 8))
    assert _busy(error("database is locked", None))
    assert _busy(error("database is busy", None))
    assert not _busy(error("disk I/O error", None))


def test_an_sqlite_error_code_outranks_its_message() -> None:
    """With SQLite's code at hand, an error that only mentions "locked" is not a lock."""
    from b24batch._limits.sqlite import _busy

    error = sqlite3.OperationalError("no such table: locked_rows")
    error.sqlite_errorcode = 1  # type: ignore[attr-defined]  # SQLITE_ERROR
    assert not _busy(error)


def test_a_file_locked_past_the_timeout_raises(tmp_path: Path, clock: Clock) -> None:
    """The wait for the switch to WAL is bounded by the store's timeout."""
    path = tmp_path / "limits.sqlite3"
    writer = _writing(path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            SQLiteStore(path, timeout=0.05).bucket_op(
                "k", "reserve", RateLimit(burst=5), 10.0, clock
            )
    finally:
        writer.close()


def test_a_sqlite_lock_is_waited_for_only_the_store_timeout(tmp_path: Path, clock: Clock) -> None:
    """A WAL file whose lock another connection holds: the store gives up after its own
    timeout (0.05 s), not SQLite's default 5 s, though the lock is freed a second later."""
    path = tmp_path / "limits.sqlite3"
    store = SQLiteStore(path, timeout=0.05)
    assert store.bucket_op("k", "available", RateLimit(burst=5), 0.0, clock) == 3.0  # WAL, tables
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    freed = threading.Timer(1.0, writer.execute, ("ROLLBACK",))
    freed.start()
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            SQLiteStore(path, timeout=0.05).bucket_op(
                "k", "reserve", RateLimit(burst=5), 9.0, clock
            )
    finally:
        freed.cancel()
        freed.join(timeout=5)
        if writer.in_transaction:
            writer.execute("ROLLBACK")
        writer.close()


# -- the path ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        pytest.param(":memory:", SdkError, id="memory"),
        pytest.param("", SdkError, id="empty"),
        pytest.param(42, SdkTypeError, id="int"),
    ],
)
def test_a_sqlite_path_that_no_other_process_could_open_is_refused(
    path: Any, kind: type[Exception]
) -> None:
    """:memory:, an empty path or a non-path is refused at construction."""
    with pytest.raises(kind, match="path="):
        SQLiteStore(path)


def test_a_sqlite_path_with_a_nul_byte_is_refused() -> None:
    """A path holding NUL fails at construction with the whole message, not at first use."""
    with pytest.raises(SdkError) as info:
        SQLiteStore("limits\0.sqlite3")
    assert str(info.value) == (
        "path='limits\\x00.sqlite3': pass a file path every process can write, such as "
        "/var/lib/myapp/b24-limits.sqlite3"
    )


def test_a_half_built_sqlite_store_shows_a_repr() -> None:
    """An SQLiteStore whose __init__ never ran (an error page's locals) still has a repr."""
    assert repr(SQLiteStore.__new__(SQLiteStore)) == "<SQLiteStore (not set up)>"


# -- the file deleted or replaced under the store ---------------------------------------------


def _unlink(path: Path) -> None:
    os.unlink(path)


def _replace(path: Path) -> None:
    other = path.with_name("other.sqlite3")
    sqlite3.connect(other).close()
    os.replace(other, path)


@pytest.mark.parametrize(
    "swap", [pytest.param(_unlink, id="deleted"), pytest.param(_replace, id="replaced")]
)
def test_a_sqlite_file_deleted_or_replaced_is_reopened_once_warned(
    swap: Callable[[Path], None], tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A temp cleaner deletes the file (or a deploy replaces it) while a store holds it open:
    the store notices that the path names another file, reopens it, and says so once; a store
    opened afterwards (a new process) shares one bucket with it."""
    path = tmp_path / "limits.sqlite3"
    limit = RateLimit(burst=10, per_second=2.0)
    old = SQLiteStore(path)
    held = SharedBucket(old, ORIGIN, clock, LeakyBucket(limit, clock))
    assert held.reserve() == 0.0
    swap(path)
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        new = SharedBucket(SQLiteStore(path), ORIGIN, clock, LeakyBucket(limit, clock))
        assert new.reserve() == 0.0
        assert held.reserve() == 0.0
        assert held.reserve() == 0.0
        assert new.available() == 5.0  # one bucket: the three bookings since the swap
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"limit store {old.describe()}: {str(path)!r} names another file than the one opened "
        f"(deleted or replaced): reopened it"
    ]


def test_a_sqlite_file_filled_with_junk_falls_back_once_warned(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The file overwritten with junk: the batches are limited in process, one WARNING."""
    path = tmp_path / "limits.sqlite3"
    limit = RateLimit(burst=10, per_second=2.0)
    bucket = SharedBucket(SQLiteStore(path), ORIGIN, clock, LeakyBucket(limit, clock))
    assert bucket.reserve() == 0.0
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(8192))
    os.replace(junk, path)
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        assert bucket.available() == 7.0  # the last level seen (1), in process
        assert bucket.reserve() == 0.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # reopened; then unreachable
    assert "unreachable (DatabaseError: file is not a database)" in warnings[1]
