"""The operating time of the batches on the wire, which no answer has reported yet.

The portal records a batch's operating time when the batch ends, and the client's meter learns
it only from answers; with several batches in flight the ones on the wire land on top of what
the meter knows and can carry the method past its limit. The ledger charges each batch by what
it asks for — its weight (commands, a list page of 200 items as four) times the cost of one
unit the last answer showed — when it is sent, settles it when its answer comes, and holds
further sends while ``reported + in flight`` would reach ``limit - margin``. Before any answer
has given a cost, each batch is charged the margin (the opening: as many go at once as the
known figure leaves room for), and after a reset, while the figure is unknown, one batch goes
out to learn it. Thread-safe.
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Callable

from b24batch._limits.meter import Meter
from b24batch._limits.policy import RateLimit
from b24batch.results import Time

__all__ = ["Ledger"]


class Ledger:
    """The expected operating seconds of the batches in flight, and the wait they impose.

    Args:
        limit: The client's limits; no operating limit means the ledger never holds a send.
        clock: Monotonic seconds, for bounded waits.
    """

    def __init__(self, limit: RateLimit | None, clock: Callable[[], float] = _time.monotonic):
        self._limit = None if limit is None else limit.operating_limit
        self._margin = 0.0 if limit is None else limit.operating_margin
        self._clock = clock
        self._changed = threading.Condition()
        self._flying = 0.0
        self._count = 0
        self._cost: float | None = None  # operating seconds per unit of weight
        # What a batch is charged before any answer gave its cost: the margin, so that the
        # opening batches cannot take the figure past the limit unless one of them costs more
        # than the margin. No margin: nothing to guess with, one batch learns the cost.
        self._opening = self._margin if self._limit is not None and self._margin > 0 else None
        self._last: float | None = None  # the highest figure reported in the current window
        self._window: float | None = None  # that window's operating_reset_at

    @property
    def in_flight(self) -> tuple[int, float]:
        """``(batches, expected operating seconds)`` on the wire now."""
        with self._changed:
            return self._count, self._flying

    def admit(
        self,
        meter: Meter,
        budget: float,
        *,
        stop: Callable[[], bool] | None = None,
        weight: float = 1.0,
    ) -> tuple[float, float]:
        """Hold a send while the batches in flight would take the method past its limit (at
        most ``budget`` seconds: then the meter's own check decides, and no longer than until
        ``stop()`` says the call was stopped), and book it in the same breath, so two threads
        cannot both see room for one: ``(seconds held, cost charged)``. ``weight``: what the
        batch asks for (``Prepared.weight``); it is booked at the cost per unit last learnt.
        """
        with self._changed:
            held = self._hold(meter, budget, stop, weight)
            return held, self._book(weight)

    def _hold(
        self, meter: Meter, budget: float, stop: Callable[[], bool] | None, weight: float
    ) -> float:
        if self._limit is None or not self._count:  # nothing on the wire: the meter decides
            return 0.0
        started = self._clock()
        while self._count:
            operating = meter.state()[0]
            # Unknown: no answer yet, or the meter dropped a figure past its reset. A portal
            # that never reports one (no figure ever seen) counts as 0. Answers land in any
            # order: never take a figure lower than the highest of the same window.
            if operating is None and self._last is None:
                operating = 0.0
            elif operating is not None and self._last is not None:
                operating = max(operating, self._last)
            cost = self._opening if self._cost is None else self._cost * weight
            if (
                operating is not None
                and cost is not None
                and operating + self._flying + cost < self._limit - self._margin
            ):
                break
            left = budget - (self._clock() - started)
            if left <= 0 or (stop is not None and stop()):
                break
            # One batch in flight while the figure is unknown (after a reset) teaches it.
            self._changed.wait(timeout=min(left, 1.0))
        return self._clock() - started

    def _book(self, weight: float) -> float:
        cost = (self._opening or 0.0) if self._cost is None else self._cost * weight
        self._flying += cost
        self._count += 1
        return cost

    def settle(self, cost: float) -> None:
        """The batch charged ``cost`` has its answer (or failed): take it off the ledger."""
        with self._changed:
            self._flying = max(0.0, self._flying - cost)
            self._count -= 1
            self._changed.notify_all()

    def learn(self, time: Time | None, weight: float = 1.0) -> None:
        """Learn the cost of a unit of weight from the answer of a batch of ``weight``: the
        rise of ``operating`` since the last answer (conservative when several landed in
        between), or the batch's ``duration``, over its weight. A walk's first batch (two
        pages) so teaches what its full batches (fifty) will cost."""
        with self._changed:
            if time is None:  # an answer without a time block: nothing to learn but that
                self._cost = 0.0 if self._cost is None else self._cost
                return
            operating = time.operating
            if time.operating_reset_at != self._window:  # a new window: its own figures
                self._window, self._last = time.operating_reset_at, None
            rise = None
            if operating is not None and self._last is not None and operating > self._last:
                rise = operating - self._last
            if operating is not None:
                self._last = operating if self._last is None else max(self._last, operating)
            candidates = [c for c in (rise, time.duration) if c is not None and c > 0]
            if candidates:
                self._cost = max(candidates) / max(weight, 1e-9)
            elif self._cost is None and operating is None:
                self._cost = 0.0  # the portal reports no operating time: nothing to budget
            # A first figure alone says nothing of one batch's cost: the next answer will.
