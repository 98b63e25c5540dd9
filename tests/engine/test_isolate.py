"""``isolate_errors=True``: the failing commands of a read-only batch, found by bisection.

Over real HTTP against the FakePortal, which runs a batch's rows in order and answers only the
first failure's error, as the portal does.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from b24batch import (
    AjaxError,
    AjaxResult,
    B24Hook,
    BatchByChunkV3,
    BatchV3,
    Command,
    RateLimit,
    RateLimitError,
    SdkError,
)
from b24batch._engine.isolate import EXTRA_REQUESTS, Isolation
from b24batch._protocols.base import Answers
from b24batch.testing import FakePortal, Fault

NOT_FOUND = "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"
MISSING = 999_999


@attrs.frozen
class Title:
    title: str


@attrs.frozen
class Got:
    item: Title


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[FakePortal, B24Hook, list[int]]]:
    """One portal with 60 tasks and a client without retries or client-side limits.

    The tests count requests as growth of ``portal.requests``, so it keeps them all: at the
    default cap of 1000 the count stopped growing and the property test failed, depending on
    how many requests its random examples had made.
    """
    with FakePortal(max_recorded=1_000_000) as portal:
        ids = [portal.add_task(title=f"T{n}") for n in range(60)]
        with B24Hook.from_webhook_url(portal.webhook_url, retry=None, rate_limit=None) as hook:
            yield portal, hook, ids


def gets(ids: list[int], missing: set[int]) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("tasks.task.get", {"id": MISSING if n in missing else task_id, "select": ["title"]})
        for n, task_id in enumerate(ids)
    ]


def bound(count: int) -> int:
    """Issue #21's promise: a failed batch of n commands costs at most n + a constant requests."""
    return count + EXTRA_REQUESTS


def test_twenty_gets_with_three_missing(shared: tuple[FakePortal, B24Hook, list[int]]) -> None:
    """17 results, three errors keyed 3, 11 and 19, within the request bound."""
    portal, hook, ids = shared
    before = len(portal.requests)
    result = BatchV3(hook).make(gets(ids[:20], {3, 11, 19}), isolate_errors=True)
    sent = len(portal.requests) - before
    assert not result.is_success
    assert sorted(result.errors_by_key) == [3, 11, 19]
    assert [error.key for error in result.errors] == [3, 11, 19]
    assert all(error.code == NOT_FOUND for error in result.errors)
    assert "`999999`" in str(result.errors_by_key[11])
    assert str(result.errors[0]).startswith("command 3: " + NOT_FOUND)
    expected = [None if n in (3, 11, 19) else {"item": {"title": f"T{n}"}} for n in range(20)]
    assert result.data == expected
    assert result.attempts == sent <= bound(20)
    assert result.maybe_executed == ()


def test_named_calls_keep_the_commands_that_succeeded(
    shared: tuple[FakePortal, B24Hook, list[int]],
) -> None:
    """Named calls: data has the succeeded names only; errors are keyed by name."""
    _, hook, ids = shared
    calls = {f"task{n}": row for n, row in enumerate(gets(ids[:6], {1, 4}))}
    result = BatchV3(hook).make(calls, isolate_errors=True)
    assert list(result.data) == ["task0", "task2", "task3", "task5"]
    assert result.data["task2"] == {"item": {"title": "T2"}}
    assert list(result.errors_by_key) == ["task1", "task4"]


def test_ajax_results_for_every_command(shared: tuple[FakePortal, B24Hook, list[int]]) -> None:
    """return_ajax_result=True gives an AjaxResult per command; failed ones carry their error."""
    _, hook, ids = shared
    result = BatchV3(hook).make(gets(ids[:4], {2}), isolate_errors=True, return_ajax_result=True)
    assert [type(entry) for entry in result.data] == [AjaxResult] * 4
    assert [entry.is_success for entry in result.data] == [True, True, False, True]
    failed = result.data[2]
    assert (failed.result, failed.error, failed.status) == (None, result.errors[0], 400)
    assert result.data[3].result == {"item": {"title": "T3"}}


def test_typed_results_are_structured(shared: tuple[FakePortal, B24Hook, list[int]]) -> None:
    """result_type structures every result that came back; failures stay None."""
    _, hook, ids = shared
    result = BatchV3(hook).make(gets(ids[:3], {0}), isolate_errors=True, result_type=Got)
    assert result.data == [None, Got(Title("T1")), Got(Title("T2"))]


def test_success_needs_no_extra_request(shared: tuple[FakePortal, B24Hook, list[int]]) -> None:
    """A batch that succeeds is sent once."""
    portal, hook, ids = shared
    before = len(portal.requests)
    result = BatchV3(hook).make(gets(ids[:10], set()), isolate_errors=True)
    assert (result.is_success, result.attempts, len(portal.requests) - before) == (True, 1, 1)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 50).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
def test_any_failures_are_found_within_the_bound(
    shared: tuple[FakePortal, B24Hook, list[int]], case: tuple[int, set[int]]
) -> None:
    """For any batch size and failing set: every result and error exactly, within the bound."""
    portal, hook, ids = shared
    count, missing = case
    before = len(portal.requests)
    result = BatchV3(hook).make(gets(ids[:count], missing), isolate_errors=True)
    assert sorted(result.errors_by_key) == sorted(missing)
    assert [n for n, entry in enumerate(result.data) if entry is None] == sorted(missing)
    assert all(
        entry == {"item": {"title": f"T{n}"}}
        for n, entry in enumerate(result.data)
        if n not in missing
    )
    sent = len(portal.requests) - before
    assert result.attempts == sent
    assert sent <= (bound(count) if missing else 1)


def test_chunked_isolation_gives_one_error_per_command(
    shared: tuple[FakePortal, B24Hook, list[int]],
) -> None:
    """Through BatchByChunkV3: a ChunkError per failing command, by global position."""
    portal, hook, ids = shared
    before = len(portal.requests)
    result = BatchByChunkV3(hook).make(
        gets(ids[:25], {3, 12, 13}), chunk_size=10, isolate_errors=True, halt_on_error=False
    )
    assert [(error.chunk, error.keys) for error in result.errors] == [
        (0, (3,)),
        (1, (12,)),
        (1, (13,)),
    ]
    assert [n for n, entry in enumerate(result.data) if entry is None] == [3, 12, 13]
    assert result.data[24] == {"item": {"title": "T24"}}
    assert [error.error.code for error in result.errors] == [NOT_FOUND] * 3
    assert [error.error.key for error in result.errors] == [3, 12, 13]
    sent = portal.requests[before:]  # halt_on_error=False reaches every part: parallel=true
    assert {row["parallel"] for request in sent for row in request.body} == {True}


def test_chunked_isolation_parts_keep_halt_on_error(
    shared: tuple[FakePortal, B24Hook, list[int]],
) -> None:
    """With the default halt_on_error each chunk's bisection parts go with parallel=false."""
    portal, hook, ids = shared
    before = len(portal.requests)
    BatchByChunkV3(hook).make(gets(ids[:12], {8}), chunk_size=10, isolate_errors=True)
    sent = portal.requests[before:]
    assert len(sent) > 2
    assert {row["parallel"] for request in sent for row in request.body} == {False}


def test_chunked_iter_isolates_each_chunk(shared: tuple[FakePortal, B24Hook, list[int]]) -> None:
    """iter() yields each chunk's partial result with its errors keyed globally."""
    _, hook, ids = shared
    chunks = list(
        BatchByChunkV3(hook).iter(
            iter(gets(ids[:8], {6})), chunk_size=4, isolate_errors=True, halt_on_error=False
        )
    )
    assert [sorted(chunk.errors_by_key) for chunk in chunks] == [[], [6]]
    assert chunks[1].data[2] is None


@pytest.mark.parametrize(
    ("calls", "message"),
    [
        pytest.param(
            [("tasks.task.get", {"id": 1}), ("tasks.task.add", {"fields": {"title": "x"}})],
            "calls[1] (tasks.task.add) writes",
            id="write",
        ),
        pytest.param(
            [
                {"method": "tasks.task.get", "params": {"id": 1}, "as": "first"},
                ("tasks.task.get", {"id": {"$ref": "first.item.id"}}),
            ],
            "calls[1] references another command",
            id="reference",
        ),
    ],
)
def test_refused_before_anything_is_sent(
    shared: tuple[FakePortal, B24Hook, list[int]], calls: list[Any], message: str
) -> None:
    """A write or a reference is refused with isolate_errors=True, before any request."""
    portal, hook, _ = shared
    before = len(portal.requests)
    with pytest.raises(SdkError, match=re.escape(message)):
        BatchV3(hook).make(calls, isolate_errors=True)
    with pytest.raises(SdkError, match="isolate_errors=True re-sends parts"):
        BatchByChunkV3(hook).make(calls, isolate_errors=True)
    assert len(portal.requests) == before


def test_a_write_marked_read_only_is_accepted(
    shared: tuple[FakePortal, B24Hook, list[int]],
) -> None:
    """Command(read_only=True) vouches for a method the name rule takes for a write."""
    _, hook, ids = shared
    calls = [Command("tasks.task.get", {"id": ids[0]}), Command("app.check", read_only=True)]
    result = BatchV3(hook).make(calls, isolate_errors=True)
    assert list(result.errors_by_key) == [1]
    assert result.data[0]["item"]["title"] == "T0"


def test_isolate_errors_must_be_a_bool(shared: tuple[FakePortal, B24Hook, list[int]]) -> None:
    """isolate_errors="yes" is refused."""
    _, hook, _ = shared
    with pytest.raises(SdkError, match=r"isolate_errors='yes': pass True or False"):
        BatchV3(hook).make([("tasks.task.get", {"id": 1})], isolate_errors="yes")  # type: ignore[call-overload]


def test_raised_error_keeps_what_was_found() -> None:
    """A request of the bisection that raises carries the results found so far."""
    with FakePortal(rate_limit=(5, 0.001)) as portal:
        ids = [portal.add_task(title=f"T{n}") for n in range(8)]
        with (
            B24Hook.from_webhook_url(portal.webhook_url, retry=None, rate_limit=None) as hook,
            pytest.raises(RateLimitError) as info,
        ):
            BatchV3(hook).make(gets(ids, {6}), isolate_errors=True)
    # The bucket admits six: all 8 (fails), 0, 1..2, 3..4, 5 (ok), 6 (fails); 7 is refused.
    partial = info.value.result
    assert partial is not None
    assert partial.data[:6] == [{"item": {"title": f"T{n}"}} for n in range(6)]
    assert partial.data[6:] == [None, None]
    assert list(partial.errors_by_key) == [6]
    assert info.value.attempts == len(portal.requests) == 7


# -- gaps a mutant showed (issue 12) -------------------------------------------------------------


class _Time:
    """Monotonic and wall clocks that move only when the client sleeps."""

    def __init__(self) -> None:
        self.mono, self.wall = 1000.0, 1_800_000_000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.mono += seconds
        self.wall += seconds


def test_isolation_reports_every_attempt_every_wait_and_the_last_time() -> None:
    """attempts, waited and time of an isolated result cover the bisection, not the first send."""
    fake = _Time()
    with FakePortal(wall_clock=lambda: fake.wall) as portal:
        ids = [portal.add_task(title=f"T{n}") for n in range(4)]
        with B24Hook.from_webhook_url(
            portal.webhook_url,
            retry=None,
            rate_limit=RateLimit(burst=1, per_second=1.0),
            clock=lambda: fake.mono,
            wall_clock=lambda: fake.wall,
            sleep=fake.sleep,
        ) as hook:
            result = BatchV3(hook).make(gets(ids, {2}), isolate_errors=True, halt_on_error=False)
    sent = len(portal.requests)
    assert sent > 2
    assert (result.attempts, result.errors[0].attempts) == (sent, sent)
    assert fake.sleeps == [1.0] * (sent - 1)
    assert result.waited == sent - 1
    assert result.time is not None
    assert result.time.start == 1_800_000_000 + sent - 1  # the last answer's, not the first's
    assert all(row["parallel"] is True for request in portal.requests for row in request.body)


def test_ajax_results_of_isolated_failures_carry_their_own_status(
    shared: tuple[FakePortal, B24Hook, list[int]],
) -> None:
    """Each failing command's AjaxResult has its own error's status, not the batch's."""
    portal, hook, ids = shared

    def deny(query: dict[str, Any]) -> Any:
        raise FakePortal.CommandError("Access denied", code="DENIED", status=403)

    portal.register("test.deny", deny)
    calls: list[Any] = [
        *gets(ids[:2], set()),
        Command("test.deny", read_only=True),
        *gets(ids[:2], {1}),
    ]
    result = BatchV3(hook).make(calls, isolate_errors=True, return_ajax_result=True)
    assert [(entry.status, entry.is_success) for entry in result.data[2::2]] == [
        (403, False),
        (400, False),
    ]  # the batch's first answer was the 403: each failure has its own status
    assert [error.code for error in result.errors] == ["DENIED", NOT_FOUND]


def test_isolation_parts_keep_halt_on_error(shared: tuple[FakePortal, B24Hook, list[int]]) -> None:
    """With the default halt_on_error every part of the bisection is sent with parallel=false."""
    portal, hook, ids = shared
    before = len(portal.requests)
    BatchV3(hook).make(gets(ids[:6], {4}), isolate_errors=True)
    parts = portal.requests[before:]
    assert len(parts) > 1
    assert {row["parallel"] for request in parts for row in request.body} == {False}


def test_a_single_failing_command_needs_no_bisection(
    shared: tuple[FakePortal, B24Hook, list[int]],
) -> None:
    """One failing command: its error after one request, with the answer's time block kept."""
    portal, hook, ids = shared
    before = len(portal.requests)
    error = {"code": NOT_FOUND, "message": "not found"}
    portal.inject(Fault.response(400, {"error": error, "time": {"start": 7.0, "duration": 0.5}}))
    result = BatchV3(hook).make(gets(ids[:1], set()), isolate_errors=True)
    assert (len(portal.requests) - before, result.attempts) == (1, 1)
    assert list(result.errors_by_key) == [0]
    assert result.time is not None
    assert (result.time.start, result.time.duration) == (7.0, 0.5)


# -- a portal that is not deterministic, and the request bound (issue #21, item 4) ---------------


class Flaky:
    """``test.flaky``, a read whose row ``{"row": n}`` fails or not as ``fails(n, run)`` says.

    Each run's error message and result are unique, so a test can tell where each came from.

    Attributes:
        alone: Row -> the messages it failed with in a request that held that row only.
        returned: The ``(row, run)`` of every run that succeeded.
    """

    def __init__(self, portal: FakePortal, fails: Callable[[int, int], bool]) -> None:
        self._portal = portal
        self._fails = fails
        self._runs: dict[int, int] = defaultdict(int)
        self.alone: dict[int, list[str]] = defaultdict(list)
        self.returned: set[tuple[int, int]] = set()
        portal.register("test.flaky", self)

    def __call__(self, query: dict[str, Any]) -> Any:
        row = query["row"]
        run = self._runs[row]
        self._runs[row] += 1
        if not self._fails(row, run):
            self.returned.add((row, run))
            return {"row": row, "run": run}
        message = f"row {row} failed on run {run}"
        if len(self._portal.requests[-1].body) == 1:  # recorded on arrival: this request
            self.alone[row].append(message)
        raise FakePortal.CommandError(message, code=NOT_FOUND, status=400)

    @staticmethod
    def calls(count: int) -> list[Command]:
        return [Command("test.flaky", {"row": n}, read_only=True) for n in range(count)]


def test_a_row_that_fails_once_is_blamed_on_no_row(
    shared: tuple[FakePortal, B24Hook, list[int]],
) -> None:
    """Row 3 fails once, then passes: every row gets its own result, no error is made up."""
    portal, hook, _ = shared
    flaky = Flaky(portal, lambda row, run: (row, run) == (3, 0))
    before = len(portal.requests)
    result = BatchV3(hook).make(Flaky.calls(50), isolate_errors=True)
    assert dict(result.errors_by_key) == {}
    assert [entry["row"] for entry in result.data] == list(range(50))
    assert result.data[3] == {"row": 3, "run": 1}
    assert result.is_success
    assert result.attempts == len(portal.requests) - before <= bound(50)
    assert flaky.alone == {}


@pytest.mark.parametrize("seed", range(12))
def test_random_flakiness_blames_only_rows_seen_failing_alone(
    shared: tuple[FakePortal, B24Hook, list[int]], seed: int
) -> None:
    """Rows failing at random: each error is one its row answered alone, each result its own."""
    portal, hook, _ = shared
    rng = random.Random(seed)
    flaky = Flaky(portal, lambda row, run: rng.random() < 0.3)
    before = len(portal.requests)
    result = BatchV3(hook).make(Flaky.calls(50), isolate_errors=True)
    assert result.errors_by_key  # at 30 % a run, some row fails alone in every seed
    for key, error in result.errors_by_key.items():
        assert error.message in flaky.alone[key]
    for row, entry in enumerate(result.data):
        if entry is not None:
            assert entry["row"] == row
            assert (row, entry["run"]) in flaky.returned
        else:
            assert row in result.errors_by_key
    assert result.attempts == len(portal.requests) - before <= bound(50)


def test_all_fifty_failing_cost_one_request_each(
    shared: tuple[FakePortal, B24Hook, list[int]],
) -> None:
    """50 failing reads: the first batch and each command alone, 51 requests (it was 243)."""
    portal, hook, ids = shared
    before = len(portal.requests)
    result = BatchV3(hook).make(gets(ids[:50], set(range(50))), isolate_errors=True)
    assert list(result.errors_by_key) == list(range(50))
    assert result.data == [None] * 50
    assert result.attempts == len(portal.requests) - before == 51 <= bound(50)


@pytest.mark.parametrize(
    "missing",
    [
        pytest.param(set(range(1, 50, 2)), id="odd"),
        pytest.param(set(range(0, 50, 2)), id="even"),
        pytest.param({0}, id="first-only"),
        pytest.param({49}, id="last-only"),
        pytest.param(set(range(1, 10, 2)), id="five-then-none"),
    ],
)
def test_failure_patterns_within_the_bound(
    shared: tuple[FakePortal, B24Hook, list[int]], missing: set[int]
) -> None:
    """Alternate rows and other patterns: exact errors and results, within 50 + a few requests."""
    portal, hook, ids = shared
    before = len(portal.requests)
    result = BatchV3(hook).make(gets(ids[:50], missing), isolate_errors=True)
    assert sorted(result.errors_by_key) == sorted(missing)
    expected = [None if n in missing else {"item": {"title": f"T{n}"}} for n in range(50)]
    assert result.data == expected
    assert result.attempts == len(portal.requests) - before <= bound(50)


# -- the search alone, with a scripted send ------------------------------------------------------


class Script:
    """A scripted portal for ``Isolation.run``: runs the rows of a part in order.

    A row fails when ``fails(position)`` says so, each time it runs (a flaky row can say yes,
    then no). Every error and result is a new object, so a test can tell where each came from.
    """

    def __init__(self, count: int, fails: Callable[[int], bool]) -> None:
        self.count = count
        self._fails = fails
        self.alone: dict[int, list[AjaxError]] = defaultdict(list)
        self.returned: dict[int, list[Any]] = defaultdict(list)
        self.parts: list[range] = []
        self.waited = 0.0

    def first(self) -> Answers:
        """The whole batch's failed answer (for one command: that command's own)."""
        error = AjaxError("the first answer", code=NOT_FOUND, status=400)
        if self.count == 1:
            self.alone[0].append(error)
        return Answers(status=400, time=None, error=error)

    def send(self, positions: range) -> tuple[Answers, int, float]:
        self.parts.append(positions)
        for position in positions:
            if self._fails(position):
                error = AjaxError(f"{position} failed", code=NOT_FOUND, status=400)
                if len(positions) == 1:
                    self.alone[position].append(error)
                return Answers(status=400, time=None, error=error), 1, 0.0
        entries = [{"position": position} for position in positions]
        for position, entry in zip(positions, entries, strict=True):
            self.returned[position].append(entry)
        self.waited += 0.25
        return Answers(status=200, time=None, entries=entries), 1, 0.25

    def isolate(self) -> Isolation:
        isolation = Isolation(self.count, self.first(), tuple(f"k{n}" for n in range(self.count)))
        isolation.run(self.send)
        return isolation


def check_honest(script: Script, isolation: Isolation) -> None:
    """Every row resolved once, errors only as answered alone, results only as returned."""
    assert sorted([*isolation.results, *isolation.errors]) == list(range(script.count))
    for position, error in isolation.errors.items():
        assert any(error is seen for seen in script.alone[position])
        assert error.key == f"k{position}"
    for position, entry in isolation.results.items():
        assert any(entry is seen for seen in script.returned[position])
    assert isolation.attempts == len(script.parts) <= script.count + EXTRA_REQUESTS - 1
    assert isolation.waited == script.waited


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 50).flatmap(
        lambda n: st.tuples(
            st.just(n), st.sets(st.integers(0, n - 1)), st.sets(st.integers(0, n - 1))
        )
    ),
    st.data(),
)
def test_any_failures_and_flaky_rows_are_reported_honestly(
    case: tuple[int, set[int], set[int]], data: st.DataObject
) -> None:
    """Failing rows and rows that fail or pass each run: honest errors and results, in bound."""
    count, failing, flaky = case
    assume(count > 1 or failing or flaky)  # else the command alone could not have failed

    def fails(position: int) -> bool:
        if position in failing:
            return True
        return position in flaky and data.draw(st.booleans(), label=f"row {position} fails")

    script = Script(count, fails)
    isolation = script.isolate()
    check_honest(script, isolation)
    if not flaky:
        assert sorted(isolation.errors) == sorted(failing)


@pytest.mark.parametrize("count", range(1, 10))
def test_every_failure_pattern_of_small_batches(count: int) -> None:
    """Each of the 2**n - 1 failing sets of n rows: exactly those errors, in n + a few parts."""
    for pattern in range(1, 1 << count):
        failing = {n for n in range(count) if pattern >> n & 1}
        script = Script(count, lambda position: position in failing)  # noqa: B023
        isolation = script.isolate()
        check_honest(script, isolation)
        assert sorted(isolation.errors) == sorted(failing)


def test_contradicting_answers_end_within_the_bound() -> None:
    """Every part of several rows fails and every row alone succeeds: all results, no error."""
    script = Script(50, lambda position: False)

    def send(positions: range) -> tuple[Answers, int, float]:
        if len(positions) == 1:
            return script.send(positions)
        script.parts.append(positions)
        error = AjaxError("a part failed", code=NOT_FOUND, status=400)
        return Answers(status=400, time=None, error=error), 1, 0.0

    isolation = Isolation(50, script.first(), tuple(range(50)))
    isolation.run(send)
    assert (sorted(isolation.results), isolation.errors) == (list(range(50)), {})
    assert isolation.attempts == len(script.parts) == 50 + EXTRA_REQUESTS - 1  # all spent


def test_one_failure_among_fifty_costs_a_few_requests() -> None:
    """One failing row, wherever it is: at most 13 requests in all (not one per row)."""
    costs = []
    for failing in range(50):
        script = Script(50, lambda position: position == failing)  # noqa: B023
        isolation = script.isolate()
        assert list(isolation.errors) == [failing]
        costs.append(1 + isolation.attempts)
    assert max(costs) <= 13


def test_an_answer_with_too_few_results_is_not_matched_up() -> None:
    """A part answered with fewer results than rows raises, never shifts results onto rows."""
    first = Answers(status=400, time=None, error=AjaxError("x", code=NOT_FOUND, status=400))
    isolation = Isolation(8, first, tuple(range(8)))

    def send(positions: range) -> tuple[Answers, int, float]:
        return Answers(status=200, time=None, entries=[{"one": 1}]), 1, 0.0

    with pytest.raises(ValueError, match="zip"):
        isolation.run(send)  # row 0 alone fits; rows 1..2 with one result do not
    assert isolation.results == {0: {"one": 1}}
