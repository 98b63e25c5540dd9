"""``RetryPolicy.max_wait`` as a real bound on every wait of one batch, over real HTTP.

Clocks and sleeps are injected, so waits are recorded instead of slept: each test asserts what
the caller got, what the FakePortal received, and which waits were made.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from b24batch import (
    B24Hook,
    BatchByChunkV3,
    BatchV3,
    OperatingLimitError,
    RateLimit,
    RateLimitError,
    RetryPolicy,
    TransportError,
)
from b24batch._limits.policy import DEFAULT_RESET_SLACK
from b24batch.testing import FakePortal, Fault
from tests.support.clocks import FakeTime

READ = [("tasks.task.get", {"id": 1, "select": ["id"]})]
QUERY_LIMIT = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    with FakePortal() as fake:
        fake.add_task(title="Seed")
        yield fake


def _hook(url: str, fake_time: FakeTime, **options: Any) -> B24Hook:
    options.setdefault("timeout", (5.0, 5.0))
    options.setdefault("rate_limit", None)
    return B24Hook.from_webhook_url(
        url,
        clock=fake_time.clock,
        wall_clock=fake_time.wall_clock,
        sleep=fake_time.sleep,
        rand=lambda: 0.5,
        **options,
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_bucket_wait_past_max_wait_raises_before_sending(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """The bucket needs 100 s, max_wait is 2 s: RateLimitError with retry_at, nothing sent."""
    limit = RateLimit(burst=1, per_second=0.01)
    with _hook(
        portal.webhook_url, fake_time, rate_limit=limit, retry=RetryPolicy(max_wait=2.0)
    ) as hook:
        assert BatchV3(hook).make(READ).is_success
        with pytest.raises(RateLimitError) as info:
            BatchV3(hook).make(READ, request_id="second")
    error = info.value
    assert error.retry_at == pytest.approx(fake_time.wall + 100.0)
    assert (error.status, error.attempts, error.request_id) == (0, 0, "second")
    assert "nothing was sent" in str(error)
    assert fake_time.sleeps == []
    assert len(portal.requests) == 1
    assert hook.limit_state().requests_available == pytest.approx(0.0)  # nothing booked


def test_a_bucket_wait_within_max_wait_is_made(portal: FakePortal, fake_time: FakeTime) -> None:
    """A bucket wait that fits is slept and reported as waited."""
    limit = RateLimit(burst=1, per_second=0.5)
    with _hook(
        portal.webhook_url, fake_time, rate_limit=limit, retry=RetryPolicy(max_wait=2.0)
    ) as hook:
        BatchV3(hook).make(READ)
        second = BatchV3(hook).make(READ)
    assert second.waited == 2.0
    assert fake_time.sleeps == [2.0]
    assert len(portal.requests) == 2


def test_an_operating_wait_past_max_wait_raises_before_sending(fake_time: FakeTime) -> None:
    """Near the operating budget with the reset beyond max_wait: OperatingLimitError, unsent."""
    with FakePortal(command_cost=40.0, operating_limit=100.0) as portal:
        portal.add_task(title="Seed")
        limit = RateLimit(operating_limit=100.0, operating_margin=25.0)
        with _hook(
            portal.webhook_url, fake_time, rate_limit=limit, retry=RetryPolicy(max_wait=10.0)
        ) as hook:
            first = BatchV3(hook).make(READ * 2)  # 80 s charged: within 25 s of 100
            with pytest.raises(OperatingLimitError) as info:
                BatchV3(hook).make(READ)
        assert len(portal.requests) == 1
    assert first.time is not None
    assert first.time.operating_reset_at is not None
    assert info.value.retry_at == first.time.operating_reset_at + DEFAULT_RESET_SLACK
    assert (info.value.status, info.value.attempts) == (0, 0)
    assert fake_time.sleeps == []


def test_backoff_is_not_started_when_the_bucket_wait_after_it_would_not_fit(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """A 503 with Retry-After 3 s, then 7 s more for the bucket: past max_wait=9, so no sleep."""
    portal.inject(Fault.response(503, QUERY_LIMIT, headers={"Retry-After": "3"}))
    limit = RateLimit(burst=1, per_second=0.1)
    with (
        _hook(
            portal.webhook_url, fake_time, rate_limit=limit, retry=RetryPolicy(max_wait=9.0)
        ) as hook,
        pytest.raises(RateLimitError) as info,
    ):
        BatchV3(hook).make(READ)
    assert (info.value.status, info.value.attempts) == (503, 1)  # the portal's own refusal
    assert fake_time.sleeps == []
    assert len(portal.requests) == 1


def test_backoff_and_the_bucket_share_one_budget(portal: FakePortal, fake_time: FakeTime) -> None:
    """Retry-After 3 s then the bucket's 7 s fit max_wait=10: both slept, 10 s waited."""
    portal.inject(Fault.response(503, QUERY_LIMIT, headers={"Retry-After": "3"}))
    limit = RateLimit(burst=1, per_second=0.1)
    with _hook(
        portal.webhook_url, fake_time, rate_limit=limit, retry=RetryPolicy(max_wait=10.0)
    ) as hook:
        result = BatchV3(hook).make(READ)
    assert result.is_success
    assert fake_time.sleeps == [3.0, pytest.approx(7.0)]
    assert result.waited == pytest.approx(10.0)
    assert result.attempts == 2


@pytest.mark.parametrize(
    ("max_wait", "attempts", "sleeps"),
    [
        pytest.param(2.0, 1, [], id="connect-timeout-does-not-fit"),
        pytest.param(6.0, 2, [0.25], id="one-repeat-fits"),
        pytest.param(60.0, 3, [0.25, 0.5], id="all-repeats-fit"),
    ],
)
def test_connect_repeats_count_their_connect_timeout_toward_max_wait(
    fake_time: FakeTime, max_wait: float, attempts: int, sleeps: list[float]
) -> None:
    """A refused connection is repeated by the batch layer only while backoff plus the 5 s
    connect timeout of the repeat fit in max_wait; urllib3 repeats nothing on its own."""
    url = f"http://127.0.0.1:{_closed_port()}/rest/1/x/"
    policy = RetryPolicy(max_attempts=3, base_delay=0.5, max_wait=max_wait)
    with _hook(url, fake_time, retry=policy) as hook, pytest.raises(TransportError) as info:
        BatchV3(hook).make(READ)
    assert info.value.never_connected is True
    assert info.value.outcome_unknown is False
    assert info.value.attempts == attempts
    assert fake_time.sleeps == sleeps


def test_each_chunk_has_its_own_max_wait(portal: FakePortal, fake_time: FakeTime) -> None:
    """Three chunks each wait 2 s for the bucket under max_wait=3: 6 s in all, every one sent."""
    limit = RateLimit(burst=1, per_second=0.5)
    calls = READ * 3
    with _hook(
        portal.webhook_url, fake_time, rate_limit=limit, retry=RetryPolicy(max_wait=3.0)
    ) as hook:
        result = BatchByChunkV3(hook).make(calls, chunk_size=1)
    assert result.is_success
    assert [chunk.waited for chunk in result.chunks] == [0.0, 2.0, 2.0]
    assert fake_time.sleeps == [2.0, 2.0]
    assert len(portal.requests) == 3


def test_a_chunk_refused_by_the_bucket_keeps_the_chunks_before_it(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """The second chunk's wait does not fit: RateLimitError, the first chunk's data in partial."""
    limit = RateLimit(burst=1, per_second=0.1)
    with (
        _hook(
            portal.webhook_url, fake_time, rate_limit=limit, retry=RetryPolicy(max_wait=3.0)
        ) as hook,
        pytest.raises(RateLimitError) as info,
    ):
        BatchByChunkV3(hook).make(READ * 3, chunk_size=1)
    partial = info.value.partial
    assert partial is not None
    assert len(partial.data) == 1
    assert partial.not_executed == (2,)
    assert len(portal.requests) == 1
    assert fake_time.sleeps == []


def test_a_bucket_filled_during_the_backoff_is_checked_against_what_is_left(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """Other senders fill the bucket while a repeat waits out its Retry-After: the longer wait
    (9 s) is checked against what is left of max_wait (6 of 10 s), and refused unsent."""
    limit = RateLimit(burst=5, per_second=1.0)
    hook = B24Hook.from_webhook_url(
        portal.webhook_url,
        retry=RetryPolicy(max_attempts=2, max_wait=10.0),
        rate_limit=limit,
        timeout=(2.0, 5.0),
        clock=fake_time.clock,
        wall_clock=fake_time.wall_clock,
        sleep=lambda seconds: crowded(seconds),
    )
    bucket = hook.limiter.bucket
    assert bucket is not None

    def crowded(seconds: float) -> None:
        fake_time.sleep(seconds)
        for _ in range(12):  # as other threads of this client would, meanwhile
            bucket.reserve()

    portal.inject(Fault.response(503, QUERY_LIMIT, headers={"Retry-After": "4"}))
    with hook, pytest.raises(RateLimitError) as info:
        BatchV3(hook).make(READ)
    assert (info.value.status, info.value.attempts) == (0, 1)
    assert fake_time.sleeps == [4.0]
    assert len(portal.requests) == 1
