"""``isolate_errors=True``: the failing commands of a read-only batch, found by bisection.

Over real HTTP against the FakePortal, which runs a batch's rows in order and answers only the
first failure's error, as the portal does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b24batch import (
    AjaxResult,
    B24Hook,
    BatchByChunkV3,
    BatchV3,
    Command,
    RateLimit,
    RateLimitError,
    SdkError,
)
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


def bound(count: int, failures: int) -> int:
    """The issue's promise: 1 + (failures + 1) * ceil(log2(n)) + failures requests."""
    return 1 + (failures + 1) * math.ceil(math.log2(count)) + failures


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
    assert result.attempts == sent <= bound(20, 3)
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
    if missing and count > 1:
        assert sent <= bound(count, len(missing))


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
    with FakePortal(rate_limit=(3, 0.001)) as portal:
        ids = [portal.add_task(title=f"T{n}") for n in range(8)]
        with (
            B24Hook.from_webhook_url(portal.webhook_url, retry=None, rate_limit=None) as hook,
            pytest.raises(RateLimitError) as info,
        ):
            BatchV3(hook).make(gets(ids, {6}), isolate_errors=True)
    # The bucket admits four: all 8 (fails), 0..3 (ok), 4..5 (ok), 6 (fails); 7 is refused.
    partial = info.value.result
    assert partial is not None
    assert partial.data[:6] == [{"item": {"title": f"T{n}"}} for n in range(6)]
    assert partial.data[6:] == [None, None]
    assert list(partial.errors_by_key) == [6]
    assert info.value.attempts == len(portal.requests) == 5


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
