"""One refresh per expiry across threads, processes and hosts: a lease and a version in the store.

``Coordinator.renew(known)`` is what every client of one portal calls when its token (store
version ``known``) is refused: the threads of a process queue on one lock and share one
result, or one failure for :data:`FAILURE_HOLD` seconds; the first takes the store's lease
for the portal, re-reads the record, and refreshes only if its version has not moved; the new
pair and its version are written in one step before anyone uses them. Sends nothing itself:
the refresh is a callable.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from b24batch._auth.refresh import store_failure
from b24batch._auth.tokens import TokenRecord, parse_record
from b24batch._limits.shared import LimitStore
from b24batch.errors import AuthError, SdkError
from b24batch.redaction import Secret

__all__ = ["FAILURE_HOLD", "LEASE_MARGIN", "Coordinator"]

log = logging.getLogger("b24batch")

FAILURE_HOLD = 5.0
"""Seconds a failed refresh is handed to every client of the portal in this process, instead of
a second call to the authorization server."""
LEASE_MARGIN = 5.0
"""Seconds the refresh lease outlives the refresh's own deadline (the store's write, a slow
answer): a process killed while holding it delays the others by at most the lease."""
POLL = 0.05
"""Seconds between looks at a lease another process holds."""


class _Portal:
    """What this process knows of one portal's record: one lock for its threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version = 0
        self.record: TokenRecord | None = None
        self.failure: tuple[float, int, AuthError] | None = None  # (when, version, error)


_portals: weakref.WeakKeyDictionary[LimitStore, dict[str, _Portal]] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def _after_fork() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for portals in list(_portals.values()):
        for portal in portals.values():
            portal.lock = threading.Lock()  # a thread of the parent may have held it


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _portal(store: LimitStore, key: str) -> _Portal:
    with _registry_lock:
        return _portals.setdefault(store, {}).setdefault(key, _Portal())


class Coordinator:
    """The refresh of one portal's tokens kept under ``key`` in ``store``.

    Args:
        store: Where the record, its version and the lease live.
        key: The record's key (the application's prefix and the portal's member id).
        refresh: Returns the new record for the one given; raises AuthError. Its own deadline
            must be shorter than ``lease``.
        lease: Seconds the refresh lease is taken for.
    """

    def __init__(
        self,
        store: LimitStore,
        key: str,
        refresh: Callable[[TokenRecord], TokenRecord],
        *,
        lease: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.store = store
        self.key = key
        self._refresh = refresh
        self.lease = lease
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"<Coordinator {self.key!r} in {self.store.describe()}>"

    def load(self) -> tuple[int, TokenRecord]:
        """The stored version and record; AuthError when there is none or it is not one."""
        found = self._store("read", self.store.token_read, self.key)
        if found is None:
            error = AuthError(
                f"the store holds no tokens for {self.key!r}: the application is not installed "
                f"there, or its tokens were never saved (OAuthApp.save_tokens)",
                code="NO_TOKENS",
                status=0,
            )
            error.reinstall = True
            raise error
        version, text = found
        record = parse_record(text.value, self.key)
        del found
        if isinstance(record, SdkError):
            raise AuthError(
                f"{record}; save the portal's tokens again (OAuthApp.save_tokens) or reinstall",
                code="TOKEN_STORE",
                status=0,
            )
        return version, record

    def renew(self, known: int) -> tuple[int, TokenRecord]:
        """The record to use instead of version ``known``, refreshed once for every client.

        Raises:
            AuthError: The refresh failed (the same failure for every thread that waited on
                it), the store failed, or another process held the lease past its bound.
        """
        portal = _portal(self.store, self.key)
        bound = 2 * (self.lease + LEASE_MARGIN)
        if not portal.lock.acquire(timeout=bound):
            raise AuthError(
                f"waited {bound:.0f} s for this process's refresh of {self.key!r}",
                code="REFRESH_TIMEOUT",
                status=0,
            )
        try:
            if portal.version > known and portal.record is not None:
                return portal.version, portal.record  # refreshed while this one waited
            failed = portal.failure
            if (
                failed is not None
                and failed[1] == known
                and self._clock() - failed[0] < FAILURE_HOLD
            ):
                raise failed[2].copy()
            try:
                version, record = self._renew_across(known)
            except AuthError as error:
                portal.failure = (self._clock(), known, error)
                raise error.copy() from None
            portal.version, portal.record, portal.failure = version, record, None
            return version, record
        finally:
            portal.lock.release()

    def _renew_across(self, known: int) -> tuple[int, TokenRecord]:
        """Under the store's lease: the newer record another process wrote, or a refresh."""
        owner = f"{os.getpid()}-{uuid.uuid4().hex}"
        deadline = self._clock() + self.lease + LEASE_MARGIN
        while True:
            version, record = self.load()
            if version != known:
                return version, record  # another process refreshed (or the app was reinstalled)
            if self._store(
                "take the lease of", self.store.token_lease, self.key, owner, self.lease
            ):
                break
            if self._clock() >= deadline:
                raise AuthError(
                    f"another process has held the refresh lease of {self.key!r} for over "
                    f"{self.lease + LEASE_MARGIN:.0f} s without renewing the token",
                    code="REFRESH_TIMEOUT",
                    status=0,
                )
            self._sleep(POLL)
        try:
            version, record = self.load()  # re-read: the holder before us may have just written
            if version != known:
                return version, record
            fresh = self._refresh(record)
            written = self._store(
                "write", self.store.token_write, self.key, Secret(fresh.to_json()), version
            )
            if written is None:
                raise AuthError(
                    f"the record {self.key!r} changed while this process held its refresh lease "
                    f"(the lease ran out during a refresh slower than it): the new pair is lost",
                    code="TOKEN_STORE",
                    status=0,
                )
            log.info("access token of %s refreshed (version %d)", self.key, written)
            return written, fresh
        finally:
            try:
                self.store.token_release(self.key, owner)
            except Exception as exc:  # the lease runs out on its own
                log.warning("token store: the lease of %s was not released: %s", self.key, exc)

    def _store(self, what: str, operation: Callable[..., Any], *args: Any) -> Any:
        failure: AuthError | None = None
        try:
            return operation(*args)
        except Exception as exc:
            failure = store_failure(what, exc, self.key)
        raise failure
