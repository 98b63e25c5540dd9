"""Client-side limiters (b24batch.limits) on an injected clock: no sleeping, no I/O."""

from __future__ import annotations

import gc
import threading

import pytest

from b24batch import RateLimit, SdkError, Time
from b24batch.limits import (
    OPERATING_BASKET,
    OPERATING_FLOOR,
    LeakyBucket,
    Limiter,
    OperatingMeter,
    shared_bucket,
)


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rate_limit_defaults_and_enterprise() -> None:
    """The common plan is burst 50 at 2/s; Enterprise 250 at 5/s; 480 s operating budget."""
    assert (RateLimit().burst, RateLimit().per_second, RateLimit().operating_limit) == (
        50,
        2.0,
        480.0,
    )
    assert (RateLimit.enterprise().burst, RateLimit.enterprise().per_second) == (250, 5.0)


@pytest.mark.parametrize(
    "options",
    [
        {"burst": 0},
        {"burst": 2.5},
        {"per_second": 0},
        {"per_second": -1},
        {"operating_limit": 0},
        {"operating_margin": 480},
        {"operating_margin": -1},
    ],
)
def test_bad_rate_limits_fail_at_construction(options: dict[str, float]) -> None:
    """Impossible limits are refused when the policy is built."""
    with pytest.raises(SdkError, match="pass"):
        RateLimit(**options)  # type: ignore[arg-type]


def test_bucket_lets_a_burst_through_then_spaces_requests() -> None:
    """The first `burst` requests go at once; the next wait 1/per_second each, in order."""
    clock = Clock()
    bucket = LeakyBucket(RateLimit(burst=3, per_second=2.0), clock)
    assert [bucket.reserve() for _ in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]


def test_bucket_drains_with_time() -> None:
    """After the counter drains, requests go without waiting again."""
    clock = Clock()
    bucket = LeakyBucket(RateLimit(burst=2, per_second=1.0), clock)
    assert [bucket.reserve() for _ in range(2)] == [0.0, 0.0]
    assert bucket.available() == 0.0
    clock.now += 1.5
    assert bucket.available() == pytest.approx(1.5)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)


def test_bucket_never_exceeds_burst_at_send_time() -> None:
    """Replaying the sends through the portal's counter never takes it past burst."""
    clock = Clock(0.0)
    limit = RateLimit(burst=5, per_second=3.0)
    bucket = LeakyBucket(limit, clock)
    sends = []
    for step in range(60):
        clock.now = step * 0.05  # asked for faster than the rate allows
        sends.append(clock.now + bucket.reserve())
    level, last, peak = 0.0, 0.0, 0.0
    for t in sorted(sends):
        level = max(0.0, level - (t - last) * limit.per_second) + 1.0
        last = t
        peak = max(peak, level)
    assert peak <= limit.burst + 1e-9
    assert peak > limit.burst - 1  # and the limit is used, not wasted


def test_bucket_is_thread_safe() -> None:
    """Concurrent reservations each book one slot: the waits are exactly 0..n spaced."""
    clock = Clock()
    bucket = LeakyBucket(RateLimit(burst=1, per_second=10.0), clock)
    waits: list[float] = []
    lock = threading.Lock()

    def reserve() -> None:
        for _ in range(50):
            wait = bucket.reserve()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(round(w, 6) for w in waits) == [round(i / 10, 6) for i in range(400)]


def test_saturated_bucket_waits_for_the_drain() -> None:
    """After the portal's 503 the bucket counts as full: the next request waits."""
    clock = Clock()
    bucket = LeakyBucket(RateLimit(burst=10, per_second=4.0), clock)
    assert bucket.reserve() == 0.0
    bucket.saturate()
    assert bucket.available() == 0.0
    assert bucket.reserve() == pytest.approx(0.25)


def test_shared_bucket_outlives_its_clients() -> None:
    """A client made after another one was dropped still sees the same counter."""
    clock = Clock()
    first = shared_bucket("https://gone.example", clock)
    first_id = id(first)
    first.reserve()
    del first
    gc.collect()
    again = shared_bucket("https://gone.example", clock)
    assert id(again) == first_id
    assert again.available() == pytest.approx(49.0)


def test_shared_bucket_is_one_per_origin_and_clock() -> None:
    """Default-limit clients of one origin share a bucket; another origin gets its own."""
    clock = Clock()
    first = shared_bucket("https://a.example", clock)
    assert shared_bucket("https://a.example", clock) is first
    assert shared_bucket("https://b.example", clock) is not first
    assert first.limit == RateLimit()


def test_meter_waits_only_near_the_limit() -> None:
    """Below limit minus margin no wait; near it, wait until the reported reset."""
    wall = Clock(5000.0)
    meter = OperatingMeter(RateLimit(operating_limit=100.0, operating_margin=10.0), wall)
    assert meter.delay() == 0.0
    meter.record(Time(operating=50.0, operating_reset_at=5030.0))
    assert meter.delay() == 0.0
    meter.record(Time(operating=95.0, operating_reset_at=5030.0))
    assert meter.delay() == 30.0
    wall.now = 5031.0
    assert meter.delay() == 0.0
    assert meter.state() == (None, 5030.0)  # the stale figure is forgotten


def test_meter_keeps_fields_an_answer_omits() -> None:
    """An answer without the operating fields changes nothing."""
    meter = OperatingMeter(RateLimit(), Clock())
    meter.record(Time(operating=1.5, operating_reset_at=99.0))
    meter.record(Time(duration=0.1))
    meter.record(None)
    assert meter.state() == (1.5, 99.0)


def test_meter_without_limit_never_waits() -> None:
    """operating_limit=None (or no RateLimit) turns the pre-emptive wait off."""
    meter = OperatingMeter(RateLimit(operating_limit=None), Clock())
    meter.record(Time(operating=10_000.0, operating_reset_at=10**9))
    assert meter.delay() == 0.0


def test_limiter_sleeps_for_both_and_reports_state() -> None:
    """before_send waits for the operating reset (within budget) and the bucket."""
    clock, wall = Clock(), Clock(100.0)
    slept: list[float] = []
    limit = RateLimit(burst=1, per_second=1.0, operating_limit=10.0, operating_margin=1.0)
    limiter = Limiter(
        LeakyBucket(limit, clock), OperatingMeter(limit, wall), sleep=slept.append, wall_clock=wall
    )
    assert limiter.before_send(budget=60) == 0.0
    limiter.meter.record(Time(operating=9.5, operating_reset_at=104.0))
    assert limiter.before_send(budget=60) == pytest.approx(5.0)  # 4 s reset + 1 s bucket
    assert slept == [4.0, 1.0]
    assert limiter.before_send(budget=1.0) == pytest.approx(2.0)  # reset too far: bucket only
    state = limiter.state()
    assert (state.operating, state.operating_reset_at) == (9.5, 104.0)
    assert state.requests_available == 0.0


def test_operating_retry_uses_reset_or_one_basket() -> None:
    """After a 429: the last reported reset, at least the floor; unknown: one basket ahead."""
    wall = Clock(100.0)
    limiter = Limiter(
        None, OperatingMeter(RateLimit(), wall), sleep=lambda s: None, wall_clock=wall
    )
    assert limiter.operating_retry() == (100.0 + OPERATING_BASKET, OPERATING_BASKET)
    limiter.meter.record(Time(operating_reset_at=130.0))
    assert limiter.operating_retry() == (130.0, 30.0)
    limiter.meter.record(Time(operating_reset_at=100.2))
    assert limiter.operating_retry() == (100.0 + OPERATING_FLOOR, OPERATING_FLOOR)
    assert limiter.state().requests_available is None
