"""``_engine.execute``: what one batch re-sends, waits and returns, over real HTTP.

Mostly the classic batch's refusals inside the answer (``QUERY_LIMIT_EXCEEDED`` or
``OPERATION_TIME_LIMIT`` in ``result_error``): those commands never ran and are sent again in
place, within the retry policy's attempts and ``max_wait``. Time is injected, so every wait is
an exact number and no test sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest

from b24batch import (
    B24Hook,
    BatchV2,
    BatchV3,
    OperatingLimitError,
    RateLimit,
    RateLimitError,
    RetryPolicy,
)
from b24batch._limits.limiter import OPERATING_BASKET
from b24batch.testing import FakePortal, Fault
from tests.support.clocks import FakeTime

BUSY = "QUERY_LIMIT_EXCEEDED"


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    """A FakePortal whose ``app.ok`` answers its params and ``app.busy`` is refused on demand."""
    with FakePortal() as fake:
        fake.register("app.ok", lambda params: {"ok": params})
        yield fake


@pytest.fixture
def fake_time() -> FakeTime:
    """Clocks that start fresh for each test."""
    return FakeTime()


def hook(portal: FakePortal, fake_time: FakeTime, **options: Any) -> B24Hook:
    """A client on injected time whose backoff is the policy's cap (no jitter)."""
    options.setdefault("rate_limit", None)
    return B24Hook.from_webhook_url(
        portal.webhook_url,
        clock=fake_time.clock,
        wall_clock=fake_time.wall_clock,
        sleep=fake_time.sleep,
        rand=lambda: 1.0,
        **options,
    )


def busy_for(portal: FakePortal, refusals: int) -> list[dict[str, Any]]:
    """Serve ``app.busy``: refused with QUERY_LIMIT_EXCEEDED ``refusals`` times, then answered.

    Returns the list every call's params are appended to.
    """
    seen: list[dict[str, Any]] = []

    def busy(params: dict[str, Any]) -> Any:
        seen.append(params)
        if len(seen) <= refusals:
            raise FakePortal.CommandError("Too many requests", code=BUSY)
        return {"busy": len(seen)}

    portal.register("app.busy", busy)
    return seen


def then_inject(portal: FakePortal, fault: Fault) -> Any:
    """An ``app.ok`` that, as it runs, arms ``fault`` for the next request."""

    def ok(params: dict[str, Any]) -> Any:
        portal.inject(fault)
        return {"ok": params}

    return ok


def sent_keys(portal: FakePortal, request: int) -> list[str]:
    """The ``cmd[KEY]`` names of one recorded classic request, in the order sent."""
    form = parse_qs(portal.requests[request].raw.decode("ascii"))
    return [name for name in form if name.startswith("cmd[")]


def policy(**fields: Any) -> RetryPolicy:
    """A retry policy with room to wait unless the test narrows ``max_wait``."""
    fields.setdefault("max_wait", 120.0)
    return RetryPolicy(**fields)


TWO = [("app.ok", {"n": 0}), ("app.busy", {"n": 1})]


def test_a_command_refused_every_time_is_sent_max_attempts_times(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """A refusal that never lifts is sent max_attempts times in all, then stays an error."""
    seen = busy_for(portal, refusals=99)
    retry = policy(max_attempts=3, base_delay=1.0, max_delay=1.0)
    with hook(portal, fake_time, retry=retry) as client:
        result = BatchV2(client).make(TWO, halt_on_error=False)
    assert len(seen) == 3
    assert result.attempts == 3
    assert isinstance(result.errors_by_key[1], RateLimitError)
    assert fake_time.sleeps == [1.0, 1.0]


def test_waited_adds_every_rounds_delay_and_the_parts_own_wait(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """``waited`` is the sum of each round's delay and what each re-sent part itself waited."""
    busy_for(portal, refusals=2)
    retry = policy(max_attempts=4, base_delay=1.0, max_delay=10.0)
    portal.register("app.ok", then_inject(portal, Fault.rate_limited()))  # hits the re-send
    with hook(portal, fake_time, retry=retry) as client:
        result = BatchV2(client).make(TWO, halt_on_error=False)
    assert result.is_success
    # round 1: 1 s, its part's own repeat: 1 s; round 2: 2 s
    assert fake_time.sleeps == [1.0, 1.0, 2.0]
    assert result.waited == 4.0
    assert result.attempts == 4


def test_a_refusal_whose_wait_passes_max_wait_is_left_an_error(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """When the round's delay would pass max_wait nothing is re-sent and the refusal stays."""
    seen = busy_for(portal, refusals=1)
    retry = policy(max_attempts=3, base_delay=5.0, max_delay=5.0, max_wait=3.0)
    with hook(portal, fake_time, retry=retry) as client:
        result = BatchV2(client).make(TWO, halt_on_error=False)
    assert len(seen) == 1
    assert (result.attempts, result.waited) == (1, 0.0)
    assert isinstance(result.errors_by_key[1], RateLimitError)
    assert result.data[0] == {"ok": {"n": "0"}}
    assert fake_time.sleeps == []


def test_a_wait_of_exactly_max_wait_is_taken(portal: FakePortal, fake_time: FakeTime) -> None:
    """A round whose delay uses max_wait exactly is still sent (the budget is inclusive)."""
    busy_for(portal, refusals=1)
    retry = policy(max_attempts=3, base_delay=3.0, max_delay=3.0, max_wait=3.0)
    with hook(portal, fake_time, retry=retry) as client:
        result = BatchV2(client).make(TWO, halt_on_error=False)
    assert result.is_success
    assert (result.attempts, result.waited) == (2, 3.0)
    assert result.data[1] == {"busy": 2}


def test_a_repeat_refused_as_a_whole_keeps_the_first_answer(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """If the re-sent part gets an error envelope, the first answer stands, refusal and all."""
    busy_for(portal, refusals=1)
    retry = policy(max_attempts=3, base_delay=0.0, max_delay=0.0)
    envelope = {"error": "ACCESS_DENIED", "error_description": "no"}
    portal.register("app.ok", then_inject(portal, Fault.response(400, envelope)))
    with hook(portal, fake_time, retry=retry) as client:
        result = BatchV2(client).make(TWO, halt_on_error=False)
    assert result.attempts == 2
    assert isinstance(result.errors_by_key[1], RateLimitError)
    assert result.data[0] == {"ok": {"n": "0"}}
    assert len(portal.requests) == 2


def test_a_refused_command_referencing_one_that_is_not_re_sent_stays_refused(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """A refused command whose reference points outside the part is not re-sent at all."""
    seen = busy_for(portal, refusals=1)
    retry = policy(max_attempts=3, base_delay=0.0, max_delay=0.0)
    calls = [("app.ok", {"n": 0}), ("app.busy", {"n": "$result[0][ok][n]"})]
    with hook(portal, fake_time, retry=retry) as client:
        result = BatchV2(client).make(calls, halt_on_error=False)
    assert len(seen) == 1
    assert len(portal.requests) == 1
    assert isinstance(result.errors_by_key[1], RateLimitError)


def test_under_halt_the_re_sent_part_keeps_only_what_its_references_allow(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """With halt, the refused command and the skipped ones after it go again, except one that
    references a command outside the part; one referencing the refused command goes with it."""
    busy_for(portal, refusals=1)
    retry = policy(max_attempts=3, base_delay=0.0, max_delay=0.0)
    calls = [
        ("app.ok", {"n": 0}),
        ("app.busy", {"n": 1}),
        ("app.ok", {"n": "$result[0][ok][n]"}),  # references outside the part: left not run
        ("app.ok", {"n": "$result[1][busy]"}),  # references the refused one: goes with it
        ("app.ok", {"n": 4}),
    ]
    with hook(portal, fake_time, retry=retry) as client:
        result = BatchV2(client).make(calls)
    assert sent_keys(portal, 0) == ["cmd[0]", "cmd[1]", "cmd[2]", "cmd[3]", "cmd[4]"]
    assert sent_keys(portal, 1) == ["cmd[1]", "cmd[3]", "cmd[4]"]
    assert result.data[1] == {"busy": 2}
    assert result.data[3] == {"ok": {"n": 2}}
    assert result.data[4] == {"ok": {"n": "4"}}
    assert result.not_executed == (2,)


def test_without_halt_a_command_the_answer_omits_is_not_re_sent(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """Without halt only the refused commands go again, not one the answer does not mention."""
    refused = {"error": BUSY, "error_description": "Too many requests"}
    answer = {"result": {"result": {}, "result_error": {"1": refused}}}
    retry = policy(max_attempts=3, base_delay=0.0, max_delay=0.0)
    busy_for(portal, refusals=0)
    with hook(portal, fake_time, retry=retry) as client:
        portal.inject(Fault.response(200, answer))
        result = BatchV2(client).make(TWO, halt_on_error=False)
    assert sent_keys(portal, 1) == ["cmd[1]"]
    assert result.data[1] == {"busy": 1}
    assert result.data[0] is None


def test_an_operating_refusal_left_an_error_says_when_to_retry(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """An OPERATION_TIME_LIMIT refusal that max_wait cannot wait out carries its retry_at."""
    refused = {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked"}
    answer = {"result": {"result": {"0": {"ok": 1}}, "result_error": {"1": refused}}}
    retry = policy(max_attempts=3, base_delay=0.0, max_delay=0.0, max_wait=10.0)
    with hook(portal, fake_time, retry=retry) as client:
        portal.inject(Fault.response(200, answer))
        result = BatchV2(client).make(TWO, halt_on_error=False)
    error = result.errors_by_key[1]
    assert isinstance(error, OperatingLimitError)
    assert error.retry_at == fake_time.wall + OPERATING_BASKET
    assert len(portal.requests) == 1


def test_a_rate_refusal_inside_the_answer_fills_the_client_bucket(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """QUERY_LIMIT_EXCEEDED in result_error means the portal's counter is full: the re-send
    waits for the bucket to drain from the ceiling, on top of the backoff."""
    busy_for(portal, refusals=1)
    retry = policy(max_attempts=3, base_delay=0.5, max_delay=0.5)
    limit = RateLimit(burst=5, per_second=2.0)
    with hook(portal, fake_time, retry=retry, rate_limit=limit) as client:
        result = BatchV2(client).make(TWO, halt_on_error=False)
    assert result.is_success
    assert fake_time.sleeps == [0.5, 1.0]


def test_an_isolated_result_keeps_the_first_answers_status(
    portal: FakePortal, fake_time: FakeTime
) -> None:
    """The partial result built by isolate_errors has the failed answer's HTTP status."""
    task = portal.add_task(title="T")
    calls = [("tasks.task.get", {"id": task}), ("tasks.task.get", {"id": 999_999})]
    with hook(portal, fake_time, retry=None) as client:
        result = BatchV3(client).make(calls, isolate_errors=True)
    assert result.status == result.errors_by_key[1].status == 400
    assert result.replayed is False
    assert result.data[0] is not None
