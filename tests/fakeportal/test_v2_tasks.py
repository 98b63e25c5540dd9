"""The classic route's ``tasks.task.*`` over real HTTP: shapes, pages, errors, the public API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from b24batch import AjaxError, B24Hook, BatchV2, BatchV3, CallListV2, ErrorKind
from b24batch.testing import FakePortal

TIMEOUT = 5.0


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    with FakePortal(secret="s3cr3t") as started:
        yield started


def call(portal: FakePortal, method: str, **params: Any) -> requests.Response:
    """One classic method called on its own with a JSON body."""
    return requests.post(portal.webhook_url + method, json=params, timeout=TIMEOUT)


def form(portal: FakePortal, method: str, fields: dict[str, str]) -> requests.Response:
    """One classic method called on its own with a PHP-bracket form."""
    return requests.post(portal.webhook_url + method, data=fields, timeout=TIMEOUT)


# -- tasks.task.get -------------------------------------------------------------------------------


def test_get_answers_the_classic_task(portal: FakePortal) -> None:
    """tasks.task.get answers {"task": {...}}: camelCase keys, numbers and codes as text."""
    task_id = portal.add_task(
        title="Ship", status="completed", priority="high", responsibleId=7, groupId=3
    )
    response = call(portal, "tasks.task.get", taskId=task_id)
    assert response.status_code == 200
    task = response.json()["result"]["task"]
    assert task["id"] == str(task_id)
    assert task["title"] == "Ship"
    assert task["responsibleId"] == "7"
    assert task["createdBy"] == "1"
    assert task["groupId"] == "3"
    assert task["status"] == "5"
    assert task["priority"] == "2"
    assert task["createdDate"] == portal.tasks[task_id]["created"]
    assert "total" not in response.json()


def test_get_select_picks_fields_in_either_case(portal: FakePortal) -> None:
    """select names fields UPPER_CASE or camelCase; the answer holds those only."""
    task_id = portal.add_task(title="Pick")
    response = call(
        portal, "tasks.task.get", taskId=task_id, select=["ID", "TITLE", "responsibleId"]
    )
    assert response.json()["result"]["task"] == {
        "id": str(task_id),
        "title": "Pick",
        "responsibleId": "1",
    }


def test_get_of_a_missing_task_is_an_empty_result(portal: FakePortal) -> None:
    """A task that does not exist answers 200 with "result": [] (tasks-task-get.md)."""
    response = call(portal, "tasks.task.get", taskId=404)
    assert response.status_code == 200
    assert response.json()["result"] == []


@pytest.mark.parametrize(
    ("params", "code", "description"),
    [
        pytest.param({}, "100", "CTaskItem", id="no-task-id"),
        pytest.param({"taskId": "abc"}, "0", "wrong task id", id="bad-task-id"),
        pytest.param({"taskId": 1, "select": "ID"}, "100", "parameter {select}", id="bad-select"),
    ],
)
def test_get_errors_are_the_classic_ones(
    portal: FakePortal, params: dict[str, Any], code: str, description: str
) -> None:
    """A missing or bad taskId, or a select that is no array, answer 400 with the docs' code."""
    portal.add_task(title="x")
    response = call(portal, "tasks.task.get", **params)
    assert response.status_code == 400
    assert response.json()["error"] == code
    assert description in response.json()["error_description"]


# -- tasks.task.list ------------------------------------------------------------------------------


def test_list_pages_of_fifty_with_total_and_next(portal: FakePortal) -> None:
    """tasks.task.list: {"tasks": [...]}, total, next; 50 a page; descending id by default."""
    portal.add_tasks(120)
    first = call(portal, "tasks.task.list", select=["ID"]).json()
    assert [task["id"] for task in first["result"]["tasks"]] == [str(i) for i in range(120, 70, -1)]
    assert (first["total"], first["next"]) == (120, 50)
    last = call(portal, "tasks.task.list", select=["ID"], start=100).json()
    assert len(last["result"]["tasks"]) == 20
    assert last["total"] == 120
    assert "next" not in last


def test_list_filter_order_select_in_classic_names(portal: FakePortal) -> None:
    """filter (>ID, RESPONSIBLE_ID, REAL_STATUS), order and select read classic and camel names."""
    for n in range(1, 11):
        portal.add_task(title=f"T{n}", responsibleId=2 if n % 2 else 3, status="completed")
    portal.add_task(title="open", responsibleId=2)
    response = form(
        portal,
        "tasks.task.list",
        {
            "filter[>ID]": "2",
            "filter[responsibleId]": "2",
            "filter[REAL_STATUS]": "5",
            "order[TITLE]": "desc",
            "select[0]": "ID",
            "select[1]": "title",
        },
    )
    tasks = response.json()["result"]["tasks"]
    assert tasks == [
        {"id": "9", "title": "T9"},
        {"id": "7", "title": "T7"},
        {"id": "5", "title": "T5"},
        {"id": "3", "title": "T3"},
    ]
    assert response.json()["total"] == 4


def test_list_start_minus_one_skips_the_count(portal: FakePortal) -> None:
    """start=-1 answers the first page without total or next, as the CRM lists do."""
    portal.add_tasks(60)
    answer = call(portal, "tasks.task.list", order={"ID": "ASC"}, start=-1).json()
    assert len(answer["result"]["tasks"]) == 50
    assert answer["result"]["tasks"][0]["id"] == "1"
    assert "total" not in answer
    assert "next" not in answer


def test_list_by_an_unsortable_key_is_the_docs_error(portal: FakePortal) -> None:
    """order by a field that cannot be sorted answers 400, code "0", "Invalid sorting key"."""
    response = call(portal, "tasks.task.list", order={"NO_SUCH": "asc"})
    assert response.status_code == 400
    assert response.json() == {
        "error": "0",
        "error_description": "Invalid sorting key (internal error)",
    }


# -- writes ---------------------------------------------------------------------------------------


def test_add_from_a_form_creates_the_task(portal: FakePortal) -> None:
    """tasks.task.add with fields[...] (codes as text) stores it; the answer is the task."""
    response = form(
        portal,
        "tasks.task.add",
        {
            "fields[TITLE]": "From form",
            "fields[RESPONSIBLE_ID]": "5",
            "fields[STATUS]": "3",
            "fields[PRIORITY]": "0",
            "fields[DEADLINE]": "2026-01-02T10:00:00+00:00",
            "fields[UF_CRM_TASK][0]": "D_1",  # a field the fake does not keep: ignored
        },
    )
    assert response.status_code == 200
    task = response.json()["result"]["task"]
    stored = portal.tasks[int(task["id"])]
    assert stored["title"] == "From form"
    assert stored["responsibleId"] == 5
    assert stored["status"] == "in_progress"
    assert stored["priority"] == "low"
    assert stored["deadline"] == "2026-01-02T10:00:00+00:00"
    assert (task["status"], task["responsibleId"]) == ("3", "5")


@pytest.mark.parametrize(
    ("fields", "code", "description"),
    [
        pytest.param(
            {},
            "100",
            "Could not find value for parameter {fields} (internal error)",
            id="no-fields",
        ),
        pytest.param(
            {"fields[DESCRIPTION]": "x"},
            "ERROR_CORE",
            "Task title not specified<br>",
            id="no-title",
        ),
        pytest.param(
            {"fields[TITLE]": "x", "fields[STATUS]": "99"},
            "ERROR_CORE",
            "Invalid status<br>",
            id="bad-status",
        ),
    ],
)
def test_add_errors_are_the_classic_ones(
    portal: FakePortal, fields: dict[str, str], code: str, description: str
) -> None:
    """tasks.task.add refuses as tasks-task-add.md lists, and stores nothing."""
    response = form(portal, "tasks.task.add", fields)
    assert response.status_code == 400
    assert response.json() == {"error": code, "error_description": description}
    assert portal.tasks == {}


def test_update_changes_the_task_and_answers_it(portal: FakePortal) -> None:
    """tasks.task.update changes the named fields only and answers {"task": {...}}."""
    task_id = portal.add_task(title="Old", description="kept")
    response = call(
        portal, "tasks.task.update", taskId=task_id, fields={"TITLE": "New", "STATUS": 5}
    )
    assert response.json()["result"]["task"]["title"] == "New"
    assert portal.tasks[task_id]["title"] == "New"
    assert portal.tasks[task_id]["description"] == "kept"
    assert portal.tasks[task_id]["status"] == "completed"


def test_update_of_a_missing_task_is_refused(portal: FakePortal) -> None:
    """Updating a task that does not exist answers code "0", action not allowed."""
    response = call(portal, "tasks.task.update", taskId=9, fields={"TITLE": "x"})
    assert response.status_code == 400
    assert response.json()["error"] == "0"
    assert "not allowed" in response.json()["error_description"]


def test_delete_answers_task_true_then_no_access(portal: FakePortal) -> None:
    """tasks.task.delete answers {"task": true}; deleting it again is code 1048582."""
    task_id = portal.add_task(title="gone")
    first = call(portal, "tasks.task.delete", taskId=task_id)
    again = call(portal, "tasks.task.delete", taskId=task_id)
    assert first.json()["result"] == {"task": True}
    assert task_id not in portal.tasks
    assert again.status_code == 400
    assert again.json()["error"] == "1048582"


def test_the_routes_share_one_store(portal: FakePortal, client: B24Hook) -> None:
    """A task added on the classic route is read on REST 3.0, and the other way round."""
    classic = call(portal, "tasks.task.add", fields={"TITLE": "classic"}).json()
    rest3 = BatchV3(client).make([("tasks.task.add", {"fields": {"title": "rest3"}})])
    rest3_id = rest3.data[0]["item"]["id"]
    classic_id = int(classic["result"]["task"]["id"])
    read3 = BatchV3(client).make([("tasks.task.get", {"id": classic_id})]).data[0]
    read2 = call(portal, "tasks.task.get", taskId=rest3_id).json()["result"]["task"]
    assert read3["item"]["title"] == "classic"
    assert read2["title"] == "rest3"


# -- through the public API -----------------------------------------------------------------------


def test_batch_v2_runs_task_methods_with_references(portal: FakePortal, client: B24Hook) -> None:
    """BatchV2: add, then get and update it by $result reference, in one classic batch."""
    result = BatchV2(client).make(
        {
            "new": ("tasks.task.add", {"fields": {"TITLE": "Batch", "RESPONSIBLE_ID": 4}}),
            "read": (
                "tasks.task.get",
                {"taskId": "$result[new][task][id]", "select": ["ID", "TITLE"]},
            ),
            "done": (
                "tasks.task.update",
                {"taskId": "$result[new][task][id]", "fields": {"STATUS": 5}},
            ),
            "missing": ("tasks.task.delete", {"taskId": 999}),
        }
    )
    task_id = int(result.data["new"]["task"]["id"])
    assert result.data["read"] == {"task": {"id": str(task_id), "title": "Batch"}}
    assert result.data["done"]["task"]["status"] == "5"
    assert portal.tasks[task_id]["status"] == "completed"
    assert portal.tasks[task_id]["responsibleId"] == 4
    error = result.errors_by_key["missing"]
    assert isinstance(error, AjaxError)
    assert error.code == "1048582"
    assert error.kind is ErrorKind.ACCESS


def test_call_list_v2_walks_every_task(portal: FakePortal, client: B24Hook) -> None:
    """CallListV2("tasks.task.list", id_key="id") returns every matching task once, in id order."""
    portal.add_tasks(700, sparse=True, seed=3)
    portal.add_task(title="other", responsibleId=9)
    wanted = sorted(i for i, task in portal.tasks.items() if task["responsibleId"] == 1)
    items = CallListV2(client).make(
        "tasks.task.list",
        {"filter": {"RESPONSIBLE_ID": 1}, "select": ["TITLE"]},
        id_key="id",
    )
    assert [int(item["id"]) for item in items] == wanted
    assert len(wanted) == 700
    assert {item["title"] for item in items} == {portal.tasks[i]["title"] for i in wanted}
