"""A chunked call's outcomes in an SQLite file, so a job resumes where it stopped.

One ``Journal`` per run of a job: it holds the file's exclusive lock for the run's life, checks
that the rows are the job's (a fingerprint per chunk), records each chunk as ``sending`` before
its request leaves and its decoded ``Answers`` (or the error it raised) when it lands, one
transaction each. Stores answers, never typed results, and never a secret: no webhook path,
no token. No HTTP, no retries: ``chunked.py`` decides what a stored state means.

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`)::

    job(id=1, protocol, origin, chunk_size, halt_on_error, request_id, idempotency_key,
        fingerprint, chunks, commands, created)
    chunk(idx PRIMARY KEY, fingerprint, first_key, size, rows,
          state: planned | sending | answered | failed,
          request_id, idempotency_key, answer JSON, error JSON, updated)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Final, Literal

import attrs

from b24batch._engine.plan import Chunk
from b24batch._protocols.base import Answers, Protocol
from b24batch.errors import (
    AjaxError,
    AuthError,
    B24Error,
    DecodeError,
    OperatingLimitError,
    RateLimitError,
    SdkError,
    TransportError,
)
from b24batch.results import FieldError, Key, Time

__all__ = [
    "SCHEMA_VERSION",
    "Journal",
    "JournalPath",
    "State",
    "Stored",
    "answers_from_json",
    "answers_json",
    "chunk_fingerprint",
    "summary",
]

SCHEMA_VERSION: Final = 1
"""The journal schema this version writes and reads (``PRAGMA user_version``)."""

JournalPath = str | os.PathLike[str]
State = Literal["planned", "sending", "answered", "failed"]

_BUSY_MS: Final = 5000
_ROW: Final = 16  # hex characters of a row's digest
_PLANNED: Final = (  # a chunk recorded before any run sent it; kept if it is there already
    "INSERT OR IGNORE INTO chunk (idx, fingerprint, first_key, size, rows, state, updated)"
    " VALUES (?, ?, ?, ?, ?, 'planned', ?)"
)
_SCHEMA: Final = """
CREATE TABLE job (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    protocol TEXT NOT NULL,
    origin TEXT NOT NULL,
    chunk_size INTEGER NOT NULL,
    halt_on_error INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    idempotency_key TEXT,
    fingerprint TEXT,
    chunks INTEGER,
    commands INTEGER,
    created REAL NOT NULL
);
CREATE TABLE chunk (
    idx INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    first_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    rows TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('planned', 'sending', 'answered', 'failed')),
    request_id TEXT,
    idempotency_key TEXT,
    answer TEXT,
    error TEXT,
    updated REAL NOT NULL
);
"""
_ERROR_TYPES: Final[dict[str, type[B24Error]]] = {
    cls.__name__: cls
    for cls in (
        B24Error,
        AjaxError,
        AuthError,
        RateLimitError,
        OperatingLimitError,
        TransportError,
        DecodeError,
    )
}


def chunk_fingerprint(chunk: Chunk) -> str:
    """sha256 of the chunk's protocol and prepared body: what would be sent, byte for byte."""
    digest = hashlib.sha256(chunk.prepared.protocol.name.encode())
    digest.update(b"\0")
    digest.update(chunk.prepared.body)
    return digest.hexdigest()


@attrs.frozen
class Stored:
    """What the journal holds of one chunk.

    Attributes:
        state: ``planned`` (never sent), ``sending`` (sent, no answer recorded: in doubt),
            ``answered`` or ``failed`` (its sending raised ``error``).
        answers: The decoded answers (``answered``).
        attempts: Sends it took (``answered``).
        waited: Seconds it waited (``answered``).
        error: The error its sending raised (``failed``).
    """

    state: State
    answers: Answers | None = None
    attempts: int = 1
    waited: float = 0.0
    error: B24Error | None = None


class Journal:
    """One run's hold on a journal file (see the module docstring for the schema).

    Thread-safe: the window's worker threads record through one connection under a lock.
    Only ``sending`` waits for the disk (``synchronous=FULL``), and the ``sending`` records
    of chunks leaving together share one commit (a group commit: a window of 16 pays one
    fsync, not 16 in a row). ``answered`` and ``failed`` do not wait for the disk: a power cut
    that loses one leaves the chunk ``sending``, in doubt, which is safe; a ``kill -9`` loses
    nothing committed.
    """

    def __init__(self, path: JournalPath, connection: sqlite3.Connection, lock: Any) -> None:
        self.path = os.fspath(path)
        self._db = connection
        self._lock_file = lock
        self._mutex = threading.Lock()
        self.request_id = ""
        self.idempotency_key: str | None = None
        self._known: set[int] = set()  # chunks not 'planned' when the run began
        # The group commit of 'sending': tickets queued, the last one committed, its errors.
        self._group = threading.Condition()
        self._queue: list[tuple[int, tuple[str, str | None, float, int]]] = []
        self._ticket = 0
        self._committed = 0
        self._committing = False
        self._errors: dict[int, SdkError] = {}

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: JournalPath) -> Journal:
        """Lock ``path`` for this run, create or check its schema.

        Raises:
            SdkError: Another process holds the journal; the file is not a journal of this
                schema version (nothing is sent either way).
        """
        where = os.fspath(path)
        lock = _lock(where)
        try:
            db = sqlite3.connect(where, timeout=_BUSY_MS / 1000, check_same_thread=False)
        except sqlite3.Error as error:
            _unlock(lock)
            raise SdkError(f"journal {where!r} cannot be opened: {error}") from error
        try:
            db.isolation_level = None  # transactions are explicit: one per step
            _checked_schema(db, where)
        except BaseException:
            db.close()
            _unlock(lock)
            raise
        return cls(where, db, lock)

    def close(self) -> None:
        """Close the file and release the lock (the job can be resumed by another run)."""
        with self._mutex:
            self._db.close()
        _unlock(self._lock_file)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the job ---------------------------------------------------------------------------------

    def begin(
        self,
        *,
        protocol: Protocol,
        origin: str,
        chunk_size: int,
        halt_on_error: bool,
        request_id: str,
        idempotency_key: str | None,
        chunks: Sequence[Chunk] | None,
    ) -> None:
        """Start the job, or check that these are its rows and take its ids.

        ``chunks``: every planned chunk (``make``), or None when they come lazily (``iter``:
        each is checked by :meth:`check`). A resumed job keeps the request id and idempotency
        key of its first run, so a chunk sent again carries the key the portal saw first.
        ``halt_on_error`` is the job's too: it changes what each chunk's body asks, and a
        key sent again with another body is refused by the portal.

        Raises:
            SdkError: The journal holds another job: another protocol, portal or chunk size,
                or other rows (the message names the first row that differs).
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT protocol, origin, chunk_size, halt_on_error, request_id,"
                " idempotency_key, fingerprint, chunks FROM job"
            ).fetchone()
            job_print = None if chunks is None else _job_fingerprint(protocol, origin, chunks)
            if row is None:
                db.execute(
                    "INSERT INTO job VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        protocol.name,
                        origin,
                        chunk_size,
                        halt_on_error,
                        request_id,
                        idempotency_key,
                        job_print,
                        None if chunks is None else len(chunks),
                        None if chunks is None else sum(len(c.commands) for c in chunks),
                        time.time(),
                    ),
                )
                self.request_id, self.idempotency_key = request_id, idempotency_key
                if chunks is not None:
                    db.executemany(
                        _PLANNED,
                        [_chunk_row(chunk) for chunk in chunks],
                    )
                return
            theirs = {
                "protocol": row[0],
                "portal": row[1],
                "chunk_size": row[2],
                "halt_on_error": bool(row[3]),
            }
            ours = {
                "protocol": protocol.name,
                "portal": origin,
                "chunk_size": chunk_size,
                "halt_on_error": halt_on_error,
            }
            for name, value in theirs.items():
                if ours[name] != value:
                    raise SdkError(
                        f"journal {self.path!r} holds another job: its {name} is {value!r}, "
                        f"this call's is {ours[name]!r}; nothing was sent. Resume it with the "
                        f"same call, or pass a new journal file for a new job"
                    )
            self.request_id, self.idempotency_key = row[4], row[5]
            self._known = {
                idx for (idx,) in db.execute("SELECT idx FROM chunk WHERE state != 'planned'")
            }
            if chunks is None or row[6] == job_print:
                return
            self._refuse_rows(db, chunks, row[7])
            # Same chunks, no fingerprint yet (started by iter): this call completes it.
            db.execute(
                "UPDATE job SET fingerprint = ?, chunks = ?, commands = ?",
                (job_print, len(chunks), sum(len(c.commands) for c in chunks)),
            )
            db.executemany(
                _PLANNED,
                [_chunk_row(chunk) for chunk in chunks],
            )

    def _refuse_rows(
        self, db: sqlite3.Connection, chunks: Sequence[Chunk], count: int | None
    ) -> None:
        stored = {
            idx: (fingerprint, rows)
            for idx, fingerprint, rows in db.execute("SELECT idx, fingerprint, rows FROM chunk")
        }
        for chunk in chunks:
            recorded = stored.get(chunk.index)
            if recorded is not None and recorded[0] != chunk_fingerprint(chunk):
                raise self._differs(chunk, rows=recorded[1])
        if count is not None and count != len(chunks):
            if len(chunks) > count:
                raise self._differs(chunks[count], f"the job had {count} chunks")
            raise SdkError(
                f"journal {self.path!r} holds another job: it had {count} chunks, these rows "
                f"make {len(chunks)} (rows are missing after calls"
                f"[{chunks[-1].commands.keys[-1]!r}]); nothing was sent"
            )

    def _differs(self, chunk: Chunk, why: str = "", *, rows: str = "") -> SdkError:
        """The refusal, naming the first row that differs from the recorded ``rows``
        (the chunk's first row when no single row differs: its cut or encoding does)."""
        ours = _row_digests(chunk)
        keys = chunk.commands.keys
        position = next(
            (
                p
                for p in range(len(keys))
                if ours[p * _ROW : (p + 1) * _ROW] != rows[p * _ROW :][:_ROW]
            ),
            0,
        )
        reason = f" ({why})" if why else ""
        return SdkError(
            f"journal {self.path!r} holds another job: calls[{keys[position]!r}] differs from "
            f"the row it recorded (chunk {chunk.index}){reason}; nothing was sent. Pass the "
            f"same rows to resume, or a new journal file for a new job"
        )

    def check(self, chunk: Chunk) -> None:
        """Check one lazily planned chunk against the job (``iter``) and record it planned.

        Raises:
            SdkError: It differs from the chunk the journal recorded at its index.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT fingerprint, rows FROM chunk WHERE idx = ?", (chunk.index,)
            ).fetchone()
            if row is None:
                count = db.execute("SELECT chunks FROM job").fetchone()
                if count is not None and count[0] is not None and chunk.index >= count[0]:
                    raise self._differs(chunk, f"the job had {count[0]} chunks")
                db.execute(
                    _PLANNED,
                    _chunk_row(chunk),
                )
            elif row[0] != chunk_fingerprint(chunk):
                raise self._differs(chunk, rows=row[1])

    # -- one chunk ---------------------------------------------------------------------------

    def stored(self, index: int) -> Stored:
        """What the journal held of chunk ``index`` when the run began (``planned``: nothing)."""
        if index not in self._known:
            return Stored("planned")
        with self._mutex:
            row = self._db.execute(
                "SELECT state, answer, error FROM chunk WHERE idx = ?", (index,)
            ).fetchone()
        if row is None or row[0] == "planned":
            return Stored("planned")
        state, answer, error = row
        if state == "answered":
            answers, attempts, waited = answers_from_json(json.loads(answer))
            return Stored("answered", answers=answers, attempts=attempts, waited=waited)
        if state == "failed":
            return Stored("failed", error=_error_from(json.loads(error)))
        return Stored("sending")

    def sending(self, index: int, request_id: str, key: str | None) -> None:
        """Chunk ``index`` (planned already) is about to leave: durably ``sending``, in doubt
        until :meth:`answered` or :meth:`failed`. Returns once it is on the disk.

        Raises:
            SdkError: The file could not be written (the chunk must not be sent).
        """
        with self._group:
            self._ticket += 1
            mine = self._ticket
            self._queue.append((mine, (request_id, key, time.time(), index)))
            while self._committed < mine:
                if self._committing:
                    self._group.wait()
                    continue
                self._committing = True  # this thread commits what is queued, its own too
                queued, self._queue = self._queue, []
                self._group.release()
                failure: SdkError | None = None
                try:
                    self._commit_sending([row for _, row in queued])
                except SdkError as error:
                    failure = error
                finally:
                    self._group.acquire()
                    self._committing = False
                    self._committed = max(self._committed, queued[-1][0])
                    if failure is not None:
                        self._errors.update((ticket, failure) for ticket, _ in queued)
                    self._group.notify_all()
            failed = self._errors.pop(mine, None)
        if failed is not None:
            raise failed

    def _commit_sending(self, rows: list[tuple[str, str | None, float, int]]) -> None:
        with self._transaction(durable=True) as db:
            db.executemany(
                "UPDATE chunk SET state = 'sending', request_id = ?, idempotency_key = ?,"
                " answer = NULL, error = NULL, updated = ? WHERE idx = ?",
                rows,
            )

    def answered(self, index: int, answers: Answers, attempts: int, waited: float) -> None:
        """Chunk ``index`` has its answer: every command's outcome, in one transaction."""
        text = json.dumps(answers_json(answers, attempts, waited), ensure_ascii=False)
        with self._transaction() as db:
            db.execute(
                "UPDATE chunk SET state = 'answered', answer = ?, error = NULL, updated = ?"
                " WHERE idx = ?",
                (text, time.time(), index),
            )

    def failed(self, index: int, error: B24Error) -> None:
        """Chunk ``index`` raised ``error``; what may have run is its ``maybe_executed``."""
        text = json.dumps(_error_json(error), ensure_ascii=False)
        with self._transaction() as db:
            db.execute(
                "UPDATE chunk SET state = 'failed', error = ?, answer = NULL, updated = ?"
                " WHERE idx = ?",
                (text, time.time(), index),
            )

    @contextlib.contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One step, all or nothing; ``durable``: on the disk when it returns. A failing file
        surfaces as ``SdkError`` naming it."""
        with self._mutex:
            db = self._db
            try:
                db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as error:
                raise SdkError(f"journal {self.path!r} could not be written: {error}") from error


def summary(path: JournalPath) -> dict[str, Any]:
    """A job's state, read without taking the lock: its header and chunks by state.

    Raises:
        SdkError: Not a journal of this schema version.
    """
    where = os.fspath(path)
    if not os.path.exists(where):
        raise SdkError(f"journal {where!r} does not exist")
    db = sqlite3.connect(f"file:{where}?mode=ro", uri=True, timeout=_BUSY_MS / 1000)
    try:
        _checked_schema(db, where, create=False)
        job = db.execute(
            "SELECT protocol, origin, chunk_size, request_id, chunks, commands, created FROM job"
        ).fetchone()
        states: dict[str, list[int]] = {s: [] for s in ("answered", "failed", "sending")}
        counts = {"planned": 0, "answered": 0, "failed": 0, "sending": 0}
        commands = dict.fromkeys(counts, 0)
        failed_with_errors = 0
        for idx, state, size, answer in db.execute(
            "SELECT idx, state, size, answer FROM chunk ORDER BY idx"
        ):
            counts[state] += 1
            commands[state] += size
            if state in states:
                states[state].append(idx)
            if state == "answered" and answer is not None:
                stored = json.loads(answer)
                if stored.get("error") or stored.get("errors"):
                    failed_with_errors += 1
    finally:
        db.close()
    return {
        "path": where,
        "schema": SCHEMA_VERSION,
        "job": None
        if job is None
        else dict(
            zip(
                ("protocol", "portal", "chunk_size", "request_id", "chunks", "commands", "created"),
                job,
                strict=True,
            )
        ),
        "chunks": counts,
        "commands": commands,
        "answered_with_errors": failed_with_errors,
        "in_doubt": states["sending"],
        "failed": states["failed"],
    }


# -- the file -----------------------------------------------------------------------------------


def _checked_schema(db: sqlite3.Connection, where: str, *, create: bool = True) -> None:
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as error:
        raise SdkError(
            f"journal {where!r} is not an SQLite file ({error}); pass a new path for a new job"
        ) from error
    if version == SCHEMA_VERSION and {"job", "chunk"} <= tables:
        if create:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")  # each step sets its own (_transaction)
        return
    if version == 0 and not tables and create:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
        return
    if version == 0 and not tables:
        raise SdkError(f"journal {where!r} is empty: no job was started in it")
    older = "an older" if version < SCHEMA_VERSION else "a newer"
    raise SdkError(
        f"journal {where!r} was written by {older} version of b24batch (journal schema "
        f"{version}; this version reads schema {SCHEMA_VERSION}); nothing was sent. Finish the "
        f"job with the version that started it, or pass a new journal file to start afresh"
    )


def _lock(where: str) -> Any:
    """Take the job's lock, ``{path}-lock``, at once or refuse; it dies with the process."""
    lock_path = where + "-lock"
    try:
        handle = open(lock_path, "a+b")  # noqa: SIM115 - held for the job's life
    except OSError as error:
        raise SdkError(
            f"journal {where!r} cannot be opened: {error.strerror or error}; pass a path in "
            f"a folder this process can write"
        ) from error
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.close()
        raise SdkError(
            f"journal {where!r} is in use by another run of the job (its lock {lock_path!r} "
            f"is held); nothing was sent. Wait for that run to end, or stop it"
        ) from error
    return handle


def _unlock(handle: Any) -> None:
    handle.close()  # closing the descriptor releases flock and msvcrt locks alike


def _chunk_row(chunk: Chunk) -> tuple[Any, ...]:
    return (
        chunk.index,
        chunk_fingerprint(chunk),
        json.dumps(chunk.commands.keys[0]),
        len(chunk.commands),
        _row_digests(chunk),
        time.time(),
    )


def _row_digests(chunk: Chunk) -> str:
    """A short digest per row, only to name the row that differs: the chunk's fingerprint
    decides whether it does."""
    commands = chunk.commands
    return "".join(
        hashlib.blake2b(repr((key, command)).encode(), digest_size=_ROW // 2).hexdigest()
        for key, command in zip(commands.keys, commands.items, strict=True)
    )


def _job_fingerprint(protocol: Protocol, origin: str, chunks: Sequence[Chunk]) -> str:
    digest = hashlib.sha256(f"{protocol.name}\0{origin}\0".encode())
    for chunk in chunks:
        digest.update(f"{len(chunk.commands)}:{chunk_fingerprint(chunk)}\n".encode())
    return digest.hexdigest()


# -- answers and errors as JSON ---------------------------------------------------------------


def _time_json(value: Time | None) -> dict[str, Any] | None:
    return None if value is None else attrs.asdict(value)


def _time_from(value: Any) -> Time | None:
    return None if value is None else Time(**value)


def answers_json(answers: Answers, attempts: int, waited: float) -> dict[str, Any]:
    """What the journal keeps of an answer, as JSON values (:func:`answers_from_json` reads it)."""
    return {
        "status": answers.status,
        "time": _time_json(answers.time),
        "replayed": answers.replayed,
        "error": None if answers.error is None else _error_json(answers.error),
        "entries": answers.entries,
        "errors": [[p, _error_json(e)] for p, e in sorted(answers.errors.items())],
        "not_run": sorted(answers.not_run),
        "unknown": sorted(answers.unknown),
        "times": None if answers.times is None else [_time_json(t) for t in answers.times],
        "totals": None if answers.totals is None else list(answers.totals),
        "nexts": None if answers.nexts is None else list(answers.nexts),
        "attempts": attempts,
        "waited": waited,
    }


def answers_from_json(value: dict[str, Any]) -> tuple[Answers, int, float]:
    """``(answers, attempts, waited)`` back from :func:`answers_json`'s value."""
    error = value["error"]
    times = value["times"]
    answers = Answers(
        status=value["status"],
        time=_time_from(value["time"]),
        replayed=value["replayed"],
        error=None if error is None else _ajax(_error_from(error)),
        entries=value["entries"],
        errors={p: _ajax(_error_from(e)) for p, e in value["errors"]},
        not_run=frozenset(value["not_run"]),
        unknown=frozenset(value["unknown"]),
        times=None if times is None else [_time_from(t) for t in times],
        totals=value["totals"],
        nexts=value["nexts"],
    )
    return answers, int(value["attempts"]), float(value["waited"])


def _ajax(error: B24Error) -> AjaxError:
    assert isinstance(error, AjaxError)
    return error


def _error_json(error: B24Error) -> dict[str, Any]:
    name = type(error).__name__ if type(error).__name__ in _ERROR_TYPES else "B24Error"
    for cls in type(error).__mro__:  # an unknown subclass keeps its nearest known base
        if cls.__name__ in _ERROR_TYPES:
            name = cls.__name__
            break
    value: dict[str, Any] = {
        "type": name,
        "message": error.message,
        "request_id": error.request_id,
        "outcome_unknown": error.outcome_unknown,
        "attempts": error.attempts,
        "maybe_executed": list(error.maybe_executed),
    }
    if isinstance(error, AjaxError):
        value.update(
            code=error.code,
            status=error.status,
            key=error.key,
            validation=[[row.field, row.message] for row in error.validation],
        )
    return value


def _error_from(value: dict[str, Any]) -> B24Error:
    cls = _ERROR_TYPES.get(value["type"], B24Error)
    error: B24Error
    if issubclass(cls, AjaxError):
        error = cls(
            value["message"],
            code=value["code"],
            status=value["status"],
            validation=[FieldError(field, message) for field, message in value["validation"]],
            request_id=value["request_id"],
            outcome_unknown=value["outcome_unknown"],
        )
        if value["key"] is not None:
            error.key = value["key"]
    else:
        error = cls(
            value["message"],
            request_id=value["request_id"],
            outcome_unknown=value["outcome_unknown"],
        )
    error.attempts = value["attempts"]
    keys: tuple[Key, ...] = tuple(value["maybe_executed"])
    if keys:
        how: Literal["stopped", "unknown", "ran"] = (
            "unknown"
            if error.outcome_unknown
            else ("ran" if isinstance(error, DecodeError) else "stopped")
        )
        error.set_maybe_executed(keys, how)
    return error
