"""B24OAuth over real HTTP: its options reach the engine, and the one-renewal rule holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from b24batch import (
    AjaxError,
    AuthError,
    B24OAuth,
    BatchV3,
    RateLimit,
    RetryPolicy,
    TransportError,
)
from b24batch.testing import FakePortal, Fault

from .test_resilience import READ, WRITE, FakeTime

EXPIRED = {"error": "expired_token", "error_description": "The access token provided has expired."}


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    with FakePortal(secret="oauthSecret77") as fake:
        fake.add_task(title="Seed")
        yield fake


def _oauth(portal: FakePortal, fake_time: FakeTime, **options: Any) -> B24OAuth:
    options.setdefault("retry", RetryPolicy(max_attempts=1))
    options.setdefault("rate_limit", None)
    return B24OAuth(
        portal.oauth_endpoint,
        portal.access_token,
        clock=fake_time.clock,
        wall_clock=fake_time.wall_clock,
        sleep=fake_time.sleep,
        rand=lambda: 0.5,
        **options,
    )


class _Refresh:
    """A refresh callable that counts its calls and issues the portal's next token."""

    def __init__(self, portal: FakePortal) -> None:
        self.portal = portal
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.portal.refresh_token()


# -- options ----------------------------------------------------------------------------------


def test_oauth_waits_by_its_rate_limit_on_its_injected_clock(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """rate_limit, clock and sleep reach B24OAuth: burst 1 at 0.5/s waits 2 s per batch."""
    limit = RateLimit(burst=1, per_second=0.5)
    with _oauth(portal, fake_time, rate_limit=limit) as oauth:
        results = [BatchV3(oauth).make(READ) for _ in range(3)]
        assert oauth.limit_state().requests_available == 0.0
    assert fake_time.sleeps == [2.0, 2.0]
    assert [result.waited for result in results] == [0.0, 2.0, 2.0]


def test_oauth_retries_by_its_policy_through_the_callers_session(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """retry and session reach B24OAuth: two 503s, then success, all through the given Session."""
    session = requests.Session()
    session.headers["X-Callers-Session"] = "yes"
    portal.inject(Fault.rate_limited(), times=2)
    policy = RetryPolicy(max_attempts=3, base_delay=0.5)
    with _oauth(portal, fake_time, retry=policy, session=session) as oauth:
        assert oauth.retry is policy
        result = BatchV3(oauth).make(READ)
    session.close()
    assert (result.is_success, result.attempts) == (True, 3)
    assert fake_time.sleeps == [0.25, 0.5]
    assert [r.headers.get("X-Callers-Session") for r in portal.requests] == ["yes"] * 3


def test_oauth_honours_its_timeout(portal: FakePortal, fake_time: FakeTime) -> None:
    """timeout reaches B24OAuth: an answer slower than the read timeout is a TransportError."""
    portal.inject(Fault.delay(0.5))
    with _oauth(portal, fake_time, timeout=(2.0, 0.15)) as oauth:
        assert oauth.timeout == (2.0, 0.15)
        with pytest.raises(TransportError) as info:
            BatchV3(oauth).make(READ)
    assert info.value.outcome_unknown is True


# -- the one-renewal rule ---------------------------------------------------------------------


def test_a_refreshed_token_answered_expired_again_raises_after_one_refresh(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """401 expired, refresh, 401 expired again: AuthError after one refresh and two sends."""
    refresh = _Refresh(portal)
    portal.inject(Fault.response(401, EXPIRED), times=2)
    with _oauth(portal, fake_time, refresh=refresh, retry=RetryPolicy()) as oauth:
        with pytest.raises(AuthError) as info:
            BatchV3(oauth).make(READ)
        assert oauth.credential_version() == 1
    assert (info.value.code, info.value.status, info.value.attempts) == ("expired_token", 401, 2)
    assert refresh.calls == 1
    assert len(portal.requests) == 2
    assert fake_time.sleeps == []


def test_a_renewal_keeps_the_retry_budget(portal: FakePortal, fake_time: FakeTime) -> None:
    """401 expired, refresh, then a 503: the repeat after the 503 still fits max_attempts=2."""
    refresh = _Refresh(portal)
    portal.expire_token()
    portal.inject(Fault.delay(0))  # the first request reaches the token check untouched
    portal.inject(Fault.rate_limited())
    with _oauth(portal, fake_time, refresh=refresh, retry=RetryPolicy(max_attempts=2)) as oauth:
        result = BatchV3(oauth).make(READ)
    assert (result.is_success, result.attempts) == (True, 3)
    assert refresh.calls == 1
    fresh = f"Bearer {portal.access_token}"
    assert [r.headers["Authorization"] == fresh for r in portal.requests] == [False, True, True]
    assert len(fake_time.sleeps) == 1


def test_renew_without_refresh_says_no(portal: FakePortal, fake_time: FakeTime) -> None:
    """Without a refresh callable renew() is False and the portal's 401 is raised as it is."""
    portal.expire_token()
    with _oauth(portal, fake_time) as oauth:
        with pytest.raises(AuthError) as info:
            BatchV3(oauth).make(WRITE)
        assert oauth.renew(info.value, 0) is False
        assert oauth.credential_version() == 0
    assert (info.value.code, info.value.refresh_error) == ("expired_token", None)
    assert str(info.value) == "expired_token (HTTP 401): The access token provided has expired."
    assert len(portal.requests) == 1


def test_no_auth_found_never_triggers_a_refresh(portal: FakePortal, fake_time: FakeTime) -> None:
    """A 401 NO_AUTH_FOUND (a token the portal does not know) is raised; refresh is not called."""
    refresh = _Refresh(portal)
    with (
        B24OAuth(
            portal.oauth_endpoint,
            "unknown-token",
            refresh=refresh,
            rate_limit=None,
            sleep=fake_time.sleep,
        ) as oauth,
        pytest.raises(AuthError) as info,
    ):
        BatchV3(oauth).make(READ)
    assert (info.value.code, info.value.status, info.value.attempts) == ("NO_AUTH_FOUND", 401, 1)
    assert refresh.calls == 0
    assert len(portal.requests) == 1


def test_a_503_after_the_renewal_that_exhausts_the_budget_is_raised(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """With max_attempts=1 the re-send after a renewal goes; its 503 is raised, not repeated."""
    refresh = _Refresh(portal)
    portal.expire_token()
    portal.inject(Fault.delay(0))
    portal.inject(Fault.rate_limited(), times=2)
    with (
        _oauth(portal, fake_time, refresh=refresh) as oauth,
        pytest.raises(AjaxError) as info,
    ):
        BatchV3(oauth).make(READ)
    assert (info.value.code, info.value.attempts) == ("QUERY_LIMIT_EXCEEDED", 2)
    assert len(portal.requests) == 2


def test_a_failing_refresh_says_what_was_sent_and_that_nothing_ran(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """A refresh that raises: AuthError after one send, no write of the refused batch marked."""

    def broken() -> str:
        raise RuntimeError("no")

    portal.expire_token()
    with (
        _oauth(portal, fake_time, refresh=broken) as oauth,
        pytest.raises(AuthError) as info,
    ):
        BatchV3(oauth).make(WRITE * 2)
    assert str(info.value) == (
        "expired_token (HTTP 401): refreshing the access token failed with RuntimeError; "
        "see the error's refresh_error"
    )
    assert (info.value.attempts, info.value.maybe_executed) == (1, ())
    assert portal.executed_commands == 0


def test_a_failing_refresh_after_a_lost_answer_marks_the_write(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """Timeout (the write may have run), repeat under its key, 401, refresh fails: the AuthError
    still names the write in maybe_executed."""

    def broken() -> str:
        raise RuntimeError("no")

    portal.inject(Fault.delay(0.5))
    portal.inject(Fault.response(401, EXPIRED))
    with (
        _oauth(
            portal, fake_time, refresh=broken, retry=RetryPolicy(), timeout=(2.0, 0.15)
        ) as oauth,
        pytest.raises(AuthError) as info,
    ):
        BatchV3(oauth).make(WRITE, idempotency_key="k-1")
    assert (info.value.attempts, info.value.maybe_executed) == (2, (0,))


def test_a_raised_error_after_a_lost_answer_marks_the_write(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """Timeout, repeat under its key, 503 OVERLOAD (never repeated): maybe_executed names the
    write the lost answer may have run."""
    portal.inject(Fault.delay(0.5))
    portal.inject(Fault.overload())
    with (
        _oauth(portal, fake_time, retry=RetryPolicy(), timeout=(2.0, 0.15)) as oauth,
        pytest.raises(AjaxError) as info,
    ):
        BatchV3(oauth).make(WRITE, idempotency_key="k-1")
    assert (info.value.code, info.value.attempts, info.value.maybe_executed) == (
        "OVERLOAD_LIMIT",
        2,
        (0,),
    )
