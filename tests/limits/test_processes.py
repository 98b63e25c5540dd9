"""Limit stores across processes and hosts: spawned clients, a Redis that dies, skewed clocks.

Against one FakePortal whose bucket is burst 50 draining 20/s (the portal's 50 and 2/s, ten
times faster) and a real ``redis-server``. The counts are asserted; the wall time against the
bucket's minimum is a benchmark figure (``python -m tests.benchmarks.stores``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from b24batch import B24Error, B24Hook, BatchV3, RateLimit, RedisStore, RetryPolicy, SQLiteStore
from b24batch._limits.bucket import LeakyBucket
from b24batch._limits.policy import DEFAULT_RESET_SLACK
from b24batch._limits.shared import SharedBucket
from b24batch.testing import FakePortal
from tests.benchmarks.stores import CALLS, run_outage, run_processes
from tests.limits.helpers import ORIGIN, Clock
from tests.support.redis_server import RedisServer

BUCKET = (50, 20.0)
PROCESSES, BATCHES = 4, 50
OUTAGE_BUCKET = (10, 10.0)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A real redis-server of this test's own, stopped after it."""
    running = RedisServer()
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_spawned_processes_sharing_a_store_never_collect_a_503(
    kind: str, server: RedisServer, tmp_path: Path
) -> None:
    """Four spawned processes x 50 batches through one store: all 200 answered, no 503."""
    where = server.url if kind == "redis" else str(tmp_path / "limits.sqlite3")
    with FakePortal(rate_limit=BUCKET) as portal:
        run = run_processes(
            portal.webhook_url, (kind, where), processes=PROCESSES, batches=BATCHES, limit=BUCKET
        )
        assert (run.ok, run.refused, run.other) == (PROCESSES * BATCHES, 0, 0)
        assert len(portal.requests) == PROCESSES * BATCHES  # none refused, none repeated


def test_spawned_processes_limiting_alone_collect_503s() -> None:
    """The same four processes with in-process limits each take the whole burst: 503s."""
    with FakePortal(rate_limit=BUCKET) as portal:
        run = run_processes(
            portal.webhook_url, ("memory", None), processes=PROCESSES, batches=BATCHES, limit=BUCKET
        )
    assert run.refused > 0
    assert run.ok + run.refused == PROCESSES * BATCHES
    assert run.other == 0


class FakeTime:
    """Clocks that move only when a client sleeps; ``sleeps`` records every wait."""

    def __init__(self) -> None:
        self.wall = time.time()
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.wall

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.wall += seconds


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_operating_time_reported_to_one_client_makes_another_wait(
    kind: str, server: RedisServer, tmp_path: Path
) -> None:
    """A client that never sent waits for the reset another client's answer reported."""
    fake = FakeTime()
    store = (
        RedisStore(server.url, clock=fake.clock)
        if kind == "redis"
        else SQLiteStore(tmp_path / "limits.sqlite3")
    )
    limit = RateLimit(operating_limit=100.0, operating_margin=25.0)
    with FakePortal(command_cost=40.0, operating_limit=100.0, wall_clock=fake.clock) as portal:
        portal.add_task(title="Seed")
        hooks = [
            B24Hook.from_webhook_url(
                portal.webhook_url,
                rate_limit=limit,
                limit_store=store,
                retry=RetryPolicy(max_wait=900.0),
                clock=fake.clock,
                wall_clock=fake.clock,
                sleep=fake.sleep,
            )
            for _ in range(2)
        ]
        first = BatchV3(hooks[0]).make(CALLS * 2)  # 80 s charged: within the margin of 100
        assert first.time is not None
        assert first.time.operating_reset_at is not None
        assert hooks[1].limit_state().operating == pytest.approx(80.0)
        before = fake.wall
        second = BatchV3(hooks[1]).make(CALLS)
    reset = first.time.operating_reset_at + DEFAULT_RESET_SLACK  # whole seconds: one more
    assert fake.sleeps == [pytest.approx(reset - before)]
    assert (second.attempts, second.waited) == (1, fake.sleeps[0])
    assert len(portal.requests) == 2  # waited instead of collecting a 429


def test_redis_killed_mid_run_falls_back_and_comes_back(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis dies: the batches go on, limited in-process from the last level seen, one
    WARNING; back: shared again, the restarted server's bucket first taken as full."""
    # Frozen clocks, the store's and the client's: neither the shared bucket nor the in-process
    # fallback may drain while the test counts what they booked (on a loaded machine five
    # batches took long enough for the store's bucket to drain one request).
    store = RedisStore(server.url, recheck=0.2, timeout=0.5, clock=lambda: 1000.0)
    probe = redis.Redis(unix_socket_path=str(server.socket), socket_timeout=2.0)
    limit = RateLimit(burst=BUCKET[0], per_second=BUCKET[1])
    with FakePortal(rate_limit=BUCKET) as portal:
        hook = B24Hook.from_webhook_url(
            portal.webhook_url,
            retry=None,
            rate_limit=limit,
            limit_store=store,
            clock=lambda: 1000.0,
        )
        origin = urlsplit(portal.webhook_url)
        key = store.prefix + store.bucket_key(f"{origin.scheme}://{origin.netloc}")
        for _ in range(5):
            BatchV3(hook).make(CALLS)
        assert float(probe.hget(key, "level") or 0) == pytest.approx(5.0, abs=0.5)
        probe.close()
        server.kill()
        with caplog.at_level(logging.WARNING, logger="b24batch"):
            before = hook.limit_state().requests_available  # the in-process fallback's
            results = [BatchV3(hook).make(CALLS) for _ in range(10)]
            during = hook.limit_state().requests_available
            server.start()
            time.sleep(0.3)  # past recheck: the next call tries the store again
            after = [BatchV3(hook).make(CALLS) for _ in range(5)]
        hook.close()
    assert all(result.is_success for result in results + after)
    assert before is not None
    assert during is not None
    assert before == pytest.approx(limit.ceiling - 5, abs=0.5)  # the five the store counted
    assert during == pytest.approx(before - 10, abs=0.5)  # the fallback counted the ten
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "unreachable" in warnings[0]
    assert "limiting in this process" in warnings[0]
    assert "answers again" in warnings[1]
    probe = redis.Redis(unix_socket_path=str(server.socket), socket_timeout=2.0)
    # the fresh server's bucket: taken as full (the burst), then the five
    assert float(probe.hget(key, "level") or 0) == pytest.approx(limit.burst + 5, abs=0.5)
    probe.close()


def test_clients_with_skewed_clocks_share_one_bucket(server: RedisServer) -> None:
    """Two clients whose clocks differ by 30 s share one bucket: no 503 between them."""
    limit = RateLimit(burst=BUCKET[0], per_second=BUCKET[1])
    errors: list[B24Error] = []
    with FakePortal(rate_limit=BUCKET) as portal:
        hooks = [
            B24Hook.from_webhook_url(
                portal.webhook_url,
                retry=None,
                rate_limit=limit,
                limit_store=RedisStore(server.url),
                clock=lambda skew=skew: time.monotonic() + skew,
                wall_clock=lambda skew=skew: time.time() + skew,
            )
            for skew in (0.0, 30.0)
        ]

        def send(hook: B24Hook) -> None:
            for _ in range(30):
                try:
                    BatchV3(hook).make(CALLS)
                except B24Error as error:  # a 503 lands here: retries are off
                    errors.append(error)

        threads = [threading.Thread(target=send, args=(hook,)) for hook in hooks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert len(portal.requests) == 60
        for hook in hooks:
            hook.close()


def test_skewed_local_clocks_would_not_share_a_local_time_store(tmp_path: Path) -> None:
    """Control: the SQLite store times the bucket by each client's own clock, so a client
    30 s ahead finds the other's burst drained: the Redis test above depends on the server's
    clock, not on luck."""
    store = SQLiteStore(tmp_path / "limits.sqlite3")
    limit = RateLimit(burst=BUCKET[0], per_second=BUCKET[1])
    with FakePortal() as portal:
        behind, ahead = (
            B24Hook.from_webhook_url(
                portal.webhook_url,
                retry=None,
                rate_limit=limit,
                limit_store=store,
                clock=lambda now=now: now,  # clocks that stand still: exact figures
            )
            for now in (1000.0, 1030.0)
        )
        for _ in range(limit.ceiling):
            BatchV3(behind).make(CALLS)
        assert behind.limit_state().requests_available == 0.0
        assert ahead.limit_state().requests_available == limit.ceiling


def test_redis_killed_under_four_processes_costs_at_most_three_503s(server: RedisServer) -> None:
    """Four spawned processes on one RedisStore, portal bucket 10 at 10/s, redis-server killed
    for two seconds mid-run: the fallbacks share the rate they last knew, so the portal says
    503 at most three times and no batch raises."""
    with FakePortal(rate_limit=OUTAGE_BUCKET) as portal:
        run = run_outage(
            portal.webhook_url,
            ("redis", server.url),
            outage=server.kill,
            comeback=server.start,
            limit=OUTAGE_BUCKET,
        )
    assert run.ok > 0
    assert (run.raised, run.refused <= 3) == (0, True), run


def test_the_fallback_takes_its_share_of_the_last_level_seen(server: RedisServer) -> None:
    """Four clients (four store objects, as four processes) booked 4 of a ceiling of 8; Redis
    dies: each falls back to a quarter of the bucket — ceiling 2, 2.5/s — holding a quarter
    of the level it last saw."""
    clock = Clock(1000.0)
    limit = RateLimit(burst=10, per_second=10.0)
    stores = [RedisStore(server.url, clock=clock, recheck=3600, timeout=0.5) for _ in range(4)]
    buckets = [SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock)) for store in stores]
    assert [bucket.reserve() for bucket in buckets] == [0.0] * 4
    assert [bucket.available() for bucket in buckets] == [4.0] * 4  # each sees 4 clients
    server.kill()
    assert [bucket.available() for bucket in buckets] == [1.0] * 4
    assert buckets[0].reserve() == 0.0
    assert buckets[0].reserve() == pytest.approx(1 / 2.5)
    clock.now += 0.4
    assert buckets[0].available() == pytest.approx(0.0)  # 3 less 0.4 s at 2.5/s: its ceiling
    assert buckets[1].available() == pytest.approx(2.0)  # its 1 drained: its whole share
    for store in stores:
        store.close()
