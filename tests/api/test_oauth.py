"""B24OAuth over real HTTP: its options reach the engine, and the one-renewal rule holds."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from b24batch import (
    AjaxError,
    AuthError,
    B24Hook,
    B24OAuth,
    BatchV3,
    RateLimit,
    RetryPolicy,
    SdkError,
    SdkTypeError,
    TransportError,
)
from b24batch.testing import FakePortal, Fault
from tests.engine.test_resilience import READ, WRITE
from tests.support.clocks import FakeTime

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


# -- gaps a mutant showed in client.py (issue 12) ---------------------------------------------


def test_a_non_callable_refresh_or_on_token_is_refused_by_name() -> None:
    """refresh= or on_token= that cannot be called: SdkTypeError naming the option and its use."""
    with pytest.raises(SdkTypeError) as refresh:
        B24OAuth("https://p.example/rest/", "token-value", refresh="tok")  # type: ignore[arg-type]
    with pytest.raises(SdkTypeError) as on_token:
        B24OAuth("https://p.example/rest/", "token-value", on_token=[])  # type: ignore[arg-type]
    assert str(refresh.value) == "refresh must be a callable that returns a new access token"
    assert str(on_token.value) == "on_token must be a callable that takes the new access token"


def test_each_refresh_hands_the_new_token_to_on_token_and_counts(
    portal: FakePortal, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    """Two expiries, two refreshes: on_token gets each new token, the version counts to 2."""
    caplog.set_level(logging.INFO, logger="b24batch")
    stored: list[str] = []
    with _oauth(portal, fake_time, refresh=portal.refresh_token, on_token=stored.append) as oauth:
        first = portal.access_token
        for _ in range(2):
            portal.expire_token()
            assert BatchV3(oauth).make(READ).is_success
        assert oauth.credential_version() == 2
    assert stored[0] != first
    assert stored == [portal.requests[1].headers["Authorization"][7:], portal.access_token]
    refreshed = [r.getMessage() for r in caplog.records if "refreshed" in r.getMessage()]
    assert refreshed == ["access token refreshed after expired_token"] * 2


def test_renew_after_another_threads_refresh_only_reports_it(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """renew() for a batch sent before the last refresh: True, and refresh is not called again."""
    refresh = _Refresh(portal)
    expired = AuthError("expired", code="expired_token", status=401, request_id="r-1")
    with _oauth(portal, fake_time, refresh=refresh) as oauth:
        assert oauth.renew(expired, 0) is True
        assert oauth.renew(expired, 0) is True  # sent under version 0, now 1: already renewed
        assert (refresh.calls, oauth.credential_version()) == (1, 1)


def test_the_last_four_replaced_tokens_stay_redacted(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """After five refreshes redact() masks the current token and the four before it, no more."""
    refresh = _Refresh(portal)
    expired = AuthError("expired", code="expired_token", status=401, request_id="r-1")
    with _oauth(portal, fake_time, refresh=refresh) as oauth:
        tokens = [portal.access_token]
        for version in range(5):
            assert oauth.renew(expired, version) is True
            tokens.append(portal.access_token)
        masked = [oauth.redact(f"t={token}.") == "t=***." for token in tokens]
    assert masked == [False, True, True, True, True, True]


def test_a_failing_refresh_keeps_the_request_id(portal: FakePortal, fake_time: FakeTime) -> None:
    """The AuthError of a refresh that raised carries the batch's request_id, code and status."""

    def broken() -> str:
        raise RuntimeError("no")

    portal.expire_token()
    with _oauth(portal, fake_time, refresh=broken) as oauth, pytest.raises(AuthError) as info:
        BatchV3(oauth).make(READ, request_id="job-7")
    assert (info.value.request_id, info.value.code, info.value.status) == (
        "job-7",
        "expired_token",
        401,
    )


def test_oauth_and_webhook_clients_of_one_portal_share_the_default_bucket(
    portal: FakePortal,
) -> None:
    """The default limit is one bucket per portal origin, whichever client kind draws from it."""
    with FakePortal() as other:
        oauth = B24OAuth(portal.oauth_endpoint, portal.access_token)
        hook = B24Hook.from_webhook_url(portal.webhook_url)
        elsewhere = B24OAuth(other.oauth_endpoint, other.access_token)
        assert oauth.limiter.bucket is hook.limiter.bucket
        assert elsewhere.limiter.bucket is not oauth.limiter.bucket


def test_a_half_constructed_oauth_client_has_a_repr() -> None:
    """A client whose construction failed (seen in a traceback's locals) says so in its repr."""
    assert repr(B24OAuth.__new__(B24OAuth)) == "<B24OAuth (not constructed)>"
    assert repr(B24Hook.__new__(B24Hook)) == "<B24Hook (not constructed)>"


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        pytest.param(
            "ftp://p.example/rest/",
            "this is not a client endpoint: expected https://PORTAL/rest/ (the client endpoint) "
            "or https://PORTAL",
            id="scheme",
        ),
        pytest.param(
            "https://p.example/rest/" + "x" * 100,
            f"the endpoint for p.example has the path '/rest/{'x' * 74}': expected "
            "https://PORTAL/rest/ (the client endpoint) or https://PORTAL",
            id="long-path",
        ),
    ],
)
def test_a_bad_endpoint_is_refused_with_the_shape_it_needs(endpoint: str, message: str) -> None:
    """A URL that is no client endpoint: SdkError saying what one looks like, its path cut at 80."""
    with pytest.raises(SdkError) as info:
        B24OAuth(endpoint, "token-value")
    assert str(info.value) == message
