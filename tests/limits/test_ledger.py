"""The in-flight operating-time ledger: what batches on the wire will cost, before they land."""

from __future__ import annotations

import threading

import pytest

from b24batch import B24Hook, BatchByChunkV3, RateLimit, RetryPolicy
from b24batch._limits.ledger import Ledger
from b24batch.results import Time
from b24batch.testing import FakePortal, Fault


class _Meter:
    """A meter whose figure the test sets."""

    def __init__(self, operating: float | None) -> None:
        self.operating = operating

    def state(self) -> tuple[float | None, float | None]:
        return self.operating, None

    def record(self, time: Time | None) -> None: ...
    def reset_at(self) -> float | None: ...
    def delay(self) -> float:
        return 0.0


IDLE = _Meter(0.0)  # a figure that never holds a send on its own


def test_a_send_is_held_while_the_batches_in_flight_would_pass_the_limit() -> None:
    """Reported 60 s + 2 batches of 10 in flight + this one's 10 reaches 90 - 5: held."""
    ledger = Ledger(RateLimit(operating_limit=90.0, operating_margin=5.0))
    ledger.learn(Time(operating=50.0))
    ledger.learn(Time(operating=60.0))  # one batch cost 10 s
    first, second = ledger.admit(IDLE, 1.0), ledger.admit(IDLE, 1.0)
    assert (first[1], second[1]) == (10.0, 10.0)
    assert second[0] < 1.0  # 0 + 10 + 10 < 85: not held
    assert ledger.in_flight == (2, 20.0)
    meter = _Meter(60.0)
    held, third = ledger.admit(meter, budget=0.05)  # 60 + 20 + 10 >= 85: held to the end
    assert (held >= 0.05, third) == (True, 10.0)
    assert ledger.in_flight == (3, 30.0)  # booked all the same: the meter decides next
    ledger.settle(first[1])
    ledger.settle(third)
    assert ledger.in_flight == (1, 10.0)
    held, fourth = ledger.admit(meter, budget=5.0)  # 60 + 10 + 10 < 85: goes at once
    assert held < 1.0
    ledger.settle(fourth)
    meter.operating = 70.0  # the landed batch, now counted by the portal
    assert ledger.admit(meter, budget=0.05)[0] >= 0.05  # 70 + 10 + 10 >= 85: held again


def test_a_settled_batch_lets_a_held_send_go() -> None:
    """A send held by the ledger goes as soon as a batch in flight settles."""
    ledger = Ledger(RateLimit(operating_limit=40.0, operating_margin=0.0))
    ledger.learn(Time(duration=15.0))
    first, second = ledger.admit(IDLE, 1.0)[1], ledger.admit(IDLE, 1.0)[1]
    meter = _Meter(5.0)  # 5 + 30 in flight + 15 >= 40: held
    released = threading.Event()

    def send() -> None:
        ledger.admit(meter, budget=10.0)
        released.set()

    sender = threading.Thread(target=send)
    sender.start()
    assert not released.wait(0.1)
    ledger.settle(first)  # 5 + 15 + 15 < 40
    assert released.wait(5.0)
    sender.join(timeout=5.0)
    ledger.settle(second)
    assert ledger.in_flight == (1, 15.0)  # the released send, booked


def test_before_an_answer_each_batch_is_charged_the_margin() -> None:
    """No cost known yet: each batch counts as the margin (30 s), so from 0 of 100 two go at
    once (0 + 30 + 30 < 70) and the third waits (0 + 60 + 30 >= 70)."""
    ledger = _ledger(limit=100.0, margin=30.0)
    meter = _Meter(None)  # no figure seen: the portal's counts as 0
    assert ledger.admit(meter, budget=1.0) == (0.0, 30.0)  # nothing in flight: go
    assert ledger.admit(meter, budget=1.0) == (AT_ONCE, 30.0)
    assert ledger.admit(meter, budget=1.0) == (HELD, 30.0)


@pytest.mark.parametrize(
    ("operating", "opening"),
    [
        pytest.param(0.0, 14, id="fresh-14"),
        pytest.param(300.0, 4, id="300-of-480-4"),
        pytest.param(415.0, 1, id="415-of-480-only-the-first"),
    ],
)
def test_the_opening_is_what_the_known_figure_leaves_room_for(
    operating: float, opening: int
) -> None:
    """The default 480 s and margin of 30: from a figure a shared store holds, the batches that
    go before any answer are those whose margin-sized charges fit below 450."""
    ledger = _ledger(limit=480.0, margin=30.0)
    meter = _Meter(operating)
    went = 0
    while ledger.admit(meter, budget=1.0)[0] in (0.0, AT_ONCE) and went < 20:
        went += 1
    assert went == opening
    assert operating + 30.0 * (went + 1) <= 480.0  # each at most the margin: never past 480


def test_without_a_margin_one_batch_learns_the_cost() -> None:
    """operating_margin=0: nothing to charge an unknown batch, so one goes alone as before."""
    ledger = _ledger(limit=100.0, margin=0.0)
    meter = _Meter(None)
    assert ledger.admit(meter, budget=1.0) == (0.0, 0.0)
    assert ledger.admit(meter, budget=1.0) == (HELD, 0.0)


def test_no_operating_limit_never_holds() -> None:
    """Without an operating limit the ledger holds nothing."""
    ledger = Ledger(None)
    ledger.admit(_Meter(1000.0), budget=1.0)
    assert ledger.admit(_Meter(1000.0), budget=1.0)[0] == 0.0


def test_the_cost_is_learnt_from_the_rise_or_the_duration() -> None:
    """A batch costs the rise of operating since the last answer, or its duration if longer."""
    ledger = Ledger(RateLimit())
    ledger.learn(Time(operating=5.0))
    assert ledger.admit(IDLE, 0.0)[1] == 30.0  # one figure says nothing of a batch's cost yet
    ledger.learn(Time(operating=7.5, duration=1.0))
    assert ledger.admit(IDLE, 0.0)[1] == 2.5
    ledger.learn(Time(operating=7.5, duration=4.0))
    assert ledger.admit(IDLE, 0.0)[1] == 4.0


def test_a_portal_without_figures_costs_nothing() -> None:
    """Answers with no operating figure teach a cost of 0, so the ledger stops holding."""
    ledger = Ledger(RateLimit())
    ledger.admit(IDLE, 0.0)
    ledger.learn(None)
    assert ledger.admit(_Meter(None), budget=1.0)[0] < 1.0


class _Clock:
    """One clock for the portal and the client; the client's sleeps move it."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.mark.parametrize("size", [8, "auto"])
def test_a_window_never_runs_the_portal_past_its_operating_limit(
    clock: _Clock, size: int | str
) -> None:
    """8 in flight, a budget for 3 batches: the ledger holds sends, the portal never says 429.

    The margin covers one batch (10 s), so the opening's guess, a margin per batch, holds."""
    with FakePortal(
        operating_limit=35.0, command_cost=1.0, clock=clock, wall_clock=clock
    ) as portal:
        portal.register("test.echo.get", lambda query: {"n": query["n"]})
        portal.inject(Fault.delay(0.2), times=10)  # batches overlap on the wire
        limit = RateLimit(burst=50, per_second=1000.0, operating_limit=35.0, operating_margin=10.0)
        with B24Hook.from_webhook_url(
            portal.webhook_url,
            rate_limit=limit,
            retry=RetryPolicy(max_attempts=3, max_wait=3600.0),
            clock=clock,
            wall_clock=clock,
            sleep=clock.sleep,
        ) as hook:
            calls = [("test.echo.get", {"n": n}) for n in range(60)]
            result = BatchByChunkV3(hook).make(
                calls,
                chunk_size=10,
                max_in_flight=size,  # type: ignore[call-overload]
            )
            in_flight = hook.limiter.ledger.in_flight
    assert result.data == [{"n": n} for n in range(60)]
    assert [chunk.attempts for chunk in result.chunks] == [1] * 6  # no 429 to repeat
    assert len(portal.requests) == 6
    assert in_flight == (0, 0.0)


def test_batches_dearer_than_the_margin_may_overrun_at_the_opening_and_are_refused_unrun(
    clock: _Clock,
) -> None:
    """The opening charges each unknown batch the margin (0.5 s here); batches of 10 s are
    dearer, so the opening can carry the figure past 35. The portal then refuses (429) before
    running; the client waits for the reset and sends them again: every command runs once."""
    with FakePortal(
        operating_limit=35.0, command_cost=1.0, clock=clock, wall_clock=clock
    ) as portal:
        portal.register("test.echo.get", lambda query: {"n": query["n"]})
        portal.inject(Fault.delay(0.2), times=10)
        limit = RateLimit(burst=50, per_second=1000.0, operating_limit=35.0, operating_margin=0.5)
        with B24Hook.from_webhook_url(
            portal.webhook_url,
            rate_limit=limit,
            retry=RetryPolicy(max_attempts=3, max_wait=3600.0),
            clock=clock,
            wall_clock=clock,
            sleep=clock.sleep,
        ) as hook:
            calls = [("test.echo.get", {"n": n}) for n in range(60)]
            result = BatchByChunkV3(hook).make(calls, chunk_size=10, max_in_flight=8)
    assert result.data == [{"n": n} for n in range(60)]
    attempts = [chunk.attempts for chunk in result.chunks]
    assert max(attempts) == 2  # refused once, then sent again after the reset
    assert attempts.count(1) >= 3
    assert portal.executed_commands == 60


def test_a_figure_the_meter_has_counts_before_this_ledger_saw_one() -> None:
    """A shared meter's 80 s (another process reported it) holds a send at once."""
    ledger = Ledger(RateLimit(operating_limit=90.0, operating_margin=5.0))
    ledger.learn(Time(duration=10.0))  # a cost, but no operating figure of its own yet
    ledger.admit(IDLE, 1.0)
    assert ledger.admit(_Meter(80.0), budget=0.05)[0] >= 0.05  # 80 + 10 + 10 >= 85


class _Ticks:
    """A clock that moves one second each time it is read: a hold never really waits.

    ``admit`` then reports 1.0 for a send that went at once, and 2.0 for one held to a budget of
    1.0 (its start, the check, the end).
    """

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


AT_ONCE, HELD = 1.0, 2.0


def _ledger(limit: float = 100.0, margin: float = 0.0) -> Ledger:
    return Ledger(RateLimit(operating_limit=limit, operating_margin=margin), clock=_Ticks())


def test_the_margin_is_kept_free() -> None:
    """Reported 70 + 10 in flight + 10 passes 95 - 10 (the margin) though not 95: held."""
    ledger = _ledger(limit=95.0, margin=10.0)
    ledger.learn(Time(duration=10.0))
    ledger.admit(IDLE, 1.0)
    assert ledger.admit(_Meter(70.0), budget=1.0) == (HELD, 10.0)


def test_reaching_the_limit_exactly_holds() -> None:
    """80 + 10 in flight + 10 is exactly the limit of 100: held (the limit is not room)."""
    ledger = _ledger()
    ledger.learn(Time(duration=10.0))
    ledger.admit(IDLE, 1.0)
    assert ledger.admit(_Meter(80.0), budget=1.0) == (HELD, 10.0)
    assert ledger.admit(_Meter(79.5), budget=1.0)[0] == HELD  # now 20 in flight: still held


def test_a_lower_figure_than_an_answer_of_the_same_window_does_not_count() -> None:
    """Answers said 80; a meter showing an older 60 (out of order) is not taken: held."""
    ledger = _ledger()
    ledger.learn(Time(operating=70.0, operating_reset_at=500.0))
    ledger.learn(Time(operating=80.0, operating_reset_at=500.0))  # one batch cost 10
    ledger.admit(IDLE, 1.0)
    assert ledger.admit(_Meter(60.0), budget=1.0) == (HELD, 10.0)  # 80 + 10 + 10 >= 100


def test_a_figure_dropped_by_the_meter_holds_until_learnt_again() -> None:
    """The meter has no figure (past a reset) but answers gave one: one batch at a time."""
    ledger = _ledger()
    ledger.learn(Time(operating=10.0))
    ledger.learn(Time(operating=20.0))
    ledger.admit(IDLE, 1.0)
    assert ledger.admit(_Meter(None), budget=1.0) == (HELD, 10.0)


def test_a_portal_that_never_reports_a_figure_counts_as_zero() -> None:
    """Durations but never an operating figure: 0 + 4.5 in flight + 4.5 < 10 goes at once."""
    ledger = _ledger(limit=10.0)
    ledger.learn(Time(duration=4.5))
    ledger.admit(IDLE, 1.0)
    assert ledger.admit(_Meter(None), budget=1.0) == (AT_ONCE, 4.5)


def test_a_budget_of_zero_never_waits() -> None:
    """A send held with no time left to wait returns at once (the meter decides next)."""
    ledger = Ledger(RateLimit(operating_limit=100.0, operating_margin=0.0), clock=lambda: 7.0)
    ledger.admit(IDLE, 1.0)  # the cost is unknown and no margin: the next one would be held
    result: list[tuple[float, float]] = []
    sender = threading.Thread(target=lambda: result.append(ledger.admit(IDLE, 0.0)), daemon=True)
    sender.start()
    sender.join(timeout=5.0)
    assert result == [(0.0, 0.0)]


def test_an_answer_without_a_time_block_keeps_the_cost_learnt() -> None:
    """learn(None) after a cost of 10 was learnt: the next batch is still charged 10."""
    ledger = _ledger()
    ledger.learn(Time(duration=10.0))
    ledger.learn(None)
    assert ledger.admit(IDLE, 1.0)[1] == 10.0


def test_an_answer_without_a_time_block_first_costs_nothing() -> None:
    """learn(None) with nothing learnt: a cost of 0, and the next send is not held."""
    ledger = _ledger()
    ledger.learn(None)
    assert ledger.admit(IDLE, 1.0)[1] == 0.0
    assert ledger.admit(IDLE, 1.0) == (AT_ONCE, 0.0)


def test_a_time_block_without_figures_costs_nothing() -> None:
    """A first answer with neither operating nor duration: cost 0, sends are not held."""
    ledger = _ledger()
    ledger.admit(IDLE, 1.0)
    ledger.learn(Time())
    assert ledger.admit(IDLE, 1.0) == (AT_ONCE, 0.0)


def test_a_late_lower_figure_does_not_lower_the_base_of_the_next_rise() -> None:
    """70, 80, a late 75, then 85: the last batch cost 5 (from 80), not 10 (from 75)."""
    ledger = _ledger()
    for operating in (70.0, 80.0, 75.0, 85.0):
        ledger.learn(Time(operating=operating, operating_reset_at=500.0))
    assert ledger.admit(IDLE, 1.0)[1] == 5.0


def test_a_batch_is_booked_by_what_it_asks_for() -> None:
    """A walk's first batch (2 pages, 2 s) teaches 1 s a page: the next, of 50 pages, is
    booked 50 s — not the 2 s the last batch cost, which let a window overrun the limit."""
    ledger = Ledger(RateLimit(operating_limit=100.0, operating_margin=10.0))
    ledger.learn(Time(operating=10.0), weight=1.0)
    ledger.learn(Time(operating=12.0), weight=2.0)  # the two end pages cost 2 s
    held, full = ledger.admit(IDLE, 1.0, weight=50.0)
    assert (held < 1.0, full) == (True, 50.0)
    meter = _Meter(12.0)
    held, second = ledger.admit(meter, budget=0.05, weight=50.0)  # 12 + 50 + 50 >= 90: held
    assert (held >= 0.05, second) == (True, 50.0)
    ledger.settle(full)
    ledger.settle(second)
    assert ledger.admit(meter, budget=0.05, weight=20.0)[1] == 20.0  # nothing out: the meter's
    assert ledger.admit(meter, budget=1.0, weight=20.0)[0] < 1.0  # 12 + 20 + 20 < 90: goes
