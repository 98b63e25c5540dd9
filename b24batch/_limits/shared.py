"""Limits shared by many processes: ``LimitStore``, and ``SharedBucket``/``SharedMeter`` over it.

For the limits a store keeps numbers only, never a secret (``fingerprint`` names a
credential), and does none of the arithmetic; while it is unreachable each process limits
in-process, to its share. An ``OAuthApp``'s token records are the one secret it may hold
(``token_*``; they never fall back). A forked child gets fresh locks.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import math
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from b24batch._limits.bucket import LeakyBucket
from b24batch._limits.meter import OPERATING_WINDOW, WINDOW_SLACK, OperatingMeter, operating_wait
from b24batch._limits.policy import PER_SECOND_RANGE, RateLimit
from b24batch.errors import SdkError, SdkTypeError
from b24batch.redaction import Secret
from b24batch.results import Time

__all__ = [
    "DEFAULT_RECHECK",
    "DEFAULT_STORE_TIMEOUT",
    "HOLD_DOWN",
    "LIVE_WINDOW",
    "RESET_HORIZON",
    "SLOW_AFTER",
    "SLOW_STORE",
    "LimitStore",
    "MeterState",
    "SharedBucket",
    "SharedMeter",
    "fingerprint",
]

log = logging.getLogger("b24batch")

DEFAULT_STORE_TIMEOUT = 1.0
"""Seconds a shared store may take to connect or answer before it counts as unreachable."""
DEFAULT_RECHECK = 5.0
"""Seconds between attempts to reach a store that was unreachable (limits stay in-process)."""
FUTURE_TOLERANCE = 1.0
"""A stored state dated further ahead than this is foreign (a clock reset): taken as empty."""
HOLD_DOWN = 60.0
"""Seconds a store that failed again soon after answering again (flapping) is left alone."""
SLOW_STORE = 0.2
"""Seconds an operation of a store may take on average before a WARNING says so once: a batch
makes three or four, so a slower store costs a large share of a batch's time."""
SLOW_AFTER = 5
"""Answers a store gives before its average speed is judged (the first, connecting, is not
counted)."""
LIVE_WINDOW = 30.0
"""Seconds a client counts as live at a shared bucket after its last operation there: the
clients the in-process fallback shares the rate among while the store is unreachable."""
RESET_HORIZON = OPERATING_WINDOW + WINDOW_SLACK
"""A stored reset further ahead of the store's time than this is foreign: no answer the
limiter learns from holds one (``meter.plausible``)."""

MeterState = tuple[float | None, float | None, float]
"""``(operating, operating_reset_at, now)``: a meter's numbers and the store's Unix time."""


def fingerprint(credential: Secret[str]) -> str:
    """A short one-way hash naming a credential in a store's keys; never the credential."""
    return hashlib.blake2b(
        credential.value.encode("utf-8"), digest_size=8, person=b"b24batch-meter"
    ).hexdigest()


class _Unreachable(Exception):
    """The store did not answer: the caller uses the in-process state instead."""


_stores: weakref.WeakSet[LimitStore] = weakref.WeakSet()


class _Fallback:
    """What one process knows of one shared bucket, for while its store is unreachable: the
    last level and count of live clients the store reported, and the in-process bucket that
    stands in for it during an outage (None while the store answers).

    One per store object and key, so the clients of a process that share a store share it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: tuple[float, int, float] | None = None  # (level, clients, clock() then)
        self.bucket: LeakyBucket | None = None

    def stand_in(self, limit: RateLimit, clock: Callable[[], float]) -> LeakyBucket:
        """The in-process bucket for this outage, made at its first use: this process's share
        of the portal's bucket — its ceiling and rate divided among the live clients the
        store last counted, starting from its share of the last level seen (full if none)."""
        with self.lock:
            if self.bucket is None:
                clients, level = 1, float(limit.ceiling)
                if self.seen is not None:
                    seen_level, clients, at = self.seen
                    level = max(0.0, seen_level - max(0.0, clock() - at) * limit.per_second)
                share = RateLimit(
                    burst=max(1, limit.ceiling // clients),
                    per_second=max(PER_SECOND_RANGE[0], limit.per_second / clients),
                    headroom=0,
                    operating_limit=None,
                )
                self.bucket = LeakyBucket(share, clock, level=level / clients)
            return self.bucket

    def back(self) -> bool:
        """The store answers again: drop the stand-in; True if there was one."""
        with self.lock:
            was, self.bucket = self.bucket is not None, None
            return was


def _after_fork() -> None:
    for store in list(_stores):
        store._lock = threading.Lock()  # a thread of the parent may have held it
        for fallback in store._fallbacks.values():
            fallback.lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class LimitStore(abc.ABC):
    """A shared store for the limiters' state: pass one as ``limit_store=`` to the clients.

    The request-rate bucket is keyed by portal (and ``egress``, the public IP the host's requests
    leave through, when hosts leave through different ones: the portal counts each IP apart); the
    operating-time meter by portal, a hash of the credential and the method. While the store is
    unreachable the clients limit in-process, each process taking its share of the bucket (the rate
    divided among the clients the store last counted), one WARNING logged when that starts and one
    when it ends; the store is tried again every ``recheck`` seconds (every 60 s while it flaps).
    Any exception of the store counts as its being unreachable.

    Subclasses implement [`bucket_op`][b24batch.LimitStore.bucket_op] and
    [`meter_op`][b24batch.LimitStore.meter_op], each atomic in the store, check every value they
    read back against what they could have written (calling
    [`found_foreign`][b24batch.LimitStore.found_foreign] for the rest), and may report a bucket's
    level and live clients through [`saw`][b24batch.LimitStore.saw] (without it the fallback starts
    full, as the only client).

    Examples:
        >>> store = SQLiteStore("/var/lib/myapp/b24-limits.sqlite3", egress="203.0.113.7")
        >>> isinstance(store, LimitStore), store.bucket_key("https://example.bitrix24.com")
        (True, 'bucket:https://example.bitrix24.com@203.0.113.7')
    """

    def __init__(self, *, egress: str | None, recheck: float, timeout: float) -> None:
        if egress is not None and (
            not isinstance(egress, str) or not egress.isprintable() or not 0 < len(egress) <= 100
        ):
            raise SdkError(
                f"egress={egress!r}: pass a short printable label for the public IP this host's "
                f"requests leave through, or None when all hosts share one"
            )
        for name, value in (("recheck", recheck), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SdkTypeError(f"{name}={value!r}: pass seconds as a number")
            if not 0 < value <= 3600:
                raise SdkError(f"{name}={value!r}: pass seconds above 0 and at most 3600")
        self.egress = egress
        self.recheck = float(recheck)
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._down_until: float | None = None
        self._foreign_keys: set[str] = set()
        self._monotonic: Callable[[], float] = time.monotonic
        self._back_at: float | None = None
        self._latency: float | None = None
        self._answers = 0
        self._said_slow = False
        self._fallbacks: dict[str, _Fallback] = {}
        self._seen: dict[str, tuple[float, int]] = {}
        self._client = ""
        _stores.add(self)

    @abc.abstractmethod
    def bucket_op(
        self, key: str, op: str, limit: RateLimit, arg: float, clock: Callable[[], float]
    ) -> float:
        """Apply the bucket arithmetic, ``bucket_step``, to the bucket under ``key``, atomically.

        ``clock`` is read inside the store's lock (a store with a clock of its own ignores it).
        A missing, foreign or nonsense state counts as empty and is overwritten.
        """

    @abc.abstractmethod
    def meter_op(
        self,
        key: str,
        op: str,
        operating: float | None,
        reset_at: float | None,
        clock: Callable[[], float],
    ) -> tuple[float | None, float | None, float]:
        """``"read"`` the meter under ``key``; ``"record"`` the figures given (None keeps the
        stored one); ``"forget"`` its operating figure if its reset is still ``reset_at``.

        Returns the meter's state after the operation and the store's Unix time:
        ``(operating, operating_reset_at, now)``.
        """

    # The token records of OAuth applications (``b24batch/_auth``): unlike the limits, they
    # never fall back to the process (a token pair kept nowhere else would be lost), so these
    # raise whatever the store raises and the caller turns it into an AuthError.

    def token_read(self, key: str) -> tuple[int, Secret[str]] | None:
        """``(version, record)`` kept under ``key``, or None; ValueError for a value this store
        could not have written."""
        raise NotImplementedError(f"{type(self).__name__} keeps no OAuth tokens")

    def token_write(self, key: str, record: Secret[str], expect: int | None) -> int | None:
        """Write ``record`` under ``key`` with the next version, atomically, if the stored
        version is ``expect`` (None: whatever it is); the new version, or None if it moved."""
        raise NotImplementedError(f"{type(self).__name__} keeps no OAuth tokens")

    def token_lease(self, key: str, owner: str, seconds: float) -> bool:
        """Take the refresh lease of ``key`` for ``seconds`` if no other owner holds it."""
        raise NotImplementedError(f"{type(self).__name__} keeps no OAuth tokens")

    def token_release(self, key: str, owner: str) -> None:
        """Give the lease of ``key`` back, if ``owner`` still holds it."""
        raise NotImplementedError(f"{type(self).__name__} keeps no OAuth tokens")

    def token_keys(self, prefix: str) -> list[str]:
        """The keys of the token records that start with ``prefix``, sorted."""
        raise NotImplementedError(f"{type(self).__name__} keeps no OAuth tokens")

    def describe(self) -> str:
        """The store for log lines: no password."""
        return type(self).__name__

    def client_id(self) -> str:
        """This store object's name among the clients of a shared bucket (one per process:
        a forked child gets its own)."""
        if not self._client.startswith(f"{os.getpid()}-"):
            self._client = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        return self._client

    def saw(self, key: str, level: float, clients: int) -> None:
        """Note the level of the bucket under ``key`` after an operation, and how many clients
        used it within 30 s: what the in-process fallback starts from."""
        self._seen[key] = (level, clients)

    def seen(self, key: str) -> tuple[float, int] | None:
        """``(level, clients)`` of the bucket under ``key`` as last noted by
        [`saw`][b24batch.LimitStore.saw]; None from a store that does not count them."""
        return self._seen.get(key)

    def fallback(self, key: str) -> _Fallback:
        """The in-process knowledge of the bucket under ``key``, one per store and process."""
        with self._lock:
            return self._fallbacks.setdefault(key, _Fallback())

    def found_foreign(self, key: str) -> None:
        """Say (one WARNING per key and store) that ``key`` held a value this store could not
        have written — a level or a reset beyond any the arithmetic makes, text, another
        type — which was read as empty and overwritten."""
        with self._lock:
            if key in self._foreign_keys:
                return
            self._foreign_keys.add(key)
        log.warning(
            "limit store %s: %r held a value the store could not have written: read as empty "
            "and overwritten",
            self.describe(),
            key,
        )

    def bucket_key(self, origin: str) -> str:
        """The key of the request-rate bucket of ``origin`` as seen from this host."""
        return f"bucket:{origin}" if self.egress is None else f"bucket:{origin}@{self.egress}"

    def meter_key(self, origin: str, credential: str, method: str) -> str:
        """The key of the operating-time meter of one credential's ``method`` on ``origin``."""
        return f"operating:{origin}:{credential}:{method}"

    def call(self, operation: Callable[..., Any], *args: Any) -> Any:
        """``operation(*args)``, or a marker that the store is unreachable while it does not
        answer.

        Any exception of the store's counts as its being unreachable: a server that answers
        nonsense (a look-alike, a proxy) must not raise ``ValueError`` or ``IndexError`` into
        the caller's batch. A store that fails again within 60 s of answering
        again (a read-only replica, a full disk: reads pass, writes fail) is flapping: it is
        left alone for 60 s, so the log shows each real change once, not one
        per batch. A store slower than 0.2 s on average is said so once.
        """
        now = self._monotonic()
        with self._lock:
            if self._down_until is not None and now < self._down_until:
                raise _Unreachable
        try:
            result = operation(*args)
        except Exception as error:
            self._failed(error)
            raise _Unreachable from error
        self._answered(self._monotonic() - now)
        return result

    def _failed(self, error: Exception) -> None:
        now = self._monotonic()
        with self._lock:
            starts = self._down_until is None
            flapping = starts and self._back_at is not None and now - self._back_at < HOLD_DOWN
            self._down_until = now + (max(self.recheck, HOLD_DOWN) if flapping else self.recheck)
        if flapping:
            log.warning(
                "limit store %s unreachable again within %.0f s (%s: %s): limiting in this "
                "process for %.0f s before trying it again",
                self.describe(),
                HOLD_DOWN,
                type(error).__name__,
                error,
                max(self.recheck, HOLD_DOWN),
            )
        elif starts:
            log.warning(
                "limit store %s unreachable (%s: %s): limiting in this process until it "
                "answers again",
                self.describe(),
                type(error).__name__,
                error,
            )

    def _answered(self, took: float) -> None:
        with self._lock:
            ends, self._down_until = self._down_until is not None, None
            if ends:
                self._back_at = self._monotonic()
            # The first answer includes connecting (and loading scripts): not counted.
            self._answers += 1
            if self._answers > 1:
                last = took if self._latency is None else self._latency
                self._latency = 0.8 * last + 0.2 * took
            slow = (
                self._answers > SLOW_AFTER
                and (self._latency or 0.0) > SLOW_STORE
                and not self._said_slow
            )
            self._said_slow = self._said_slow or slow
            latency = self._latency or 0.0
        if ends:
            log.warning("limit store %s answers again: limits are shared again", self.describe())
        if slow:
            log.warning(
                "limit store %s takes %.2f s an operation on average: each batch waits for it "
                "3 or 4 times (a store on another continent, an overloaded server?)",
                self.describe(),
                latency,
            )


class SharedBucket:
    """A request-rate bucket kept in a [`LimitStore`][b24batch.LimitStore], with an in-process
    fallback.

    While the store is unreachable the process takes its share of the portal's bucket: the
    ceiling and rate divided among the clients the store last counted, starting from the last
    level it reported (full if it never answered), so that processes falling back together
    do not each drain at the whole portal's rate. When it answers again the shared bucket is
    first taken as full (a restarted server has forgotten it). ``fallback`` gives the limit.
    """

    def __init__(
        self,
        store: LimitStore,
        origin: str,
        clock: Callable[[], float],
        fallback: LeakyBucket,
    ) -> None:
        self.limit = fallback.limit
        self.store = store
        self.key = store.bucket_key(origin)
        self._clock = clock
        self._fallback = store.fallback(self.key)

    def _call(self, op: str, arg: float) -> float:
        result: float = self.store.call(
            self.store.bucket_op, self.key, op, self.limit, arg, self._clock
        )
        seen = self.store.seen(self.key)
        if seen is not None:
            self._fallback.seen = (*seen, self._clock())
        return result

    def step(self, op: str, arg: float = 0.0) -> float:
        """One bucket operation in the store, or in-process while it is unreachable."""
        fallback = self._fallback
        try:
            if fallback.bucket is not None:
                # Back from an outage: the processes drained the portal's bucket on their own,
                # and a restarted server starts empty; take it as full before booking.
                self._call("saturate", 0.0)
                fallback.back()
            return self._call(op, arg)
        except _Unreachable:
            return fallback.stand_in(self.limit, self._clock).step(op, arg)

    def reserve(self, budget: float = math.inf) -> float:
        """As `LeakyBucket.reserve`, on the shared counter."""
        return self.step("reserve", budget)

    def wait(self, after: float = 0.0) -> float:
        """As `LeakyBucket.wait`, on the shared counter."""
        return self.step("wait", after)

    def saturate(self) -> None:
        """As `LeakyBucket.saturate`, on the shared counter."""
        self.step("saturate")

    def available(self) -> float:
        """As `LeakyBucket.available`, on the shared counter."""
        return self.step("available")


class SharedMeter:
    """An operating-time meter kept in a [`LimitStore`][b24batch.LimitStore]; its figures are also
    kept in-process, for while the store is unreachable."""

    def __init__(
        self,
        store: LimitStore,
        key: str,
        limit: RateLimit | None,
        wall_clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.key = key
        self._limit = limit
        self._wall_clock = wall_clock
        self._local = OperatingMeter(limit, wall_clock)

    def _op(self, op: str, operating: float | None, reset_at: float | None) -> MeterState | None:
        try:
            state: MeterState = self.store.call(
                self.store.meter_op, self.key, op, operating, reset_at, self._wall_clock
            )
        except _Unreachable:
            return None
        return state

    def record(self, time: Time | None) -> None:
        """As `OperatingMeter.record`, for every client sharing the store."""
        self._local.record(time)
        if time is not None and (time.operating is not None or time.operating_reset_at is not None):
            self._op("record", time.operating, time.operating_reset_at)

    def reset_at(self) -> float | None:
        """Unix seconds of the last reset any client reported."""
        state = self._op("read", None, None)
        return self._local.reset_at() if state is None else state[1]

    def delay(self) -> float:
        """As `OperatingMeter.delay`, against the store's clock."""
        if self._limit is None or self._limit.operating_limit is None:
            return 0.0
        state = self._op("read", None, None)
        if state is None:
            return self._local.delay()
        operating, reset_at, now = state
        wait = operating_wait(self._limit, operating, reset_at, now)
        if wait is not None and wait <= 0:  # the basket has dropped out: the figure is stale
            self._op("forget", None, reset_at)
        return max(0.0, wait or 0.0)

    def state(self) -> tuple[float | None, float | None]:
        """``(operating, operating_reset_at)`` as last reported to any client."""
        state = self._op("read", None, None)
        return self._local.state() if state is None else state[:2]
