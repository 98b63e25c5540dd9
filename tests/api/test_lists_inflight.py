"""CallList*/FetchList* with batches in flight (``max_in_flight``) and ``page_size``, over real
HTTP against the FakePortal: ranges read side by side, every item once in id order, failures
that keep what was fetched, the operating limit never passed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from b24batch import (
    AjaxError,
    B24Hook,
    CallListV2,
    CallListV3,
    FetchListV2,
    FetchListV3,
    RateLimit,
    RetryPolicy,
    SdkError,
    SdkTypeError,
)
from b24batch.results import Time
from b24batch.testing import FakePortal
from tests.support.clocks import FakeTime

TASKS = "tasks.task.list"
DEALS = "crm.deal.list"
FACES = [
    pytest.param(CallListV3, TASKS, "id", id="rest3-make"),
    pytest.param(CallListV2, DEALS, "ID", id="classic-make"),
    pytest.param(FetchListV3, TASKS, "id", id="rest3-iter"),
    pytest.param(FetchListV2, DEALS, "ID", id="classic-iter"),
]


@pytest.fixture
def slow() -> Iterator[FakePortal]:
    """A FakePortal 30 ms away: batches sent together are on the wire together."""
    with FakePortal(max_recorded=100_000, latency=0.03) as fake:
        yield fake


@pytest.fixture
def b24(slow: FakePortal) -> Iterator[B24Hook]:
    """A client of ``slow`` without limiter or retries: one batch is one request."""
    with B24Hook.from_webhook_url(slow.webhook_url, retry=None, rate_limit=None) as hook:
        yield hook


def _seed(portal: FakePortal, method: str, count: int, *, sparse: bool) -> list[int]:
    add = portal.add_tasks if method == TASKS else portal.add_deals
    return add(count, sparse=sparse, seed=11)


def _all(face: Any, b24: B24Hook, method: str, key: str, **options: Any) -> list[int]:
    got = face(b24).make(method, {}, **options)
    if face in (FetchListV3, FetchListV2):
        got = [item for page in got for item in page]
    return [int(item[key]) for item in got]


@pytest.mark.parametrize(("face", "method", "key"), [FACES[0], FACES[1]])
def test_a_dense_block_inside_sparse_ends_costs_a_few_batches(
    b24: B24Hook, slow: FakePortal, face: Any, method: str, key: str
) -> None:
    """Sparse ends (every 600th id) around 5 000 dense ids, four batches in flight: the ranges
    above the block are cut by what was read there, not by the block's density. Before that
    fix this list took 70 requests and 2 923 commands; now 25 and 425 (one batch at a time: 6)."""
    added = _seed(slow, method, 60_000, sparse=False)
    ids = sorted({*range(1, 30_000, 600), *range(12_000, 17_000), *range(30_001, 60_000, 600)})
    delete = slow.delete_task if method == TASKS else slow.delete_deal
    for gone in sorted(set(added) - set(ids)):
        delete(gone)
    assert _all(face, b24, method, key, max_in_flight=4) == ids
    assert len(slow.requests) <= 30


@pytest.mark.parametrize(("face", "method", "key"), FACES)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_every_item_once_in_id_order_with_a_window(
    slow: FakePortal, b24: B24Hook, face: Any, method: str, key: str, sparse: bool
) -> None:
    """With four batches in flight: every item exactly once, in id order."""
    ids = _seed(slow, method, 6_000, sparse=sparse)
    assert _all(face, b24, method, key, max_in_flight=4) == ids
    assert slow.peak_concurrency >= 2


@pytest.mark.parametrize(
    ("face", "method"), [pytest.param(CallListV3, TASKS), pytest.param(CallListV2, DEALS)]
)
def test_pages_of_different_ranges_are_in_flight_together(
    slow: FakePortal, b24: B24Hook, face: Any, method: str
) -> None:
    """After the end pages, the ranges go out in batches that are on the wire at once, each
    reading ids no other batch reads; with max_in_flight=1, one at a time."""
    _seed(slow, method, 6_000, sparse=False)
    face(b24).make(method, {}, max_in_flight=1)
    assert slow.peak_concurrency == 1
    sequential = len(slow.requests)
    with FakePortal(max_recorded=10_000, latency=0.03) as other:
        _seed(other, method, 6_000, sparse=False)
        with B24Hook.from_webhook_url(other.webhook_url, retry=None, rate_limit=None) as hook:
            face(hook).make(method, {}, max_in_flight=4)
        assert other.peak_concurrency >= 3
        assert len(other.requests) <= sequential + 4  # the same work, spread out
        lows = [_lows(request) for request in other.requests[1:]]
    flat = [low for batch in lows for low in batch]
    assert len(flat) == len(set(flat))  # no range read by two batches


def _lows(request: Any) -> list[int]:
    """The lower id bound of every command of a recorded batch (either protocol)."""
    if isinstance(request.body, list):  # REST 3.0
        return [
            cond[2]
            for row in request.body
            for cond in row["query"]["filter"]
            if cond[:2] == ["id", ">="]
        ]
    text = request.raw.decode()
    return [int(part.split("%3D", 2)[-1].split("%26")[0]) for part in text.split("%3E%3DID%5D")[1:]]


@pytest.mark.parametrize(
    ("face", "method", "key"),
    [pytest.param(FetchListV3, TASKS, "id", id="rest3"), pytest.param(FetchListV2, DEALS, "ID")],
)
def test_items_added_and_deleted_mid_walk_with_a_window(
    slow: FakePortal, b24: B24Hook, face: Any, method: str, key: str
) -> None:
    """Items added and deleted while batches are in flight come back at most once, and
    every item that exists for the whole walk exactly once, in id order."""
    tasks = method == TASKS
    ids = _seed(slow, method, 6_000, sparse=True)
    doomed = set(ids[1::7])
    steady = [i for i in ids if i not in doomed]
    pending = sorted(doomed)
    added: list[int] = []

    def churn(name: str) -> None:
        if name != method:
            return
        if pending:
            (slow.delete_task if tasks else slow.delete_deal)(pending.pop())
        if len(added) < 400:
            added.extend((slow.add_tasks if tasks else slow.add_deals)(1, sparse=True))

    slow.before_command(churn)
    got = [int(item[key]) for page in face(b24).iter(method, {}, max_in_flight=4) for item in page]
    assert len(got) == len(set(got))
    assert got == sorted(got)
    assert set(steady) <= set(got) <= set(ids) | set(added)
    assert slow.peak_concurrency >= 2


@pytest.mark.parametrize(
    ("face", "method", "key"),
    [pytest.param(CallListV3, TASKS, "id", id="rest3"), pytest.param(CallListV2, DEALS, "ID")],
)
def test_a_failure_mid_walk_keeps_the_batches_that_flew_with_it(
    slow: FakePortal, b24: B24Hook, face: Any, method: str, key: str
) -> None:
    """One batch of a wave fails: the error carries every item the others fetched, in id
    order; what is missing is that batch's own ranges, one run of ids, nothing else."""
    ids = _seed(slow, method, 8_000, sparse=False)
    calls = [0]

    def fail_third(name: str) -> None:
        calls[0] += 1
        if calls[0] == 3:  # the first command after the two end pages
            raise FakePortal.CommandError("Access denied", code="ACCESS_DENIED", status=403)

    slow.before_command(fail_third)
    with pytest.raises(AjaxError) as caught:
        face(b24).make(method, {}, max_in_flight=4)
    partial = caught.value.partial
    assert partial is not None
    got = [int(item[key]) for item in partial.data]  # type: ignore[union-attr]
    assert got == sorted(set(got))
    missing = [i for i in ids if i not in set(got)]
    assert missing  # the failed batch's ranges
    assert missing == list(range(missing[0], missing[-1] + 1))  # one run of ids
    assert len(missing) <= 50 * 50  # one batch's worth: the batches with it were kept
    assert len(got) >= len(ids) - 50 * 50
    assert len(partial.errors) == 1


def test_page_size_asks_for_larger_pages(b24: B24Hook, slow: FakePortal) -> None:
    """page_size=200 asks pagination.limit 200 and takes fewer commands; every item once."""
    with FakePortal(max_recorded=10_000, list_page_size=200) as big:
        ids = big.add_tasks(5_000)
        with B24Hook.from_webhook_url(big.webhook_url, retry=None, rate_limit=None) as hook:
            got = CallListV3(hook).make(TASKS, {}, page_size=200)
        rows = [row for request in big.requests for row in request.body]
    assert [item["id"] for item in got] == ids
    assert {row["query"]["pagination"]["limit"] for row in rows} == {200}
    assert len(rows) < 5_000 // 50  # fewer than pages of 50 could ever take


def test_a_portal_that_clamps_a_larger_page_is_walked_whole(b24: B24Hook, slow: FakePortal) -> None:
    """page_size=500 on a portal that clamps to 50 silently: every item once, in order."""
    ids = slow.add_tasks(3_000, sparse=True, seed=5)
    got = CallListV3(b24).make(TASKS, {}, page_size=500, max_in_flight=4)
    assert [item["id"] for item in got] == ids


@pytest.mark.parametrize(
    ("face", "options", "error", "match"),
    [
        pytest.param(CallListV3, {"page_size": 0}, SdkError, "pass 1 to 1000", id="zero"),
        pytest.param(CallListV3, {"page_size": 1001}, SdkError, "pass 1 to 1000", id="big"),
        pytest.param(CallListV3, {"page_size": "50"}, SdkTypeError, "whole number", id="str"),
        pytest.param(FetchListV3, {"page_size": True}, SdkTypeError, "whole number", id="bool"),
        pytest.param(CallListV2, {"page_size": 100}, SdkError, "always 50", id="classic"),
        pytest.param(CallListV3, {"max_in_flight": 0}, SdkError, "pass 1 to 16", id="none"),
        pytest.param(FetchListV2, {"max_in_flight": 17}, SdkError, "pass 1 to 16", id="many"),
        pytest.param(CallListV2, {"max_in_flight": "fast"}, SdkTypeError, "'auto'", id="word"),
    ],
)
def test_bad_options_are_refused_before_any_request(
    slow: FakePortal, b24: B24Hook, face: Any, options: dict[str, Any], error: Any, match: str
) -> None:
    """A bad page_size or max_in_flight fails at once, naming the fix; nothing is sent."""
    with pytest.raises(error, match=match):
        face(b24).make(TASKS if face in (CallListV3, FetchListV3) else DEALS, {}, **options)
    assert slow.requests == []


def test_a_long_walk_never_passes_the_operating_limit() -> None:
    """A walk whose first batch (2 pages) costs a twentieth of its next ones: four batches in
    flight are booked by what they ask for, so no answer reports more than the limit, no
    batch is refused with 429, and the walk waits for the reset instead."""
    fake = FakeTime()
    limit = RateLimit(operating_limit=100.0, operating_margin=30.0)
    with FakePortal(
        command_cost=1.0,
        operating_limit=100.0,
        clock=fake.clock,
        wall_clock=fake.wall_clock,
        latency=0.03,
        max_recorded=10_000,
    ) as portal:
        ids = portal.add_tasks(5_000)
        with B24Hook.from_webhook_url(
            portal.webhook_url,
            rate_limit=limit,
            retry=RetryPolicy(max_attempts=1, max_wait=10_000.0),  # a 429 would raise
            clock=fake.clock,
            wall_clock=fake.wall_clock,
            sleep=fake.sleep,
        ) as hook:
            reported: list[float] = []
            learn = hook.limiter.after_answer

            def watch(time: Time | None, **kwargs: Any) -> None:
                if time is not None and time.operating is not None:
                    reported.append(time.operating)
                learn(time, **kwargs)

            hook.limiter.after_answer = watch  # type: ignore[method-assign]
            # A first figure, so that the walk's first batch teaches its cost by the rise.
            first = CallListV3(hook).make(TASKS, {"filter": [["id", "<", 2]]})
            got = CallListV3(hook).make(TASKS, {}, max_in_flight=4)
        peak = portal.peak_concurrency
    assert [item["id"] for item in first] == [1]
    assert [item["id"] for item in got] == ids
    assert max(reported) <= 100.0
    assert sum(fake.sleeps) >= 60.0  # it waited for a basket to drop, not for a 429
    assert peak >= 2
