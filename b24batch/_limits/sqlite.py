"""``SQLiteStore``: the limiters' state in an SQLite file, for several processes on one host.

Standard library only. Each operation is one ``BEGIN IMMEDIATE`` transaction, so the
database's own lock makes it atomic across processes; the clock is read inside it. Each thread
and each process (after a fork) opens its own connection.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from b24batch._limits.bucket import bucket_step
from b24batch._limits.policy import RateLimit, max_level
from b24batch._limits.shared import (
    DEFAULT_RECHECK,
    DEFAULT_STORE_TIMEOUT,
    FUTURE_TOLERANCE,
    LIVE_WINDOW,
    RESET_HORIZON,
    LimitStore,
    MeterState,
)
from b24batch.errors import SdkError, SdkTypeError
from b24batch.redaction import Secret

__all__ = ["SQLiteStore"]

log = logging.getLogger("b24batch")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS b24batch_bucket (key TEXT PRIMARY KEY, level, updated)",
    "CREATE TABLE IF NOT EXISTS b24batch_meter (key TEXT PRIMARY KEY, operating, reset_at)",
    "CREATE TABLE IF NOT EXISTS b24batch_clients (key TEXT, client TEXT, seen, "
    "PRIMARY KEY (key, client))",
    "CREATE TABLE IF NOT EXISTS b24batch_tokens (key TEXT PRIMARY KEY, version, record)",
    "CREATE TABLE IF NOT EXISTS b24batch_leases (key TEXT PRIMARY KEY, owner, until)",
)

_WAL_RETRY = 0.005
"""Seconds between tries to switch a file to WAL that another process holds."""
_BUSY_CODES = (5, 6)
"""SQLITE_BUSY and SQLITE_LOCKED (named in the sqlite3 module only from Python 3.11)."""


def _busy(error: sqlite3.OperationalError) -> bool:
    """The file is locked by another connection (SQLITE_BUSY or SQLITE_LOCKED), not broken."""
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    if code is None:
        return "locked" in str(error) or "busy" in str(error)
    return code & 0xFF in _BUSY_CODES


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class SQLiteStore(LimitStore):
    """Limits shared by the processes of one host through an SQLite file (cron jobs beside web
    workers on one VM, without a server).

    Args:
        path: The database file; made on first use, with its tables. Every process must be
            able to write it (and its ``-wal`` and ``-shm`` files beside it).
        egress: A label for the public IP this host's requests leave through, when several
            hosts share one store but not one IP (each IP has its own bucket at the portal).
        timeout: Seconds to wait for the database's lock before counting it unreachable.
        recheck: Seconds between attempts to reach an unreachable store.

    Raises:
        SdkError: A path that is not a file name (``":memory:"`` is refused: no other process
            could see it).

    Examples:
        >>> store = SQLiteStore("/var/lib/myapp/b24-limits.sqlite3")
        >>> b24 = B24Hook.from_webhook_url(
        ...     "https://example.bitrix24.com/rest/1/s/", limit_store=store
        ... )
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        egress: str | None = None,
        timeout: float = DEFAULT_STORE_TIMEOUT,
        recheck: float = DEFAULT_RECHECK,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise SdkTypeError(f"path={path!r}: pass the database file's path as a str or Path")
        name = os.fspath(path)
        if not isinstance(name, str) or not name or name == ":memory:" or "\0" in name:
            raise SdkError(
                f"path={name!r}: pass a file path every process can write, such as "
                f"/var/lib/myapp/b24-limits.sqlite3"
            )
        super().__init__(egress=egress, recheck=recheck, timeout=timeout)
        self.path = name
        self._local = threading.local()
        self._moved_from: tuple[int, int] | None = None

    def __repr__(self) -> str:
        path = getattr(self, "path", None)
        if path is None:  # half-built: an error page shows its locals
            return "<SQLiteStore (not set up)>"
        return f"<SQLiteStore {path}>"

    def describe(self) -> str:
        return repr(self)

    def _identity(self) -> tuple[int, int] | None:
        """The device and inode the path names now; None when no file is there."""
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return None
        return found.st_dev, found.st_ino

    def _connection(self) -> sqlite3.Connection:
        held = getattr(self._local, "held", None)
        if held is not None and held[0] == os.getpid():
            connection: sqlite3.Connection = held[1]
            if self._identity() == held[2]:
                return connection
            # A temp cleaner deleted the file, or a deploy replaced it: this connection keeps
            # the old inode while processes opening the path now share another one. Reopen.
            self._local.held = None
            connection.close()
            self._say_moved(held[2])
        # A connection must not cross a fork: the child opens its own (the parent's is left
        # alone, not closed, since closing it from the child could disturb the parent).
        connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            self._enter_wal(connection)
            connection.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                connection.execute(statement)
        except BaseException:
            connection.close()
            raise
        self._local.held = (os.getpid(), connection, self._identity())
        return connection

    def _say_moved(self, opened: tuple[int, int] | None) -> None:
        """One WARNING per file that went away, however many threads had it open."""
        with self._lock:
            if opened == self._moved_from:
                return
            self._moved_from = opened
        log.warning(
            "limit store %s: %r names another file than the one opened (deleted or replaced): "
            "reopened it",
            self.describe(),
            self.path,
        )

    def _enter_wal(self, connection: sqlite3.Connection) -> None:
        """Switch the file to WAL, waiting up to `timeout` for the other processes.

        SQLite answers this pragma "database is locked" at once, without its busy handler,
        while another connection is writing the file (as when several processes open a new
        file together): each would count the store unreachable. So it is tried again, a few
        ms apart.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if not _busy(error) or time.monotonic() >= deadline:
                    raise
                time.sleep(_WAL_RETRY)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def bucket_op(
        self, key: str, op: str, limit: RateLimit, arg: float, clock: Callable[[], float]
    ) -> float:
        with self._transaction() as db:
            now = clock()
            row = db.execute(
                "SELECT level, updated FROM b24batch_bucket WHERE key = ?", (key,)
            ).fetchone()
            level, updated = 0.0, now  # missing or foreign: empty, overwritten below
            if row is not None:
                if (
                    _finite(row[0])
                    and _finite(row[1])
                    and 0 <= row[0] <= max_level(limit)
                    and row[1] <= now + FUTURE_TOLERANCE
                ):
                    level, updated = float(row[0]), float(row[1])
                else:
                    self.found_foreign(key)
                    db.execute("DELETE FROM b24batch_bucket WHERE key = ?", (key,))
            result, state = bucket_step(op, level, updated, now, limit, arg)
            if state is not None:
                db.execute(
                    "INSERT OR REPLACE INTO b24batch_bucket (key, level, updated) VALUES (?, ?, ?)",
                    (key, *state),
                )
            level, updated = state or (level, updated)
            clients = self._count_client(db, key, now)
        self.saw(key, max(0.0, level - max(0.0, now - updated) * limit.per_second), clients)
        return result

    def _count_client(self, db: sqlite3.Connection, key: str, now: float) -> int:
        """Note this client at the bucket under ``key``; the clients seen within LIVE_WINDOW."""
        db.execute(
            "INSERT OR REPLACE INTO b24batch_clients (key, client, seen) VALUES (?, ?, ?)",
            (key, self.client_id(), now),
        )
        db.execute(  # gone quiet, or nonsense (a clock reset, a value of another program)
            "DELETE FROM b24batch_clients WHERE key = ? AND NOT coalesce(seen BETWEEN ? AND ?, 0)",
            (key, now - LIVE_WINDOW, now + FUTURE_TOLERANCE),
        )
        (count,) = db.execute(
            "SELECT count(*) FROM b24batch_clients WHERE key = ?", (key,)
        ).fetchone()
        return max(1, int(count))

    def meter_op(
        self,
        key: str,
        op: str,
        operating: float | None,
        reset_at: float | None,
        clock: Callable[[], float],
    ) -> MeterState:
        with self._transaction() as db:
            now = clock()
            row = db.execute(
                "SELECT operating, reset_at FROM b24batch_meter WHERE key = ?", (key,)
            ).fetchone()
            stored: tuple[float | None, float | None] = (None, None)
            foreign = False
            if row is not None:
                kept_operating = row[0] if _finite(row[0]) and row[0] >= 0 else None
                kept_reset = (
                    row[1] if _finite(row[1]) and 0 <= row[1] <= now + RESET_HORIZON else None
                )
                stored = (kept_operating, kept_reset)
                # None is the store's own "no figure"; anything else dropped is foreign
                foreign = any(v is not None and k is None for v, k in zip(row, stored, strict=True))
            if foreign:
                self.found_foreign(key)
            new = stored
            if op == "record":
                # A reset it could not read back (a client's clock far ahead) is never written.
                kept = reset_at is None or not 0 <= reset_at <= now + RESET_HORIZON
                new = (
                    stored[0] if operating is None else operating,
                    stored[1] if kept else reset_at,
                )
            elif op == "forget" and stored[1] is not None and stored[1] == reset_at:
                new = (None, stored[1])
            if (op != "read" or foreign) and (row is None or tuple(row) != new):
                db.execute(
                    "INSERT OR REPLACE INTO b24batch_meter (key, operating, reset_at) "
                    "VALUES (?, ?, ?)",
                    (key, *new),
                )
        return (*new, now)

    def token_read(self, key: str) -> tuple[int, Secret[str]] | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT version, record FROM b24batch_tokens WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        version, record = row[0], Secret(row[1])
        del row  # holds the tokens: no frame shows them
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError("its version is not a positive integer")
        if not isinstance(record.value, str):
            raise ValueError(f"its record is a {type(record.value).__name__}, not text")
        return version, record

    def token_write(self, key: str, record: Secret[str], expect: int | None) -> int | None:
        with self._transaction() as db:
            row = db.execute("SELECT version FROM b24batch_tokens WHERE key = ?", (key,)).fetchone()
            current = row[0] if row is not None and isinstance(row[0], int) else 0
            if expect is not None and current != expect:
                return None
            version = max(0, current) + 1
            db.execute(
                "INSERT OR REPLACE INTO b24batch_tokens (key, version, record) VALUES (?, ?, ?)",
                (key, version, record.value),
            )
        return version

    def token_lease(self, key: str, owner: str, seconds: float) -> bool:
        with self._transaction() as db:
            now = time.time()
            row = db.execute(
                "SELECT owner, until FROM b24batch_leases WHERE key = ?", (key,)
            ).fetchone()
            # A lease with a nonsense expiry (not a number) counts as expired: it was not ours.
            if row is not None and row[0] != owner and _finite(row[1]) and row[1] > now:
                return False
            db.execute(
                "INSERT OR REPLACE INTO b24batch_leases (key, owner, until) VALUES (?, ?, ?)",
                (key, owner, now + seconds),
            )
        return True

    def token_release(self, key: str, owner: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM b24batch_leases WHERE key = ? AND owner = ?", (key, owner))

    def token_keys(self, prefix: str) -> list[str]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT key FROM b24batch_tokens WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix),
            ).fetchall()
        return [row[0] for row in rows if isinstance(row[0], str)]
