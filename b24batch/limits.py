"""Client-side limiters, so the portal never has to say no: request rate and operating time.

``RateLimit`` is the immutable policy. ``LeakyBucket`` mirrors the portal's request counter and
says how long to wait before a request; ``OperatingMeter`` remembers the ``time.operating``
the portal reports and how long until its reset. Both are thread-safe and never sleep
themselves: the caller sleeps outside their locks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import attrs

from b24batch.errors import SdkError
from b24batch.results import Time

__all__ = [
    "OPERATING_BASKET",
    "OPERATING_FLOOR",
    "LeakyBucket",
    "LimitState",
    "Limiter",
    "OperatingMeter",
    "RateLimit",
    "shared_bucket",
]


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise SdkError(f"{attribute.name}={value!r}: pass a number > 0")


def _optional_positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _positive(instance, attribute, value)


@attrs.frozen(kw_only=True)
class RateLimit:
    """The portal's limits, as the client keeps below them (protocol §5).

    Attributes:
        burst: The most requests sent back to back: the client's counter, counting the request
            being sent, never exceeds it (the portal's X: 50, or 250 on Enterprise plans).
        per_second: How fast the counter drains (the portal's Y: 2, or 5 on Enterprise).
        operating_limit: The method's operating-time budget in seconds over ten minutes (480 in
            the cloud); None stops the client from waiting for an operating-time reset.
        operating_margin: Start waiting for the reset once ``time.operating`` comes this close
            to ``operating_limit``.

    Example:
        >>> RateLimit.enterprise().burst
        250
    """

    burst: int = attrs.field(default=50, validator=_positive)
    per_second: float = attrs.field(default=2.0, validator=_positive)
    operating_limit: float | None = attrs.field(default=480.0, validator=_optional_positive)
    operating_margin: float = 30.0

    def __attrs_post_init__(self) -> None:
        if isinstance(self.burst, bool) or not isinstance(self.burst, int):
            raise SdkError(f"burst={self.burst!r}: pass a whole number of requests >= 1")
        limit = self.operating_limit
        if limit is not None and not 0 <= self.operating_margin < limit:
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

    def reserve(self) -> float:
        """Book one request; return the seconds to wait before sending it."""
        rate, burst = self.limit.per_second, self.limit.burst
        with self._lock:
            now = self._clock()
            level = max(0.0, self._level - (now - self._updated) * rate) + 1.0
            self._level, self._updated = level, now
        return max(0.0, (level - burst) / rate)

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

        An operating-time reset is waited for only when it fits in ``budget`` (otherwise the
        portal decides); the rate bucket is always waited for.
        """
        waited = 0.0
        delay = self.meter.delay()
        if 0 < delay <= budget:
            self.sleep(delay)
            waited += delay
        if self.bucket is not None:
            delay = self.bucket.reserve()
            if delay > 0:
                self.sleep(delay)
                waited += delay
        return waited

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
