"""The Redis limit store (b24batch._limits.redis): keys, foreign values, its URL, odd servers.

Against a real ``redis-server`` (tests/support/redis_server.py), or a loopback listener posing
as one; what every store does is in test_shared.py.
"""

from __future__ import annotations

import logging
import multiprocessing
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from b24batch import B24Hook, BatchV3, RateLimit, RedisStore, SdkError, SdkTypeError, Time
from b24batch._limits.bucket import LeakyBucket
from b24batch._limits.limiter import Limiter
from b24batch._limits.shared import SharedBucket, SharedMeter
from b24batch.testing import FakePortal
from tests.limits.helpers import CALLS, ORIGIN, Clock, StoreFactory
from tests.support.redis_server import RedisServer

# -- keys and foreign values ------------------------------------------------------------------


def test_redis_keys_live_under_the_prefix(make_store: StoreFactory, raw: redis.Redis) -> None:
    """Every key the Redis store writes starts with its prefix, and expires."""
    store = make_store("redis", prefix="myapp:limits:")
    with FakePortal() as portal:
        hook = B24Hook.from_webhook_url(portal.webhook_url, limit_store=store)
        BatchV3(hook).make(CALLS)
        hook.close()
    keys = sorted(key.decode() for key in raw.keys("*"))
    assert [key.split(":")[2] for key in keys] == ["bucket", "clients", "operating"]
    assert all(key.startswith("myapp:limits:") for key in keys)
    assert all(raw.ttl(key) > 0 for key in keys)


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


def test_a_redis_saturation_is_kept_in_redis(
    make_store: StoreFactory, raw: redis.Redis, clock: Clock
) -> None:
    """After a 503 the Redis bucket itself holds the full burst (no fall back in-process)."""
    bucket = SharedBucket(
        make_store("redis"), ORIGIN, clock, LeakyBucket(RateLimit(burst=10), clock)
    )
    bucket.saturate()
    assert float(raw.hget("b24batch:" + bucket.key, "level") or -1) == 10.0


# -- a Redis that is not there, slow, or odd --------------------------------------------------


def test_an_unreachable_redis_answers_within_its_timeout(clock: Clock) -> None:
    """A Redis that is not there fails fast into the fallback, from a full bucket (nothing is
    known of the shared one): calls do not fail."""
    store = RedisStore("unix:///nonexistent/redis.sock", timeout=0.2)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(RateLimit(), clock))
    assert bucket.reserve() == 0.5
    assert bucket.available() == 0.0


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
        assert _reserve_in_thread(bucket) == [0.5]  # the fallback starts full
        assert bucket.available() == 0.0
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
        assert _reserve_in_thread(bucket) == [0.5]
        assert bucket.available() == 0.0
    finally:
        store.close()
        odd.close()
    assert odd.accepted == 1


@pytest.mark.parametrize(
    ("script", "answer", "message"),
    [
        pytest.param(
            "_bucket",
            [b"nan", b"0", 0, 1],
            "the bucket script answered [b'nan', b'0', 0, 1]",
            id="bucket-nan",
        ),
        pytest.param(
            "_bucket", [b"", b"0", 0, 1], "the bucket script answered no figure", id="empty"
        ),
        pytest.param("_bucket", b"1", "the bucket script answered b'1'", id="bucket-scalar"),
        pytest.param(
            "_bucket",
            [b"1", b"0", b"0", 1],
            "the bucket script answered [b'1', b'0', b'0', 1]",
            id="bucket-flag-as-text",
        ),
        pytest.param("_meter", [b"", b"", b"", 0], "the meter script answered no time", id="meter"),
        pytest.param(
            "_meter",
            [b"1"] * 40,
            f"the meter script answered {str([b'1'] * 40)[:77]}...",
            id="long",
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


# -- fork -------------------------------------------------------------------------------------


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


# -- the URL and options ----------------------------------------------------------------------


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


def test_a_half_built_redis_store_shows_a_repr() -> None:
    """A RedisStore whose __init__ never ran (an error page's locals) still has a repr."""
    assert repr(RedisStore.__new__(RedisStore)) == "<RedisStore (not set up)>"


class _LookAlike:
    """A loopback listener posing as Redis that answers every command with one fixed reply."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
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
            with conn:
                conn.settimeout(0.2)
                try:
                    while not self._stop.is_set():
                        try:
                            data = conn.recv(65536)
                        except TimeoutError:
                            continue
                        if not data:
                            break
                        conn.sendall(self.reply * _commands(data))
                except OSError:
                    continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._listener.close()


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"$3\r\nabc\r\n", id="text"),
        pytest.param(b":5\r\n", id="integer"),
        pytest.param(b"$-1\r\n", id="nil"),
        pytest.param(b"*1\r\n$1\r\n1\r\n", id="short-array"),
        pytest.param(b"*3\r\n$1\r\nx\r\n$1\r\ny\r\n$1\r\nz\r\n", id="array-of-text"),
        pytest.param(b"+OK\r\n", id="status"),
    ],
)
def test_a_redis_look_alike_never_raises_into_the_batch(
    reply: bytes, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever a server answers, the limiter waits in process: no ValueError, TypeError or
    IndexError reaches the caller; one WARNING says the store is out of use."""
    fake = _LookAlike(reply)
    store = RedisStore(fake.url, timeout=0.5)
    limit = RateLimit(burst=5)
    key = store.meter_key(ORIGIN, "abc", "batch")
    limiter = Limiter(
        SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock)),
        SharedMeter(store, key, limit, clock),
        sleep=lambda seconds: None,
        wall_clock=clock,
        limit=limit,
    )
    try:
        with caplog.at_level(logging.WARNING, logger="b24batch"):
            assert limiter.before_send(budget=60.0) == 0.5  # the fallback starts full
            limiter.after_answer(
                Time(operating=1.0, operating_reset_at=clock.now + 5), refused=False
            )
            assert limiter.state().requests_available == 0.0
    finally:
        store.close()
        fake.close()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "unreachable" in warning


# -- noise: a flapping store, a slow one ------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A real redis-server of this test's own (it is made a replica, or slowed)."""
    running = RedisServer()
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _limiter(store: RedisStore, clock: Callable[[], float]) -> Limiter:
    limit = RateLimit(burst=10, per_second=10.0)
    return Limiter(
        SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock)),
        SharedMeter(store, store.meter_key(ORIGIN, "abc", "batch"), limit, clock),
        sleep=lambda seconds: None,
        wall_clock=clock,
        limit=limit,
    )


def test_a_read_only_replica_is_held_down_not_flapping(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only replica answers reads and refuses writes: the store would flip between
    unreachable and back with every recheck; it is held down after one flap, three WARNINGs."""
    replica = redis.Redis(unix_socket_path=str(own_server.socket), socket_timeout=2.0)
    replica.replicaof("127.0.0.1", 1)  # a master that is not there: read-only, stale reads
    replica.close()
    store = RedisStore(own_server.url, recheck=0.01, timeout=0.5)
    clock = Clock(time.time())
    limiter = _limiter(store, clock)
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        for _ in range(20):
            limiter.before_send(budget=60.0)
            limiter.after_answer(
                Time(operating=1.0, operating_reset_at=clock.now + 30), refused=False
            )
            threading.Event().wait(0.02)  # past recheck
            clock.now += 1.0
    store.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3, warnings
    assert "unreachable (ReadOnlyError" in warnings[0]
    assert "answers again" in warnings[1]
    assert "unreachable again within 60 s" in warnings[2]
    assert warnings[2].endswith("limiting in this process for 60 s before trying it again")


class _SlowProxy:
    """A loopback TCP proxy to a Redis socket that holds each answer ``delay`` seconds."""

    def __init__(self, target: str, delay: float) -> None:
        self.target, self.delay = target, delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept)]
        self._threads[0].start()
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}/0"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client = self._listener.accept()[0]
            except TimeoutError:
                continue
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.target)
            for source, sink, delay in ((client, server, 0.0), (server, client, self.delay)):
                thread = threading.Thread(target=self._pipe, args=(source, sink, delay))
                self._threads.append(thread)
                thread.start()

    def _pipe(self, source: socket.socket, sink: socket.socket, delay: float) -> None:
        source.settimeout(0.1)
        with source:
            while not self._stop.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                self._stop.wait(delay)
                try:
                    sink.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._listener.close()


def test_a_slow_redis_is_said_once(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis answering in 0.3 s costs a batch about a second: one WARNING says so."""
    proxy = _SlowProxy(str(own_server.socket), 0.3)
    store = RedisStore(proxy.url, timeout=2.0)
    clock = Clock(time.time())
    limiter = _limiter(store, clock)
    try:
        with caplog.at_level(logging.WARNING, logger="b24batch"):
            for _ in range(2):
                limiter.before_send(budget=60.0)
                limiter.after_answer(Time(operating=1.0), refused=False)
    finally:
        store.close()
        proxy.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"limit store {store.describe()} takes ")
    assert " s an operation on average: " in warnings[0]
    assert "each batch waits for it 3 or 4 times" in warnings[0]
