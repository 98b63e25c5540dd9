"""The limit stores (b24batch._limits: shared, sqlite, redis) against the in-process bucket.

Every shared store must give exactly the in-process figures on the same injected clock; the
Redis store runs against a real ``redis-server`` (tests/support/redis_server.py), with its clock
injected where a figure is exact. Also: keys, foreign values, fallback, fork, misuse.
"""

from __future__ import annotations

import logging
import multiprocessing
import socket
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from b24batch import (
    B24Hook,
    B24OAuth,
    BatchV3,
    LimitStore,
    RateLimit,
    RedisStore,
    SdkError,
    SdkTypeError,
    SQLiteStore,
    Time,
)
from b24batch._limits.bucket import Bucket, LeakyBucket
from b24batch._limits.policy import DEFAULT_RESET_SLACK
from b24batch._limits.shared import FUTURE_TOLERANCE, SharedBucket, SharedMeter, fingerprint
from b24batch.redaction import Secret
from b24batch.testing import FakePortal
from tests.support.redis_server import RedisServer

ORIGIN = "https://example.bitrix24.com"
CALLS = [("tasks.task.list", {"select": ["id"]})]
KINDS = ["memory", "sqlite", "redis"]
SHARED = ["sqlite", "redis"]


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """One real redis-server for the module; each test uses keys under its own prefix."""
    running = RedisServer()
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    """A plain redis-py client on the test server, to look at and spoil what the store wrote."""
    client = redis.Redis(unix_socket_path=str(server.socket), socket_timeout=2.0)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


StoreFactory = Callable[[str], LimitStore]


@pytest.fixture
def make_store(server: RedisServer, tmp_path: Path, clock: Clock, raw: redis.Redis) -> StoreFactory:
    """``make_store(kind)``: a SQLiteStore in tmp_path, or a RedisStore on the injected clock."""

    def make(kind: str, **options: Any) -> LimitStore:
        if kind == "sqlite":
            return SQLiteStore(tmp_path / "limits.sqlite3", **options)
        return RedisStore(server.url, clock=clock, **options)

    return make


@pytest.fixture
def make_bucket(make_store: StoreFactory, clock: Clock) -> Callable[[str, RateLimit], Bucket]:
    """``make_bucket(kind, limit)``: the in-process bucket, or one in a shared store."""

    def make(kind: str, limit: RateLimit) -> Bucket:
        local = LeakyBucket(limit, clock)
        if kind == "memory":
            return local
        return SharedBucket(make_store(kind), ORIGIN, clock, local)

    return make


# -- the same figures as in process -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_burst_then_steady_drain(kind: str, make_bucket: Any) -> None:
    """The first `ceiling` requests go at once; the next wait 1/per_second each, in order."""
    bucket = make_bucket(kind, RateLimit(burst=5, per_second=2.0))
    assert [bucket.reserve() for _ in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]


@pytest.mark.parametrize("kind", KINDS)
def test_the_counter_drains_with_time(kind: str, make_bucket: Any, clock: Clock) -> None:
    """After the counter drains, requests go without waiting again."""
    bucket = make_bucket(kind, RateLimit(burst=4, per_second=1.0))
    assert [bucket.reserve() for _ in range(2)] == [0.0, 0.0]
    assert bucket.available() == 0.0
    clock.now += 1.5
    assert bucket.available() == pytest.approx(1.5)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_a_wait_beyond_the_budget_books_nothing(kind: str, make_bucket: Any) -> None:
    """reserve(budget) books a wait that fits and leaves the counter alone otherwise."""
    bucket = make_bucket(kind, RateLimit(burst=1, per_second=2.0))
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.1) == 0.5  # too long: not booked
    assert bucket.wait() == 0.5
    assert bucket.reserve(0.5) == 0.5  # booked
    assert bucket.wait() == 1.0
    assert bucket.wait(after=1.0) == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_a_503_saturates_the_counter(kind: str, make_bucket: Any) -> None:
    """After the portal's 503 the counter is full: the next waits for the drain to the ceiling."""
    bucket = make_bucket(kind, RateLimit(burst=10, per_second=4.0))
    assert bucket.reserve() == 0.0
    bucket.saturate()
    assert bucket.available() == 0.0
    assert bucket.reserve() == pytest.approx(0.75)


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_reservations_queue_in_order(kind: str, make_bucket: Any) -> None:
    """Eight threads booking at one instant each get one slot: waits exactly 0..n spaced."""
    bucket = make_bucket(kind, RateLimit(burst=1, per_second=10.0))
    waits: list[float] = []
    lock = threading.Lock()

    def reserve() -> None:
        for _ in range(20):
            wait = bucket.reserve()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(round(w, 6) for w in waits) == [round(i / 10, 6) for i in range(160)]


# -- one state for every client of the store --------------------------------------------------


@pytest.mark.parametrize("kind", SHARED)
def test_two_buckets_of_one_portal_share_the_counter(
    kind: str, make_store: StoreFactory, clock: Clock
) -> None:
    """Two clients' buckets on one store draw from one counter; another portal has its own."""
    limit = RateLimit(burst=5, per_second=2.0)
    store = make_store(kind)
    first, second = (SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock)) for _ in "ab")
    other = SharedBucket(store, "https://other.bitrix24.com", clock, LeakyBucket(limit, clock))
    assert [first.reserve(), second.reserve(), first.reserve()] == [0.0, 0.0, 0.0]
    assert second.reserve() == 0.5
    assert other.reserve() == 0.0
    assert other.available() == 2.0


@pytest.mark.parametrize("kind", SHARED)
def test_each_egress_has_its_own_bucket(kind: str, make_store: StoreFactory, clock: Clock) -> None:
    """Hosts leaving through different public IPs (egress labels) count apart, as the portal."""
    limit = RateLimit(burst=3, per_second=1.0)
    one = SharedBucket(
        make_store(kind, egress="203.0.113.7"), ORIGIN, clock, LeakyBucket(limit, clock)
    )
    two = SharedBucket(
        make_store(kind, egress="198.51.100.2"), ORIGIN, clock, LeakyBucket(limit, clock)
    )
    assert one.key == f"bucket:{ORIGIN}@203.0.113.7"
    assert one.reserve() == 0.0
    assert one.reserve() == 1.0
    assert two.reserve() == 0.0


@pytest.mark.parametrize("kind", SHARED)
def test_meter_figures_reach_every_client(
    kind: str, make_store: StoreFactory, clock: Clock
) -> None:
    """Operating time recorded by one meter makes another wait for the reset, then clears."""
    limit = RateLimit(operating_limit=100.0, operating_margin=25.0)
    store = make_store(kind)
    key = store.meter_key(ORIGIN, "abc", "batch")
    told, other = (SharedMeter(store, key, limit, clock) for _ in "ab")
    told.record(Time(operating=80.0, operating_reset_at=clock.now + 40.0))
    assert other.state() == (80.0, clock.now + 40.0)
    assert other.delay() == pytest.approx(40.0 + DEFAULT_RESET_SLACK)
    told.record(Time(operating=81.0))  # an answer without a reset time keeps the known one
    assert other.state() == (81.0, clock.now + 40.0)
    clock.now += 41.0 + DEFAULT_RESET_SLACK
    assert other.delay() == 0.0  # the basket dropped out: the figure is forgotten
    assert told.state() == (None, clock.now - 1.0 - DEFAULT_RESET_SLACK)


@pytest.mark.parametrize("kind", SHARED)
def test_limit_state_reads_the_shared_state(kind: str, make_store: StoreFactory) -> None:
    """limit_state() of a client that sent nothing shows what another client of the store sent."""
    store = make_store(kind)
    with FakePortal() as portal:
        sender, watcher = (
            B24Hook.from_webhook_url(portal.webhook_url, limit_store=store, clock=lambda: 5.0)
            for _ in "ab"
        )
        BatchV3(sender).make(CALLS)
        BatchV3(sender).make(CALLS)
        state = watcher.limit_state()
    assert state.requests_available == RateLimit().ceiling - 2
    assert state.operating is not None  # the FakePortal reports operating time


def test_the_oauth_client_takes_a_store(make_store: StoreFactory) -> None:
    """B24OAuth accepts limit_store= and keeps its bucket in it."""
    store = make_store("sqlite")
    client = B24OAuth(f"{ORIGIN}/rest/", "token-value", limit_store=store)
    assert isinstance(client.limiter.bucket, SharedBucket)
    assert client.limiter.bucket.store is store
    assert isinstance(client.limiter.meter, SharedMeter)


# -- keys and what is written --------------------------------------------------------------


@pytest.mark.parametrize("kind", SHARED)
def test_nothing_secret_is_written_to_the_store(
    kind: str, make_store: StoreFactory, raw: redis.Redis, tmp_path: Path
) -> None:
    """After real batches, no key or value in the store holds the webhook secret."""
    secret = "VerySecretWebhookValue42"
    store = make_store(kind)
    with FakePortal(secret=secret) as portal:
        hook = B24Hook.from_webhook_url(portal.webhook_url, limit_store=store)
        BatchV3(hook).make(CALLS)
        hook.close()
    if kind == "redis":
        dump = b"".join(key + repr(raw.hgetall(key)).encode() for key in raw.keys("*"))
    else:
        with sqlite3.connect(tmp_path / "limits.sqlite3") as db:
            dump = "\n".join(db.iterdump()).encode()
    assert b"operating:" in dump  # the meter was written...
    assert secret.encode() not in dump  # ...under a hash, never the secret
    assert fingerprint(Secret(f"x/{secret}")).encode() not in dump
    assert isinstance(hook.limiter.meter, SharedMeter)
    assert hook.limiter.meter.key.encode() in dump


def test_the_credential_hash_is_short_stable_and_one_way() -> None:
    """fingerprint() gives 16 hex digits, the same for one credential, apart for another."""
    one, again, other = (fingerprint(Secret(s)) for s in ("a/secret1", "a/secret1", "a/secret2"))
    assert one == again
    assert one != other
    assert len(one) == 16
    assert "secret" not in one


def test_redis_keys_live_under_the_prefix(make_store: StoreFactory, raw: redis.Redis) -> None:
    """Every key the Redis store writes starts with its prefix, and expires."""
    store = make_store("redis", prefix="myapp:limits:")
    with FakePortal() as portal:
        hook = B24Hook.from_webhook_url(portal.webhook_url, limit_store=store)
        BatchV3(hook).make(CALLS)
        hook.close()
    keys = sorted(key.decode() for key in raw.keys("*"))
    assert [key.split(":")[2] for key in keys] == ["bucket", "operating"]
    assert all(key.startswith("myapp:limits:") for key in keys)
    assert all(raw.ttl(key) > 0 for key in keys)


# -- foreign values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda r, k: r.set(k, "not a hash"), id="a-string"),
        pytest.param(lambda r, k: r.rpush(k, "a", "b"), id="a-list"),
        pytest.param(lambda r, k: r.hset(k, mapping={"level": "nan", "updated": "1"}), id="nan"),
        pytest.param(
            lambda r, k: r.hset(k, mapping={"level": "-5", "updated": "1"}), id="negative"
        ),
        pytest.param(lambda r, k: r.hset(k, mapping={"level": "x", "updated": "y"}), id="text"),
        pytest.param(
            lambda r, k: r.hset(k, mapping={"level": "40", "updated": "9e99"}), id="future"
        ),
    ],
)
def test_a_foreign_redis_value_counts_as_empty_and_is_replaced(
    spoil: Callable[[redis.Redis, str], object],
    make_store: StoreFactory,
    raw: redis.Redis,
    clock: Clock,
) -> None:
    """Nonsense under the bucket's key reads as an empty bucket; the next booking replaces it."""
    store = make_store("redis")
    limit = RateLimit(burst=5, per_second=2.0)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock))
    key = "b24batch:" + bucket.key
    spoil(raw, key)
    assert bucket.available() == 3.0
    assert bucket.reserve() == 0.0
    assert raw.type(key) == b"hash"
    assert float(raw.hget(key, "level") or -1) == 1.0


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


@pytest.mark.parametrize("kind", SHARED)
def test_a_foreign_meter_value_counts_as_empty(
    kind: str, make_store: StoreFactory, raw: redis.Redis, tmp_path: Path, clock: Clock
) -> None:
    """A meter whose stored figures are nonsense reads as never reported and is replaced."""
    store = make_store(kind)
    meter = SharedMeter(store, store.meter_key(ORIGIN, "abc", "batch"), RateLimit(), clock)
    if kind == "redis":
        raw.set("b24batch:" + meter.key, "garbage")
    else:
        assert meter.state() == (None, None)  # makes the tables
        with sqlite3.connect(tmp_path / "limits.sqlite3") as db:
            db.execute("INSERT INTO b24batch_meter VALUES (?, 'x', 'y')", (meter.key,))
    assert meter.state() == (None, None)
    assert meter.delay() == 0.0
    meter.record(Time(operating=470.0, operating_reset_at=clock.now + 10.0))
    assert meter.delay() == pytest.approx(10.0 + DEFAULT_RESET_SLACK)


# -- when the store is down -----------------------------------------------------------------


def test_an_unreachable_store_falls_back_and_warns_once(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that cannot be opened: every call still limited in-process, one WARNING."""
    store = SQLiteStore(tmp_path / "missing-folder" / "limits.sqlite3")
    limit = RateLimit(burst=5, per_second=2.0)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock))
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        waits = [bucket.reserve() for _ in range(5)]
    assert waits == [0.0, 0.0, 0.0, 0.5, 1.0]  # the in-process figures
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert messages[0].startswith(f"limit store <SQLiteStore {store.path}> unreachable (")
    assert messages[0].endswith("): limiting in this process until it answers again")


def test_a_store_that_answers_again_is_used_again(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Once the store answers (after recheck), the shared state is used, one WARNING said so."""
    folder = tmp_path / "later"
    store = SQLiteStore(folder / "limits.sqlite3", recheck=0.01)
    limit = RateLimit(burst=5, per_second=2.0)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock))
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        assert bucket.reserve() == 0.0  # in-process
        folder.mkdir()
        threading.Event().wait(0.05)  # past recheck
        assert bucket.reserve() == 0.0  # in the store, which starts empty
        assert bucket.available() == 2.0
    assert [r.getMessage() for r in caplog.records][1] == (
        f"limit store <SQLiteStore {store.path}> answers again: limits are shared again"
    )
    with sqlite3.connect(folder / "limits.sqlite3") as db:
        assert db.execute("SELECT level FROM b24batch_bucket").fetchall() == [(1.0,)]


def test_an_unreachable_redis_answers_within_its_timeout(clock: Clock) -> None:
    """A Redis that is not there fails fast into the fallback: calls do not fail."""
    store = RedisStore("unix:///nonexistent/redis.sock", timeout=0.2)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(RateLimit(), clock))
    assert bucket.reserve() == 0.0
    assert bucket.available() == 47.0


# -- fork ---------------------------------------------------------------------------------


def _child_client_id(url: str, out: Any) -> None:
    store = RedisStore(url)
    store.bucket_op("bucket:x", "available", RateLimit(), 0.0, lambda: 0.0)
    out.put(store._redis.client_id())


def _inherited_client_id(store: RedisStore, out: Any) -> None:
    store.bucket_op("bucket:x", "available", RateLimit(), 0.0, lambda: 0.0)
    out.put(store._redis.client_id())


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX")
@pytest.mark.parametrize("made", ["after-fork", "before-fork"])
def test_a_forked_process_opens_its_own_redis_connection(server: RedisServer, made: str) -> None:
    """After a fork the child talks to Redis on a connection of its own, not the parent's."""
    store = RedisStore(server.url)
    store.bucket_op("bucket:x", "available", RateLimit(), 0.0, lambda: 0.0)
    parent = store._redis.client_id()
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    target, args = (
        (_child_client_id, (server.url, out))
        if made == "after-fork"
        else (_inherited_client_id, (store, out))
    )
    child = context.Process(target=target, args=args)
    child.start()
    theirs = out.get(timeout=30)
    child.join(timeout=30)
    assert child.exitcode == 0
    assert theirs != parent
    assert store._redis.client_id() == parent  # the parent's connection is intact


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


# -- misuse -------------------------------------------------------------------------------


def test_redis_store_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without redis-py, RedisStore fails at construction naming the extra."""
    monkeypatch.setitem(sys.modules, "redis", None)  # makes `import redis` raise ImportError
    with pytest.raises(SdkError) as info:
        RedisStore("redis://localhost:6379/0")
    assert str(info.value) == (
        "RedisStore needs redis-py: pip install 'b24batch[redis]' (or pip install redis)"
    )


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://localhost:6379", id="http"),
        pytest.param("localhost:6379", id="no-scheme"),
        pytest.param("redis://localhost:port/0", id="bad-port"),
    ],
)
def test_a_redis_url_of_the_wrong_shape_is_refused(url: str) -> None:
    """The URL must be redis://, rediss:// or unix://; the message shows the forms."""
    with pytest.raises(SdkError) as info:
        RedisStore(url)
    assert str(info.value) == (
        "url: pass redis://host:6379/0, rediss://host:6380/0 or unix:///path/redis.sock"
    )


def test_the_redis_password_is_never_shown() -> None:
    """repr and the log description of a RedisStore leave the password out."""
    store = RedisStore("redis://:hunter2pass@redis.internal:6380/2")
    assert repr(store) == "<RedisStore redis://redis.internal:6380/2 prefix='b24batch:'>"
    assert "hunter2pass" not in store.describe()


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


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"egress": ""}, "egress=''", id="egress-empty"),
        pytest.param({"egress": "a\nb"}, "egress='a\\nb'", id="egress-newline"),
        pytest.param({"recheck": 0}, "recheck=0", id="recheck-0"),
        pytest.param({"timeout": -1.0}, "timeout=-1.0", id="timeout-negative"),
    ],
)
def test_bad_store_options_are_refused(options: dict[str, Any], message: str) -> None:
    """egress, recheck and timeout are checked at construction, naming the option."""
    with pytest.raises(SdkError) as info:
        SQLiteStore("/tmp/limits.sqlite3", **options)
    assert str(info.value).startswith(message + ": pass")


def test_limit_store_must_be_a_store() -> None:
    """limit_store= takes a store or None; anything else fails before any request."""
    with pytest.raises(SdkTypeError) as info:
        B24Hook.from_webhook_url(f"{ORIGIN}/rest/1/s/", limit_store="redis://localhost")
    assert str(info.value) == (
        "limit_store='redis://localhost': pass a RedisStore or SQLiteStore, or None to keep "
        "the limits in this process"
    )


def test_limit_store_without_limits_is_a_contradiction(tmp_path: Path) -> None:
    """limit_store= with rate_limit=None is refused: the store would have nothing to keep."""
    with pytest.raises(SdkError, match="limit_store= with rate_limit=None"):
        B24Hook.from_webhook_url(
            f"{ORIGIN}/rest/1/s/", rate_limit=None, limit_store=SQLiteStore(tmp_path / "l.db")
        )


# -- found by mutation testing (issue #12) --------------------------------------------------


def test_an_sqlite_error_code_outranks_its_message() -> None:
    """With SQLite's code at hand, an error that only mentions "locked" is not a lock."""
    from b24batch._limits.sqlite import _busy

    error = sqlite3.OperationalError("no such table: locked_rows")
    error.sqlite_errorcode = 1  # type: ignore[attr-defined]  # SQLITE_ERROR
    assert not _busy(error)


def test_a_sqlite_path_with_a_nul_byte_is_refused() -> None:
    """A path holding NUL fails at construction with the whole message, not at first use."""
    with pytest.raises(SdkError) as info:
        SQLiteStore("limits\0.sqlite3")
    assert str(info.value) == (
        "path='limits\\x00.sqlite3': pass a file path every process can write, such as "
        "/var/lib/myapp/b24-limits.sqlite3"
    )


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


@pytest.mark.parametrize("kind", SHARED)
def test_a_reset_time_alone_keeps_the_operating_figure(
    kind: str, make_store: StoreFactory, clock: Clock
) -> None:
    """An answer with only operating_reset_at reaches the store and keeps the figure there."""
    store = make_store(kind)
    key = store.meter_key(ORIGIN, "abc", "batch")
    told, other = (SharedMeter(store, key, RateLimit(), clock) for _ in "ab")
    told.record(Time(operating=80.0, operating_reset_at=clock.now + 40.0))
    told.record(Time(operating_reset_at=clock.now + 50.0))
    assert other.state() == (80.0, clock.now + 50.0)
    assert other.reset_at() == clock.now + 50.0


@pytest.mark.parametrize("kind", SHARED)
def test_an_operating_figure_without_a_reset_is_read_back(
    kind: str, make_store: StoreFactory, clock: Clock
) -> None:
    """A figure reported with no reset time ever is kept and read as it was."""
    store = make_store(kind)
    meter = SharedMeter(store, store.meter_key(ORIGIN, "abc", "batch"), RateLimit(), clock)
    meter.record(Time(operating=80.0))
    assert store.meter_op(meter.key, "read", None, None, clock)[:2] == (80.0, None)


@pytest.mark.parametrize("kind", SHARED)
def test_forget_spares_a_figure_of_a_newer_reset(
    kind: str, make_store: StoreFactory, clock: Clock
) -> None:
    """forget names the reset it saw: a figure another client recorded since is kept."""
    store = make_store(kind)
    key = store.meter_key(ORIGIN, "abc", "batch")
    store.meter_op(key, "record", 90.0, clock.now + 60.0, clock)
    assert store.meter_op(key, "forget", None, clock.now - 1.0, clock)[:2] == (
        90.0,
        clock.now + 60.0,
    )
    assert store.meter_op(key, "forget", None, clock.now + 60.0, clock)[:2] == (
        None,
        clock.now + 60.0,
    )


@pytest.mark.parametrize("kind", SHARED)
def test_reset_at_reads_what_another_client_reported(
    kind: str, make_store: StoreFactory, clock: Clock
) -> None:
    """reset_at() of a meter that was told nothing is the reset another client recorded."""
    store = make_store(kind)
    key = store.meter_key(ORIGIN, "abc", "batch")
    told, other = (SharedMeter(store, key, RateLimit(), clock) for _ in "ab")
    assert other.reset_at() is None
    told.record(Time(operating=10.0, operating_reset_at=clock.now + 30.0))
    assert other.reset_at() == clock.now + 30.0


def test_a_meter_limits_in_process_while_its_store_is_down(tmp_path: Path, clock: Clock) -> None:
    """Figures recorded while the store is unreachable still make the meter wait."""
    store = SQLiteStore(tmp_path / "missing-folder" / "limits.sqlite3")
    limit = RateLimit(operating_limit=100.0, operating_margin=25.0)
    meter = SharedMeter(store, store.meter_key(ORIGIN, "abc", "batch"), limit, clock)
    meter.record(Time(operating=90.0, operating_reset_at=clock.now + 20.0))
    assert meter.state() == (90.0, clock.now + 20.0)
    assert meter.reset_at() == clock.now + 20.0
    assert meter.delay() == 20.0 + DEFAULT_RESET_SLACK


def test_a_meter_without_an_operating_limit_never_waits(
    make_store: StoreFactory, clock: Clock
) -> None:
    """operating_limit=None: no wait, whatever the store holds."""
    store = make_store("sqlite")
    meter = SharedMeter(
        store, store.meter_key(ORIGIN, "abc", "batch"), RateLimit(operating_limit=None), clock
    )
    meter.record(Time(operating=590.0, operating_reset_at=clock.now + 30.0))
    assert meter.delay() == 0.0


def test_a_meter_without_limits_never_waits(make_store: StoreFactory, clock: Clock) -> None:
    """limit=None (no limits at all): no wait, whatever the store holds."""
    store = make_store("sqlite")
    meter = SharedMeter(store, store.meter_key(ORIGIN, "abc", "batch"), None, clock)
    meter.record(Time(operating=590.0, operating_reset_at=clock.now + 30.0))
    assert meter.delay() == 0.0


@pytest.mark.parametrize(
    ("ahead", "delay", "kept"),
    [
        pytest.param(0.5, 0.5, 90.0, id="half-a-second-left"),
        pytest.param(0.0, 0.0, None, id="on-the-dot"),
    ],
)
def test_a_shared_figure_is_forgotten_only_once_its_wait_is_over(
    ahead: float, delay: float, kept: float | None, make_store: StoreFactory, clock: Clock
) -> None:
    """A wait of half a second keeps the figure; a wait of exactly zero forgets it."""
    limit = RateLimit(operating_limit=100.0, operating_margin=25.0)
    store = make_store("sqlite")
    meter = SharedMeter(store, store.meter_key(ORIGIN, "abc", "batch"), limit, clock)
    reset = clock.now + ahead - DEFAULT_RESET_SLACK
    meter.record(Time(operating=90.0, operating_reset_at=reset))
    assert meter.delay() == delay
    assert meter.state() == (kept, reset)


def test_the_credential_hash_is_pinned() -> None:
    """The hash is part of the stored keys: processes of two releases must still share them."""
    assert fingerprint(Secret("a/secret1")) == "05cf694370ac9fd3"


@pytest.mark.parametrize("egress", ["a", "x" * 100])
def test_egress_labels_of_one_to_100_characters_are_taken(egress: str) -> None:
    """An egress label may be one character long, or 100."""
    assert SQLiteStore("/tmp/limits.sqlite3", egress=egress).bucket_key(ORIGIN) == (
        f"bucket:{ORIGIN}@{egress}"
    )


def test_without_egress_the_bucket_key_is_the_portal() -> None:
    """With no egress label the bucket is keyed by the portal alone."""
    assert SQLiteStore("/tmp/limits.sqlite3").bucket_key(ORIGIN) == f"bucket:{ORIGIN}"


@pytest.mark.parametrize(
    ("options", "kind", "message"),
    [
        pytest.param(
            {"egress": "x" * 101},
            SdkError,
            f"egress={'x' * 101!r}: pass a short printable label for the public IP this host's "
            "requests leave through, or None when all hosts share one",
            id="egress-101",
        ),
        pytest.param(
            {"recheck": "5"}, SdkTypeError, "recheck='5': pass seconds as a number", id="str"
        ),
        pytest.param(
            {"timeout": True}, SdkTypeError, "timeout=True: pass seconds as a number", id="bool"
        ),
        pytest.param(
            {"timeout": 3600.5},
            SdkError,
            "timeout=3600.5: pass seconds above 0 and at most 3600",
            id="timeout-past-an-hour",
        ),
    ],
)
def test_store_options_are_refused_with_the_whole_message(
    options: dict[str, Any], kind: type[Exception], message: str
) -> None:
    """Each refused option is named with its value and the fix."""
    with pytest.raises(kind) as info:
        SQLiteStore("/tmp/limits.sqlite3", **options)
    assert type(info.value) is kind
    assert str(info.value) == message


def test_an_hour_is_the_longest_timeout_and_recheck() -> None:
    """timeout= and recheck= of exactly 3600 s are accepted."""
    store = SQLiteStore("/tmp/limits.sqlite3", timeout=3600, recheck=3600)
    assert (store.timeout, store.recheck) == (3600.0, 3600.0)


def test_an_unreachable_store_is_not_tried_again_before_recheck(
    tmp_path: Path, clock: Clock
) -> None:
    """Until recheck has passed the store is left alone, even if it could answer now."""
    folder = tmp_path / "later"
    store = SQLiteStore(folder / "limits.sqlite3", recheck=3600)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(RateLimit(burst=5), clock))
    assert bucket.reserve() == 0.0  # in-process
    folder.mkdir()
    assert bucket.reserve() == 0.0
    assert bucket.available() == 1.0  # the fallback's two bookings, not the store's one
    assert not (folder / "limits.sqlite3").exists()


def test_the_unreachable_warning_names_the_error(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The WARNING says the store, the exception's type and its text."""
    store = SQLiteStore(tmp_path / "missing-folder" / "limits.sqlite3")
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        SharedBucket(store, ORIGIN, clock, LeakyBucket(RateLimit(), clock)).reserve()
    assert [record.getMessage() for record in caplog.records] == [
        f"limit store <SQLiteStore {store.path}> unreachable (OperationalError: unable to open "
        "database file): limiting in this process until it answers again"
    ]


class _DownStore(LimitStore):
    """A store of a user's own that never answers."""

    def __init__(self) -> None:
        super().__init__(egress=None, recheck=60.0, timeout=1.0)

    def bucket_op(self, *args: Any) -> float:
        raise OSError("down")

    def meter_op(self, *args: Any) -> Any:
        raise OSError("down")


def test_a_store_of_ones_own_is_named_by_its_class(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A LimitStore subclass without describe() is named by its class in the WARNING."""
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        SharedBucket(_DownStore(), ORIGIN, clock, LeakyBucket(RateLimit(), clock)).reserve()
    assert [record.getMessage() for record in caplog.records] == [
        "limit store _DownStore unreachable (OSError: down): limiting in this process until "
        "it answers again"
    ]


def _call_in_child(store: SQLiteStore, out: Any) -> None:
    out.put(store.call(lambda: "answered"))


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX")
def test_a_store_lock_held_at_fork_does_not_block_the_child(tmp_path: Path) -> None:
    """A fork while another thread holds the store's lock: the child gets a free lock."""
    store = SQLiteStore(tmp_path / "limits.sqlite3")
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    with store._lock:
        child = context.Process(target=_call_in_child, args=(store, out))
        child.start()
    try:
        assert out.get(timeout=10) == "answered"
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join(timeout=5)
    assert child.exitcode == 0


@pytest.mark.parametrize(
    ("options", "kind", "message"),
    [
        pytest.param(
            {"url": b"redis://localhost"},
            SdkTypeError,
            "url: pass a str such as redis://host:6379/0",
            id="url-bytes",
        ),
        pytest.param(
            {"prefix": "a\nb"},
            SdkError,
            "prefix='a\\nb': pass a printable str such as 'b24batch:'",
            id="prefix-newline",
        ),
        pytest.param(
            {"clock": 5.0},
            SdkTypeError,
            "clock=: pass a callable returning Unix seconds, or None",
            id="clock-number",
        ),
    ],
)
def test_redis_store_options_are_refused_with_the_whole_message(
    options: dict[str, Any], kind: type[Exception], message: str
) -> None:
    """A non-str URL, an unprintable prefix or a clock that is no callable fail at once."""
    arguments = {"url": "redis://localhost:6379/0", **options}
    with pytest.raises(kind) as info:
        RedisStore(**arguments)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param(
            "unix:///run/redis/redis.sock?db=1", "unix:///run/redis/redis.sock", id="unix"
        ),
        pytest.param("redis://redis.internal/0", "redis://redis.internal:6379/0", id="no-port"),
    ],
)
def test_the_redis_store_shows_where_it_connects(url: str, shown: str) -> None:
    """repr names the socket of a unix:// URL, and the default port 6379 of one without."""
    assert repr(RedisStore(url)) == f"<RedisStore {shown} prefix='b24batch:'>"


def test_an_unreachable_redis_is_named_in_the_warning(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The WARNING names the Redis store by its repr (no password)."""
    store = RedisStore("unix:///nonexistent/redis.sock", timeout=0.2)
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        SharedBucket(store, ORIGIN, clock, LeakyBucket(RateLimit(), clock)).reserve()
    [message] = [record.getMessage() for record in caplog.records]
    assert message.startswith(
        "limit store <RedisStore unix:///nonexistent/redis.sock prefix='b24batch:'> "
        "unreachable (ConnectionError: "
    )


def _commands(data: bytes) -> int:
    """How many RESP commands (arrays, ``*N``) begin in ``data``."""
    return data.startswith(b"*") + data.count(b"\r\n*")


class _OddRedis:
    """A loopback listener posing as Redis: it hangs up at once (``answer_after=None``), or
    reads and answers ``+OK`` to everything only ``answer_after`` seconds after a client
    connects (sooner if the client hangs up). Counts the connections; every wait is bounded."""

    def __init__(self, answer_after: float | None) -> None:
        self.answer_after = answer_after
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}/0"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self._listener.accept()[0]
            except TimeoutError:
                continue
            self.accepted += 1
            with conn:
                if self.answer_after is not None:
                    self._answer_late(conn, self.answer_after)

    def _answer_late(self, conn: socket.socket, delay: float) -> None:
        conn.settimeout(delay)
        pending = 0  # commands read and not yet answered
        try:
            while data := conn.recv(4096):
                pending += _commands(data)
            return  # the client hung up
        except TimeoutError:
            pass
        conn.settimeout(0.2)
        try:
            while not self._stop.is_set():
                conn.sendall(b"+OK\r\n" * pending)
                data = conn.recv(4096)
                if not data:
                    return
                pending = _commands(data)
        except OSError:
            return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._listener.close()


def _reserve_in_thread(bucket: SharedBucket) -> list[float]:
    """bucket.reserve() on a thread, joined with a bound; the waits it returned."""
    waits: list[float] = []
    caller = threading.Thread(target=lambda: waits.append(bucket.reserve()))
    caller.start()
    caller.join(timeout=10)
    assert not caller.is_alive()
    return waits


def test_a_slow_redis_is_given_up_at_the_store_timeout(clock: Clock) -> None:
    """A server that answers only after a second: the store gives up at its own timeout
    (0.2 s), on one connection, and the in-process limits count the request."""
    odd = _OddRedis(answer_after=1.0)
    store = RedisStore(odd.url, timeout=0.2)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(RateLimit(burst=5), clock))
    try:
        assert _reserve_in_thread(bucket) == [0.0]
        assert bucket.available() == 2.0  # the fallback counted it
    finally:
        store.close()
        odd.close()
    assert odd.accepted == 1


def test_a_redis_that_hangs_up_is_tried_once(clock: Clock) -> None:
    """A server that closes every connection at once: one attempt, no retries, then in-process."""
    odd = _OddRedis(answer_after=None)
    store = RedisStore(odd.url, timeout=0.2)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(RateLimit(burst=5), clock))
    try:
        assert _reserve_in_thread(bucket) == [0.0]
        assert bucket.available() == 2.0
    finally:
        store.close()
        odd.close()
    assert odd.accepted == 1


def test_a_redis_saturation_is_kept_in_redis(
    make_store: StoreFactory, raw: redis.Redis, clock: Clock
) -> None:
    """After a 503 the Redis bucket itself holds the full burst (no fall back in-process)."""
    bucket = SharedBucket(
        make_store("redis"), ORIGIN, clock, LeakyBucket(RateLimit(burst=10), clock)
    )
    bucket.saturate()
    assert float(raw.hget("b24batch:" + bucket.key, "level") or -1) == 10.0


@pytest.mark.parametrize(
    ("script", "answer", "message"),
    [
        pytest.param("_bucket", b"nan", "the bucket script answered nan", id="bucket-nan"),
        pytest.param("_bucket", b"", "the bucket script answered None", id="bucket-empty"),
        pytest.param(
            "_meter", [b"", b"", b""], "the meter script answered [b'', b'', b'']", id="meter"
        ),
    ],
)
def test_a_nonsense_script_answer_counts_as_unreachable(
    script: str, answer: object, message: str, make_store: StoreFactory, clock: Clock
) -> None:
    """A script answer that is no figure raises OSError (the store's unreachable error)."""
    store = make_store("redis")
    setattr(store, script, lambda keys, args: answer)
    operation: Callable[[], object] = (
        (lambda: store.bucket_op("bucket:k", "available", RateLimit(), 0.0, clock))
        if script == "_bucket"
        else (lambda: store.meter_op("operating:k", "read", None, None, clock))
    )
    with pytest.raises(OSError, match="script answered") as info:
        operation()
    assert str(info.value) == message
