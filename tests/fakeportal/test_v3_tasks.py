"""The REST 3.0 tasks methods: add, get, list (filter, order, pages), update, delete."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from b24batch.testing import FakePortal
from tests.fakeportal.v3_http import PAGINATION, VALIDATION, add, cmd, error_code, post


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    with FakePortal(secret="s3cr3t") as started:
        yield started


# -- add and get ----------------------------------------------------------------------------------


def test_add_returns_the_full_task(portal: FakePortal) -> None:
    """tasks.task.add answers {"item": task} with REST 3.0 defaults and stores it."""
    response = post(portal, [add("Write docs")])
    item = response.json()["result"][0]["item"]
    assert {key: item[key] for key in ("id", "title", "status", "priority", "creatorId")} == {
        "id": 1,
        "title": "Write docs",
        "status": "pending",
        "priority": "average",
        "creatorId": 1,
    }
    assert item["deadline"] is None
    assert portal.tasks == {1: item}


def test_add_without_title_is_a_validation_error(portal: FakePortal) -> None:
    """A task without title answers 400 REQUESTVALIDATIONEXCEPTION naming `title`."""
    response = post(portal, [cmd("tasks.task.add", {"fields": {"description": "x"}})])
    assert (response.status_code, response.json()) == (
        400,
        {
            "error": {
                "code": VALIDATION,
                "message": "Error validating request object",
                "validation": [
                    {"field": "title", "message": "Required field `title` is not specified"}
                ],
            }
        },
    )


def test_add_with_wrong_type_is_a_validation_error(portal: FakePortal) -> None:
    """A string responsibleId answers a validation row for that field."""
    query = {"fields": {"title": "x", "responsibleId": "7"}}
    response = post(portal, [cmd("tasks.task.add", query)])
    assert response.json()["error"]["validation"] == [
        {
            "field": "responsibleId",
            "message": "Field `responsibleId` requires data type `int` for this request",
        }
    ]


def test_add_with_unknown_field_is_unknown_property(portal: FakePortal) -> None:
    """An unknown task field answers 400 UNKNOWNDTOPROPERTYEXCEPTION."""
    response = post(portal, [cmd("tasks.task.add", {"fields": {"title": "x", "stageName": 1}})])
    assert error_code(response) == "BITRIX_REST_V3_EXCEPTION_UNKNOWNDTOPROPERTYEXCEPTION"


def test_get_with_select_returns_only_those_fields(portal: FakePortal) -> None:
    """tasks.task.get with select answers just the selected fields."""
    task_id = portal.add_task(title="Seeded", responsibleId=7)
    query = {"id": task_id, "select": ["id", "responsibleId"]}
    response = post(portal, [cmd("tasks.task.get", query)])
    assert response.json()["result"] == [{"item": {"id": task_id, "responsibleId": 7}}]


def test_get_without_select_returns_every_field(portal: FakePortal) -> None:
    """tasks.task.get without select answers the whole task."""
    task_id = portal.add_task(title="Seeded")
    response = post(portal, [cmd("tasks.task.get", {"id": task_id})])
    assert response.json()["result"][0]["item"] == portal.tasks[task_id]


def test_get_without_id_is_a_validation_error(portal: FakePortal) -> None:
    """tasks.task.get without id answers a validation row for `id`."""
    response = post(portal, [cmd("tasks.task.get")])
    assert response.json()["error"]["validation"] == [
        {"field": "id", "message": "Required field `id` is not specified"}
    ]


def test_get_with_string_id_is_a_validation_error(portal: FakePortal) -> None:
    """A string id answers the data-type validation row."""
    response = post(portal, [cmd("tasks.task.get", {"id": "1"})])
    assert response.json()["error"]["validation"] == [
        {"field": "id", "message": "Field `id` requires data type `int` for this request"}
    ]


def test_get_unknown_id_is_entity_not_found(portal: FakePortal) -> None:
    """An unknown id answers 400 ENTITYNOTFOUNDEXCEPTION with the documented message."""
    response = post(portal, [cmd("tasks.task.get", {"id": 2})])
    assert (response.status_code, response.json()) == (
        400,
        {
            "error": {
                "code": "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION",
                "message": "Record with ID = `2` not found",
            }
        },
    )


def test_get_unknown_select_field_is_unknown_property(portal: FakePortal) -> None:
    """An unknown select field answers UNKNOWNDTOPROPERTYEXCEPTION naming it."""
    task_id = portal.add_task(title="x")
    response = post(portal, [cmd("tasks.task.get", {"id": task_id, "select": ["stageName"]})])
    assert response.json()["error"] == {
        "code": "BITRIX_REST_V3_EXCEPTION_UNKNOWNDTOPROPERTYEXCEPTION",
        "message": "Unknown field `stageName` for entity `TaskDto`",
    }


# -- list -----------------------------------------------------------------------------------------


@pytest.fixture
def five_tasks(portal: FakePortal) -> FakePortal:
    for number, (status, deadline) in enumerate(
        [
            ("pending", None),
            ("in_progress", "2025-01-10T10:00:00+00:00"),
            ("pending", "2025-02-10T10:00:00+00:00"),
            ("completed", "2025-03-10T10:00:00+00:00"),
            ("pending", "2025-04-10T10:00:00+00:00"),
        ],
        start=1,
    ):
        portal.add_task(title=f"t{number}", status=status, deadline=deadline)
    return portal


def list_ids(portal: FakePortal, query: dict[str, Any]) -> list[int]:
    response = post(portal, [cmd("tasks.task.list", query)])
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["result"][0]["items"]]


def test_list_without_select_returns_only_ids(five_tasks: FakePortal) -> None:
    """tasks.task.list without select answers items holding only `id`."""
    response = post(five_tasks, [cmd("tasks.task.list")])
    assert response.json()["result"] == [{"items": [{"id": i} for i in range(1, 6)]}]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        pytest.param(["id", "=", 2], [2], id="eq"),
        pytest.param(["id", "!=", 2], [1, 3, 4, 5], id="ne"),
        pytest.param(["id", ">", 3], [4, 5], id="gt"),
        pytest.param(["id", ">=", 3], [3, 4, 5], id="ge"),
        pytest.param(["id", "<", 3], [1, 2], id="lt"),
        pytest.param(["id", "<=", 3], [1, 2, 3], id="le"),
        pytest.param(["id", "in", [1, 4]], [1, 4], id="in"),
        pytest.param(["id", "between", [2, 4]], [2, 3, 4], id="between"),
        pytest.param(["status", "pending"], [1, 3, 5], id="shorthand-eq"),
        pytest.param(["id", [2, 5]], [2, 5], id="shorthand-in"),
        pytest.param(["deadline", ">", "2025-02-10T12:00:00+03:00"], [3, 4, 5], id="datetime"),
        pytest.param(["deadline", "=", None], [1], id="null"),
    ],
)
def test_list_filter_operators(
    five_tasks: FakePortal, condition: list[Any], expected: list[int]
) -> None:
    """Each filter operator selects the matching tasks."""
    assert list_ids(five_tasks, {"filter": [condition]}) == expected


def test_list_filter_conditions_are_anded(five_tasks: FakePortal) -> None:
    """Top-level conditions all have to hold."""
    assert list_ids(five_tasks, {"filter": [["status", "pending"], ["id", ">", 1]]}) == [3, 5]


def test_list_filter_logic_or_group(five_tasks: FakePortal) -> None:
    """A {"logic": "or", "conditions": [...]} group matches when any condition holds."""
    group = {"logic": "or", "conditions": [["id", [1, 2]], ["id", "in", [5]]]}
    assert list_ids(five_tasks, {"filter": [["status", "pending"], group]}) == [1, 5]


def test_list_unknown_filter_operator(five_tasks: FakePortal) -> None:
    """An unknown operator answers UNKNOWNFILTEROPERATOREXCEPTION."""
    response = post(five_tasks, [cmd("tasks.task.list", {"filter": [["id", "~", 1]]})])
    assert error_code(response) == "BITRIX_REST_V3_EXCEPTION_UNKNOWNFILTEROPERATOREXCEPTION"


def test_list_unknown_filter_field(five_tasks: FakePortal) -> None:
    """An unknown filter field answers UNKNOWNDTOPROPERTYEXCEPTION."""
    response = post(five_tasks, [cmd("tasks.task.list", {"filter": [["stage", "=", 1]]})])
    assert error_code(response) == "BITRIX_REST_V3_EXCEPTION_UNKNOWNDTOPROPERTYEXCEPTION"


def test_list_order_descending(five_tasks: FakePortal) -> None:
    """order {"id": "DESC"} reverses the list."""
    assert list_ids(five_tasks, {"order": {"id": "DESC"}}) == [5, 4, 3, 2, 1]


def test_list_order_by_two_keys(five_tasks: FakePortal) -> None:
    """Later order keys break ties of earlier ones."""
    order = {"status": "ASC", "id": "DESC"}
    assert list_ids(five_tasks, {"order": order}) == [4, 2, 5, 3, 1]


def test_list_bad_order_direction(five_tasks: FakePortal) -> None:
    """A direction other than ASC/DESC answers INVALIDORDEREXCEPTION."""
    response = post(five_tasks, [cmd("tasks.task.list", {"order": {"id": "UP"}})])
    assert error_code(response) == "BITRIX_REST_V3_EXCEPTION_INVALIDORDEREXCEPTION"


def test_list_pagination_pages(five_tasks: FakePortal) -> None:
    """page 2 with limit 2 answers the third and fourth task."""
    assert list_ids(five_tasks, {"pagination": {"page": 2, "limit": 2}}) == [3, 4]


def test_list_pagination_offset(five_tasks: FakePortal) -> None:
    """offset without page skips that many tasks."""
    assert list_ids(five_tasks, {"pagination": {"offset": 3, "limit": 10}}) == [4, 5]


def test_list_limit_is_capped_at_fifty(portal: FakePortal) -> None:
    """A limit above 50 answers at most 50 items."""
    for number in range(60):
        portal.add_task(title=str(number))
    assert len(list_ids(portal, {"pagination": {"limit": 500}})) == 50


@pytest.mark.parametrize(
    "pagination",
    [
        pytest.param({"limit": "abc"}, id="string"),
        pytest.param({"limit": 0}, id="zero-limit"),
        pytest.param({"page": 0}, id="zero-page"),
        pytest.param({"size": 5}, id="unknown-key"),
        pytest.param(5, id="not-object"),
    ],
)
def test_list_bad_pagination(portal: FakePortal, pagination: Any) -> None:
    """A malformed pagination answers INVALIDPAGINATIONEXCEPTION."""
    response = post(portal, [cmd("tasks.task.list", {"pagination": pagination})])
    assert error_code(response) == "BITRIX_REST_V3_EXCEPTION_INVALIDPAGINATIONEXCEPTION"


@pytest.mark.parametrize(
    ("limit", "status", "code"),
    [
        pytest.param(0, 400, PAGINATION, id="zero"),
        pytest.param("10", 400, PAGINATION, id="string"),
        pytest.param(-1, 500, "INTERNAL_SERVER_ERROR", id="minus-one"),
    ],
)
def test_list_limit_errors_as_measured(
    portal: FakePortal, limit: object, status: int, code: str
) -> None:
    """limit 0 or a non-number is INVALIDPAGINATION (400); -1 is a 500, as on a cloud portal."""
    response = post(portal, [cmd("tasks.task.list", {"pagination": {"limit": limit}})])
    assert (response.status_code, error_code(response)) == (status, code)


def test_list_limit_is_clamped_to_fifty_silently(portal: FakePortal) -> None:
    """A limit over 50 returns 50 items and no error."""
    for n in range(60):
        portal.add_task(title=f"t{n}")
    response = post(portal, [cmd("tasks.task.list", {"pagination": {"limit": 1000}})])
    assert len(response.json()["result"][0]["items"]) == 50


# -- update and delete ----------------------------------------------------------------------------


def test_update_changes_the_task(portal: FakePortal) -> None:
    """tasks.task.update answers {"result": true} and stores the new values."""
    task_id = portal.add_task(title="old")
    query = {"id": task_id, "fields": {"title": "new", "status": "completed"}}
    response = post(portal, [cmd("tasks.task.update", query)])
    assert response.json()["result"] == [{"result": True}]
    assert (portal.tasks[task_id]["title"], portal.tasks[task_id]["status"]) == (
        "new",
        "completed",
    )


def test_update_unknown_id_is_entity_not_found(portal: FakePortal) -> None:
    """Updating a missing task answers ENTITYNOTFOUNDEXCEPTION."""
    response = post(portal, [cmd("tasks.task.update", {"id": 9, "fields": {"title": "x"}})])
    assert error_code(response) == "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"


def test_delete_removes_the_task(portal: FakePortal) -> None:
    """tasks.task.delete answers {"result": true} and the task is gone."""
    task_id = portal.add_task(title="doomed")
    response = post(portal, [cmd("tasks.task.delete", {"id": task_id})])
    assert response.json()["result"] == [{"result": True}]
    assert portal.tasks == {}
