"""CallListV3/FetchListV3 and CallListV2/FetchListV2 against the FakePortal over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b24batch import (
    AjaxError,
    B24Hook,
    CallListV2,
    CallListV3,
    DecodeError,
    FetchListV2,
    FetchListV3,
    SdkError,
    SdkTypeError,
)
from b24batch.testing import FakePortal

TASKS = "tasks.task.list"
DEALS = "crm.deal.list"


@pytest.fixture
def big() -> Iterator[FakePortal]:
    """A FakePortal that records enough requests to count a whole walk."""
    with FakePortal(max_recorded=100_000) as fake:
        yield fake


@pytest.fixture
def b24(big: FakePortal) -> Iterator[B24Hook]:
    """A client of ``big`` without limiter or retries: one batch is one request."""
    with B24Hook.from_webhook_url(big.webhook_url, retry=None, rate_limit=None) as hook:
        yield hook


def _task_ids(items: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in items]


def _deal_ids(items: list[dict[str, Any]]) -> list[int]:
    return [int(item["ID"]) for item in items]


def test_dense_tasks_come_back_once_in_order_in_few_requests(big: FakePortal, b24: B24Hook) -> None:
    """10 000 tasks with dense ids: each exactly once, in id order, in at most 8 requests."""
    ids = big.add_tasks(10_000)
    tasks = CallListV3(b24).make(TASKS, {"select": ["id", "title"]})
    assert _task_ids(tasks) == ids
    assert tasks[123] == {"id": 124, "title": "Task 124"}
    assert len(big.requests) <= 8


def test_sparse_tasks_come_back_once_in_order_in_few_requests(
    big: FakePortal, b24: B24Hook
) -> None:
    """10 000 tasks with random gaps over ids up to 1 000 000: in at most 24 requests."""
    ids = big.add_tasks(10_000, sparse=True, seed=16)
    assert ids[-1] - ids[0] > 900_000
    assert _task_ids(CallListV3(b24).make(TASKS, {})) == ids
    assert len(big.requests) <= 24


def test_dense_deals_come_back_once_in_order_in_few_requests(big: FakePortal, b24: B24Hook) -> None:
    """The classic route: 10 000 deals with dense ids in at most 8 requests."""
    ids = big.add_deals(10_000)
    deals = CallListV2(b24).make(DEALS, {"select": ["ID", "TITLE"]})
    assert _deal_ids(deals) == ids
    assert deals[0] == {"ID": "1", "TITLE": "Deal 1"}
    assert len(big.requests) <= 8


def test_sparse_deals_come_back_once_in_order_in_few_requests(
    big: FakePortal, b24: B24Hook
) -> None:
    """The classic route: 10 000 deals with sparse ids in at most 24 requests."""
    ids = big.add_deals(10_000, sparse=True, seed=61)
    assert _deal_ids(CallListV2(b24).make(DEALS, {"select": ["ID"]})) == ids
    assert len(big.requests) <= 24


def test_classic_commands_skip_counting_and_filter_by_id_ranges(
    big: FakePortal, b24: B24Hook
) -> None:
    """Every classic list command sends start=-1, order by ID and its own ID range."""
    big.add_deals(500)
    CallListV2(b24).make(DEALS, {"select": ["ID"]})
    sent = [text for request in big.requests for text in _classic_commands(request.raw)]
    assert sent
    assert all("start=-1" in text and "order[ID]=" in text for text in sent)
    assert any("filter[%3E%3DID]=" in text and "filter[%3CID]=" in text for text in sent)


def _classic_commands(raw: bytes) -> list[str]:
    from urllib.parse import parse_qsl

    return [value for key, value in parse_qsl(raw.decode()) if key.startswith("cmd[")]


def test_a_portal_that_clamps_pages_to_20_is_walked_whole() -> None:
    """A page clamped to 20 (asked for 50) is read as full: nothing is missed on either route."""
    with (
        FakePortal(list_page_size=20, max_recorded=10_000) as portal,
        B24Hook.from_webhook_url(portal.webhook_url, retry=None, rate_limit=None) as b24,
    ):
        tasks = portal.add_tasks(3_000, sparse=True, seed=20)
        deals = portal.add_deals(3_000, sparse=True, seed=21)
        assert _task_ids(CallListV3(b24).make(TASKS, {})) == tasks
        assert _deal_ids(CallListV2(b24).make(DEALS, {"select": ["ID"]})) == deals


def _portal_whose_pages_vary(size_of: Callable[[int, int], int]) -> FakePortal:
    """A FakePortal whose list pages hold ``size_of(batch, command)`` items: the batch's and the
    command's number, each counted from 1 over the portal's life."""
    portal: list[FakePortal] = []
    commands = [0]

    def size(method: str, asked: int) -> int:
        commands[0] += 1
        return size_of(len(portal[0].requests), commands[0])

    portal.append(FakePortal(list_page_size=size, max_recorded=100_000))
    return portal[0]


def _walked(lister: Any, b24: B24Hook) -> list[int]:
    """Every id a list face hands out: CallList's items, or FetchList's pages flattened."""
    if lister in (CallListV3, FetchListV3):
        got = lister(b24).make(TASKS, {})
        key = "id"
    else:
        got = lister(b24).make(DEALS, {"select": ["ID"]})
        key = "ID"
    items = got if isinstance(got, list) else [item for page in got for item in page]
    return [int(item[key]) for item in items]


def _seed(portal: FakePortal, lister: Any, count: int, seed: int) -> list[int]:
    tasks = lister in (CallListV3, FetchListV3)
    return (portal.add_tasks if tasks else portal.add_deals)(count, sparse=True, seed=seed)


LISTERS = [
    pytest.param(CallListV3, id="CallListV3"),
    pytest.param(CallListV2, id="CallListV2"),
    pytest.param(FetchListV3, id="FetchListV3"),
    pytest.param(FetchListV2, id="FetchListV2"),
]


@pytest.mark.parametrize("lister", LISTERS)
@pytest.mark.parametrize(
    ("count", "size_of"),
    [
        pytest.param(2_120, lambda batch, command: 60 if batch == 1 else 50, id="60-then-50"),
        pytest.param(2_120, lambda batch, command: 51 if batch == 1 else 50, id="51-then-50"),
        pytest.param(1_234, lambda batch, command: 50 if batch == 1 else 20, id="50-then-20"),
        pytest.param(1_500, lambda batch, command: 1 + command * 37 % 50, id="uneven"),
    ],
)
def test_short_or_uneven_pages_lose_nothing(
    lister: Any, count: int, size_of: Callable[[int, int], int]
) -> None:
    """Pages shorter than an earlier one, a clamp that drops mid-walk or pages of any length:
    every item comes back once, in id order (a short page never ends a range)."""
    with (
        _portal_whose_pages_vary(size_of) as portal,
        B24Hook.from_webhook_url(portal.webhook_url, retry=None, rate_limit=None) as b24,
    ):
        ids = _seed(portal, lister, count, seed=count)
        assert _walked(lister, b24) == ids


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lister=st.sampled_from([CallListV3, CallListV2, FetchListV3, FetchListV2]),
    dense=st.integers(0, 150),
    sparse=st.integers(0, 150),
    seed=st.integers(0, 1_000),
    sizes=st.lists(st.integers(1, 80), min_size=1, max_size=12),
    clamp=st.none() | st.tuples(st.integers(1, 4), st.integers(1, 50)),
)
def test_pages_of_any_size_give_every_item_once_in_order(
    lister: Any,
    dense: int,
    sparse: int,
    seed: int,
    sizes: list[int],
    clamp: tuple[int, int] | None,
) -> None:
    """Whatever each page holds — short at random, larger than asked, clamped from some batch
    on — every item comes back exactly once, in id order, on both routes and both faces."""

    def size_of(batch: int, command: int) -> int:
        size = sizes[command % len(sizes)]
        if clamp is not None and batch >= clamp[0]:
            size = min(size, clamp[1])
        return size

    with (
        _portal_whose_pages_vary(size_of) as portal,
        B24Hook.from_webhook_url(portal.webhook_url, retry=None, rate_limit=None) as b24,
    ):
        tasks = lister in (CallListV3, FetchListV3)
        add = portal.add_tasks if tasks else portal.add_deals
        add(dense)
        add(sparse, sparse=True, seed=seed)
        ids = sorted(portal.tasks if tasks else portal.deals)
        limit = 50 * (len(ids) + 10)  # a walk that stopped advancing fails here, never hangs

        def bounded(method: str) -> None:
            if portal.executed_commands > limit:
                raise FakePortal.CommandError("walk does not end", code="TOO_LONG")

        portal.before_command(bounded)
        assert _walked(lister, b24) == ids


def _contradicting_ends(empty: str) -> Callable[[Any], Any]:
    """A list method whose ``empty`` end page (``"ASC"`` or ``"DESC"``) is empty, the other
    full: 50 of 1 234 items, on either route."""

    def answer(query: Any) -> Any:
        order = {key.upper(): value for key, value in query["order"].items()}["ID"]
        ids = [] if order == empty else range(1_234, 1_184, -1) if order == "DESC" else range(50)
        if "pagination" in query:
            return {"items": [{"id": n} for n in ids]}
        return [{"ID": str(n)} for n in ids]

    return answer


@pytest.mark.parametrize("empty", ["ASC", "DESC"])
@pytest.mark.parametrize("lister", LISTERS)
def test_end_pages_that_contradict_each_other_raise(
    big: FakePortal, b24: B24Hook, lister: Any, empty: str
) -> None:
    """One end page empty and the other not is a DecodeError, never an empty answer."""
    big.register(
        TASKS if lister in (CallListV3, FetchListV3) else DEALS, _contradicting_ends(empty)
    )
    with pytest.raises(DecodeError, match="contradict") as caught:
        _walked(lister, b24)
    assert "first batch" in str(caught.value)
    assert len(big.requests) == 1


@pytest.mark.parametrize("count", [0, 1, 49, 50, 51, 99, 100, 101, 250])
def test_short_lists_are_exact(big: FakePortal, b24: B24Hook, count: int) -> None:
    """Lists around one and two pages come back whole, the smallest in one request."""
    ids = big.add_tasks(count, sparse=True, seed=count)
    assert _task_ids(CallListV3(b24).make(TASKS, {})) == ids
    if count <= 99:  # the two end pages meet: nothing lies between them
        assert len(big.requests) == 1


def test_the_callers_filter_is_kept(big: FakePortal, b24: B24Hook) -> None:
    """Only items matching the caller's own filter come back, on both routes."""
    mine = big.add_tasks(300, sparse=True, seed=1, responsibleId=7)
    big.add_tasks(300, sparse=True, seed=2, responsibleId=8)
    found = CallListV3(b24).make(TASKS, {"filter": [["responsibleId", "=", 7]]})
    assert _task_ids(found) == mine
    rich = big.add_deals(200, sparse=True, seed=3, OPPORTUNITY=500)
    big.add_deals(200, sparse=True, seed=4)
    deals = CallListV2(b24).make(DEALS, {"filter": {">OPPORTUNITY": 0}, "select": ["ID"]})
    assert _deal_ids(deals) == rich


def test_the_callers_own_classic_id_bound_is_combined_with_the_ranges(
    big: FakePortal, b24: B24Hook
) -> None:
    """A classic filter with its own >=ID and <ID still bounds the walk (one key each in PHP)."""
    big.add_deals(1_000)
    deals = CallListV2(b24).make(DEALS, {"filter": {">=ID": 101, "<ID": "901"}, "select": ["ID"]})
    assert _deal_ids(deals) == list(range(101, 901))


def test_the_id_is_added_to_a_select_that_lacks_it(big: FakePortal, b24: B24Hook) -> None:
    """A select without the id field gets it, so each item carries its id."""
    big.add_tasks(3)
    assert CallListV3(b24).make(TASKS, {"select": ["title"]})[0] == {"id": 1, "title": "Task 1"}


def test_result_type_structures_each_item(big: FakePortal, b24: B24Hook) -> None:
    """result_type turns every item into that class."""

    @attrs.frozen
    class Task:
        id: int
        title: str

    big.add_tasks(120)
    tasks = CallListV3(b24).make(TASKS, {"select": ["title"]}, result_type=Task)
    assert tasks[119] == Task(id=120, title="Task 120")


def test_progress_callback_gets_items_so_far(big: FakePortal, b24: B24Hook) -> None:
    """progress= is told the running number of items after every batch, ending at the total."""
    big.add_tasks(3_000)
    seen: list[tuple[int, int | None]] = []
    CallListV3(b24).make(TASKS, {}, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3_000, None)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert len(seen) == len(big.requests)


def test_fetch_list_yields_pages_in_id_order(big: FakePortal, b24: B24Hook) -> None:
    """10 000 sparse tasks through FetchListV3.iter: pages of at most 50, in id order, all."""
    ids = big.add_tasks(10_000, sparse=True, seed=5)
    pages = list(FetchListV3(b24).iter(TASKS, {"select": ["id"]}))
    assert all(1 <= len(page) <= 50 for page in pages)
    assert [item["id"] for page in pages for item in page] == ids


def test_fetch_list_v2_yields_the_deals(big: FakePortal, b24: B24Hook) -> None:
    """FetchListV2.iter walks a classic list the same way."""
    ids = big.add_deals(2_000, sparse=True, seed=6)
    pages = FetchListV2(b24).iter(DEALS, {"select": ["ID"]}, id_key="ID")
    assert [int(item["ID"]) for page in pages for item in page] == ids


@pytest.mark.parametrize(
    ("lister", "method", "route_ids"),
    [
        pytest.param(FetchListV3, TASKS, "tasks", id="rest3"),
        pytest.param(FetchListV2, DEALS, "deals", id="classic"),
    ],
)
def test_items_added_and_deleted_during_the_walk_never_repeat(
    big: FakePortal, b24: B24Hook, lister: Any, method: str, route_ids: str
) -> None:
    """Items added and deleted between the commands of a walk come back at most once, and
    every item that exists for the whole walk exactly once."""
    tasks = route_ids == "tasks"
    ids = (big.add_tasks if tasks else big.add_deals)(6_000, sparse=True, seed=7)
    doomed = set(ids[1::7])
    steady = [i for i in ids if i not in doomed]
    pending = sorted(doomed)
    added: list[int] = []

    def churn(name: str) -> None:
        if name != method:
            return
        if pending:
            (big.delete_task if tasks else big.delete_deal)(pending.pop())
        if len(added) < 400:  # new items land above, below and between the ranges
            added.extend((big.add_tasks if tasks else big.add_deals)(1, sparse=True))

    big.before_command(churn)
    key = "id" if tasks else "ID"
    got = [int(item[key]) for page in lister(b24).iter(method, {}) for item in page]
    assert len(got) == len(set(got))
    assert got == sorted(got)
    assert set(steady) <= set(got) <= set(ids) | set(added)


def test_a_cursor_that_does_not_advance_raises(big: FakePortal, b24: B24Hook) -> None:
    """A portal that ignores the id filter (the same page every time) is an error, not a loop."""
    page = [{"id": n} for n in range(1, 51)]
    big.register(TASKS, lambda query: {"items": page})
    with pytest.raises(DecodeError, match="would not advance") as caught:
        CallListV3(b24).make(TASKS, {})
    assert len(big.requests) <= 2
    assert "id_key" in str(caught.value)


def test_items_without_the_id_key_are_refused(big: FakePortal, b24: B24Hook) -> None:
    """An id_key the items do not carry fails with the fix named, on the first answer."""
    big.add_deals(3)
    with pytest.raises(DecodeError, match="pass id_key="):
        CallListV2(b24).make(DEALS, {"select": ["ID"]}, id_key="id")


@pytest.mark.parametrize(
    ("lister", "method", "params", "word"),
    [
        pytest.param(CallListV3, TASKS, {"order": {"id": "DESC"}}, "order", id="v3-order"),
        pytest.param(CallListV3, TASKS, {"pagination": {"limit": 10}}, "pagination", id="v3-page"),
        pytest.param(CallListV3, TASKS, {"start": 50}, "start", id="v3-start"),
        pytest.param(CallListV2, DEALS, {"ORDER": {"ID": "DESC"}}, "ORDER", id="v2-order"),
        pytest.param(CallListV2, DEALS, {"start": 50}, "start", id="v2-start"),
        pytest.param(FetchListV2, DEALS, {"order": {"TITLE": "ASC"}}, "order", id="fetch-order"),
    ],
)
def test_own_order_or_paging_is_refused_before_any_request(
    big: FakePortal, b24: B24Hook, lister: Any, method: str, params: dict[str, Any], word: str
) -> None:
    """An order, start or pagination of the caller's own is refused, saying why and what to do."""
    with pytest.raises(SdkError, match=f"params\\['{word}'\\].*orders the list by .*drop"):
        lister(b24).make(method, params)
    assert big.requests == []


@pytest.mark.parametrize(
    ("lister", "params", "fix"),
    [
        pytest.param(CallListV3, {"filter": {"id": 1}}, "list of", id="v3-dict-filter"),
        pytest.param(CallListV2, {"filter": [["ID", ">", 1]]}, "is a dict", id="v2-list-filter"),
        pytest.param(CallListV3, {"select": "id"}, "list of field names", id="select-str"),
        pytest.param(CallListV2, {"filter": {">=ID": "ten"}}, "whole number", id="v2-bound"),
        pytest.param(CallListV3, [("filter", [])], "pass a dict", id="params-list"),
    ],
)
def test_bad_params_are_refused_before_any_request(
    big: FakePortal, b24: B24Hook, lister: Any, params: Any, fix: str
) -> None:
    """Filters and selects of the wrong shape fail before anything is sent, naming the fix."""
    with pytest.raises(SdkError, match=fix):
        lister(b24).make("x.list", params)
    assert big.requests == []


def test_bad_progress_is_refused_before_any_request(big: FakePortal, b24: B24Hook) -> None:
    """progress= must be True, a callable or None, checked when iter() is called."""
    with pytest.raises(SdkTypeError, match="progress="):
        FetchListV3(b24).iter(TASKS, {}, progress="yes")  # type: ignore[arg-type]
    assert big.requests == []


def test_a_failure_keeps_what_was_fetched(big: FakePortal, b24: B24Hook) -> None:
    """A batch that fails mid-walk raises with every item fetched so far in error.partial."""
    ids = big.add_tasks(5_000)
    calls = [0]

    def fail_late(name: str) -> None:
        calls[0] += 1
        if calls[0] > 60:  # the end pages and one batch of ranges have run
            raise FakePortal.CommandError("Access denied", code="ACCESS_DENIED", status=403)

    big.before_command(fail_late)
    with pytest.raises(AjaxError) as caught:
        CallListV3(b24).make(TASKS, {})
    partial = caught.value.partial
    assert partial is not None
    got = _task_ids(partial.data)  # type: ignore[arg-type]
    assert len(got) >= 100
    assert got == sorted(got)
    assert set(got) <= set(ids)


def test_the_js_sdk_paths_reach_the_list_helpers(big: FakePortal, b24: B24Hook) -> None:
    """b24.actions.v3.call_list / .fetch_list and the same under v2 are the list helpers."""
    big.add_tasks(60)
    big.add_deals(60)
    assert len(b24.actions.v3.call_list.make(TASKS, {})) == 60
    assert sum(map(len, b24.actions.v3.fetch_list.make(TASKS, {}))) == 60
    assert len(b24.actions.v2.call_list.make(DEALS, {"select": ["ID"]})) == 60
    assert sum(map(len, b24.actions.v2.fetch_list.iter(DEALS, {}))) == 60


def test_the_page_size_default_is_the_protocols_page() -> None:
    """The faces spell the default out (50) for the reference; it is the protocols' page."""
    import inspect

    from b24batch import CallListV2, CallListV3, FetchListV2, FetchListV3
    from b24batch._protocols.base import PAGE_LIMIT

    for face in (CallListV3, CallListV2, FetchListV3, FetchListV2):
        assert inspect.signature(face.make).parameters["page_size"].default == PAGE_LIMIT
