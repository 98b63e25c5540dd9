"""Client-side limiters, so the portal never has to say no: request rate and operating time.

``RateLimit`` is the immutable policy. ``LeakyBucket`` mirrors the portal's request counter and
says how long to wait before a request; ``OperatingMeter`` remembers the ``time.operating``
the portal reports and how long until its reset. Both are thread-safe and never sleep
themselves: the caller sleeps outside their locks.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import attrs

from b24batch.errors import OperatingLimitError, RateLimitError, SdkError
from b24batch.results import Time

__all__ = [
    "MAX_BURST",
    "MAX_OPERATING_LIMIT",
    "OPERATING_BASKET",
    "OPERATING_FLOOR",
    "PER_SECOND_RANGE",
    "LeakyBucket",
    "LimitState",
    "Limiter",
    "OperatingMeter",
    "RateLimit",
    "shared_bucket",
]


MAX_BURST = 10_000
"""The largest ``RateLimit.burst`` accepted (the portal's is 50, or 250 on Enterprise)."""
PER_SECOND_RANGE = (0.01, 1000.0)
"""The ``RateLimit.per_second`` accepted: from one request per 100 s to 1 000 per second."""
MAX_OPERATING_LIMIT = 600.0
"""The largest ``RateLimit.operating_limit``: the portal counts operating time over 600 s."""


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _burst(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BURST:
        raise SdkError(
            f"burst={value!r}: pass a whole number of requests from 1 to {MAX_BURST} "
            f"(the portal's is 50, or 250 on Enterprise plans)"
        )


def _per_second(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    low, high = PER_SECOND_RANGE
    if not _number(value) or not low <= value <= high:
        raise SdkError(
            f"per_second={value!r}: pass requests per second from {low} to {high:g} "
            f"(the portal's is 2, or 5 on Enterprise plans)"
        )


def _operating_limit(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not _number(value) or not 0 < value <= MAX_OPERATING_LIMIT):
        raise SdkError(
            f"operating_limit={value!r}: pass seconds of operating time per ten minutes, above "
            f"0 and at most {MAX_OPERATING_LIMIT:g} (the cloud's is 480), or None"
        )


def _operating_margin(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _number(value) or value < 0:
        raise SdkError(f"operating_margin={value!r}: pass seconds >= 0")


@attrs.frozen(kw_only=True)
class RateLimit:
    """The portal's limits, as the client keeps below them (protocol §5).

    Every figure is checked at construction (a :class:`SdkError` says the accepted range), so a
    slip such as ``per_second=1e-6`` cannot turn into a wait of days.

    Attributes:
        burst: The most requests sent back to back: the client's counter, counting the request
            being sent, never exceeds it (the portal's X: 50, or 250 on Enterprise plans);
            1 to :data:`MAX_BURST`.
        per_second: How fast the counter drains (the portal's Y: 2, or 5 on Enterprise);
            within :data:`PER_SECOND_RANGE`.
        operating_limit: The method's operating-time budget in seconds over ten minutes (480 in
            the cloud; at most :data:`MAX_OPERATING_LIMIT`); None stops the client from waiting
            for an operating-time reset.
        operating_margin: Start waiting for the reset once ``time.operating`` comes this close
            to ``operating_limit``.

    Example:
        >>> RateLimit.enterprise().burst
        250
    """

    burst: int = attrs.field(default=50, validator=_burst)
    per_second: float = attrs.field(default=2.0, validator=_per_second)
    operating_limit: float | None = attrs.field(default=480.0, validator=_operating_limit)
    operating_margin: float = attrs.field(default=30.0, validator=_operating_margin)

    def __attrs_post_init__(self) -> None:
        limit = self.operating_limit
        if limit is not None and not self.operating_margin < limit:
            raise SdkError(
                f"operating_margin={self.operating_margin!r}: pass seconds from 0 to below "
                f"operating_limit={limit}"
            )

    @classmethod
    def enterprise(cls) -> RateLimit:
        """The Enterprise plans' request rate: burst 250, 5 per second."""
        return cls(burst=250, per_second=5.0)


@attrs.frozen(kw_only=True)
class LimitState:
    """A snapshot of a client's limiters, for logs and dashboards.

    Attributes:
        requests_available: Requests that could go out now without waiting (None: no limiter).
        operating: The last ``time.operating`` the portal reported, in seconds.
        operating_reset_at: Unix seconds when its oldest basket expires, as last reported.

    Example:
        >>> b24 = B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/s/")
        >>> b24.limit_state().requests_available
        50.0
    """

    requests_available: float | None
    operating: float | None
    operating_reset_at: float | None


class LeakyBucket:
    """The portal's request counter, kept on the client side and shared by threads.

    The counter rises by one per request and drains at ``per_second``. ``reserve()`` books the
    next slot and returns how long to wait for it, so concurrent callers queue in order and
    each sends when the counter, its own request included, is at most ``burst``.
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._level = 0.0  # as of self._updated, booked requests included
        self._updated = clock()

    def reserve(self, budget: float = math.inf) -> float:
        """Book one request if its wait fits in ``budget``; return the seconds to wait for it.

        A wait longer than ``budget`` books nothing: the request is not going to be sent.
        """
        rate, burst = self.limit.per_second, self.limit.burst
        with self._lock:
            now = self._clock()
            level = max(0.0, self._level - (now - self._updated) * rate) + 1.0
            delay = max(0.0, (level - burst) / rate)
            if delay <= budget:
                self._level, self._updated = level, now
        return delay

    def wait(self, after: float = 0.0) -> float:
        """The seconds a request booked ``after`` seconds from now would wait; books nothing."""
        rate = self.limit.per_second
        with self._lock:
            drained = (self._clock() + after - self._updated) * rate
            level = max(0.0, self._level - drained) + 1.0
        return max(0.0, (level - self.limit.burst) / rate)

    def saturate(self) -> None:
        """The portal said 503 ``QUERY_LIMIT_EXCEEDED``: take its counter as full, so the
        next request waits for it to drain."""
        with self._lock:
            now = self._clock()
            level = max(0.0, self._level - (now - self._updated) * self.limit.per_second)
            self._level, self._updated = max(level, float(self.limit.burst)), now

    def available(self) -> float:
        """Requests that could be sent right now without waiting."""
        with self._lock:
            drained = (self._clock() - self._updated) * self.limit.per_second
            return max(0.0, self.limit.burst - max(0.0, self._level - drained))


class OperatingMeter:
    """Remembers the portal's ``time.operating`` and says how long to wait for its reset."""

    def __init__(self, limit: RateLimit | None, wall_clock: Callable[[], float]) -> None:
        self._limit = limit
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._operating: float | None = None
        self._reset_at: float | None = None

    def record(self, time: Time | None) -> None:
        """Take the latest figures from an answer's ``time`` block (absent fields change none)."""
        if time is None or (time.operating is None and time.operating_reset_at is None):
            return
        with self._lock:
            if time.operating is not None:
                self._operating = time.operating
            if time.operating_reset_at is not None:
                self._reset_at = time.operating_reset_at

    def reset_at(self) -> float | None:
        """Unix seconds of the last reported reset, if any."""
        with self._lock:
            return self._reset_at

    def delay(self) -> float:
        """Seconds to wait before the next batch so as not to collect a 429; 0 if none."""
        limit = self._limit
        if limit is None or limit.operating_limit is None:
            return 0.0
        with self._lock:
            operating, reset_at = self._operating, self._reset_at
        if operating is None or reset_at is None:
            return 0.0
        if operating < limit.operating_limit - limit.operating_margin:
            return 0.0
        wait = reset_at - self._wall_clock()
        if wait <= 0:
            with self._lock:  # the basket has dropped out: the figure is stale
                if self._reset_at == reset_at:
                    self._operating = None
            return 0.0
        return wait

    def state(self) -> tuple[float | None, float | None]:
        """``(operating, operating_reset_at)`` as last reported."""
        with self._lock:
            return self._operating, self._reset_at


_shared_lock = threading.Lock()
_shared: dict[tuple[str, Callable[[], float]], LeakyBucket] = {}


def shared_bucket(origin: str, clock: Callable[[], float]) -> LeakyBucket:
    """The one default-limit bucket for ``origin`` in this process, made on first use.

    The portal counts requests per portal and source IP, so every client of one portal in a
    process must draw from one counter. The bucket outlives its clients, as the portal's
    counter does: a new client made right after another must not start with a full burst.
    """
    key = (origin, clock)
    with _shared_lock:
        bucket = _shared.get(key)
        if bucket is None:
            bucket = LeakyBucket(RateLimit(), clock)
            _shared[key] = bucket
        return bucket


OPERATING_BASKET = 60.0
"""Seconds in one operating-time basket: the wait assumed when the portal gave no reset time."""
OPERATING_FLOOR = 1.0
"""The shortest wait before repeating a batch refused with 429."""


class Limiter:
    """A client's limiters and its clocks: waits before a send, learns from each answer.

    Args:
        bucket: The request-rate bucket (shared per portal by default), or None for no limit.
        meter: The operating-time meter.
        sleep: Sleeps for the given seconds (``time.sleep``; injectable for tests).
        wall_clock: Unix seconds (``time.time``), to compare with ``operating_reset_at``.
    """

    def __init__(
        self,
        bucket: LeakyBucket | None,
        meter: OperatingMeter,
        *,
        sleep: Callable[[float], None],
        wall_clock: Callable[[], float],
    ) -> None:
        self.bucket = bucket
        self.meter = meter
        self.sleep = sleep
        self._wall_clock = wall_clock

    def before_send(self, budget: float) -> float:
        """Wait until a batch may go out; return the seconds waited.

        Both waits together — an operating-time reset, then the request-rate bucket — must fit
        in ``budget`` (what is left of the policy's ``max_wait``); a wait that would not fit is
        not started and nothing is booked.

        Raises:
            OperatingLimitError: The operating-time reset is further away than ``budget``.
            RateLimitError: The bucket's wait does not fit in what ``budget`` leaves.
            Both have ``status=0`` (no HTTP answer: the client refused before sending) and
            ``retry_at``; the batch layer adds ``request_id`` and ``attempts``.
        """
        operating = self.meter.delay()
        if operating > budget:
            raise self._refusal(OperatingLimitError, operating, budget)
        rate = 0.0 if self.bucket is None else self.bucket.wait(after=operating)
        if operating + rate > budget:
            raise self._refusal(RateLimitError, operating + rate, budget)
        if operating > 0:
            self.sleep(operating)
        if self.bucket is not None:
            # Booked only now: another thread may have booked since, so check once more.
            rate = self.bucket.reserve(budget - operating)
            if rate > budget - operating:
                raise self._refusal(RateLimitError, operating + rate, budget)
            if rate > 0:
                self.sleep(rate)
        return operating + rate

    def wait_after(self, delay: float) -> float:
        """The seconds :meth:`before_send` would wait if called ``delay`` seconds from now."""
        operating = max(0.0, self.meter.delay() - delay)
        rate = 0.0 if self.bucket is None else self.bucket.wait(after=delay + operating)
        return operating + rate

    def _refusal(
        self, kind: type[RateLimitError | OperatingLimitError], delay: float, budget: float
    ) -> RateLimitError | OperatingLimitError:
        what, code = (
            ("request-rate bucket", "QUERY_LIMIT_EXCEEDED")
            if kind is RateLimitError
            else ("operating-time reset", "OPERATION_TIME_LIMIT")
        )
        error = kind(
            f"the client's {what} needs a wait of {delay:.1f} s before this batch, more than "
            f"the {max(budget, 0.0):.1f} s left of the retry policy's max_wait; nothing was "
            f"sent: send it again at retry_at, or raise max_wait",
            code=code,
            status=0,
        )
        error.retry_at = self._wall_clock() + delay
        return error

    def after_answer(self, time: Time | None, *, refused: bool) -> None:
        """Learn from an answer: its operating-time figures, and whether the portal refused it
        for the request rate (then its counter is full, whatever the bucket thought)."""
        self.meter.record(time)
        if refused and self.bucket is not None:
            self.bucket.saturate()

    def operating_retry(self) -> tuple[float, float]:
        """After a 429: ``(retry_at, seconds from now)`` until the portal's reset, at least
        :data:`OPERATING_FLOOR`; one basket ahead when no reset time was ever reported."""
        now = self._wall_clock()
        reset_at = self.meter.reset_at()
        retry_at = max(
            now + OPERATING_BASKET if reset_at is None else reset_at, now + OPERATING_FLOOR
        )
        return retry_at, retry_at - now

    def state(self) -> LimitState:
        """What the limiters know now."""
        operating, reset_at = self.meter.state()
        return LimitState(
            requests_available=None if self.bucket is None else self.bucket.available(),
            operating=operating,
            operating_reset_at=reset_at,
        )
