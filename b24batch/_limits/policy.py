"""Client-side limiters, so the portal never has to say no: request rate and operating time.

``RateLimit`` is the immutable policy; ``Limiter`` waits before a send and learns from each
answer, through a request-rate ``Bucket`` and an operating-time ``Meter`` wherever their state
is kept (``stores.py``). It sleeps outside their locks. ``bucket_step`` and ``operating_wait``
are the arithmetic, once, for every store (the Redis store mirrors it in Lua).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from b24batch._limits.ledger import Ledger
from b24batch.errors import OperatingLimitError, RateLimitError, SdkError
from b24batch.results import Time

__all__ = [
    "DEFAULT_HEADROOM",
    "DEFAULT_RESET_SLACK",
    "MAX_BURST",
    "MAX_OPERATING_LIMIT",
    "MAX_RESET_SLACK",
    "OPERATING_BASKET",
    "OPERATING_FLOOR",
    "PER_SECOND_RANGE",
    "Bucket",
    "LimitState",
    "Limiter",
    "Meter",
    "RateLimit",
    "bucket_step",
    "operating_wait",
]


MAX_BURST = 10_000
"""The largest ``RateLimit.burst`` accepted (the portal's is 50, or 250 on Enterprise)."""
PER_SECOND_RANGE = (0.01, 1000.0)
"""The ``RateLimit.per_second`` accepted: from one request per 100 s to 1 000 per second."""
MAX_OPERATING_LIMIT = 600.0
"""The largest ``RateLimit.operating_limit``: the portal counts operating time over 600 s."""
DEFAULT_HEADROOM = 2
"""``RateLimit.headroom``: requests of margin below the burst, for jitter on the way out."""
DEFAULT_RESET_SLACK = 1.0
"""``RateLimit.operating_reset_slack``: the portal reports its reset in whole seconds."""
MAX_RESET_SLACK = 60.0
"""The largest ``RateLimit.operating_reset_slack``: one basket."""


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


def _headroom(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_BURST:
        raise SdkError(
            f"headroom={value!r}: pass a whole number of requests from 0 to below {MAX_BURST} "
            f"(default {DEFAULT_HEADROOM})"
        )


def _operating_margin(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _number(value) or value < 0:
        raise SdkError(f"operating_margin={value!r}: pass seconds >= 0")


def _reset_slack(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _number(value) or not 0 <= value <= MAX_RESET_SLACK:
        raise SdkError(
            f"operating_reset_slack={value!r}: pass seconds from 0 to {MAX_RESET_SLACK:g} "
            f"(default {DEFAULT_RESET_SLACK:g})"
        )


@attrs.frozen(kw_only=True)
class RateLimit:
    """The portal's limits, as the client keeps below them (protocol §5).

    Every figure is checked at construction (a :class:`SdkError` says the accepted range), so a
    slip such as ``per_second=1e-6`` cannot turn into a wait of days.

    Attributes:
        burst: The portal's counter limit (its X: 50, or 250 on Enterprise plans); 1 to
            :data:`MAX_BURST`. The client's counter, counting the request being sent, never
            exceeds :attr:`ceiling`, ``burst - headroom``.
        per_second: How fast the counter drains (the portal's Y: 2, or 5 on Enterprise);
            within :data:`PER_SECOND_RANGE`.
        operating_limit: The method's operating-time budget in seconds over ten minutes (480 in
            the cloud; at most :data:`MAX_OPERATING_LIMIT`); None stops the client from waiting
            for an operating-time reset.
        operating_margin: Start waiting for the reset once ``time.operating`` comes this close
            to ``operating_limit``.
        operating_reset_slack: Seconds past the reported ``time.operating_reset_at`` before
            the client sends again (default :data:`DEFAULT_RESET_SLACK`): the portal reports
            the reset in whole seconds, up to a second before its basket really drops out, and
            a batch sent on the dot is refused with 429.
        headroom: Requests of margin kept below ``burst`` (default :data:`DEFAULT_HEADROOM`): a
            request reaches the portal a little after its slot was booked (a descheduled
            thread, a slow send), so two can arrive closer together than booked; the margin
            absorbs ``headroom / per_second`` seconds of such jitter without a 503 (a second
            at the portal's 2/s). Requests late together land at most as many at once as are
            in flight, so an overloaded host sending from many threads at a high rate may need
            up to that many. At most ``burst - 1`` of it applies, so a burst of 1 still sends.

    Example:
        >>> RateLimit.enterprise().burst
        250
        >>> RateLimit().ceiling
        48
    """

    burst: int = attrs.field(default=50, validator=_burst)
    per_second: float = attrs.field(default=2.0, validator=_per_second)
    operating_limit: float | None = attrs.field(default=480.0, validator=_operating_limit)
    operating_margin: float = attrs.field(default=30.0, validator=_operating_margin)
    headroom: int = attrs.field(default=DEFAULT_HEADROOM, validator=_headroom)
    operating_reset_slack: float = attrs.field(default=DEFAULT_RESET_SLACK, validator=_reset_slack)

    def __attrs_post_init__(self) -> None:
        limit = self.operating_limit
        if limit is not None and not self.operating_margin < limit:
            raise SdkError(
                f"operating_margin={self.operating_margin!r}: pass seconds from 0 to below "
                f"operating_limit={limit}"
            )

    @property
    def ceiling(self) -> int:
        """The most the client's counter reaches, the request being sent included."""
        return max(1, self.burst - self.headroom)

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
        48.0
    """

    requests_available: float | None
    operating: float | None
    operating_reset_at: float | None


class Bucket(Protocol):
    """What the limiter needs of a request-rate bucket, wherever its state is kept."""

    limit: RateLimit

    def reserve(self, budget: float = math.inf) -> float: ...
    def wait(self, after: float = 0.0) -> float: ...
    def saturate(self) -> None: ...
    def available(self) -> float: ...


class Meter(Protocol):
    """What the limiter needs of an operating-time meter, wherever its state is kept."""

    def record(self, time: Time | None) -> None: ...
    def reset_at(self) -> float | None: ...
    def delay(self) -> float: ...
    def state(self) -> tuple[float | None, float | None]: ...


def bucket_step(
    op: str, level: float, updated: float, now: float, limit: RateLimit, arg: float
) -> tuple[float, tuple[float, float] | None]:
    """One bucket operation on its state ``(level, updated)`` at ``now``: the arithmetic of
    every store, pure.

    ``level`` counts booked requests as of ``updated`` and drains at ``per_second``. The ops:
    ``"reserve"`` (``arg``: the budget) books one request if its wait fits and returns the wait;
    ``"wait"`` (``arg``: seconds from now) returns the wait a request booked then would have;
    ``"saturate"`` takes the counter as full (the portal said 503); ``"available"`` returns the
    requests that could go now without waiting.

    Returns:
        ``(result, new_state)``; ``new_state`` is None when the state is unchanged.
    """
    rate, ceiling = limit.per_second, limit.ceiling

    def drained(at: float) -> float:
        return max(0.0, level - max(0.0, at - updated) * rate)

    if op == "reserve":
        booked = drained(now) + 1.0
        delay = max(0.0, (booked - ceiling) / rate)
        return delay, ((booked, now) if delay <= arg else None)
    if op == "wait":
        return max(0.0, (drained(now + arg) + 1.0 - ceiling) / rate), None
    if op == "saturate":
        return 0.0, (max(drained(now), float(limit.burst)), now)
    if op == "available":
        return max(0.0, ceiling - drained(now)), None
    raise ValueError(f"unknown bucket op {op!r}")


def operating_wait(
    limit: RateLimit | None, operating: float | None, reset_at: float | None, now: float
) -> float | None:
    """Seconds from ``now`` (Unix) to the operating-time reset the client must wait for (its
    slack included), or None when it need not wait; zero or less means the figure is stale
    (its basket dropped)."""
    if limit is None or limit.operating_limit is None or operating is None or reset_at is None:
        return None
    if operating < limit.operating_limit - limit.operating_margin:
        return None
    return reset_at + limit.operating_reset_slack - now


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
        bucket: Bucket | None,
        meter: Meter,
        *,
        sleep: Callable[[float], None],
        wall_clock: Callable[[], float],
        limit: RateLimit | None = None,
    ) -> None:
        self.bucket = bucket
        self.meter = meter
        self.sleep = sleep
        self._wall_clock = wall_clock
        self._limit = limit
        self.ledger = Ledger(limit)
        """The operating time of this client's batches on the wire (windows of batches)."""

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
        self.ledger.learn(time)
        if refused and self.bucket is not None:
            self.bucket.saturate()

    def operating_retry(self) -> tuple[float, float]:
        """After a 429: ``(retry_at, seconds from now)`` until the portal's reset, at least
        :data:`OPERATING_FLOOR`; one basket ahead when no reset time was ever reported.

        The refusal is news for every batch of the method, not only the one refused: the meter
        records the method as at its limit until then, so the other batches of a window (and,
        through a shared store, of other processes) wait for the same moment instead of each
        collecting a 429 of its own.
        """
        now = self._wall_clock()
        reset_at = self.meter.reset_at()
        until = max(now + OPERATING_BASKET if reset_at is None else reset_at, now + OPERATING_FLOOR)
        limit = self._limit
        if limit is None or limit.operating_limit is None:
            return until, until - now
        self.meter.record(Time(operating=limit.operating_limit, operating_reset_at=until))
        retry_at = until + limit.operating_reset_slack
        return retry_at, retry_at - now

    def state(self) -> LimitState:
        """What the limiters know now."""
        operating, reset_at = self.meter.state()
        return LimitState(
            requests_available=None if self.bucket is None else self.bucket.available(),
            operating=operating,
            operating_reset_at=reset_at,
        )
