"""FakePortal support for list walks: bulk loaders, id ranges, the page clamp, hooks, latency."""

from __future__ import annotations

import pytest

from b24batch import AjaxError, B24Hook, BatchV2, BatchV3
from b24batch.testing import FakePortal


def test_add_tasks_dense_continues_the_ids(portal: FakePortal) -> None:
    """Dense loading takes the next ids, titles each task and records no request."""
    portal.add_task(title="first")
    assert portal.add_tasks(3, priority="high") == [2, 3, 4]
    tasks = portal.tasks
    assert tasks[3]["title"] == "Task 3"
    assert tasks[3]["priority"] == "high"
    assert portal.requests == []


def test_add_tasks_sparse_is_seeded_and_spread(portal: FakePortal) -> None:
    """Sparse ids are random, repeatable with a seed, unique and spread up to 1 000 000."""
    ids = portal.add_tasks(1_000, sparse=True, seed=3)
    with FakePortal() as other:
        assert other.add_tasks(1_000, sparse=True, seed=3) == ids
    assert ids == sorted(set(ids))
    assert len(ids) == 1_000
    assert ids[0] < 10_000
    assert ids[-1] > 990_000


def test_add_deals_loads_classic_records(portal: FakePortal) -> None:
    """add_deals seeds deals with the shared fields; unknown fields are refused."""
    assert portal.add_deals(2, OPPORTUNITY=5) == [1, 2]
    assert portal.deals[2]["TITLE"] == "Deal 2"
    assert portal.deals[2]["OPPORTUNITY"] == "5.00"
    with pytest.raises(ValueError, match="unknown fields"):
        portal.add_deals(1, TYPO=1)


def test_loaders_refuse_a_bad_count(portal: FakePortal) -> None:
    """A negative count, or one past the sparse id space, is a ValueError."""
    with pytest.raises(ValueError, match="count"):
        portal.add_tasks(-1)
    with pytest.raises(ValueError, match="do not fit"):
        portal.add_deals(1_000_001, sparse=True)


def test_rest3_id_range_filter(portal: FakePortal, client: B24Hook) -> None:
    """[["id", ">=", a], ["id", "<", b]] selects that range, in any order asked."""
    portal.add_tasks(300, sparse=True, seed=1)
    wanted = sorted(i for i in portal.tasks if 1_000 <= i < 400_000)
    query = {"filter": [["id", ">=", 1_000], ["id", "<", 400_000]], "order": {"id": "DESC"}}
    items = BatchV3(client).make([("tasks.task.list", query)]).data[0]["items"]
    assert [item["id"] for item in items] == wanted[::-1][:50]


def test_classic_id_range_filter_with_start_minus_one(portal: FakePortal, client: B24Hook) -> None:
    """{">=ID": a, "<ID": b} with start=-1 pages that range without total or next."""
    portal.add_deals(200)
    params = {"filter": {">=ID": 120, "<ID": 140}, "order": {"ID": "ASC"}, "start": -1}
    result = BatchV2(client).make([("crm.deal.list", params)], return_ajax_result=True)
    answer = result.data[0]
    assert [int(deal["ID"]) for deal in answer.result] == list(range(120, 140))
    assert answer.total is None
    assert answer.next is None


def test_list_page_size_clamps_both_routes(client: B24Hook) -> None:
    """list_page_size=20 clamps a REST 3.0 limit of 50 and a classic page to 20."""
    with FakePortal(list_page_size=20) as portal:
        portal.add_tasks(60)
        portal.add_deals(60)
        with B24Hook.from_webhook_url(portal.webhook_url, retry=None, rate_limit=None) as b24:
            tasks = BatchV3(b24).make([("tasks.task.list", {"pagination": {"limit": 50}})])
            deals = BatchV2(b24).make([("crm.deal.list", {})], return_ajax_result=True)
    assert len(tasks.data[0]["items"]) == 20
    assert len(deals.data[0].result) == 20
    assert deals.data[0].next == 20


def test_list_page_size_must_be_positive() -> None:
    """A page size below 1, or neither an int nor a callable, is refused at construction."""
    for bad in (0, True, "20"):
        with pytest.raises(ValueError, match="list_page_size must be an int >= 1 or a callable"):
            FakePortal(list_page_size=bad)  # type: ignore[arg-type]


def test_a_list_page_size_callable_sizes_each_page_on_both_routes() -> None:
    """A callable is asked per list command, with the method and the size asked for, and its
    answer is that page's size: shorter, or larger than asked."""
    sizes = iter([7, 60, 3, 55])
    asked: list[tuple[str, int]] = []

    def size(method: str, limit: int) -> int:
        asked.append((method, limit))
        return next(sizes)

    with (
        FakePortal(list_page_size=size) as portal,
        B24Hook.from_webhook_url(portal.webhook_url, retry=None, rate_limit=None) as b24,
    ):
        portal.add_tasks(100)
        portal.add_deals(100)
        page = {"pagination": {"limit": 50}}
        tasks = BatchV3(b24).make([("tasks.task.list", page), ("tasks.task.list", page)])
        deals = BatchV2(b24).make([("crm.deal.list", {}), ("crm.deal.list", {"start": -1})])
    assert asked == [("tasks.task.list", 50)] * 2 + [("crm.deal.list", 50)] * 2
    assert [len(answer["items"]) for answer in tasks.data] == [7, 60]
    assert [len(answer) for answer in deals.data] == [3, 55]


@pytest.mark.parametrize("answer", [0, -1, None, 2.5, True], ids=repr)
def test_a_list_page_size_callable_that_gives_no_size_fails_the_command(answer: object) -> None:
    """A callable answering anything but an int >= 1 fails its command, never an empty page."""
    with (
        FakePortal(list_page_size=lambda method, asked: answer) as portal,  # type: ignore[arg-type, return-value]
        B24Hook.from_webhook_url(portal.webhook_url, retry=None, rate_limit=None) as b24,
    ):
        portal.add_tasks(3)
        portal.add_deals(3)
        deals = BatchV2(b24).make([("crm.deal.list", {})])
        with pytest.raises(AjaxError) as caught:
            BatchV3(b24).make([("tasks.task.list", {})])
    assert deals.errors[0].code == "INTERNAL_SERVER_ERROR"
    assert caught.value.code == "INTERNAL_SERVER_ERROR"


def test_before_command_hook_changes_data_between_commands(
    portal: FakePortal, client: B24Hook
) -> None:
    """A hook runs before each command and may seed or delete under the portal's lock."""
    portal.add_tasks(2)
    names: list[str] = []

    def hook(method: str) -> None:
        names.append(method)
        portal.delete_task(1)
        portal.add_tasks(1)

    portal.before_command(hook)
    calls = [("tasks.task.list", {}), ("tasks.task.list", {})]
    first, second = BatchV3(client).make(calls).data
    assert names == ["tasks.task.list", "tasks.task.list"]
    assert [t["id"] for t in first["items"]] == [2, 3]
    assert [t["id"] for t in second["items"]] == [2, 3, 4]
    assert portal.delete_deal(99) is False


def test_latency_delays_every_request_and_is_checked() -> None:
    """latency= must be a non-negative number; a delayed portal still answers."""
    with pytest.raises(ValueError, match="latency"):
        FakePortal(latency=-1)
    with (
        FakePortal(latency=0.01) as portal,
        B24Hook.from_webhook_url(portal.webhook_url, retry=None, rate_limit=None) as b24,
    ):
        portal.add_tasks(1)
        assert BatchV3(b24).make([("tasks.task.list", {})]).data[0]["items"] == [{"id": 1}]


def test_a_classic_method_answers_on_its_own(portal: FakePortal, client: B24Hook) -> None:
    """A classic list method called outside a batch answers a page with total and next."""
    import requests

    portal.add_deals(120)
    answer = requests.post(
        portal.webhook_url + "crm.deal.list.json", json={"select": ["ID"], "start": 50}, timeout=5
    ).json()
    assert (len(answer["result"]), answer["total"], answer["next"]) == (50, 120, 100)
    assert answer["result"][0] == {"ID": "51"}
    missing = requests.post(portal.webhook_url + "crm.none.list", json={}, timeout=5)
    assert missing.status_code == 404
