"""What every limit store does (b24batch._limits.shared), over the SQLite and Redis stores.

Every shared store must give exactly the in-process figures on the same injected clock; the
Redis store runs against a real ``redis-server`` (tests/support/redis_server.py), with its clock
injected where a figure is exact. Also: one state for every client, keys, the meter in a store,
fallback while a store is down, fork, the options every store takes. What only one store does
is in test_sqlite.py and test_redis.py.
"""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis

from b24batch import (
    B24Hook,
    B24OAuth,
    BatchV3,
    LimitStore,
    RateLimit,
    SdkError,
    SdkTypeError,
    SQLiteStore,
    Time,
)
from b24batch._limits.bucket import Bucket, LeakyBucket
from b24batch._limits.limiter import Limiter
from b24batch._limits.policy import DEFAULT_RESET_SLACK, MAX_BOOKED_WAIT
from b24batch._limits.shared import HOLD_DOWN, SharedBucket, SharedMeter, fingerprint
from b24batch.redaction import Secret
from b24batch.testing import FakePortal
from tests.limits.helpers import CALLS, KINDS, ORIGIN, SHARED, Clock, StoreFactory


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


# -- keys and what is written -----------------------------------------------------------------


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
        dump = b"".join(
            key + repr(raw.zrange(key, 0, -1) if b":clients:" in key else raw.hgetall(key)).encode()
            for key in raw.keys("*")
        )
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


# -- the operating-time meter in a store ------------------------------------------------------


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


# -- when the store is down -------------------------------------------------------------------


def test_an_unreachable_store_falls_back_and_warns_once(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that cannot be opened: every call still limited in-process, from a full bucket
    (nothing known of the shared one), one WARNING."""
    store = SQLiteStore(tmp_path / "missing-folder" / "limits.sqlite3")
    limit = RateLimit(burst=5, per_second=2.0)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock))
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        waits = [bucket.reserve() for _ in range(5)]
    assert waits == [0.5, 1.0, 1.5, 2.0, 2.5]  # the in-process figures, from a full bucket
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert messages[0].startswith(f"limit store <SQLiteStore {store.path}> unreachable (")
    assert messages[0].endswith("): limiting in this process until it answers again")


def test_a_store_that_answers_again_is_used_again(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Once the store answers (after recheck), the shared state is used, first taken as full
    (the processes drained the portal's bucket on their own meanwhile); one WARNING said so."""
    folder = tmp_path / "later"
    store = SQLiteStore(folder / "limits.sqlite3", recheck=0.01)
    limit = RateLimit(burst=5, per_second=2.0)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock))
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        assert bucket.reserve() == 0.5  # in-process, from a full bucket
        folder.mkdir()
        threading.Event().wait(0.05)  # past recheck
        assert bucket.reserve() == 1.5  # in the store, saturated (5), then booked
        assert bucket.available() == 0.0
    assert [r.getMessage() for r in caplog.records][1] == (
        f"limit store <SQLiteStore {store.path}> answers again: limits are shared again"
    )
    with sqlite3.connect(folder / "limits.sqlite3") as db:
        assert db.execute("SELECT level FROM b24batch_bucket").fetchall() == [(6.0,)]


def test_an_unreachable_store_is_not_tried_again_before_recheck(
    tmp_path: Path, clock: Clock
) -> None:
    """Until recheck has passed the store is left alone, even if it could answer now."""
    folder = tmp_path / "later"
    store = SQLiteStore(folder / "limits.sqlite3", recheck=3600)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(RateLimit(burst=5), clock))
    assert bucket.reserve() == 0.5  # in-process, from a full bucket
    folder.mkdir()
    assert bucket.reserve() == 1.0
    assert bucket.available() == 0.0  # the fallback's, not the store's
    assert not (folder / "limits.sqlite3").exists()


def test_a_meter_limits_in_process_while_its_store_is_down(tmp_path: Path, clock: Clock) -> None:
    """Figures recorded while the store is unreachable still make the meter wait."""
    store = SQLiteStore(tmp_path / "missing-folder" / "limits.sqlite3")
    limit = RateLimit(operating_limit=100.0, operating_margin=25.0)
    meter = SharedMeter(store, store.meter_key(ORIGIN, "abc", "batch"), limit, clock)
    meter.record(Time(operating=90.0, operating_reset_at=clock.now + 20.0))
    assert meter.state() == (90.0, clock.now + 20.0)
    assert meter.reset_at() == clock.now + 20.0
    assert meter.delay() == 20.0 + DEFAULT_RESET_SLACK


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


# -- fork -------------------------------------------------------------------------------------


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


# -- options ----------------------------------------------------------------------------------


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


@pytest.mark.parametrize("kind", SHARED)
@pytest.mark.parametrize(
    "time",
    [
        pytest.param(Time(operating=float("nan"), operating_reset_at=1), id="nan"),
        pytest.param(Time(operating=470.0, operating_reset_at=1.7e12), id="reset-in-ms"),
    ],
)
def test_a_bad_time_block_never_reaches_the_store(
    kind: str, time: Time, make_store: StoreFactory, clock: Clock
) -> None:
    """A time block no portal sends, learnt by one client, never makes a later client of the
    same store wait."""
    limit = RateLimit()
    store = make_store(kind)
    key = store.meter_key(ORIGIN, "abc", "batch")

    def limiter() -> Limiter:
        return Limiter(
            SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock)),
            SharedMeter(store, key, limit, clock),
            sleep=lambda seconds: None,
            wall_clock=clock,
            limit=limit,
        )

    limiter().after_answer(
        attrs.evolve(time, operating_reset_at=(time.operating_reset_at or 0) + clock.now),
        refused=False,
    )
    later = limiter()
    assert later.meter.delay() == 0.0
    assert later.before_send(budget=60.0) == 0.0


def _spoil(
    kind: str, store: LimitStore, raw: redis.Redis, table: str, key: str, **row: float
) -> None:
    """Write ``row`` under ``key`` as no store would: in Redis, or in the SQLite file."""
    if kind == "redis":
        raw.hset(f"b24batch:{key}", mapping=row)
        return
    assert isinstance(store, SQLiteStore)
    names = ", ".join(row)
    with sqlite3.connect(store.path) as db:
        db.execute(
            f"INSERT OR REPLACE INTO b24batch_{table} (key, {names}) VALUES (?, ?, ?)",
            (key, *row.values()),
        )


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("kind", SHARED)
def test_a_bucket_level_no_store_writes_is_read_as_empty_once_warned(
    kind: str,
    make_store: StoreFactory,
    raw: redis.Redis,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A level of 1e12 (a wait of 500 billion seconds) is none the store could have written:
    read as empty, overwritten, one WARNING; the batches go on."""
    store = make_store(kind)
    limit = RateLimit(burst=10, per_second=2.0)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock))
    assert bucket.available() == 8.0  # makes the tables
    _spoil(kind, store, raw, "bucket", bucket.key, level=1e12, updated=clock.now)
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        assert bucket.wait() == 0.0
        assert bucket.reserve() == 0.0
        _spoil(kind, store, raw, "bucket", bucket.key, level=1e12, updated=clock.now)
        assert bucket.available() == 8.0
        assert bucket.reserve() == 0.0
        assert bucket.available() == 7.0
    [warning] = _warnings(caplog)
    shown = ("b24batch:" if kind == "redis" else "") + bucket.key  # as the store names it
    assert warning == (
        f"limit store {store.describe()}: {shown!r} held a value the store could not "
        f"have written: read as empty and overwritten"
    )


@pytest.mark.parametrize("kind", SHARED)
def test_the_fullest_bucket_a_store_can_write_is_kept(
    kind: str,
    make_store: StoreFactory,
    raw: redis.Redis,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A level of the burst and the longest wait a booking may hold is the store's own."""
    store = make_store(kind)
    limit = RateLimit(burst=10, per_second=2.0)
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(limit, clock))
    assert bucket.available() == 8.0  # makes the tables
    level = limit.burst + limit.per_second * MAX_BOOKED_WAIT
    _spoil(kind, store, raw, "bucket", bucket.key, level=level, updated=clock.now)
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        assert bucket.wait() == pytest.approx((level + 1 - limit.ceiling) / limit.per_second)
    assert _warnings(caplog) == []


@pytest.mark.parametrize("kind", SHARED)
def test_a_reset_no_store_writes_is_read_as_none_once_warned(
    kind: str,
    make_store: StoreFactory,
    raw: redis.Redis,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reset time of 1e15 is none the store could have written: dropped, one WARNING."""
    store = make_store(kind)
    limit = RateLimit()
    meter = SharedMeter(store, store.meter_key(ORIGIN, "abc", "batch"), limit, clock)
    assert meter.state() == (None, None)  # makes the tables
    _spoil(kind, store, raw, "meter", meter.key, operating=470.0, reset_at=1e15)
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        assert meter.delay() == 0.0
        assert meter.state() == (470.0, None)
    assert len(_warnings(caplog)) == 1
    meter.record(Time(operating=470.0, operating_reset_at=clock.now + 10.0))
    assert meter.delay() == pytest.approx(10.0 + DEFAULT_RESET_SLACK)


class _FlakyStore(LimitStore):
    """A store of a user's own that fails while ``fail`` is set; counts the calls it gets."""

    def __init__(self) -> None:
        super().__init__(egress=None, recheck=1.0, timeout=1.0)
        self.fail = False
        self.calls = 0

    def bucket_op(self, *args: Any) -> float:
        self.calls += 1
        if self.fail:
            raise OSError("read-only")
        return 0.0

    def meter_op(self, *args: Any) -> Any:
        raise NotImplementedError


def test_a_flapping_store_is_left_alone_for_a_minute(clock: Clock) -> None:
    """Down, back, down again within a minute: the store is not tried for HOLD_DOWN seconds
    (not the one-second recheck), then tried again."""
    store = _FlakyStore()
    store._monotonic = clock
    bucket = SharedBucket(store, ORIGIN, clock, LeakyBucket(RateLimit(), clock))
    store.fail = True
    bucket.available()  # down: tried again after recheck
    clock.now += 1.5
    store.fail = False
    bucket.available()  # back
    store.fail = True
    bucket.available()  # down again at once: flapping
    calls, store.fail = store.calls, False
    clock.now += HOLD_DOWN - 1
    bucket.available()
    assert store.calls == calls  # held down
    clock.now += 2
    bucket.available()
    assert store.calls > calls
