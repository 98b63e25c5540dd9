"""The operating-time meter: what it learns, when it forgets, and that default clients have it."""

from __future__ import annotations

from pathlib import Path

import pytest

from b24batch import BatchV3, OperatingLimitError, RateLimit, RetryPolicy, SQLiteStore, Time
from b24batch._limits.meter import OperatingMeter
from b24batch._limits.policy import DEFAULT_RESET_SLACK
from b24batch.options import DEFAULT_RATE_LIMIT
from b24batch.testing import FakePortal, Fault
from tests.engine.test_resilience import READ, _hook
from tests.support.clocks import FakeTime


class Clock:
    """A settable clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _meter(wall: Clock) -> OperatingMeter:
    return OperatingMeter(RateLimit(operating_limit=100.0, operating_margin=10.0), wall)


def test_every_delay_after_a_reset_is_zero() -> None:
    """Once the reset has passed, delay() is 0 on this call and every later one."""
    wall = Clock(5000.0)
    meter = _meter(wall)
    meter.record(Time(operating=95.0, operating_reset_at=5030.0))
    wall.now = 5031.0
    assert [meter.delay(), meter.delay(), meter.delay()] == [0.0, 0.0, 0.0]
    assert meter.state() == (None, 5030.0)


def test_operating_without_a_reset_time_is_kept_and_waits_for_nothing() -> None:
    """An answer with operating and no operating_reset_at: kept, no wait until a reset is known."""
    wall = Clock(5000.0)
    meter = _meter(wall)
    meter.record(Time(operating=95.0))
    assert (meter.state(), meter.delay()) == ((95.0, None), 0.0)
    meter.record(Time(operating_reset_at=5020.0))
    assert (meter.state(), meter.delay()) == ((95.0, 5020.0), 20.0 + DEFAULT_RESET_SLACK)


def test_default_client_waits_for_the_operating_reset(fake_time: FakeTime) -> None:
    """A client with the default rate_limit has the meter: near 480 s it waits for the reset."""
    with FakePortal(command_cost=460.0) as portal:
        portal.add_task(title="Seed")
        policy = RetryPolicy(max_wait=900.0)
        with _hook(
            portal.webhook_url, fake_time, rate_limit=DEFAULT_RATE_LIMIT, retry=policy
        ) as hook:
            first = BatchV3(hook).make(READ)
            assert first.time is not None
            assert hook.limit_state().operating == pytest.approx(460.0)
            wall_before = fake_time.wall
            second = BatchV3(hook).make(READ)
    reset_at = first.time.operating_reset_at
    assert reset_at is not None
    assert fake_time.sleeps == [pytest.approx(reset_at + DEFAULT_RESET_SLACK - wall_before)]
    assert (second.attempts, second.waited) == (1, fake_time.sleeps[0])


def test_the_time_block_of_an_error_envelope_is_learnt(fake_time: FakeTime) -> None:
    """A returned 400 error envelope's time block reaches the meter, as a success's does."""
    with FakePortal() as portal:
        error = {"code": "BAD", "message": "no"}
        time = {"operating": 123.5, "operating_reset_at": fake_time.wall + 60}
        portal.inject(Fault.response(400, {"error": error, "time": time}))
        with _hook(portal.webhook_url, fake_time, rate_limit=DEFAULT_RATE_LIMIT) as hook:
            result = BatchV3(hook).make(READ)
            state = hook.limit_state()
    assert result.errors[0].code == "BAD"
    assert (state.operating, state.operating_reset_at) == (123.5, time["operating_reset_at"])


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "sqlite-store"])
def test_a_429_holds_the_next_batch_until_the_same_reset(
    fake_time: FakeTime, tmp_path: Path, shared: bool
) -> None:
    """A 429 where the meter saw room (batches in flight, another process) teaches the meter:
    the next batch of the method, of this client or of another on the store, waits for the
    same reset (here past max_wait, so it is refused unsent) instead of collecting a 429."""
    limit = RateLimit(operating_limit=100.0, operating_margin=10.0)
    store = SQLiteStore(tmp_path / "limits.sqlite3") if shared else None
    with FakePortal(operating_limit=100.0) as portal:
        portal.add_task(title="Seed")
        hooks = [
            _hook(
                portal.webhook_url,
                fake_time,
                rate_limit=limit,
                limit_store=store,
                retry=RetryPolicy(max_wait=60.0),
            )
            for _ in range(2 if shared else 1)
        ]
        first = BatchV3(hooks[0]).make(READ)  # far from the limit: its reset is minutes away
        assert first.time is not None
        reset_at = first.time.operating_reset_at
        assert reset_at is not None
        assert reset_at - fake_time.wall > 60.0
        portal.inject(Fault.operating_limited())
        with pytest.raises(OperatingLimitError) as refused:
            BatchV3(hooks[0]).make(READ)
        with pytest.raises(OperatingLimitError) as held:
            BatchV3(hooks[-1]).make(READ)
        for hook in hooks:
            hook.close()
    assert (refused.value.status, refused.value.attempts) == (429, 1)
    assert refused.value.retry_at == reset_at + DEFAULT_RESET_SLACK
    assert (held.value.status, held.value.attempts) == (0, 0)  # refused by the client, unsent
    assert held.value.retry_at == pytest.approx(reset_at + DEFAULT_RESET_SLACK)
    assert len(portal.requests) == 2
    assert hooks[-1].limit_state().operating == 100.0  # at its limit until the reset
    assert fake_time.sleeps == []
