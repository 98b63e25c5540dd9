"""The FakePortal's own limits: the leaky bucket, the operating-time meter, the time block."""

from __future__ import annotations

import datetime

import pytest

from b24batch.testing import FakePortal
from tests.fakeportal.v3_http import FakeClock, add, cmd, post

# -- limits ---------------------------------------------------------------------------------------


def test_leaky_bucket_refuses_past_burst() -> None:
    """With burst 2, the third quick request answers 503 QUERY_LIMIT_EXCEEDED unexecuted."""
    with FakePortal(rate_limit=(2, 1.0), clock=FakeClock(1000.0)) as portal:
        statuses = [post(portal, [add("x")]).status_code for _ in range(3)]
        refused = post(portal, [add("x")])
        assert statuses == [200, 200, 503]
        assert refused.json() == {
            "error": "QUERY_LIMIT_EXCEEDED",
            "error_description": "Too many requests",
        }
        assert portal.executed_commands == 2


def test_leaky_bucket_drains_with_the_clock() -> None:
    """After a refusal, one second at 1/s lets exactly one more request through."""
    clock = FakeClock(1000.0)
    with FakePortal(rate_limit=(2, 1.0), clock=clock) as portal:
        for _ in range(3):
            post(portal, [add("x")])
        clock.advance(1.0)
        statuses = [post(portal, [add("x")]).status_code for _ in range(2)]
        assert statuses == [200, 503]


def test_operating_time_is_reported_for_batch() -> None:
    """time.operating sums command_cost over the batches' commands; reset_at is the window end."""
    clock = FakeClock(1000.0)
    with FakePortal(command_cost=0.5, clock=clock, wall_clock=lambda: 5000.0) as portal:
        first = post(portal, [add("a"), add("b"), add("c")]).json()["time"]
        second = post(portal, [add("d")]).json()["time"]
    assert (first["operating"], second["operating"]) == (1.5, 2.0)
    # 1000 s falls in basket 16 (960..1020); it drops out at 26 * 60 = 1560, 560 s later.
    assert first["operating_reset_at"] == 5560


def test_operating_limit_blocks_then_recovers() -> None:
    """Past operating_limit the next batch answers 429; ten minutes later it runs."""
    clock = FakeClock(1000.0)
    with FakePortal(operating_limit=1.0, command_cost=0.5, clock=clock) as portal:
        assert post(portal, [add("a"), add("b")]).status_code == 200
        blocked = post(portal, [add("c")])
        assert (blocked.status_code, blocked.json()) == (
            429,
            {
                "error": "OPERATION_TIME_LIMIT",
                "error_description": "Method is blocked due to operation time limit.",
            },
        )
        clock.advance(600.0)
        assert post(portal, [add("c")]).status_code == 200
        assert portal.executed_commands == 3


def test_operating_charge_batch_charges_every_method_to_batch() -> None:
    """By default a batch of any methods adds to one figure, so one method's use blocks another."""
    with FakePortal(operating_limit=1.0, command_cost=0.5, clock=FakeClock(1000.0)) as portal:
        portal.add_task(title="t")
        first = post(portal, [add("a"), add("b")]).json()["time"]
        assert first["operating"] == 1.0
        assert post(portal, [cmd("tasks.task.get", {"id": 1})]).status_code == 429


def test_operating_charge_method_charges_each_method_on_its_own() -> None:
    """With operating_charge="method", each command counts to its own method only."""
    clock = FakeClock(1000.0)
    with FakePortal(
        operating_limit=1.0, command_cost=0.5, clock=clock, operating_charge="method"
    ) as portal:
        portal.add_task(title="t")
        mixed = post(portal, [add("a"), add("b"), cmd("tasks.task.get", {"id": 1})]).json()
        assert mixed["time"]["operating"] == 1.0  # the highest of the batch's methods: add
        get = post(portal, [cmd("tasks.task.get", {"id": 1})])
        assert (get.status_code, get.json()["time"]["operating"]) == (200, 1.0)
        assert post(portal, [add("c")]).status_code == 429


def test_operating_charge_is_checked() -> None:
    """An unknown operating_charge is refused at construction."""
    with pytest.raises(ValueError, match="operating_charge must be 'batch' or 'method'"):
        FakePortal(operating_charge="inner")  # type: ignore[arg-type]


def test_time_block_uses_the_wall_clock() -> None:
    """`time` carries start/finish from wall_clock and ISO dates with an offset."""
    with FakePortal(wall_clock=lambda: 1_787_219_542.0) as portal:
        timing = post(portal, [add("x")]).json()["time"]
    assert (timing["start"], timing["finish"], timing["duration"]) == (
        1_787_219_542.0,
        1_787_219_542.0,
        0.0,
    )
    date_start = datetime.datetime.fromisoformat(timing["date_start"])
    assert (date_start.timestamp(), date_start.utcoffset() is not None) == (1_787_219_542.0, True)
