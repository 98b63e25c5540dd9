"""Client-side limiters (b24batch._limits: policy, bucket, meter, limiter) on an injected clock:
no sleeping, no I/O."""

from __future__ import annotations

import gc
import logging
import threading

import pytest

from b24batch import OperatingLimitError, RateLimit, RateLimitError, SdkError, Time
from b24batch._limits.bucket import LeakyBucket, bucket_step, shared_bucket
from b24batch._limits.limiter import OPERATING_BASKET, OPERATING_FLOOR, Limiter
from b24batch._limits.meter import OperatingMeter, operating_wait
from b24batch._limits.policy import (
    DEFAULT_RESET_SLACK,
    MAX_BOOKED_WAIT,
    MAX_BURST,
    MAX_OPERATING_LIMIT,
    MAX_RESET_SLACK,
    PER_SECOND_RANGE,
    max_level,
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
    ("options", "fragment"),
    [
        pytest.param({"burst": 0}, "burst=0", id="burst-0"),
        pytest.param({"burst": 2.5}, "burst=2.5", id="burst-fraction"),
        pytest.param({"burst": True}, "burst=True", id="burst-bool"),
        pytest.param({"burst": MAX_BURST + 1}, "burst=10001", id="burst-huge"),
        pytest.param({"per_second": 0}, "per_second=0", id="rate-0"),
        pytest.param({"per_second": -1}, "per_second=-1", id="rate-negative"),
        pytest.param({"per_second": 1e-6}, "per_second=1e-06", id="rate-eleven-days"),
        pytest.param({"per_second": 1e6}, "per_second=1000000.0", id="rate-huge"),
        pytest.param({"per_second": float("nan")}, "per_second=nan", id="rate-nan"),
        pytest.param({"per_second": float("inf")}, "per_second=inf", id="rate-inf"),
        pytest.param({"operating_limit": 0}, "operating_limit=0", id="operating-0"),
        pytest.param({"operating_limit": 601}, "operating_limit=601", id="operating-huge"),
        pytest.param({"operating_limit": float("inf")}, "operating_limit=inf", id="operating-inf"),
        pytest.param({"operating_margin": 480}, "operating_margin=480", id="margin-at-limit"),
        pytest.param({"operating_margin": -1}, "operating_margin=-1", id="margin-negative"),
        pytest.param({"operating_margin": float("nan")}, "operating_margin=nan", id="margin-nan"),
        pytest.param({"operating_margin": "5"}, "operating_margin='5'", id="margin-str"),
    ],
)
def test_bad_rate_limits_fail_at_construction(options: dict[str, float], fragment: str) -> None:
    """Impossible or absurd limits are refused when the policy is built, naming the field."""
    with pytest.raises(SdkError, match="pass") as info:
        RateLimit(**options)  # type: ignore[arg-type]
    assert str(info.value).startswith(fragment + ":")


@pytest.mark.parametrize(
    "slack",
    [
        pytest.param(-0.1, id="negative"),
        pytest.param(MAX_RESET_SLACK + 0.5, id="past-one-basket"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(True, id="bool"),
        pytest.param("1", id="str"),
    ],
)
def test_bad_reset_slack_fails_at_construction(slack: object) -> None:
    """operating_reset_slack must be seconds from 0 to one basket."""
    with pytest.raises(SdkError) as info:
        RateLimit(operating_reset_slack=slack)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"operating_reset_slack={slack!r}: pass seconds from 0 to 60 (default 1)"
    )


def test_rate_limit_accepts_the_ends_of_its_ranges() -> None:
    """burst 1 and MAX_BURST, per_second at both ends of PER_SECOND_RANGE, an operating_limit
    below one second and at MAX_OPERATING_LIMIT are accepted."""
    low, high = PER_SECOND_RANGE
    assert RateLimit(burst=1, per_second=low).per_second == low
    assert RateLimit(burst=MAX_BURST, per_second=high).burst == MAX_BURST
    assert RateLimit(operating_limit=None, operating_margin=0).operating_margin == 0
    assert RateLimit(operating_limit=0.5, operating_margin=0).operating_limit == 0.5
    assert RateLimit(operating_limit=MAX_OPERATING_LIMIT).operating_limit == MAX_OPERATING_LIMIT
    assert RateLimit(operating_reset_slack=0).operating_reset_slack == 0
    assert RateLimit(operating_reset_slack=MAX_RESET_SLACK).operating_reset_slack == 60.0
    assert RateLimit().operating_reset_slack == DEFAULT_RESET_SLACK == 1.0


def test_bucket_lets_a_burst_through_then_spaces_requests() -> None:
    """The first `burst - headroom` requests go at once; the next wait 1/per_second each."""
    clock = Clock()
    bucket = LeakyBucket(RateLimit(burst=5, per_second=2.0), clock)  # headroom 2: ceiling 3
    assert [bucket.reserve() for _ in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]


def test_headroom_zero_sends_the_whole_burst() -> None:
    """With headroom=0 the client's counter goes up to the burst itself."""
    bucket = LeakyBucket(RateLimit(burst=3, per_second=2.0, headroom=0), Clock())
    assert [bucket.reserve() for _ in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]


@pytest.mark.parametrize(
    ("burst", "headroom", "ceiling"),
    [
        pytest.param(50, 2, 48, id="default"),
        pytest.param(250, 5, 245, id="enterprise-5"),
        pytest.param(3, 2, 1, id="down-to-one"),
        pytest.param(2, 2, 1, id="clamped"),
        pytest.param(1, 2, 1, id="burst-1-still-sends"),
        pytest.param(7, 0, 7, id="none"),
    ],
)
def test_ceiling_is_burst_less_headroom_but_at_least_one(
    burst: int, headroom: int, ceiling: int
) -> None:
    """ceiling = burst - headroom, never below one request."""
    assert RateLimit(burst=burst, headroom=headroom).ceiling == ceiling


def test_default_headroom_is_two() -> None:
    """The default keeps two requests of margin below the portal's burst."""
    assert RateLimit().headroom == 2
    assert RateLimit().ceiling == 48


@pytest.mark.parametrize(
    "headroom",
    [
        pytest.param(-1, id="negative"),
        pytest.param(1.5, id="fraction"),
        pytest.param(True, id="bool"),
        pytest.param("2", id="str"),
        pytest.param(MAX_BURST, id="huge"),
    ],
)
def test_bad_headroom_fails_at_construction(headroom: object) -> None:
    """headroom must be a whole number of requests from 0 to below MAX_BURST."""
    with pytest.raises(SdkError) as info:
        RateLimit(headroom=headroom)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"headroom={headroom!r}: pass a whole number of requests from 0 to below {MAX_BURST} "
        f"(default 2)"
    )


def test_bucket_drains_with_time() -> None:
    """After the counter drains, requests go without waiting again."""
    clock = Clock()
    bucket = LeakyBucket(RateLimit(burst=4, per_second=1.0), clock)  # ceiling 2
    assert [bucket.reserve() for _ in range(2)] == [0.0, 0.0]
    assert bucket.available() == 0.0
    clock.now += 1.5
    assert bucket.available() == pytest.approx(1.5)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)


def test_bucket_never_exceeds_burst_at_send_time() -> None:
    """Replaying the sends through the portal's counter never takes it past the ceiling."""
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
    assert limit.ceiling == 3
    assert peak <= limit.ceiling + 1e-9  # headroom left for jitter on the way
    assert peak > limit.ceiling - 1  # and the limit is used, not wasted


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
    """After the portal's 503 the bucket counts as full: the next request waits for the
    counter to drain from the burst to the ceiling."""
    clock = Clock()
    bucket = LeakyBucket(RateLimit(burst=10, per_second=4.0), clock)
    assert bucket.reserve() == 0.0
    bucket.saturate()
    assert bucket.available() == 0.0
    assert bucket.reserve() == pytest.approx(0.75)  # from 10, plus this one, down to 8


def test_bucket_step_saturate_fills_the_counter_and_returns_zero() -> None:
    """saturate takes the counter up to the burst, keeps a level already above it, and its
    result is 0.0 (nothing to wait for: it only records the portal's 503)."""
    limit = RateLimit(burst=5, per_second=1.0)
    assert bucket_step("saturate", 1.0, 0.0, 2.0, limit, 0.0) == (0.0, (5.0, 2.0))
    assert bucket_step("saturate", 9.0, 10.0, 11.0, limit, 0.0) == (0.0, (8.0, 11.0))


def test_bucket_step_refuses_an_unknown_op() -> None:
    """An op other than the four raises ValueError naming it (a store's bug, not a user's)."""
    with pytest.raises(ValueError, match=r"^unknown bucket op 'drain'$"):
        bucket_step("drain", 0.0, 0.0, 0.0, RateLimit(), 0.0)


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
    assert again.available() == pytest.approx(47.0)  # the ceiling 48, less the one booked


def test_shared_bucket_is_one_per_origin_and_clock() -> None:
    """Default-limit clients of one origin share a bucket; another origin gets its own."""
    clock = Clock()
    first = shared_bucket("https://a.example", clock)
    assert shared_bucket("https://a.example", clock) is first
    assert shared_bucket("https://b.example", clock) is not first
    assert first.limit == RateLimit()


def test_meter_waits_only_near_the_limit() -> None:
    """Below limit minus margin no wait; near it, wait until the reported reset plus the slack
    (the portal's whole seconds), and forget the figure only once that has passed."""
    wall = Clock(5000.0)
    limit = RateLimit(operating_limit=100.0, operating_margin=10.0, operating_reset_slack=2.0)
    meter = OperatingMeter(limit, wall)
    assert meter.delay() == 0.0
    meter.record(Time(operating=50.0, operating_reset_at=5030.0))
    assert meter.delay() == 0.0
    meter.record(Time(operating=95.0, operating_reset_at=5030.0))
    assert meter.delay() == 32.0
    wall.now = 5031.0  # past the reported reset, within the slack: still waits
    assert meter.delay() == 1.0
    assert meter.state() == (95.0, 5030.0)
    wall.now = 5032.5
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


def test_operating_wait_starts_at_exactly_limit_less_margin() -> None:
    """time.operating equal to operating_limit - operating_margin already waits for the reset;
    just below it does not."""
    limit = RateLimit(operating_limit=100.0, operating_margin=10.0)
    assert operating_wait(limit, 90.0, 130.0, 100.0) == 30.0 + DEFAULT_RESET_SLACK
    assert operating_wait(limit, 89.9, 130.0, 100.0) is None


def _limiter(slept: list[float], clock: Clock, wall: Clock) -> Limiter:
    limit = RateLimit(burst=1, per_second=1.0, operating_limit=10.0, operating_margin=1.0)
    return Limiter(
        LeakyBucket(limit, clock), OperatingMeter(limit, wall), sleep=slept.append, wall_clock=wall
    )


def test_limiter_sleeps_for_both_and_reports_state() -> None:
    """before_send waits for the operating reset, then the bucket, when both fit the budget."""
    clock, wall = Clock(), Clock(100.0)
    slept: list[float] = []
    limiter = _limiter(slept, clock, wall)
    assert limiter.before_send(budget=60) == 0.0
    limiter.meter.record(Time(operating=9.5, operating_reset_at=104.0))
    # 4 s to the reset and the default 1 s of slack, then 1 s for the bucket
    assert limiter.before_send(budget=60) == pytest.approx(6.0)
    assert slept == [5.0, 1.0]
    state = limiter.state()
    assert (state.operating, state.operating_reset_at) == (9.5, 104.0)
    assert state.requests_available == 0.0


def test_operating_reset_beyond_the_budget_raises_without_waiting() -> None:
    """A reset further than the budget: OperatingLimitError at once, retry_at the reset
    (with its slack)."""
    clock, wall = Clock(), Clock(100.0)
    slept: list[float] = []
    limiter = _limiter(slept, clock, wall)
    limiter.meter.record(Time(operating=9.5, operating_reset_at=104.0))
    with pytest.raises(OperatingLimitError) as info:
        limiter.before_send(budget=3.0)
    assert info.value.retry_at == 105.0
    assert (info.value.code, info.value.status) == ("OPERATION_TIME_LIMIT", 0)
    assert str(info.value) == (
        "OPERATION_TIME_LIMIT: the client's operating-time reset needs a wait of 5.0 s "
        "before this batch, more than the 3.0 s left of the retry policy's max_wait; nothing "
        "was sent: send it again at retry_at, or raise max_wait"
    )
    assert slept == []
    assert limiter.state().requests_available == 1.0  # nothing was booked


def test_bucket_wait_beyond_the_budget_raises_and_books_nothing() -> None:
    """A bucket wait past the budget: RateLimitError with retry_at, no sleep, nothing booked."""
    clock, wall = Clock(), Clock(100.0)
    slept: list[float] = []
    limiter = _limiter(slept, clock, wall)
    assert limiter.before_send(budget=0.0) == 0.0  # the one request of the burst
    for _ in range(3):  # refusals book nothing: each one sees the same 1 s wait
        with pytest.raises(RateLimitError) as info:
            limiter.before_send(budget=0.5)
        assert info.value.retry_at == 101.0
        assert (info.value.code, info.value.status) == ("QUERY_LIMIT_EXCEEDED", 0)
        assert str(info.value) == (
            "QUERY_LIMIT_EXCEEDED: the client's request-rate bucket needs a wait of "
            "1.0 s before this batch, more than the 0.5 s left of the retry policy's max_wait; "
            "nothing was sent: send it again at retry_at, or raise max_wait"
        )
    assert slept == []
    assert limiter.before_send(budget=1.0) == 1.0
    assert slept == [1.0]


def test_both_waits_must_fit_together() -> None:
    """A reset that fits but leaves no room for the bucket raises before either wait."""
    clock, wall = Clock(), Clock(100.0)
    slept: list[float] = []
    limiter = _limiter(slept, clock, wall)
    limiter.before_send(budget=0.0)
    limiter.meter.record(Time(operating=9.5, operating_reset_at=99.5))
    # 0.5 s to the reset and its 1 s of slack; after it the bucket still needs 0.5 s: 1.0 s
    with pytest.raises(RateLimitError) as info:
        limiter.before_send(budget=0.9)
    assert info.value.retry_at == pytest.approx(101.0)
    assert slept == []


def test_a_sub_second_operating_wait_is_slept() -> None:
    """An operating-time reset half a second away is waited for, not skipped."""
    clock, wall = Clock(), Clock(100.0)
    slept: list[float] = []
    limiter = _limiter(slept, clock, wall)
    limiter.meter.record(Time(operating=9.5, operating_reset_at=99.5))  # and 1 s of slack
    assert limiter.before_send(budget=60) == 0.5
    assert slept == [0.5]


class RivalBucket:
    """A LeakyBucket where another thread books a request right after each wait() is read:
    the race that before_send checks for when it books."""

    def __init__(self, inner: LeakyBucket) -> None:
        self.inner = inner
        self.limit = inner.limit

    def reserve(self, budget: float = float("inf")) -> float:
        return self.inner.reserve(budget)

    def wait(self, after: float = 0.0) -> float:
        wait = self.inner.wait(after)
        self.inner.reserve()  # the rival's request
        return wait

    def saturate(self) -> None:
        self.inner.saturate()

    def available(self) -> float:
        return self.inner.available()


def test_a_rival_booking_after_the_check_is_refused_and_books_nothing() -> None:
    """When another thread books between the check and the booking, the booked wait no longer
    fits what the operating wait left of the budget: RateLimitError for both waits together,
    and this request books nothing."""
    clock, wall = Clock(), Clock(100.0)
    slept: list[float] = []
    limit = RateLimit(burst=1, per_second=1.0, operating_limit=10.0, operating_margin=1.0)
    bucket = RivalBucket(LeakyBucket(limit, clock))
    limiter = Limiter(bucket, OperatingMeter(limit, wall), sleep=slept.append, wall_clock=wall)
    limiter.meter.record(Time(operating=9.5, operating_reset_at=99.5))  # and 1 s of slack
    with pytest.raises(RateLimitError) as info:
        limiter.before_send(budget=1.2)  # 0.5 s reset, then 1.0 s behind the rival: 1.5 s
    assert (info.value.code, info.value.status, info.value.retry_at) == (
        "QUERY_LIMIT_EXCEEDED",
        0,
        101.5,
    )
    assert str(info.value) == (
        "QUERY_LIMIT_EXCEEDED: the client's request-rate bucket needs a wait of 1.5 s "
        "before this batch, more than the 1.2 s left of the retry policy's max_wait; nothing "
        "was sent: send it again at retry_at, or raise max_wait"
    )
    assert slept == [0.5]  # the reset was waited for before the booking was refused
    assert bucket.inner.wait() == 1.0  # only the rival's request is booked


def test_wait_after_predicts_before_send() -> None:
    """wait_after(d) is what before_send waits when called d seconds later: the operating
    wait left then, and the bucket's wait after that one."""
    clock, wall = Clock(), Clock(100.0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds
        wall.now += seconds

    limit = RateLimit(burst=1, per_second=1.0, operating_limit=10.0, operating_margin=1.0)
    limiter = Limiter(
        LeakyBucket(limit, clock), OperatingMeter(limit, wall), sleep=sleep, wall_clock=wall
    )
    assert limiter.before_send(budget=0.0) == 0.0  # the one request of the burst
    limiter.meter.record(Time(operating=9.5, operating_reset_at=99.5))  # and 1 s of slack
    assert limiter.wait_after(0.25) == 0.75  # 0.25 s to the reset, then 0.5 s of drain
    sleep(0.25)
    assert limiter.before_send(budget=60) == 0.75
    assert slept == [0.25, 0.25, 0.5]


def test_reserve_within_budget_books_only_what_fits() -> None:
    """reserve(budget) books a wait that fits and leaves the counter alone otherwise."""
    bucket = LeakyBucket(RateLimit(burst=1, per_second=2.0), Clock())
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.1) == 0.5  # too long: not booked
    assert bucket.wait() == 0.5
    assert bucket.reserve(0.5) == 0.5  # booked
    assert bucket.wait() == 1.0
    assert bucket.wait(after=1.0) == 0.0


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
    assert limiter.meter.state() == (None, 100.2)  # a limiter without limits records nothing


def test_a_429_holds_every_batch_until_the_reset_and_its_slack() -> None:
    """After a 429 the meter counts the method at its limit until the reset (at least the floor
    away), so every other batch waits for the same moment as the refused one: the reset plus
    the slack."""
    wall = Clock(100.0)
    slept: list[float] = []
    limit = RateLimit(operating_limit=50.0, operating_margin=5.0, operating_reset_slack=0.5)
    limiter = Limiter(
        None, OperatingMeter(limit, wall), sleep=slept.append, wall_clock=wall, limit=limit
    )
    limiter.meter.record(Time(operating=10.0, operating_reset_at=130.0))
    assert limiter.before_send(budget=60.0) == 0.0  # far below the limit
    assert limiter.operating_retry() == (130.5, 30.5)
    assert limiter.meter.state() == (50.0, 130.0)
    assert limiter.before_send(budget=60.0) == 30.5
    assert slept == [30.5]
    wall.now = 200.0  # the reported reset has passed: the floor, then the slack
    assert limiter.operating_retry() == (201.5, 1.5)
    assert limiter.meter.state() == (50.0, 201.0)
    assert limiter.wait_after(0.0) == 1.5


@pytest.mark.parametrize(
    ("time", "kept"),
    [
        pytest.param(
            Time(operating=float("nan"), operating_reset_at=1030.0), (None, 1030.0), id="nan"
        ),
        pytest.param(
            Time(operating=float("inf"), operating_reset_at=1030.0), (None, 1030.0), id="inf"
        ),
        pytest.param(
            Time(operating=-5.0, operating_reset_at=1030.0), (None, 1030.0), id="negative"
        ),
        pytest.param(Time(operating=9.5, operating_reset_at=1030.0 * 1000), (9.5, None), id="ms"),
        pytest.param(
            Time(operating=9.5, operating_reset_at=float("inf")), (9.5, None), id="reset-inf"
        ),
        pytest.param(
            Time(operating=9.5, operating_reset_at=-1.0), (9.5, None), id="reset-negative"
        ),
    ],
)
def test_a_time_block_no_portal_sends_is_not_learnt(
    time: Time, kept: tuple[float | None, float | None], caplog: pytest.LogCaptureFixture
) -> None:
    """A figure that is not finite, is negative, or a reset beyond the portal's ten-minute
    window (milliseconds): ignored with a DEBUG line; the next batch goes at once."""
    clock, wall = Clock(), Clock(1000.0)
    slept: list[float] = []
    limiter = _limiter(slept, clock, wall)
    with caplog.at_level(logging.DEBUG, logger="b24batch"):
        limiter.after_answer(time, refused=False)
    assert limiter.meter.state() == kept
    assert limiter.before_send(budget=60) == 0.0
    assert slept == []
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert line.startswith("ignored the answer's time figures no portal sends: ")


def test_a_reset_at_the_edge_of_the_window_is_learnt() -> None:
    """A reset ten minutes and a basket ahead is still the portal's (its clock may be ahead)."""
    clock, wall = Clock(), Clock(1000.0)
    limiter = _limiter([], clock, wall)
    limiter.after_answer(Time(operating=9.5, operating_reset_at=1660.0), refused=False)
    assert limiter.meter.state() == (9.5, 1660.0)
    limiter.after_answer(Time(operating=9.5, operating_reset_at=1660.5), refused=False)
    assert limiter.meter.state() == (9.5, 1660.0)


def test_no_booking_holds_a_wait_longer_than_an_hour() -> None:
    """Whatever the budget, a booking that would wait over MAX_BOOKED_WAIT books nothing: no
    bucket ever holds more than max_level, so a store can tell its own levels from junk."""
    limit = RateLimit(burst=10, per_second=2.0)
    level = limit.ceiling + limit.per_second * MAX_BOOKED_WAIT  # the last booking: an hour
    assert level < max_level(limit)
    assert bucket_step("reserve", level - 1, 0.0, 0.0, limit, float("inf")) == (
        MAX_BOOKED_WAIT,
        (level, 0.0),
    )
    wait, state = bucket_step("reserve", level, 0.0, 0.0, limit, float("inf"))
    assert (wait, state) == (MAX_BOOKED_WAIT + 1 / limit.per_second, None)


def test_a_wait_over_an_hour_is_refused_whatever_the_budget() -> None:
    """A budget of two hours: a booking that would wait over an hour raises, nothing slept."""
    clock = Clock()
    slept: list[float] = []
    limit = RateLimit(burst=10, per_second=2.0)
    bucket = LeakyBucket(limit, clock)
    limiter = Limiter(bucket, OperatingMeter(limit, clock), sleep=slept.append, wall_clock=clock)
    while bucket.wait() <= MAX_BOOKED_WAIT:
        bucket.reserve()
    held = bucket.available()
    with pytest.raises(RateLimitError):
        limiter.before_send(budget=7200.0)
    assert slept == []
    assert bucket.available() == held  # nothing booked
