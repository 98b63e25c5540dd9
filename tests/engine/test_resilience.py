"""Retries, limits, idempotency and OAuth over real HTTP against the FakePortal.

Clocks and sleeps are injected, so waits are recorded instead of slept; only the read-timeout
fault spends real time (a fraction of a second), because a socket timeout cannot be faked.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import requests

from b24batch import (
    AjaxError,
    AuthError,
    B24Error,
    B24Hook,
    B24OAuth,
    BatchV3,
    Command,
    DecodeError,
    OperatingLimitError,
    RateLimit,
    RateLimitError,
    RetryPolicy,
    SdkError,
    SdkTypeError,
    TransportError,
)
from b24batch._limits.policy import DEFAULT_RESET_SLACK
from b24batch.testing import FakePortal, Fault
from tests.support.clocks import FakeTime

READ = [("tasks.task.get", {"id": 1, "select": ["id"]})]
WRITE = [("tasks.task.add", {"fields": {"title": "Written"}})]
DELAY = 0.5  # the portal's delay; the client's read timeout is well below it
READ_TIMEOUT = 0.15


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    with FakePortal(secret="resilienceSecret77") as fake:
        fake.add_task(title="Seed")
        yield fake


def _hook(url: str, fake_time: FakeTime, **options: Any) -> B24Hook:
    options.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=0.5, max_wait=120.0))
    options.setdefault("timeout", (2.0, READ_TIMEOUT))
    options.setdefault("rate_limit", None)
    return B24Hook.from_webhook_url(
        url,
        clock=fake_time.clock,
        wall_clock=fake_time.wall_clock,
        sleep=fake_time.sleep,
        rand=lambda: 0.5,
        **options,
    )


@pytest.fixture
def client(portal: FakePortal, fake_time: FakeTime) -> Iterator[B24Hook]:
    with _hook(portal.webhook_url, fake_time) as hook:
        yield hook


# -- the fault matrix ------------------------------------------------------------------------


@attrs.frozen
class Expect:
    """What one (fault, batch kind) pair must give."""

    error: type[B24Error] | None  # None: success
    requests: int
    executed: int
    unknown: bool = False
    replayed: bool = False
    attempts: int | None = None  # None: one per request, at least one


OK_RETRIED = Expect(None, requests=2, executed=1)
QUERY_LIMIT = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}

# fault -> (read-only batch, write batch, write batch with an idempotency key)
MATRIX: dict[str, tuple[Fault | None, Expect, Expect, Expect]] = {
    "refused": (  # nothing was sent: repeated whatever the batch, and never executed
        None,
        Expect(TransportError, 0, 0, attempts=3),
        Expect(TransportError, 0, 0, attempts=3),
        Expect(TransportError, 0, 0, attempts=3),
    ),
    "delay-past-timeout": (
        Fault.delay(DELAY),
        Expect(None, 2, 2),
        Expect(TransportError, 1, 1, unknown=True),
        Expect(None, 2, 1),
    ),
    "drop-before-execute": (
        Fault.drop_before(),
        OK_RETRIED,
        Expect(TransportError, 1, 0, unknown=True),
        OK_RETRIED,
    ),
    "drop-after-execute": (
        Fault.drop_after(),
        Expect(None, 2, 2),
        Expect(TransportError, 1, 1, unknown=True),
        Expect(None, 2, 1, replayed=True),
    ),
    "html-500": (
        Fault.html(500),
        OK_RETRIED,
        Expect(DecodeError, 1, 0, unknown=True),
        OK_RETRIED,
    ),
    "html-502": (
        Fault.html(502),
        OK_RETRIED,
        Expect(DecodeError, 1, 0, unknown=True),
        OK_RETRIED,
    ),
    "html-504": (
        Fault.html(504),
        OK_RETRIED,
        Expect(DecodeError, 1, 0, unknown=True),
        OK_RETRIED,
    ),
    "envelope-500": (
        Fault.response(500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "x"}),
        OK_RETRIED,
        Expect(AjaxError, 1, 0, unknown=True),
        OK_RETRIED,
    ),
    "truncated-json": (
        Fault.truncated(),
        Expect(None, 2, 2),
        Expect(DecodeError, 1, 1, unknown=True),
        Expect(None, 2, 1, replayed=True),
    ),
    "503-query-limit": (Fault.rate_limited(), OK_RETRIED, OK_RETRIED, OK_RETRIED),
    "503-overload": (
        Fault.overload(),
        Expect(AjaxError, 1, 0),
        Expect(AjaxError, 1, 0),
        Expect(AjaxError, 1, 0),
    ),
    "429-operating": (Fault.operating_limited(), OK_RETRIED, OK_RETRIED, OK_RETRIED),
    "401": (
        Fault.response(401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong auth"}),
        Expect(AuthError, 1, 0),
        Expect(AuthError, 1, 0),
        Expect(AuthError, 1, 0),
    ),
}

CASES = [
    pytest.param(name, kind, id=f"{name}-{kind}")
    for name in MATRIX
    for kind in ("read", "write", "write-key")
]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_fault_matrix(
    portal: FakePortal, client: B24Hook, fake_time: FakeTime, name: str, kind: str
) -> None:
    """Each fault against each batch kind: the outcome, the requests sent, the commands run.

    No write ever executes twice, and no success is ever lost.
    """
    fault, *expectations = MATRIX[name]
    expect = expectations[("read", "write", "write-key").index(kind)]
    calls = READ if kind == "read" else WRITE
    key = "matrix-key-1" if kind == "write-key" else None
    target = client
    if fault is None:  # "refused": nothing listens on the port
        target = _hook(
            f"http://127.0.0.1:{_closed_port()}/rest/1/x/",
            fake_time,
            retry=RetryPolicy(max_attempts=3, base_delay=0.0),
        )
    else:
        portal.inject(fault)
    before = portal.executed_commands
    outcome: Any
    try:
        outcome = BatchV3(target).make(calls, idempotency_key=key)
    except B24Error as error:
        outcome = error
    if name == "delay-past-timeout":
        time.sleep(DELAY + 0.2)  # let the slow first request finish on the portal side
    executed = portal.executed_commands - before
    if expect.error is None:
        assert not isinstance(outcome, B24Error), outcome
        assert outcome.is_success
        assert outcome.attempts == expect.requests
        assert outcome.replayed is expect.replayed
    else:
        assert type(outcome) is expect.error, outcome
        assert outcome.outcome_unknown is expect.unknown
        assert outcome.attempts == (expect.attempts or max(1, expect.requests))
        if expect.unknown:
            assert "may have been executed" in str(outcome)
    assert len(portal.requests) == expect.requests
    assert executed == expect.executed
    if kind != "read":
        titles = [task["title"] for task in portal.tasks.values()]
        assert titles.count("Written") == expect.executed  # never twice


def test_idempotency_key_is_the_same_on_every_attempt(portal: FakePortal, client: B24Hook) -> None:
    """A generated key is sent, unchanged, with the first send and every repeat."""
    portal.inject(Fault.drop_after())
    result = BatchV3(client).make(WRITE, idempotency_key=True)
    keys = [request.headers.get("Idempotency-Key") for request in portal.requests]
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert keys[0] is not None
    assert len(keys[0]) == 32
    assert result.replayed


def test_no_key_sends_no_header(portal: FakePortal, client: B24Hook) -> None:
    """Without idempotency_key no Idempotency-Key header is sent."""
    BatchV3(client).make(READ)
    assert "Idempotency-Key" not in portal.requests[0].headers


@pytest.mark.parametrize(
    ("key", "error"),
    [
        pytest.param("", SdkError, id="empty"),
        pytest.param("x" * 256, SdkError, id="too-long"),
        pytest.param("café", SdkError, id="non-ascii"),
        pytest.param("a\tb", SdkError, id="control"),
        pytest.param(5, SdkTypeError, id="int"),
    ],
)
def test_bad_idempotency_keys_fail_before_sending(
    portal: FakePortal, client: B24Hook, key: object, error: type[Exception]
) -> None:
    """A key the portal would refuse is refused before any request."""
    with pytest.raises(error, match="idempotency_key"):
        BatchV3(client).make(WRITE, idempotency_key=key)  # type: ignore[arg-type]
    assert portal.requests == []


def test_key_reused_with_another_body_is_returned(portal: FakePortal, client: B24Hook) -> None:
    """The portal's 422 for a key reused with another batch comes back as a clear AjaxError."""
    assert BatchV3(client).make(WRITE, idempotency_key="k-1").is_success
    result = BatchV3(client).make(READ, idempotency_key="k-1")
    assert not result.is_success
    assert result.errors[0].status == 422
    assert result.errors[0].code == "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION"


def test_read_only_override_makes_a_write_name_repeatable(
    portal: FakePortal, client: B24Hook
) -> None:
    """Command(read_only=True) lets an ambiguous failure be repeated for a method the rule
    counts as a write; read_only=False stops a read from being repeated."""
    portal.register("custom.compute", lambda query: {"value": 42})
    portal.inject(Fault.html(502))
    result = BatchV3(client).make([Command("custom.compute", read_only=True)])
    assert result.data == [{"value": 42}]
    assert result.attempts == 2
    portal.inject(Fault.html(502))
    with pytest.raises(DecodeError):
        BatchV3(client).make([Command("tasks.task.get", {"id": 1}, read_only=False)])
    assert len(portal.requests) == 3


def test_dict_rows_take_read_only_too(portal: FakePortal, client: B24Hook) -> None:
    """A dict row's 'read_only' key is the same override."""
    portal.register("custom.compute", lambda query: 1)
    portal.inject(Fault.drop_before())
    result = BatchV3(client).make([{"method": "custom.compute", "read_only": True}])
    assert result.data == [1]


# -- backoff, Retry-After, exhaustion, 429 ---------------------------------------------------


def test_exhaustion_raises_the_real_error_without_a_last_sleep(
    portal: FakePortal, client: B24Hook, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    """Three 503s: RateLimitError with attempts=3, two backoff sleeps, two WARNING lines."""
    caplog.set_level(logging.WARNING, logger="b24batch")
    portal.inject(Fault.rate_limited(), times=3)
    with pytest.raises(RateLimitError) as info:
        BatchV3(client).make(WRITE, request_id="ex-1")
    assert info.value.attempts == 3
    assert fake_time.sleeps == [0.25, 0.5]  # rand 0.5 times 0.5, then times 1.0
    assert len(portal.requests) == 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "b24batch"]
    assert warnings == [
        "batch ex-1: attempt 2 of 3 in 0.25 s after QUERY_LIMIT_EXCEEDED",
        "batch ex-1: attempt 3 of 3 in 0.50 s after QUERY_LIMIT_EXCEEDED",
    ]


def test_attempts_and_waited_are_reported(
    portal: FakePortal, client: B24Hook, fake_time: FakeTime
) -> None:
    """A success after two 503s reports 3 attempts and the seconds waited."""
    portal.inject(Fault.rate_limited(), times=2)
    result = BatchV3(client).make(READ)
    assert (result.attempts, result.waited) == (3, 0.75)
    assert result.is_success


def test_a_503_fills_the_client_bucket(portal: FakePortal, fake_time: FakeTime) -> None:
    """After QUERY_LIMIT_EXCEEDED the client takes the portal's counter as full and lets it
    drain before the repeat, on top of the backoff."""
    limit = RateLimit(burst=5, per_second=2.0)
    with _hook(portal.webhook_url, fake_time, rate_limit=limit) as hook:
        portal.inject(Fault.rate_limited())
        result = BatchV3(hook).make(READ)
    assert result.attempts == 2
    # backoff, then what is left of the drain from the burst to the ceiling: (5 + 1 - 3) / 2
    assert fake_time.sleeps == [0.25, 1.25]


def test_returned_error_counts_its_attempts(portal: FakePortal, client: B24Hook) -> None:
    """An error envelope returned after a retry says how many sends it took."""
    portal.inject(Fault.rate_limited())
    portal.inject(Fault.response(400, {"error": {"code": "BAD", "message": "no"}}))
    result = BatchV3(client).make(READ)
    assert result.attempts == 2
    assert result.errors[0].attempts == 2


def test_retry_after_is_honoured(portal: FakePortal, client: B24Hook, fake_time: FakeTime) -> None:
    """A 503 with Retry-After waits that long instead of the backoff."""
    portal.inject(Fault.response(503, QUERY_LIMIT, headers={"Retry-After": "7"}))
    assert BatchV3(client).make(READ).waited == 7.0
    assert fake_time.sleeps == [7.0]


def test_a_wait_past_max_wait_is_not_started(portal: FakePortal, fake_time: FakeTime) -> None:
    """Retry-After beyond the budget raises at once, after one attempt and no sleep."""
    portal.inject(Fault.response(503, QUERY_LIMIT, headers={"Retry-After": "300"}))
    with (
        _hook(portal.webhook_url, fake_time, retry=RetryPolicy(max_wait=30.0)) as hook,
        pytest.raises(RateLimitError) as info,
    ):
        BatchV3(hook).make(READ)
    assert info.value.attempts == 1
    assert info.value.retry_after == 300.0
    assert fake_time.sleeps == []


def test_429_waits_for_the_reported_reset(portal: FakePortal, fake_time: FakeTime) -> None:
    """After a 429 the client waits until the last operating_reset_at it was told, then repeats."""
    with _hook(portal.webhook_url, fake_time, retry=RetryPolicy(max_wait=900.0)) as hook:
        first = BatchV3(hook).make(READ)
        assert first.time is not None
        reset_at = first.time.operating_reset_at
        assert reset_at is not None
        wall_before = fake_time.wall
        portal.inject(Fault.operating_limited())
        result = BatchV3(hook).make(WRITE)
    assert result.is_success
    assert result.attempts == 2
    assert fake_time.sleeps == [pytest.approx(reset_at - wall_before)]
    assert result.waited == fake_time.sleeps[0]


def test_429_beyond_max_wait_raises_at_once_with_retry_at(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """A reset too far away raises OperatingLimitError at once, saying when to come back."""
    portal.inject(Fault.operating_limited())
    with (
        _hook(portal.webhook_url, fake_time, retry=RetryPolicy(max_wait=10.0)) as hook,
        pytest.raises(OperatingLimitError) as info,
    ):
        BatchV3(hook).make(READ)
    assert info.value.attempts == 1
    assert info.value.retry_at == pytest.approx(fake_time.wall + 60.0)
    assert fake_time.sleeps == []


def test_retry_none_sends_once(portal: FakePortal, fake_time: FakeTime) -> None:
    """retry=None: a 503 is raised after one request."""
    portal.inject(Fault.rate_limited())
    with (
        _hook(portal.webhook_url, fake_time, retry=None) as hook,
        pytest.raises(RateLimitError),
    ):
        BatchV3(hook).make(READ)
    assert len(portal.requests) == 1


# -- client-side limits ------------------------------------------------------------------------


def test_operating_time_is_waited_for_before_the_portal_says_no(fake_time: FakeTime) -> None:
    """Near the operating budget the client waits for the reset instead of collecting a 429."""
    with FakePortal(command_cost=40.0, operating_limit=100.0) as portal:
        portal.add_task(title="Seed")
        limit = RateLimit(operating_limit=100.0, operating_margin=25.0)
        policy = RetryPolicy(max_wait=900.0)  # the fake's reset is up to ten minutes away
        with _hook(portal.webhook_url, fake_time, rate_limit=limit, retry=policy) as hook:
            first = BatchV3(hook).make(READ * 2)  # 80 s charged: within 25 s of 100
            assert first.time is not None
            assert first.time.operating == pytest.approx(80.0)
            assert hook.limit_state().operating == pytest.approx(80.0)
            wall_before = fake_time.wall
            second = BatchV3(hook).make(READ)
    reset_at = first.time.operating_reset_at
    assert reset_at is not None
    assert fake_time.sleeps == [pytest.approx(reset_at + DEFAULT_RESET_SLACK - wall_before)]
    assert second.waited == fake_time.sleeps[0]
    assert second.attempts == 1  # waited instead of collecting a 429
    assert len(portal.requests) == 2


def test_default_clients_of_one_portal_share_a_bucket(portal: FakePortal) -> None:
    """Two default clients for one portal draw from one counter; a RateLimit gets its own."""
    first = B24Hook.from_webhook_url(portal.webhook_url)
    second = B24Hook.from_webhook_url(portal.webhook_url)
    own = B24Hook.from_webhook_url(portal.webhook_url, rate_limit=RateLimit(burst=5))
    off = B24Hook.from_webhook_url(portal.webhook_url, rate_limit=None)
    assert first.limiter.bucket is second.limiter.bucket
    assert own.limiter.bucket is not first.limiter.bucket
    assert own.limiter.bucket is not None
    assert own.limiter.bucket.limit.burst == 5
    assert off.limiter.bucket is None
    BatchV3(first).make(READ)
    # the ceiling (50 less the headroom of 2), less the one request sent
    assert second.limit_state().requests_available == pytest.approx(47.0, abs=0.1)


def test_bad_rate_limit_argument_is_refused(portal: FakePortal) -> None:
    """rate_limit takes a RateLimit, None or the default."""
    with pytest.raises(SdkTypeError, match="rate_limit"):
        B24Hook.from_webhook_url(portal.webhook_url, rate_limit=(50, 2))


def test_threads_share_the_bucket_and_never_trip_the_portal_limit() -> None:
    """200 batches from 8 threads through one client: no 503, every result its caller's.

    Time is compressed (burst 50 at 100/s, the portal's 2/s fifty times faster) so the run takes
    about 1.5 s; how close it comes to the bucket's theoretical minimum is a benchmark figure,
    not asserted here. The CPU's scheduling jitter is not compressed: a thread descheduled for
    100 ms is ten slots here and a fifth of one at 2/s, and requests late together can land at
    most as many at once as are in flight. So the margin below the burst is the test's eight
    threads, where the default headroom of 2 covers a second of jitter at the portal's rate.
    The test passes 10 of 10 under ``stress-ng --cpu 6`` on two cores.
    """
    limit = (50, 100.0)
    with FakePortal(rate_limit=limit) as portal:
        ids = [portal.add_task(title=f"Task {n}") for n in range(200)]
        hook = B24Hook.from_webhook_url(
            portal.webhook_url,
            retry=None,
            rate_limit=RateLimit(burst=50, per_second=100.0, headroom=8),
        )
        errors: list[BaseException] = []
        mixups: list[tuple[int, Any]] = []

        def worker(chunk: list[int]) -> None:
            for task_id in chunk:
                try:
                    result = BatchV3(hook).make(
                        [("tasks.task.get", {"id": task_id, "select": ["id", "title"]})]
                    )
                except B24Error as error:  # a 503 would land here: retries are off
                    errors.append(error)
                    continue
                if result.data != [{"item": {"id": task_id, "title": f"Task {task_id - 1}"}}]:
                    mixups.append((task_id, result.data))

        threads = [threading.Thread(target=worker, args=(ids[n::8],)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        hook.close()
        assert errors == []
        assert mixups == []
        assert len(portal.requests) == 200


# -- OAuth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://example.bitrix24.com/rest/",
        "https://example.bitrix24.com/rest",
        "https://example.bitrix24.com",
        "https://example.bitrix24.com/",
        "https://example.bitrix24.com/rest/api/",
    ],
)
def test_oauth_endpoint_forms(endpoint: str) -> None:
    """The client endpoint or the bare portal URL give the REST 3.0 batch URL."""
    assert B24OAuth(endpoint, "tok").url == "https://example.bitrix24.com/rest/api/batch"


@pytest.mark.parametrize(
    ("endpoint", "token", "fragment"),
    [
        ("https://example.bitrix24.com/rest/1/abc/", "tok", "expected https://PORTAL/rest/"),
        ("http://example.bitrix24.com/rest/", "tok", "requires https"),
        ("https://example.bitrix24.com/rest/?auth=1", "tok", "no query string"),
        ("https://example.bitrix24.com/rest/", "", "access token"),
        ("https://example.bitrix24.com/rest/", "a\nb", "access token"),
    ],
)
def test_bad_oauth_arguments(endpoint: str, token: str, fragment: str) -> None:
    """A wrong endpoint or an empty token fails at construction."""
    with pytest.raises(SdkError, match=fragment):
        B24OAuth(endpoint, token)


def _oauth(portal: FakePortal, fake_time: FakeTime, **options: Any) -> B24OAuth:
    options.setdefault("retry", RetryPolicy())
    return B24OAuth(
        portal.oauth_endpoint,
        portal.access_token,
        rate_limit=None,
        clock=fake_time.clock,
        wall_clock=fake_time.wall_clock,
        sleep=fake_time.sleep,
        rand=lambda: 0.5,
        **options,
    )


def test_oauth_sends_bearer_header_never_the_body(portal: FakePortal, fake_time: FakeTime) -> None:
    """Bearer token in the header, bare array in the body, to /rest/api/batch."""
    token = portal.access_token
    with _oauth(portal, fake_time) as oauth:
        result = BatchV3(oauth).make(READ)
    assert result.data == [{"item": {"id": 1}}]
    (request,) = portal.requests
    assert request.path == "/rest/api/batch"
    assert request.headers["Authorization"] == f"Bearer {token}"
    assert isinstance(request.body, list)
    assert token not in request.raw.decode()


def test_expired_token_is_refreshed_once_and_resent(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """401 expired_token: refresh, hand the token to on_token, re-send outside the budget."""
    stored: list[str] = []
    with _oauth(
        portal,
        fake_time,
        refresh=portal.refresh_token,
        on_token=stored.append,
        retry=RetryPolicy(max_attempts=1),
    ) as oauth:
        portal.expire_token()
        result = BatchV3(oauth).make(WRITE)
        assert oauth.credential_version() == 1
    assert result.is_success
    assert result.attempts == 2
    assert stored == [portal.access_token]
    assert portal.requests[1].headers["Authorization"] == f"Bearer {stored[0]}"
    assert portal.executed_commands == 1
    assert fake_time.sleeps == []


def test_many_threads_hitting_expiry_refresh_once(portal: FakePortal, fake_time: FakeTime) -> None:
    """Threads that get the 401 together share one refresh."""
    calls: list[str] = []
    gate = threading.Barrier(6)

    def refresh() -> str:
        calls.append("refresh")
        return portal.refresh_token()

    with _oauth(portal, fake_time, refresh=refresh) as oauth:
        portal.expire_token()
        results: list[Any] = []

        def worker() -> None:
            gate.wait()
            results.append(BatchV3(oauth).make(READ).is_success)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [True] * 6
    assert calls == ["refresh"]


def test_second_401_raises_auth_error(portal: FakePortal, fake_time: FakeTime) -> None:
    """If the refreshed token is refused too, AuthError is raised; refresh ran once."""
    calls: list[int] = []

    def useless_refresh() -> str:
        calls.append(1)
        return "not-a-valid-token"

    with _oauth(portal, fake_time, refresh=useless_refresh) as oauth:
        portal.expire_token()
        with pytest.raises(AuthError) as info:
            BatchV3(oauth).make(READ)
    assert info.value.attempts == 2
    assert calls == [1]


def test_without_refresh_a_401_is_raised(portal: FakePortal, fake_time: FakeTime) -> None:
    """No refresh callable: the expired token's 401 is raised as it is."""
    with _oauth(portal, fake_time) as oauth:
        portal.expire_token()
        with pytest.raises(AuthError, match="expired_token"):
            BatchV3(oauth).make(READ)
    assert len(portal.requests) == 1


def test_failing_refresh_raises_auth_error_without_the_token(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """A refresh that raises becomes an AuthError that names neither token."""
    old = portal.access_token

    def broken() -> str:
        raise RuntimeError(f"server refused refresh for {old}")

    with _oauth(portal, fake_time, refresh=broken) as oauth:
        portal.expire_token()
        with pytest.raises(AuthError, match="refreshing the access token failed") as info:
            BatchV3(oauth).make(READ)
    text = "".join(traceback.format_exception(info.value))
    assert old not in text
    assert "RuntimeError" in text
    assert isinstance(info.value.refresh_error, RuntimeError)


def test_redirect_is_never_followed(portal: FakePortal, fake_time: FakeTime) -> None:
    """A 3xx answer raises TransportError; the token is not carried to the new place."""
    portal.inject(Fault.response(302, "", headers={"Location": "https://elsewhere.example/x"}))
    with (
        _oauth(portal, fake_time) as oauth,
        pytest.raises(TransportError, match="never sent across a redirect"),
    ):
        BatchV3(oauth).make(READ)
    assert len(portal.requests) == 1


def test_tokens_never_leak(
    portal: FakePortal, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither the old nor the new token appears in repr, errors or log lines."""
    caplog.set_level(logging.DEBUG)
    old = portal.access_token
    with _oauth(portal, fake_time, refresh=portal.refresh_token) as oauth:
        portal.expire_token()
        BatchV3(oauth).make(READ)
        new = portal.access_token
        portal.inject(Fault.html(502), times=3)
        with pytest.raises(DecodeError) as info:
            BatchV3(oauth).make(READ)
        shown = [repr(oauth), str(oauth), str(info.value), repr(info.value)]
    shown += [r.getMessage() for r in caplog.records]
    shown.append("".join(traceback.format_exception(info.value)))
    assert not [text for text in shown if old in text or new in text]


def test_netrc_never_replaces_the_bearer_token(
    portal: FakePortal, fake_time: FakeTime, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ~/.netrc entry for the portal does not turn Bearer into Basic auth, even with a
    caller's own Session that trusts the environment."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    session = requests.Session()
    session.headers["X-Callers-Session"] = "yes"  # shows which session sent the request
    assert session.trust_env
    with _oauth(portal, fake_time, session=session) as oauth:
        assert BatchV3(oauth).make(READ).is_success
    (request,) = portal.requests
    assert request.headers["X-Callers-Session"] == "yes"
    assert request.headers["Authorization"] == f"Bearer {portal.access_token}"
    session.close()
