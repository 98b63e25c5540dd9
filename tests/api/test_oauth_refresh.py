"""B24OAuth's refresh under load: one call for every waiting thread, one failure, a bound."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from b24batch import AuthError, B24OAuth, BatchV3, RetryPolicy
from b24batch.testing import FakePortal

READ = [("tasks.task.get", {"id": 1})]
THREADS = 16
JOIN = 30.0


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    with FakePortal() as fake:
        fake.add_task(title="Seed")
        yield fake


def _run_threads(oauth: B24OAuth, count: int = THREADS) -> list[Any]:
    """``count`` threads each run one batch; their results or errors, every join bounded."""
    outcomes: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait(timeout=JOIN)
        try:
            outcomes[index] = BatchV3(oauth).make(READ)
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
        assert not thread.is_alive(), "a batch thread did not finish"
    return outcomes


class _Counted:
    """A refresh callable: counts its calls, waits a little so every thread queues, then does
    what ``then`` does."""

    def __init__(self, then: Callable[[], str]) -> None:
        self.calls = 0
        self._then = then

    def __call__(self) -> str:
        self.calls += 1
        time.sleep(0.3)
        return self._then()


def _client(portal: FakePortal, **options: Any) -> B24OAuth:
    return B24OAuth(
        portal.oauth_endpoint,
        portal.access_token,
        rate_limit=None,
        retry=RetryPolicy(max_attempts=1),
        **options,
    )


def test_sixteen_threads_share_one_successful_refresh(portal: FakePortal) -> None:
    """16 threads meet expired_token together: one refresh call, every batch succeeds."""
    refresh = _Counted(portal.refresh_token)
    portal.expire_token()
    with _client(portal, refresh=refresh) as oauth:
        outcomes = _run_threads(oauth)
        assert oauth.credential_version() == 1
    assert refresh.calls == 1
    assert [getattr(o, "is_success", o) for o in outcomes] == [True] * THREADS


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(RuntimeError("the auth server said 500"), id="exception"),
        pytest.param(OSError("connection reset"), id="oserror"),
    ],
)
def test_a_failed_refresh_is_called_once_and_fails_every_waiting_thread(
    portal: FakePortal, failure: Exception
) -> None:
    """16 threads wait on a refresh that raises: one call, and all 16 get that failure."""

    def fail() -> str:
        raise failure

    refresh = _Counted(fail)
    portal.expire_token()
    with _client(portal, refresh=refresh) as oauth:
        outcomes = _run_threads(oauth)
        assert oauth.credential_version() == 0
    assert refresh.calls == 1
    assert all(isinstance(o, AuthError) for o in outcomes), outcomes
    assert {o.refresh_error for o in outcomes} == {failure}
    assert len({id(o) for o in outcomes}) == THREADS  # each thread its own error to mark
    assert all(type(failure).__name__ in str(o) for o in outcomes)


def test_a_hanging_refresh_is_bounded_and_its_late_token_is_kept(portal: FakePortal) -> None:
    """A refresh that hangs: every thread fails after refresh_timeout, with one call; the token
    it returns later is taken and handed to on_token, not dropped."""
    release = threading.Event()
    kept: list[str] = []

    def hang() -> str:
        release.wait(JOIN)
        return portal.refresh_token()

    refresh = _Counted(hang)
    portal.expire_token()
    with _client(portal, refresh=refresh, refresh_timeout=0.5, on_token=kept.append) as oauth:
        outcomes = _run_threads(oauth)
        assert refresh.calls == 1
        assert all(isinstance(o, AuthError) for o in outcomes), outcomes
        assert all("refresh_timeout=0.5" in str(o) for o in outcomes)
        release.set()
        deadline = time.monotonic() + JOIN
        while oauth.credential_version() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert oauth.credential_version() == 1
        assert kept == [portal.access_token]
        assert BatchV3(oauth).make(READ).is_success


def test_on_token_raising_oserror_is_an_auth_error_and_the_token_is_not_used(
    portal: FakePortal,
) -> None:
    """on_token that cannot store the token (OSError): AuthError naming it; the token unused."""

    def full_disk(token: str) -> None:
        raise OSError(28, "No space left on device")

    portal.expire_token()
    with _client(portal, refresh=portal.refresh_token, on_token=full_disk) as oauth:
        with pytest.raises(AuthError) as info:
            BatchV3(oauth).make(READ)
        assert oauth.credential_version() == 0
    assert isinstance(info.value.refresh_error, OSError)
    assert "on_token failed with OSError" in str(info.value)
    assert "the token was not used" in str(info.value)
