"""``Limiter``: waits before a send, so the portal never has to say no; learns from each answer.

It drives a request-rate ``Bucket``, an operating-time ``Meter`` and the in-flight ``Ledger``,
wherever their state is kept, and sleeps outside their locks. It keeps no state of its own:
they do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from b24batch._limits.bucket import Bucket
from b24batch._limits.ledger import Ledger
from b24batch._limits.meter import Meter, plausible
from b24batch._limits.policy import MAX_BOOKED_WAIT, LimitState, RateLimit
from b24batch.errors import OperatingLimitError, RateLimitError
from b24batch.results import Time

__all__ = ["OPERATING_BASKET", "OPERATING_FLOOR", "Limiter"]

log = logging.getLogger("b24batch")

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

    def before_send(self, budget: float, *, sleep: Callable[[float], None] | None = None) -> float:
        """Wait until a batch may go out; return the seconds waited.

        Both waits together — an operating-time reset, then the request-rate bucket — must fit
        in ``budget`` (what is left of the policy's ``max_wait``); a wait that would not fit is
        not started and nothing is booked. ``sleep`` replaces the limiter's own for this call
        (a call's stoppable wait); whatever it raises ends the wait.

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
        pause = self.sleep if sleep is None else sleep
        if operating > 0:
            pause(operating)
        if self.bucket is not None:
            # Booked only now: another thread may have booked since, so check once more.
            rate = self.bucket.reserve(budget - operating)
            # No bucket books a wait over MAX_BOOKED_WAIT, whatever the budget: nothing booked.
            if rate > min(budget - operating, MAX_BOOKED_WAIT):
                raise self._refusal(RateLimitError, operating + rate, budget)
            if rate > 0:
                pause(rate)
        return operating + rate

    def wait_after(self, delay: float) -> float:
        """The seconds `before_send` would wait if called ``delay`` seconds from now."""
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
        for the request rate (then its counter is full, whatever the bucket thought).

        A figure no portal sends (see `plausible`) is ignored,
        with a DEBUG line: through a shared store it would reach every process.
        """
        time, dropped = plausible(time, self._wall_clock())
        if dropped:
            log.debug("ignored the answer's time figures no portal sends: %s", ", ".join(dropped))
        self.meter.record(time)
        self.ledger.learn(time)
        if refused and self.bucket is not None:
            self.bucket.saturate()

    def operating_retry(self, *, metered: bool = True) -> tuple[float, float]:
        """After a 429: ``(retry_at, seconds from now)`` until the portal's reset, at least
        `OPERATING_FLOOR`; one basket ahead when no reset time was ever reported.

        The refusal is news for every batch of the method, not only the one refused: the meter
        records the method as at its limit until then, so the other batches of a window (and,
        through a shared store, of other processes) wait for the same moment instead of each
        collecting a 429 of its own. ``metered=False``: the refused request is charged to a
        method the meter does not count (a single call's own), so the meter neither says when
        it resets nor learns from it.
        """
        now = self._wall_clock()
        reset_at = self.meter.reset_at() if metered else None
        until = max(now + OPERATING_BASKET if reset_at is None else reset_at, now + OPERATING_FLOOR)
        limit = self._limit
        if not metered or limit is None or limit.operating_limit is None:
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
