"""The coordinator over real stores: one refresh per version for all threads, one failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from b24batch import AuthError, LimitStore, SQLiteStore
from b24batch._auth import coordinate
from b24batch._auth.coordinate import FAILURE_HOLD, Coordinator
from b24batch._auth.tokens import TokenRecord
from b24batch.redaction import Secret

KEY = "oauth:local.app:member1"
THREADS = 16
JOIN = 30.0


def _record(n: int) -> TokenRecord:
    return TokenRecord(
        access=Secret(f"access{n}"),
        refresh=Secret(f"refresh{n}"),
        expires=2_000_000_000.0,
        member_id="member1",
        client_endpoint="https://example.bitrix24.com/rest/",
    )


class _Refresher:
    """Counts calls; each returns the next pair after a pause (so every thread queues)."""

    def __init__(self, fail: AuthError | None = None) -> None:
        self.calls = 0
        self.fail = fail
        self.seen: list[str] = []

    def __call__(self, record: TokenRecord) -> TokenRecord:
        self.calls += 1
        self.seen.append(record.refresh.value)
        time.sleep(0.2)
        if self.fail is not None:
            raise self.fail
        return _record(int(record.refresh.value.removeprefix("refresh")) + 1)


def _saved(store: LimitStore) -> int:
    version = store.token_write(KEY, Secret(_record(1).to_json()), None)
    assert version is not None
    return version


def _in_threads(call: Callable[[], Any]) -> list[Any]:
    outcomes: list[Any] = [None] * THREADS
    start = threading.Barrier(THREADS)

    def run(i: int) -> None:
        start.wait(JOIN)
        try:
            outcomes[i] = call()
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
        assert not thread.is_alive()
    return outcomes


def test_sixteen_threads_share_one_refresh(store: LimitStore) -> None:
    """16 threads renew version 1 together: one refresh, all get version 2's token."""
    version = _saved(store)
    refresher = _Refresher()
    coordinator = Coordinator(store, KEY, refresher, lease=5.0)
    outcomes = _in_threads(lambda: coordinator.renew(version))
    assert refresher.calls == 1
    assert {(v, r.access.value) for v, r in outcomes} == {(2, "access2")}
    assert coordinator.load()[0] == 2


def test_a_failed_refresh_is_one_call_and_one_failure_for_all(store: LimitStore) -> None:
    """16 threads wait on a refresh that fails: one call; each gets its own copy of it."""
    version = _saved(store)
    failure = AuthError("refused", code="invalid_grant", status=400)
    failure.reinstall = True
    refresher = _Refresher(fail=failure)
    coordinator = Coordinator(store, KEY, refresher, lease=5.0)
    outcomes = _in_threads(lambda: coordinator.renew(version))
    assert refresher.calls == 1
    assert all(isinstance(o, AuthError) and o.code == "invalid_grant" for o in outcomes)
    assert all(o.reinstall for o in outcomes)
    assert len({id(o) for o in outcomes}) == THREADS
    assert coordinator.load()[0] == version  # nothing written


def test_a_version_another_process_wrote_is_used_without_a_refresh(store: LimitStore) -> None:
    """The store moved past the client's version (another process refreshed): no call."""
    version = _saved(store)
    store.token_write(KEY, Secret(_record(7).to_json()), version)
    refresher = _Refresher()
    renewed, record = Coordinator(store, KEY, refresher, lease=5.0).renew(version)
    assert (renewed, record.access.value, refresher.calls) == (2, "access7", 0)


def test_a_lease_left_by_a_dead_process_delays_by_at_most_the_lease(store: LimitStore) -> None:
    """A lease nobody will release (its holder was killed): the refresh runs once it runs out."""
    version = _saved(store)
    assert store.token_lease(KEY, "killed-process", 1.0)
    refresher = _Refresher()
    renewed, record = Coordinator(store, KEY, refresher, lease=5.0).renew(version)
    assert (renewed, record.access.value, refresher.calls) == (2, "access2", 1)


class _ReadOnlyTokens(SQLiteStore):
    """A real SQLite store whose token writes fail, as on a full disk."""

    def token_write(self, key: str, record: Secret[str], expect: int | None) -> int | None:
        raise OSError(28, "No space left on device")


def test_a_store_that_cannot_write_fails_the_refresh_clearly(tmp_path: Path) -> None:
    """The new pair cannot be stored: AuthError TOKEN_STORE, never a raw OSError; no token shown."""
    store = _ReadOnlyTokens(tmp_path / "full.sqlite3")
    SQLiteStore.token_write(store, KEY, Secret(_record(1).to_json()), None)
    refresher = _Refresher()
    with pytest.raises(AuthError) as info:
        Coordinator(store, KEY, refresher, lease=5.0).renew(1)
    assert (info.value.code, info.value.status, refresher.calls) == ("TOKEN_STORE", 0, 1)
    assert info.value.may_retry is True  # the store may work again; the tokens are kept
    assert str(info.value).endswith(
        f"the token store failed to write {KEY!r} (OSError: [Errno 28] No space left on "
        f"device); no token pair was used that the store does not hold"
    )
    assert "access2" not in str(info.value)
    assert "refresh2" not in str(info.value)


def test_a_junk_record_is_refused_naming_its_key(store: LimitStore) -> None:
    """A truncated record in the store: AuthError TOKEN_STORE naming the key, nothing sent."""
    store.token_write(KEY, Secret(_record(1).to_json()[:40]), None)
    refresher = _Refresher()
    with pytest.raises(AuthError) as info:
        Coordinator(store, KEY, refresher, lease=5.0).load()
    assert (info.value.code, info.value.status) == ("TOKEN_STORE", 0)
    assert repr(KEY) in str(info.value)
    assert "access1" not in str(info.value)
    assert refresher.calls == 0


class _Babbling(SQLiteStore):
    """A real SQLite store whose token reads fail with a very long message."""

    def token_read(self, key: str) -> tuple[int, Secret[str]] | None:
        raise RuntimeError("x" * 1000)


def test_a_store_failures_text_is_cut_to_200_characters(tmp_path: Path) -> None:
    """However long the store's own message, the AuthError quotes its first 200 characters."""
    with pytest.raises(AuthError) as info:
        Coordinator(_Babbling(tmp_path / "s.sqlite3"), KEY, _Refresher(), lease=5.0).load()
    assert f"failed to read {KEY!r} (RuntimeError: {'x' * 200});" in str(info.value)
    assert "x" * 201 not in str(info.value)


def test_each_expiry_of_a_process_is_refreshed_again(store: LimitStore) -> None:
    """Version 2, refreshed by this process, expires in turn: renewing it refreshes again."""
    version = _saved(store)
    refresher = _Refresher()
    coordinator = Coordinator(store, KEY, refresher, lease=5.0)
    renewed, first = coordinator.renew(version)
    again, second = coordinator.renew(renewed)
    assert (renewed, first.access.value, again, second.access.value) == (2, "access2", 3, "access3")
    assert refresher.seen == ["refresh1", "refresh2"]


def test_two_portals_in_one_store_never_share_a_refresh(store: LimitStore) -> None:
    """Two keys in one store: the refresh of one never answers the other's renew."""
    other = "oauth:local.app:member2"
    _saved(store)
    store.token_write(other, Secret(_record(40).to_json()), None)
    Coordinator(store, KEY, _Refresher(), lease=5.0).renew(1)
    renewed, record = Coordinator(store, other, _Refresher(), lease=5.0).renew(1)
    assert (renewed, record.access.value) == (2, "access41")


def test_a_failure_is_handed_on_for_failure_hold_seconds_then_tried_again(
    store: LimitStore,
) -> None:
    """Within FAILURE_HOLD of a failed refresh the same failure is raised without a call; at
    FAILURE_HOLD seconds the refresh is tried again."""
    now = [100.0]
    version = _saved(store)
    refresher = _Refresher(fail=AuthError("refused", code="server_error", status=500))
    coordinator = Coordinator(store, KEY, refresher, lease=5.0, clock=lambda: now[0])
    for at, calls in ((100.0, 1), (100.0 + FAILURE_HOLD - 0.01, 1), (100.0 + FAILURE_HOLD, 2)):
        now[0] = at
        with pytest.raises(AuthError) as info:
            coordinator.renew(version)
        assert (info.value.code, refresher.calls) == ("server_error", calls)


def test_a_refresh_held_by_another_thread_past_the_bound_is_a_timeout(
    store: LimitStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This process's lock for the portal held past twice (lease + margin): REFRESH_TIMEOUT,
    saying how long it waited, and no refresh."""
    monkeypatch.setattr(coordinate, "LEASE_MARGIN", 0.0)
    version = _saved(store)
    refresher = _Refresher()
    coordinator = Coordinator(store, KEY, refresher, lease=0.5)
    lock = coordinate._portal(store, KEY).lock
    assert lock.acquire(timeout=JOIN)
    try:
        with pytest.raises(AuthError) as info:
            coordinator.renew(version)
    finally:
        lock.release()
    assert (info.value.code, info.value.status, refresher.calls) == ("REFRESH_TIMEOUT", 0, 0)
    assert str(info.value).endswith(f"waited 1 s for this process's refresh of {KEY!r}")


def test_a_lease_held_by_another_process_is_waited_for_then_a_timeout(store: LimitStore) -> None:
    """Another owner holds the lease and never writes: this process polls every POLL seconds
    until lease + LEASE_MARGIN have passed, then REFRESH_TIMEOUT; it never refreshes."""
    version = _saved(store)
    assert store.token_lease(KEY, "other-process", 600.0)
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += 1.0

    refresher = _Refresher()
    coordinator = Coordinator(store, KEY, refresher, lease=1.0, clock=lambda: now[0], sleep=sleep)
    with pytest.raises(AuthError) as info:
        coordinator.renew(version)
    assert (info.value.code, info.value.status, refresher.calls) == ("REFRESH_TIMEOUT", 0, 0)
    assert str(info.value).endswith(
        f"another process has held the refresh lease of {KEY!r} for over 6 s without renewing "
        f"the token"
    )
    assert slept == [coordinate.POLL] * 6  # deadline 100 + 1 + 5: reached at the sixth look


class _NoLease(SQLiteStore):
    """A real SQLite store whose lease cannot be taken (the database is locked)."""

    def token_lease(self, key: str, owner: str, seconds: float) -> bool:
        raise OSError("database is locked")


def test_a_store_that_cannot_lease_says_so(tmp_path: Path) -> None:
    """The lease cannot be taken: TOKEN_STORE naming that step; nothing refreshed."""
    store = _NoLease(tmp_path / "locked.sqlite3")
    version = _saved(store)
    refresher = _Refresher()
    with pytest.raises(AuthError) as info:
        Coordinator(store, KEY, refresher, lease=5.0).renew(version)
    assert (info.value.code, refresher.calls) == ("TOKEN_STORE", 0)
    assert f"failed to take the lease of {KEY!r} (OSError: database is locked)" in str(info.value)


def test_a_record_rewritten_during_a_refresh_is_not_overwritten(store: LimitStore) -> None:
    """Another process wrote the record while this one refreshed (its lease ran out): the pair
    in the store is kept, and this refresh fails TOKEN_STORE saying its pair is lost."""
    version = _saved(store)

    def overtaken(record: TokenRecord) -> TokenRecord:
        assert store.token_write(KEY, Secret(_record(9).to_json()), version) == version + 1
        return _record(2)

    coordinator = Coordinator(store, KEY, overtaken, lease=5.0)
    with pytest.raises(AuthError) as info:
        coordinator.renew(version)
    assert (info.value.code, info.value.status) == ("TOKEN_STORE", 0)
    assert "changed while this process held its refresh lease" in str(info.value)
    assert "the new pair is lost" in str(info.value)
    assert coordinator.load()[0] == version + 1
    assert coordinator.load()[1].access.value == "access9"


def test_the_lease_is_released_after_a_refresh_and_after_a_failure(store: LimitStore) -> None:
    """Another process can take the lease as soon as a refresh ends, succeeded or failed:
    nobody waits for it to run out."""
    version = _saved(store)
    Coordinator(store, KEY, _Refresher(), lease=60.0).renew(version)
    assert store.token_lease(KEY, "next-process", 1.0)
    store.token_release(KEY, "next-process")
    failing = _Refresher(fail=AuthError("refused", code="server_error", status=500))
    with pytest.raises(AuthError):
        Coordinator(store, KEY, failing, lease=60.0).renew(version + 1)
    assert store.token_lease(KEY, "next-process", 1.0)


def test_a_portal_without_a_record_needs_a_reinstall(store: LimitStore) -> None:
    """No record under the key: NO_TOKENS, status 0, reinstall, and the message says how to
    get one."""
    with pytest.raises(AuthError) as info:
        Coordinator(store, KEY, _Refresher(), lease=5.0).load()
    assert (info.value.code, info.value.status, info.value.reinstall) == ("NO_TOKENS", 0, True)
    assert str(info.value).endswith(
        f"the store holds no tokens for {KEY!r}: the application is not installed there, or "
        f"its tokens were never saved (OAuthApp.save_tokens)"
    )
