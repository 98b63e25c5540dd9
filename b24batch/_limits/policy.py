"""The limits' policy: ``RateLimit``, what the client keeps below, and ``LimitState``, a snapshot.

With the ranges they accept (``MAX_BURST``, ...). Immutable values, checked at construction. No
state, no clock, no I/O: the bucket, the meter and the limiter keep and use the numbers.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from b24batch.errors import SdkError

__all__ = [
    "DEFAULT_HEADROOM",
    "DEFAULT_RESET_SLACK",
    "MAX_BOOKED_WAIT",
    "MAX_BURST",
    "MAX_OPERATING_LIMIT",
    "MAX_RESET_SLACK",
    "PER_SECOND_RANGE",
    "LimitState",
    "RateLimit",
    "max_level",
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
MAX_BOOKED_WAIT = 3600.0
"""The longest wait a request-rate booking may hold, whatever ``RetryPolicy.max_wait`` allows:
so no bucket, in process or in a store, ever holds more than ``burst + per_second * 3600``, and
a stored level above that is none a store wrote."""


def max_level(limit: RateLimit) -> float:
    """The highest counter any bucket of ``limit`` can hold: a full burst with the longest
    wait a booking may hold (`MAX_BOOKED_WAIT`) queued behind it."""
    return limit.burst + limit.per_second * MAX_BOOKED_WAIT


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

    Every figure is checked at construction (a [`SdkError`][b24batch.SdkError] says the accepted
    range), so a slip such as ``per_second=1e-6`` cannot turn into a wait of days.

    Attributes:
        burst: The portal's counter limit (its X: 50, or 250 on Enterprise plans); 1 to
            10 000. The client's counter, counting the request being sent, never
            exceeds [`ceiling`][b24batch.RateLimit.ceiling], ``burst - headroom``.
        per_second: How fast the counter drains (the portal's Y: 2, or 5 on Enterprise);
            from 0.01 to 1 000 per second.
        operating_limit: The method's operating-time budget in seconds over ten minutes (480 in
            the cloud; at most 600); None stops the client from waiting
            for an operating-time reset.
        operating_margin: Start waiting for the reset once ``time.operating`` comes this close
            to ``operating_limit``. Also what a batch counts for among those in flight before
            any answer has given the cost of one (a window opens with as many batches as fit
            below the limit less the margin), so keep it above what one batch costs.
        operating_reset_slack: Seconds past the reported ``time.operating_reset_at`` before
            the client sends again (default 1 s): the portal reports
            the reset in whole seconds, up to a second before its basket really drops out, and
            a batch sent on the dot is refused with 429.
        headroom: Requests of margin kept below ``burst`` (default 2): a
            request reaches the portal a little after its slot was booked (a descheduled
            thread, a slow send), so two can arrive closer together than booked; the margin
            absorbs ``headroom / per_second`` seconds of such jitter without a 503 (a second
            at the portal's 2/s). Requests late together land at most as many at once as are
            in flight, so an overloaded host sending from many threads at a high rate may need
            up to that many. At most ``burst - 1`` of it applies, so a burst of 1 still sends.

    Examples:
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

    Examples:
        >>> b24 = B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/s/")
        >>> b24.limit_state().requests_available
        48.0
    """

    requests_available: float | None
    operating: float | None
    operating_reset_at: float | None
