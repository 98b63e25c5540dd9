"""The REST 3.0 batch: body forms, references, rows in order without rollback, handlers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from b24batch.testing import CommandError, FakePortal
from tests.fakeportal.v3_http import (
    METHOD,
    NOT_FOUND,
    SELECT,
    TIMEOUT,
    add,
    batch_url,
    cmd,
    error_code,
    post,
)


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    with FakePortal(secret="s3cr3t") as started:
        yield started


# -- body forms -----------------------------------------------------------------------------------


def test_bare_array_is_accepted(portal: FakePortal) -> None:
    """A bare JSON array of rows runs and answers positionally."""
    response = post(portal, [add("a"), add("b")])
    assert [entry["item"]["title"] for entry in response.json()["result"]] == ["a", "b"]


def test_object_keyed_by_position_is_accepted(portal: FakePortal) -> None:
    """An object keyed "0".."n-1" (in any key order) runs in position order."""
    response = post(portal, {"1": add("second"), "0": add("first")})
    assert [entry["item"]["title"] for entry in response.json()["result"]] == ["first", "second"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"cmd": {"a": "tasks.task.list"}}, id="cmd"),
        pytest.param({"halt": 0, "cmd": {}}, id="halt"),
        pytest.param({"commands": [cmd("tasks.task.list")]}, id="commands"),
        pytest.param({"0": cmd("tasks.task.list"), "auth": "token"}, id="extra-auth-key"),
        pytest.param({"1": cmd("tasks.task.list")}, id="positions-not-from-zero"),
        pytest.param("tasks.task.list", id="string"),
        pytest.param(7, id="number"),
        pytest.param(True, id="bool"),
    ],
)
def test_other_envelopes_are_rejected(portal: FakePortal, body: Any) -> None:
    """Any envelope but an array or a 0..n-1 object answers 400 INVALIDSELECTEXCEPTION."""
    response = post(portal, body)
    assert (response.status_code, error_code(response)) == (400, SELECT)


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(["tasks.task.list", {}], id="row-not-object"),
        pytest.param({"query": {}}, id="no-method"),
        pytest.param({"method": 5, "query": {}}, id="method-not-string"),
        pytest.param({"method": "", "query": {}}, id="method-empty"),
        pytest.param({"method": "tasks.task.list"}, id="no-query"),
        pytest.param({"method": "tasks.task.list", "query": None}, id="query-null"),
        pytest.param({"method": "tasks.task.list", "query": [1]}, id="query-list"),
        pytest.param({"method": "tasks.task.list", "params": {}}, id="params-not-query"),
        pytest.param(cmd("tasks.task.list", auth="x"), id="unknown-key"),
        pytest.param(cmd("tasks.task.list", **{"as": None}), id="as-null"),
        pytest.param(cmd("tasks.task.list", **{"as": ""}), id="as-empty"),
        pytest.param(cmd("tasks.task.list", **{"as": 1}), id="as-number"),
        pytest.param(cmd("tasks.task.list", parallel="false"), id="parallel-string"),
        pytest.param(cmd("batch", {"cmd": {}}), id="nested-batch"),
    ],
)
def test_bad_rows_are_rejected(portal: FakePortal, row: Any) -> None:
    """A malformed row answers 400 INVALIDSELECTEXCEPTION and runs nothing."""
    response = post(portal, [add("before"), row])
    assert (response.status_code, error_code(response)) == (400, SELECT)
    assert portal.tasks == {}


def test_duplicate_alias_is_rejected(portal: FakePortal) -> None:
    """Two rows with the same `as` answer 400 INVALIDSELECTEXCEPTION."""
    response = post(portal, [add("a", **{"as": "t"}), add("b", **{"as": "t"})])
    assert (response.status_code, error_code(response)) == (400, SELECT)


def test_empty_query_list_is_an_empty_query(portal: FakePortal) -> None:
    """`query: []` is accepted as `{}`, as PHP decodes both alike."""
    response = post(portal, [{"method": "tasks.task.list", "query": [], "parallel": False}])
    assert response.json()["result"] == [{"items": []}]


def test_empty_batch_is_rejected(portal: FakePortal) -> None:
    """An empty array answers 400 INVALIDSELECTEXCEPTION."""
    response = post(portal, [])
    assert (response.status_code, error_code(response)) == (400, SELECT)


def test_fifty_rows_are_accepted(portal: FakePortal) -> None:
    """Fifty rows is the most a batch may hold."""
    response = post(portal, [add(str(i)) for i in range(50)])
    assert len(response.json()["result"]) == 50


def test_fifty_one_rows_are_rejected(portal: FakePortal) -> None:
    """Fifty-one rows answer 400 INVALIDSELECTEXCEPTION and nothing runs."""
    response = post(portal, [add(str(i)) for i in range(51)])
    assert (response.status_code, error_code(response)) == (400, SELECT)
    assert portal.executed_commands == 0


def test_form_encoded_body_is_invalid_json(portal: FakePortal) -> None:
    """A form-encoded body answers 400 INVALIDJSONEXCEPTION."""
    response = requests.post(batch_url(portal), data={"cmd": "x"}, timeout=TIMEOUT)
    assert (response.status_code, error_code(response)) == (
        400,
        "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION",
    )


def test_malformed_json_is_invalid_json(portal: FakePortal) -> None:
    """A JSON content type with a broken body answers 400 INVALIDJSONEXCEPTION."""
    response = requests.post(
        batch_url(portal),
        data=b"[{",
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert error_code(response) == "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION"


# -- references -----------------------------------------------------------------------------------


def test_ref_by_alias(portal: FakePortal) -> None:
    """{"$ref": "alias.item.id"} passes an earlier command's value on."""
    rows = [
        add("made", **{"as": "made"}),
        cmd("tasks.task.get", {"id": {"$ref": "made.item.id"}, "select": ["title"]}),
    ]
    assert post(portal, rows).json()["result"][1] == {"item": {"title": "made"}}


def test_ref_by_position(portal: FakePortal) -> None:
    """An unnamed command is referenced by its position."""
    rows = [add("made"), cmd("tasks.task.get", {"id": {"$ref": "0.item.id"}, "select": ["id"]})]
    assert post(portal, rows).json()["result"][1] == {"item": {"id": 1}}


def test_ref_into_items_and_nested_lists(portal: FakePortal) -> None:
    """A $ref reaches into items by index and is substituted inside nested lists."""
    portal.add_task(title="a")
    portal.add_task(title="b")
    rows = [
        cmd("tasks.task.list", {"order": {"id": "DESC"}}, **{"as": "all"}),
        cmd("tasks.task.list", {"filter": [["id", "in", [{"$ref": "all.items.0.id"}]]]}),
    ]
    assert post(portal, rows).json()["result"][1] == {"items": [{"id": 2}]}


def test_ref_array_collects_a_field(portal: FakePortal) -> None:
    """{"$refArray": "alias.id"} collects `id` across the alias's items."""
    for title in ("a", "b", "c"):
        portal.add_task(title=title)
    rows = [
        cmd("tasks.task.list", {"filter": [["id", ">", 1]]}, **{"as": "tasks"}),
        cmd(
            "tasks.task.list",
            {"filter": [["id", "in", {"$refArray": "tasks.id"}]], "select": ["title"]},
        ),
    ]
    assert post(portal, rows).json()["result"][1] == {"items": [{"title": "b"}, {"title": "c"}]}


@pytest.mark.parametrize(
    "marker",
    [
        pytest.param({"$ref": "made.item.missing"}, id="missing-field"),
        pytest.param({"$ref": "nobody.item.id"}, id="unknown-alias"),
        pytest.param({"$ref": "1.item.id"}, id="self-reference"),
        pytest.param({"$ref": "made"}, id="no-dot"),
        pytest.param({"$ref": "made.result"}, id="not-item-or-items"),
        pytest.param({"$refArray": "made.id"}, id="ref-array-of-item"),
        pytest.param({"$ref": "made.item.id", "x": 1}, id="extra-key"),
        pytest.param({"$ref": 5}, id="not-a-string"),
    ],
)
def test_bad_reference_fails_the_batch(portal: FakePortal, marker: dict[str, Any]) -> None:
    """An unresolvable reference fails its row with INVALIDSELECTEXCEPTION; the row before stays."""
    rows = [add("made", **{"as": "made"}), cmd("tasks.task.get", {"id": marker})]
    response = post(portal, rows)
    assert (response.status_code, error_code(response)) == (400, SELECT)
    assert [task["title"] for task in portal.tasks.values()] == ["made"]
    assert portal.executed_commands == 1


def test_forward_reference_fails(portal: FakePortal) -> None:
    """A reference to a later command is unresolved."""
    rows = [cmd("tasks.task.get", {"id": {"$ref": "later.item.id"}}), add("x", **{"as": "later"})]
    assert error_code(post(portal, rows)) == SELECT


# -- in order, stopping at the first failure, without rollback ------------------------------------


def test_failure_keeps_the_writes_before_it_and_runs_nothing_after(portal: FakePortal) -> None:
    """Rows before the failing one stay written; rows after it never run; only the error answers."""
    portal.add_task(title="keep")
    portal.add_task(title="delete me")
    rows = [
        add("stays"),
        cmd("tasks.task.update", {"id": 1, "fields": {"title": "changed"}}),
        cmd("tasks.task.delete", {"id": 2}),
        cmd("tasks.task.get", {"id": 99}),
        add("never"),
    ]
    response = post(portal, rows)
    assert (response.status_code, error_code(response)) == (400, NOT_FOUND)
    assert "result" not in response.json()
    titles = {task_id: task["title"] for task_id, task in portal.tasks.items()}
    assert titles == {1: "changed", 3: "stays"}
    assert portal.executed_commands == 3
    assert post(portal, [add("after")]).json()["result"][0]["item"]["id"] == 4


def test_unknown_method_fails_at_its_row(portal: FakePortal) -> None:
    """An unknown method is an error of its row: the rows before it have run."""
    response = post(portal, [add("first"), cmd("tasks.task.nope"), add("second")])
    assert (response.status_code, error_code(response)) == (404, METHOD)
    assert [task["title"] for task in portal.tasks.values()] == ["first"]


def test_parallel_changes_nothing(portal: FakePortal) -> None:
    """parallel=true still runs rows in order and stops at the first failure."""
    rows = [
        add("one", parallel=True),
        cmd("tasks.task.get", {"id": 99}, parallel=True),
        add("two", parallel=True),
    ]
    assert error_code(post(portal, rows)) == NOT_FOUND
    assert [task["title"] for task in portal.tasks.values()] == ["one"]


def test_executed_commands_counts_commands_that_ran(portal: FakePortal) -> None:
    """executed_commands adds every command that succeeded, also before a failing row."""
    post(portal, [add("a"), add("b")])
    post(portal, [cmd("tasks.task.list")])
    post(portal, [add("c"), cmd("tasks.task.get", {"id": 99})])
    assert portal.executed_commands == 4


def test_unknown_method_is_404_method_not_found(portal: FakePortal) -> None:
    """An unknown method answers 404 METHODNOTFOUNDEXCEPTION in the REST 3.0 envelope."""
    response = post(portal, [cmd("crm.deal.teleport")])
    assert (response.status_code, error_code(response)) == (
        404,
        "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION",
    )


# -- registered handlers --------------------------------------------------------------------------


def test_registered_handler_answers(portal: FakePortal) -> None:
    """A registered method receives its substituted query and answers its entry."""
    seen: list[dict[str, Any]] = []

    def handler(query: dict[str, Any]) -> Any:
        seen.append(query)
        return {"item": {"id": 7, "name": query["name"]}}

    portal.register("crm.item.add", handler)
    rows = [
        add("t", **{"as": "t"}),
        cmd("crm.item.add", {"name": {"$ref": "t.item.title"}}, **{"as": "crm"}),
        cmd("tasks.task.get", {"id": {"$ref": "crm.item.id"}}),
    ]
    portal.add_task(id=7, title="seven")
    response = post(portal, rows)
    assert seen == [{"name": "t"}]
    assert response.json()["result"][1] == {"item": {"id": 7, "name": "t"}}
    assert response.json()["result"][2]["item"]["title"] == "seven"


def test_registered_handler_may_return_null(portal: FakePortal) -> None:
    """A handler's None answers a null entry in its position."""
    portal.register("app.ping", lambda query: None)
    assert post(portal, [cmd("app.ping"), add("x")]).json()["result"][0] is None


def test_registered_handler_error_fails_the_batch(portal: FakePortal) -> None:
    """A handler raising CommandError answers that error; the write before it stays."""

    def handler(query: dict[str, Any]) -> Any:
        raise FakePortal.CommandError(
            "Access denied",
            code="BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION",
            status=403,
            validation=[{"field": "x", "message": "no"}],
        )

    portal.register("app.deny", handler)
    response = post(portal, [add("x"), cmd("app.deny")])
    assert (response.status_code, response.json()) == (
        403,
        {
            "error": {
                "code": "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION",
                "message": "Access denied",
                "validation": [{"field": "x", "message": "no"}],
            }
        },
    )
    assert [task["title"] for task in portal.tasks.values()] == ["x"]
    assert portal.executed_commands == 1


def test_registered_handler_crash_is_500(portal: FakePortal) -> None:
    """A handler raising anything else answers 500; the write before it stays, none after runs."""

    def handler(query: dict[str, Any]) -> Any:
        raise RuntimeError("bug")

    portal.register("app.crash", handler)
    response = post(portal, [add("x"), cmd("app.crash"), add("never")])
    assert (response.status_code, error_code(response)) == (500, "INTERNAL_SERVER_ERROR")
    assert [task["title"] for task in portal.tasks.values()] == ["x"]
    assert portal.executed_commands == 1


def test_registered_handler_overrides_a_builtin(portal: FakePortal) -> None:
    """Registering a built-in's name replaces it."""
    portal.register("TASKS.TASK.GET", lambda query: {"item": {"id": query["id"], "fake": True}})
    response = post(portal, [cmd("tasks.task.get", {"id": 5})])
    assert response.json()["result"] == [{"item": {"id": 5, "fake": True}}]


def test_exported_command_error_fails_the_batch_like_the_class_attribute(
    portal: FakePortal,
) -> None:
    """b24batch.testing.CommandError raised by a handler answers its error, as FakePortal's."""

    def handler(query: dict[str, Any]) -> Any:
        raise CommandError("Not here", code="APP_NOT_FOUND", status=404)

    portal.register("app.missing", handler)
    response = post(portal, [add("x"), cmd("app.missing"), add("never")])
    assert (response.status_code, response.json()) == (
        404,
        {"error": {"code": "APP_NOT_FOUND", "message": "Not here"}},
    )
    assert [task["title"] for task in portal.tasks.values()] == ["x"]
    assert FakePortal.CommandError is CommandError
