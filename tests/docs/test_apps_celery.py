"""The deployment docs/apps.md describes, for real: two Celery workers run the docs' task.

A real redis-server is the broker, the result backend and the store of tokens and limits; two
``celery worker`` processes (4 threads each) import ``docs/examples/oauth_app.py`` and run its
``b24.sync_titles`` task over three portals of one application, while the access tokens expire
twice. Every task must succeed, with one refresh per portal per expiry. Every wait is bounded;
the workers are stopped (SIGTERM, then SIGKILL) however the test ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from b24batch import OAuthApp, RedisStore
from b24batch.testing import FakeAuthServer, FakePortal
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"  # the task is "oauth_app.py"'s
WORKERS = 2
PORTALS = 3
TASKS = 8  # per portal and round
ROUNDS = 3  # the tokens expire before rounds 2 and 3
WAIT = 60.0

CELERY_APP = """
import os

from celery import Celery

app = Celery(
    "b24test",
    broker=os.environ["CELERY_BROKER_URL"],
    backend=os.environ["CELERY_BROKER_URL"],
    include=["oauth_app"],
)
app.conf.broker_connection_retry_on_startup = True
"""


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _start_workers(folder: Path, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    (folder / "celery_app.py").write_text(CELERY_APP, encoding="utf-8")
    workers = []
    for n in range(WORKERS):
        with (folder / f"worker{n}.log").open("wb") as log:  # the child keeps its own copy
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "celery_app",
                        "worker",
                        "--pool=threads",
                        "--concurrency=4",
                        f"--hostname=w{n}@b24test",
                        "--without-gossip",
                        "--without-mingle",
                        "--loglevel=WARNING",
                    ],
                    cwd=folder,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return workers


def _stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(15.0)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5.0)


def _wait_for_workers(client: Celery, workers: list[subprocess.Popen[bytes]], folder: Path) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.poll() is not None:
                logs = " | ".join(p.read_text() for p in folder.glob("worker*.log"))
                pytest.fail(f"a Celery worker exited at start: {logs[-2000:]}")
        if len(client.control.ping(timeout=1.0) or []) == WORKERS:
            return
    pytest.fail(f"the {WORKERS} Celery workers did not answer within {WAIT} s")


def test_two_celery_workers_run_the_docs_task_over_three_portals_across_expiries(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Three portals, two workers, two expiries: every task returns its title, one refresh per
    portal per expiry, and the store's record moved once per expiry."""
    broker = f"redis+socket://{redis_server.socket}"
    store_url = f"unix://{redis_server.socket}?db=1"
    with FakeAuthServer() as auth:
        portals = [FakePortal(auth_server=auth).start() for _ in range(PORTALS)]
        workers: list[subprocess.Popen[bytes]] = []
        client = Celery("b24test-caller", broker=broker, backend=broker)
        try:
            app = OAuthApp(
                client_id=auth.client_id,
                client_secret=auth.client_secret,
                store=RedisStore(store_url),
                token_url=auth.token_url,
            )
            tasks = {}
            for n, portal in enumerate(portals):
                member_id = app.save_tokens(auth.install_event(portal))
                tasks[member_id] = (portal.add_task(title=f"portal {n}"), f"portal {n}")
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(tmp_path), str(EXAMPLES), str(ROOT)]),
                "CELERY_BROKER_URL": broker,
                "B24_CLIENT_ID": auth.client_id,
                "B24_CLIENT_SECRET": auth.client_secret,
                "B24_TOKEN_URL": auth.token_url,
                "B24_STORE": store_url,
            }
            workers = _start_workers(tmp_path, env)
            _wait_for_workers(client, workers, tmp_path)
            for round_ in range(ROUNDS):
                if round_:
                    auth.expire_access_tokens()
                sent = [
                    (title, client.send_task("b24.sync_titles", args=[member_id, [task_id]]))
                    for member_id, (task_id, title) in tasks.items()
                    for _ in range(TASKS)
                ]
                got = [(title, result.get(timeout=WAIT)) for title, result in sent]
                assert all(titles == [title] for title, titles in got), got
                for member_id in tasks:
                    assert auth.refresh_calls(member_id) == round_, (round_, member_id)
            assert {p.member_id: p.version for p in app.portals()} == {
                member_id: ROUNDS for member_id in tasks
            }
        finally:
            _stop_workers(workers)
            client.close()
            for portal in portals:
                portal.stop()
