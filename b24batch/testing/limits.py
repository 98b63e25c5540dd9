"""The FakePortal's own limits: the request-rate bucket and the operating-time meter.

Also how a batch is charged to, refused by and reported from that meter (the ``time`` block).
The limiters only keep numbers on the clock they are given; the portal holds its lock around
them. Distinct from ``b24batch._limits``, the client's side of the same limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

from b24batch.testing.messages import OPERATION_LIMIT, Reply
from b24batch.testing.v3_store import Row, format_datetime

__all__ = ["BASKET_SECONDS", "OPERATING_BASKETS", "LeakyBucket", "OperatingMeter", "OperatingTime"]

OPERATING_BASKETS: Final = 10
BASKET_SECONDS: Final = 60.0


class LeakyBucket:
    """The request-rate limiter: +1 per admitted request, drains ``per_second`` per second.

    A request that finds the level at or above ``burst`` is refused and does not raise it.
    """

    def __init__(self, burst: float, per_second: float, clock: Callable[[], float]) -> None:
        self._burst = burst
        self._per_second = per_second
        self._clock = clock
        self._level = 0.0
        self._updated = clock()

    def admit(self) -> bool:
        now = self._clock()
        drained = max(0.0, now - self._updated) * self._per_second
        self._level = max(0.0, self._level - drained)
        self._updated = now
        if self._level >= self._burst:
            return False
        self._level += 1.0
        return True

    def reset(self) -> None:
        self._level = 0.0
        self._updated = self._clock()


class OperatingMeter:
    """Operating time per method in ``OPERATING_BASKETS`` one-minute baskets of ``clock``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._baskets: dict[str, dict[int, float]] = {}

    def _live(self, method: str) -> dict[int, float]:
        current = int(self._clock() // BASKET_SECONDS)
        baskets = self._baskets.setdefault(method, {})
        for index in [i for i in baskets if i <= current - OPERATING_BASKETS]:
            del baskets[index]
        return baskets

    def charge(self, method: str, seconds: float) -> None:
        index = int(self._clock() // BASKET_SECONDS)
        baskets = self._live(method)
        baskets[index] = baskets.get(index, 0.0) + seconds

    def total(self, method: str) -> float:
        return sum(self._live(method).values())

    def reset_at(self, method: str, wall_now: float) -> float:
        """Wall time at which ``method``'s oldest basket drops out of the window."""
        baskets = self._live(method)
        now = self._clock()
        oldest = min(baskets) if baskets else int(now // BASKET_SECONDS)
        return wall_now + (oldest + OPERATING_BASKETS) * BASKET_SECONDS - now

    def reset(self) -> None:
        self._baskets = {}


class OperatingTime:
    """Charging, refusing and reporting operating time (mixed into FakePortal)."""

    _operating_limit: float | None
    _operating_charge: Literal["batch", "method"]
    _command_cost: float
    _meter: OperatingMeter
    _wall_clock: Callable[[], float]

    def _over_limit(self, method: str) -> bool:
        limit = self._operating_limit
        return limit is not None and self._meter.total(method) >= limit

    def _time_block(self, method: str, start: float) -> dict[str, Any]:
        """A ``time`` block from ``start`` to now, with ``method``'s operating time."""
        finish = self._wall_clock()
        duration = max(0.0, finish - start)
        return {
            "start": start,
            "finish": finish,
            "duration": duration,
            "processing": duration,
            "date_start": format_datetime(start),
            "date_finish": format_datetime(finish),
            "operating_reset_at": int(self._meter.reset_at(method, finish)),
            "operating": round(self._meter.total(method), 6),
        }

    def _charged_to(self, rows: tuple[Row, ...]) -> set[str]:
        """The meter's names that ``rows`` are charged to, under ``operating_charge``."""
        if self._operating_charge == "batch":
            return {"batch"}
        return {row.method.lower() for row in rows}

    def _operating_block(self, rows: tuple[Row, ...]) -> Reply | None:
        if self._operating_limit is None:
            return None
        if any(self._meter.total(name) >= self._operating_limit for name in self._charged_to(rows)):
            return Reply.of(429, OPERATION_LIMIT)
        return None

    def _charge(self, method: str) -> None:
        self._meter.charge(
            "batch" if self._operating_charge == "batch" else method, self._command_cost
        )
