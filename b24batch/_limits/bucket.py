"""The request-rate bucket: the ``Bucket`` protocol, ``bucket_step`` and the in-process bucket.

``bucket_step`` is the arithmetic, once, for every store (the Redis store mirrors it in Lua);
``LeakyBucket`` keeps the state in this process, ``shared_bucket`` one bucket per portal. No
sleeping here: the limiter sleeps, outside the bucket's lock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Protocol

from b24batch._limits.policy import MAX_BOOKED_WAIT, RateLimit

__all__ = ["Bucket", "LeakyBucket", "bucket_step", "shared_bucket"]


class Bucket(Protocol):
    """What the limiter needs of a request-rate bucket, wherever its state is kept."""

    limit: RateLimit

    def reserve(self, budget: float = math.inf) -> float: ...
    def wait(self, after: float = 0.0) -> float: ...
    def saturate(self) -> None: ...
    def available(self) -> float: ...


def bucket_step(
    op: str, level: float, updated: float, now: float, limit: RateLimit, arg: float
) -> tuple[float, tuple[float, float] | None]:
    """One bucket operation on its state ``(level, updated)`` at ``now``: the arithmetic of
    every store, pure.

    ``level`` counts booked requests as of ``updated`` and drains at ``per_second``. The ops:
    ``"reserve"`` (``arg``: the budget) books one request if its wait fits (and is at most
    `MAX_BOOKED_WAIT`) and returns the wait;
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
        return delay, ((booked, now) if delay <= min(arg, MAX_BOOKED_WAIT) else None)
    if op == "wait":
        return max(0.0, (drained(now + arg) + 1.0 - ceiling) / rate), None
    if op == "saturate":
        return 0.0, (max(drained(now), float(limit.burst)), now)
    if op == "available":
        return max(0.0, ceiling - drained(now)), None
    raise ValueError(f"unknown bucket op {op!r}")


class LeakyBucket:
    """The portal's request counter, kept in this process and shared by threads.

    The counter rises by one per request and drains at ``per_second``. ``reserve()`` books the
    next slot and returns how long to wait for it, so concurrent callers queue in order and
    each sends when the counter, its own request included, is at most ``limit.ceiling``.
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float], *, level: float = 0.0) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._state = (level, clock())  # (level, updated), booked requests included

    def step(self, op: str, arg: float = 0.0) -> float:
        """One `bucket_step` operation on this bucket, atomically."""
        with self._lock:
            result, state = bucket_step(op, *self._state, self._clock(), self.limit, arg)
            if state is not None:
                self._state = state
        return result

    def reserve(self, budget: float = math.inf) -> float:
        """Book one request if its wait fits in ``budget``; return the seconds to wait for it.

        A wait longer than ``budget`` books nothing: the request is not going to be sent.
        """
        return self.step("reserve", budget)

    def wait(self, after: float = 0.0) -> float:
        """The seconds a request booked ``after`` seconds from now would wait; books nothing."""
        return self.step("wait", after)

    def saturate(self) -> None:
        """The portal said 503 ``QUERY_LIMIT_EXCEEDED``: take its counter as full, so the
        next request waits for it to drain."""
        self.step("saturate")

    def available(self) -> float:
        """Requests that could be sent right now without waiting."""
        return self.step("available")


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
