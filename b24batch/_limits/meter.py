"""Operating time: the ``Meter`` protocol, ``operating_wait`` and the in-process meter.

``operating_wait`` is the arithmetic, once, for every store; ``OperatingMeter`` remembers the
portal's last ``time`` figures in this process and says how long to wait for the reset. It
never sleeps: the limiter does.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Protocol

import attrs

from b24batch._limits.policy import RateLimit
from b24batch.results import Time

__all__ = [
    "OPERATING_WINDOW",
    "WINDOW_SLACK",
    "Meter",
    "OperatingMeter",
    "operating_wait",
    "plausible",
]

OPERATING_WINDOW = 600.0
"""Seconds over which the portal sums operating time (ten one-minute baskets): no reset it
reports is further ahead."""
WINDOW_SLACK = 60.0
"""Seconds past `OPERATING_WINDOW` still taken as the portal's: its clock and ours (or
the store's) may disagree by that much."""


class Meter(Protocol):
    """What the limiter needs of an operating-time meter, wherever its state is kept."""

    def record(self, time: Time | None) -> None: ...
    def reset_at(self) -> float | None: ...
    def delay(self) -> float: ...
    def state(self) -> tuple[float | None, float | None]: ...


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


def _sane(value: float | None, most: float) -> bool:
    return value is None or (math.isfinite(value) and 0 <= value <= most)


def plausible(time: Time | None, now: float) -> tuple[Time | None, tuple[str, ...]]:
    """``time`` without the operating figures no portal sends, and the names of those dropped.

    A figure must be finite and non-negative, a reset (``operating_reset_at``) no further
    than the portal's window (and `WINDOW_SLACK`) from ``now`` (Unix seconds), and a
    ``duration`` no longer than that window: a reset in milliseconds, or ``NaN``, would
    otherwise hold every batch of every client sharing the figure for ever.
    """
    if time is None:
        return None, ()
    horizon = now + OPERATING_WINDOW + WINDOW_SLACK
    checks = (
        ("operating", time.operating, math.inf),
        ("operating_reset_at", time.operating_reset_at, horizon),
        ("duration", time.duration, OPERATING_WINDOW),
    )
    dropped = tuple(name for name, value, most in checks if not _sane(value, most))
    if not dropped:
        return time, ()
    return attrs.evolve(time, **dict.fromkeys(dropped)), dropped


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
        with self._lock:
            operating, reset_at = self._operating, self._reset_at
        wait = operating_wait(self._limit, operating, reset_at, self._wall_clock())
        if wait is not None and wait <= 0:
            with self._lock:  # the basket has dropped out: the figure is stale
                if self._reset_at == reset_at:
                    self._operating = None
        return max(0.0, wait or 0.0)

    def state(self) -> tuple[float | None, float | None]:
        """``(operating, operating_reset_at)`` as last reported."""
        with self._lock:
            return self._operating, self._reset_at
