"""One refresh per expiry across real processes: 8 processes x 4 threads on one store.

Each child process builds its own ``OAuthApp`` over the same store (a real SQLite file, then a
real redis-server), as Gunicorn or Celery workers would; the FakeAuthServer counts the refresh
requests that reach it. Every wait is bounded: barriers, queue reads and joins time out, and a
child still alive at the end is killed.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b24batch import BatchV3, OAuthApp, RedisStore, SQLiteStore
from b24batch.testing import FakeAuthServer, FakePortal
from tests.support.redis_server import RedisServer

PROCESSES = 8
THREADS = 4
EXPIRIES = 3
BATCHES = 2  # per thread and round
WAIT = 60.0
READ = [("tasks.task.get", {"id": 1})]
SPAWN = multiprocessing.get_context("spawn")  # no thread of the parent's servers is copied


def _store(kind: str, where: str) -> Any:
    return SQLiteStore(where) if kind == "sqlite" else RedisStore(where)


def _app(config: dict[str, Any]) -> OAuthApp:
    return OAuthApp(
        client_id=config["client_id"],
        client_secret=config["client_secret"],
        store=_store(config["kind"], config["where"]),
        token_url=config["token_url"],
        refresh_timeout=config.get("refresh_timeout", 10.0),
    )


def _worker(config: dict[str, Any], barrier: Any, results: Any) -> None:
    """A child process: one app, one client, THREADS threads; each round starts and ends on the
    barrier the parent waits on, after the parent expired every access token."""
    app = _app(config)
    client = app.client(config["member_id"], rate_limit=None)
    report: list[str] = []

    def run() -> None:
        for _ in range(EXPIRIES):
            barrier.wait(WAIT)
            for _ in range(BATCHES):
                try:
                    result = BatchV3(client).make(READ)
                    report.append("ok" if result.is_success else f"failed: {result.errors}")
                except Exception as exc:
                    report.append(f"{type(exc).__name__}: {exc}")
            barrier.wait(WAIT)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * (EXPIRIES + 1))
    results.put((os.getpid(), report))


@pytest.fixture
def auth() -> Iterator[FakeAuthServer]:
    with FakeAuthServer(hang_seconds=60.0) as server:
        yield server


@pytest.fixture
def portal(auth: FakeAuthServer) -> Iterator[FakePortal]:
    with FakePortal(auth_server=auth) as fake:
        fake.add_task(title="Seed")
        yield fake


@pytest.fixture(params=["sqlite", "redis"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real SQLite file, then a real redis-server: what the children's stores open."""
    if request.param == "sqlite":
        yield "sqlite", str(tmp_path / "tokens.sqlite3")
        return
    server = RedisServer()
    server.start()
    try:
        yield "redis", server.url
    finally:
        server.stop()


def _config(auth: FakeAuthServer, portal: FakePortal, kind: str, at: str) -> dict[str, Any]:
    config = {
        "client_id": auth.client_id,
        "client_secret": auth.client_secret,
        "token_url": auth.token_url,
        "kind": kind,
        "where": at,
    }
    app = _app(config)
    config["member_id"] = app.save_tokens(auth.install(portal))
    return config


def _stop(processes: list[Any]) -> None:
    for process in processes:
        process.join(WAIT)
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(5.0)


def test_one_refresh_per_expiry_across_eight_processes(
    auth: FakeAuthServer, portal: FakePortal, where: tuple[str, str]
) -> None:
    """8 processes x 4 threads, the token expiring 3 times: 3 refresh calls, every batch ok."""
    config = _config(auth, portal, *where)
    barrier = SPAWN.Barrier(PROCESSES * THREADS + 1)
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=_worker, args=(config, barrier, results)) for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        calls = []
        for _ in range(EXPIRIES):
            auth.expire_access_tokens()
            barrier.wait(WAIT * 2)  # the round starts: every thread meets expired_token
            barrier.wait(WAIT * 2)  # the round ends
            calls.append(auth.refresh_calls())
        reports = [results.get(timeout=WAIT) for _ in processes]
    finally:
        _stop(processes)
    outcomes = [line for _, report in reports for line in report]
    assert outcomes == ["ok"] * (PROCESSES * THREADS * BATCHES * EXPIRIES), set(outcomes)
    assert calls == [1, 2, 3]  # exactly one refresh reached the server per expiry
    assert _app(config).portals()[0].version == 1 + EXPIRIES


def _hold_the_lease(config: dict[str, Any]) -> None:
    """A child that meets expired_token and refreshes; the parent kills it mid-refresh."""
    client = _app(config).client(config["member_id"], rate_limit=None)
    BatchV3(client).make(READ)


def _lease_held(path: str) -> bool:
    with sqlite3.connect(path, timeout=5.0) as db:
        try:
            return db.execute("SELECT count(*) FROM b24batch_leases").fetchone()[0] > 0
        except sqlite3.OperationalError:  # the table is not there yet
            return False


def test_a_process_killed_holding_the_lease_delays_the_others_by_the_lease(
    auth: FakeAuthServer, portal: FakePortal, tmp_path: Path
) -> None:
    """SIGKILL the process whose refresh hangs, holding the lease: the others refresh once
    after the lease ran out, and every batch succeeds."""
    config = {**_config(auth, portal, "sqlite", str(tmp_path / "kill.sqlite3"))}
    config["refresh_timeout"] = 2.0  # the lease: 2 s + LEASE_MARGIN
    auth.fail_refresh("hang")  # held 60 s: the child is killed long before
    auth.expire_access_tokens()
    holder = SPAWN.Process(target=_hold_the_lease, args=(config,))
    holder.start()
    try:
        deadline = time.monotonic() + WAIT
        while not (auth.refresh_calls() == 1 and _lease_held(config["where"])):
            assert time.monotonic() < deadline, "the child never took the lease"
            assert holder.is_alive(), "the child ended before it was killed"
            time.sleep(0.02)
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join(WAIT)
    finally:
        _stop([holder])
    assert holder.exitcode == -signal.SIGKILL
    app = _app(config)
    client = app.client(config["member_id"], rate_limit=None)
    outcomes: list[Any] = []

    def run() -> None:
        try:
            outcomes.append(BatchV3(client).make(READ).is_success)
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert outcomes == [True] * THREADS
    assert auth.refresh_calls() == 2  # the killed one, then one for everyone else
    assert app.portals()[0].version == 2
