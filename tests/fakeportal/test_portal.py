"""FakePortal over real HTTP, driven by plain ``requests`` (never the SDK it exists to test)."""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from b24batch.testing import CommandError, FakePortal, Fault, RecordedRequest

pytest_plugins = ["pytester"]

SELECT = "BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION"
VALIDATION = "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION"
NOT_FOUND = "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"
METHOD = "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION"
PAGINATION = "BITRIX_REST_V3_EXCEPTION_INVALIDPAGINATIONEXCEPTION"
TIMEOUT = 5.0


class FakeClock:
    """A settable clock, so limiter tests never sleep."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    with FakePortal(secret="s3cr3t") as started:
        yield started


def batch_url(portal: FakePortal) -> str:
    return portal.webhook_url.replace("/rest/", "/rest/api/") + "batch"


def post(portal: FakePortal, body: Any, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", TIMEOUT)
    return requests.post(batch_url(portal), json=body, **kwargs)


def cmd(method: str, query: dict[str, Any] | None = None, /, **extra: Any) -> dict[str, Any]:
    return {"method": method, "query": {} if query is None else query, **extra}


def add(title: str, /, **extra: Any) -> dict[str, Any]:
    return cmd("tasks.task.add", {"fields": {"title": title}}, **extra)


def error_code(response: requests.Response) -> str:
    error = response.json()["error"]
    return error if isinstance(error, str) else str(error["code"])


def wait_for(predicate: Any, seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


# -- addresses, lifecycle, transport ------------------------------------------------------------


def test_webhook_url_is_the_classic_form(portal: FakePortal) -> None:
    """webhook_url is http://127.0.0.1:PORT/rest/USER/SECRET/ without api/."""
    assert (
        portal.webhook_url == f"http://127.0.0.1:{portal.base_url.rsplit(':', 1)[1]}/rest/1/s3cr3t/"
    )


def test_oauth_endpoint_is_rest_root(portal: FakePortal) -> None:
    """oauth_endpoint is the portal's /rest/ root."""
    assert portal.oauth_endpoint == portal.base_url + "/rest/"


def test_url_before_start_raises() -> None:
    """Asking for the URL of a never-started portal raises RuntimeError."""
    with pytest.raises(RuntimeError, match="not started"):
        _ = FakePortal().webhook_url


def test_repr_hides_the_secret(portal: FakePortal) -> None:
    """repr() never shows the webhook secret."""
    assert "s3cr3t" not in repr(portal)


def test_stop_closes_the_socket(portal: FakePortal) -> None:
    """After stop() the port refuses connections."""
    url = batch_url(portal)
    portal.stop()
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json=[add("x")], timeout=TIMEOUT)


def test_restart_keeps_port_and_state(portal: FakePortal) -> None:
    """A stopped portal starts again on the same port with its tasks."""
    assert post(portal, [add("kept")]).status_code == 200
    url = batch_url(portal)
    portal.stop()
    portal.start()
    assert batch_url(portal) == url
    assert post(portal, [cmd("tasks.task.get", {"id": 1, "select": ["title"]})]).json()[
        "result"
    ] == [{"item": {"title": "kept"}}]


def test_stop_is_fast_with_an_idle_keep_alive_connection(portal: FakePortal) -> None:
    """stop() returns quickly although a client keeps a connection open."""
    with requests.Session() as session:
        session.post(batch_url(portal), json=[add("x")], timeout=TIMEOUT)
        started = time.perf_counter()
        portal.stop()
        assert time.perf_counter() - started < 1.0


def test_keep_alive_requests_do_not_stall(portal: FakePortal) -> None:
    """Twenty requests on one keep-alive session finish far below Nagle/delayed-ACK stalls."""
    with requests.Session() as session:
        started = time.perf_counter()
        for _ in range(20):
            assert session.post(batch_url(portal), json=[add("x")], timeout=TIMEOUT).ok
        assert time.perf_counter() - started < 0.5


def test_response_content_length_matches_body(portal: FakePortal) -> None:
    """Responses carry an exact Content-Length and a JSON content type."""
    response = post(portal, [add("x")])
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


# -- routes and authentication -------------------------------------------------------------------


def test_wrong_secret_is_401_no_auth_found(portal: FakePortal) -> None:
    """A wrong webhook secret answers 401 NO_AUTH_FOUND in the classic envelope."""
    url = batch_url(portal).replace("s3cr3t", "nope")
    response = requests.post(url, json=[add("x")], timeout=TIMEOUT)
    assert (response.status_code, response.json()) == (
        401,
        {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"},
    )


def test_wrong_user_is_401(portal: FakePortal) -> None:
    """A webhook path with another user id answers 401 NO_AUTH_FOUND."""
    url = batch_url(portal).replace("/api/1/", "/api/2/")
    response = requests.post(url, json=[add("x")], timeout=TIMEOUT)
    assert (response.status_code, error_code(response)) == (401, "NO_AUTH_FOUND")


def oauth_post(portal: FakePortal, body: Any, token: str | None) -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return requests.post(
        portal.oauth_endpoint + "api/batch", json=body, headers=headers, timeout=TIMEOUT
    )


def test_oauth_bearer_token_is_accepted(portal: FakePortal) -> None:
    """POST /rest/api/batch with the current Bearer token executes the batch."""
    response = oauth_post(portal, [add("oauth")], portal.access_token)
    assert response.status_code == 200
    assert response.json()["result"][0]["item"]["title"] == "oauth"


def test_oauth_without_token_is_401(portal: FakePortal) -> None:
    """POST /rest/api/batch without Authorization answers 401 NO_AUTH_FOUND."""
    response = oauth_post(portal, [add("x")], None)
    assert (response.status_code, error_code(response)) == (401, "NO_AUTH_FOUND")


def test_oauth_wrong_token_is_401(portal: FakePortal) -> None:
    """An unknown Bearer token answers 401 NO_AUTH_FOUND."""
    response = oauth_post(portal, [add("x")], "not-a-token")
    assert (response.status_code, error_code(response)) == (401, "NO_AUTH_FOUND")


def test_token_in_body_never_authenticates(portal: FakePortal) -> None:
    """An `auth` key in the body is no credential: 401, nothing executed."""
    body = {"0": add("x"), "auth": portal.access_token}
    response = oauth_post(portal, body, None)
    assert (response.status_code, error_code(response)) == (401, "NO_AUTH_FOUND")
    assert portal.tasks == {}


def test_expired_token_is_401_expired_token(portal: FakePortal) -> None:
    """After expire_token() the token answers 401 expired_token."""
    portal.expire_token()
    response = oauth_post(portal, [add("x")], portal.access_token)
    assert (response.status_code, response.json()) == (
        401,
        {"error": "expired_token", "error_description": "The access token provided has expired."},
    )


def test_refresh_token_issues_a_new_valid_token(portal: FakePortal) -> None:
    """refresh_token() returns a new working token and the old one answers expired_token."""
    old = portal.access_token
    portal.expire_token()
    new = portal.refresh_token()
    assert new != old
    assert portal.access_token == new
    assert oauth_post(portal, [add("x")], new).status_code == 200
    assert error_code(oauth_post(portal, [add("x")], old)) == "expired_token"


def test_classic_batch_path_is_400(portal: FakePortal) -> None:
    """The classic /rest/USER/SECRET/batch path answers 400 pointing at /rest/api/."""
    response = requests.post(portal.webhook_url + "batch", json=[add("x")], timeout=TIMEOUT)
    assert response.status_code == 400
    assert "/rest/api/" in response.json()["error_description"]
    assert portal.tasks == {}


def test_unknown_path_is_404(portal: FakePortal) -> None:
    """Any other path answers 404 ERROR_METHOD_NOT_FOUND."""
    url = batch_url(portal).replace("/batch", "/tasks.task.get")
    response = requests.post(url, json={"id": 1}, timeout=TIMEOUT)
    assert (response.status_code, response.json()) == (
        404,
        {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"},
    )


def test_get_on_batch_is_405(portal: FakePortal) -> None:
    """GET on the batch URL answers 405 with Allow: POST."""
    response = requests.get(batch_url(portal), timeout=TIMEOUT)
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")
    assert error_code(response) == "INVALID_REQUEST"


# -- body forms ----------------------------------------------------------------------------------


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


# -- tasks methods -------------------------------------------------------------------------------


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


def test_unknown_method_is_404_method_not_found(portal: FakePortal) -> None:
    """An unknown method answers 404 METHODNOTFOUNDEXCEPTION in the REST 3.0 envelope."""
    response = post(portal, [cmd("crm.deal.teleport")])
    assert (response.status_code, error_code(response)) == (
        404,
        "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION",
    )


def test_seeding_records_no_request(portal: FakePortal) -> None:
    """add_task() changes the store without a recorded request or executed command."""
    task_id = portal.add_task(id=40, title="seeded")
    assert (task_id, portal.requests, portal.executed_commands) == (40, [], 0)
    assert portal.add_task(title="next") == 41


def test_seeding_rejects_unknown_fields(portal: FakePortal) -> None:
    """add_task() with an unknown field raises ValueError."""
    with pytest.raises(ValueError, match="Unknown field `colour`"):
        portal.add_task(title="x", colour="red")


def test_tasks_is_a_snapshot(portal: FakePortal) -> None:
    """Mutating the dict from `tasks` leaves the store alone."""
    task_id = portal.add_task(title="x")
    portal.tasks[task_id]["title"] = "mutated"
    assert portal.tasks[task_id]["title"] == "x"


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


# -- references ----------------------------------------------------------------------------------


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


# -- in order, stopping at the first failure, without rollback ---------------------------------


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


# -- idempotency ---------------------------------------------------------------------------------


def test_idempotent_repeat_is_replayed(portal: FakePortal) -> None:
    """The same key and body replay the stored response, executing nothing."""
    headers = {"Idempotency-Key": "order-42"}
    first = post(portal, [add("once")], headers=headers)
    second = post(portal, [add("once")], headers=headers)
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.content == first.content
    assert (len(portal.tasks), portal.executed_commands) == (1, 1)


def test_idempotency_key_with_another_body_is_422(portal: FakePortal) -> None:
    """The same key with a different body answers 422 IDEMPOTENCYKEYREUSEDEXCEPTION."""
    headers = {"Idempotency-Key": "k"}
    post(portal, [add("one")], headers=headers)
    response = post(portal, [add("two")], headers=headers)
    assert (response.status_code, error_code(response)) == (
        422,
        "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION",
    )
    assert len(portal.tasks) == 1


@pytest.mark.parametrize(
    "key", [pytest.param("k" * 256, id="too-long"), pytest.param("clé", id="not-ascii")]
)
def test_bad_idempotency_key_is_400(portal: FakePortal, key: str) -> None:
    """A key that is not 1..255 printable ASCII answers 400 INVALIDIDEMPOTENCYKEYEXCEPTION."""
    response = post(portal, [add("x")], headers={"Idempotency-Key": key})
    assert (response.status_code, error_code(response)) == (
        400,
        "BITRIX_REST_V3_EXCEPTION_INVALIDIDEMPOTENCYKEYEXCEPTION",
    )
    assert portal.tasks == {}


def test_idempotency_errors_are_not_stored(portal: FakePortal) -> None:
    """A failed batch under a key is executed again on repeat, not replayed."""
    rows = [cmd("tasks.task.get", {"id": 1, "select": ["title"]})]
    headers = {"Idempotency-Key": "retry-me"}
    assert post(portal, rows, headers=headers).status_code == 400
    portal.add_task(title="now here")
    response = post(portal, rows, headers=headers)
    assert response.json()["result"] == [{"item": {"title": "now here"}}]
    assert "Idempotent-Replayed" not in response.headers


def test_idempotency_keys_expire_after_a_day() -> None:
    """After 24 hours of wall time the same key executes again."""
    wall = FakeClock(1_700_000_000.0)
    with FakePortal(wall_clock=wall) as portal:
        post(portal, [add("x")], headers={"Idempotency-Key": "daily"})
        wall.advance(24 * 3600 + 1)
        response = post(portal, [add("x")], headers={"Idempotency-Key": "daily"})
        assert "Idempotent-Replayed" not in response.headers
        assert portal.executed_commands == 2


def test_idempotency_is_scoped_per_credential(portal: FakePortal) -> None:
    """The same key from the webhook and from OAuth are two different requests."""
    post(portal, [add("x")], headers={"Idempotency-Key": "shared"})
    response = requests.post(
        portal.oauth_endpoint + "api/batch",
        json=[add("x")],
        headers={"Idempotency-Key": "shared", "Authorization": f"Bearer {portal.access_token}"},
        timeout=TIMEOUT,
    )
    assert "Idempotent-Replayed" not in response.headers
    assert portal.executed_commands == 2


def test_dropped_response_is_replayed_on_retry(portal: FakePortal) -> None:
    """A batch committed under a key whose response was lost is replayed, not re-run."""
    portal.inject(Fault.drop_after())
    headers = {"Idempotency-Key": "lost"}
    with pytest.raises(requests.ConnectionError):
        post(portal, [add("once")], headers=headers)
    response = post(portal, [add("once")], headers=headers)
    assert response.headers["Idempotent-Replayed"] == "true"
    assert (len(portal.tasks), portal.executed_commands) == (1, 1)


# -- limits --------------------------------------------------------------------------------------


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


# -- faults --------------------------------------------------------------------------------------


def test_fault_drop_before_executes_nothing(portal: FakePortal) -> None:
    """drop_before closes the connection unanswered and runs nothing."""
    portal.inject(Fault.drop_before())
    with pytest.raises(requests.ConnectionError):
        post(portal, [add("x")])
    assert (portal.tasks, len(portal.requests)) == ({}, 1)


def test_fault_drop_after_executes(portal: FakePortal) -> None:
    """drop_after commits the batch, then closes the connection unanswered."""
    portal.inject(Fault.drop_after())
    with pytest.raises(requests.ConnectionError):
        post(portal, [add("x")])
    assert (len(portal.tasks), portal.executed_commands) == (1, 1)


def test_fault_delay_times_out_but_executes(portal: FakePortal) -> None:
    """A delay beyond the client's read timeout still commits the batch."""
    portal.inject(Fault.delay(0.3))
    with pytest.raises(requests.ReadTimeout):
        post(portal, [add("x")], timeout=(TIMEOUT, 0.1))
    assert wait_for(lambda: portal.executed_commands == 1)


def test_fault_delay_within_timeout_answers_normally(portal: FakePortal) -> None:
    """A delay shorter than the timeout only slows the answer down."""
    portal.inject(Fault.delay(0.1))
    started = time.perf_counter()
    assert post(portal, [add("x")]).status_code == 200
    assert time.perf_counter() - started >= 0.1


def test_fault_html_echoes_the_path(portal: FakePortal) -> None:
    """html answers an HTML page with the status, echoing the secret path, unexecuted."""
    portal.inject(Fault.html(504))
    response = post(portal, [add("x")])
    assert (response.status_code, response.headers["Content-Type"]) == (
        504,
        "text/html; charset=utf-8",
    )
    assert "/rest/api/1/s3cr3t/batch" in response.text
    assert portal.tasks == {}


def test_fault_truncated_executes_and_cuts_the_json(portal: FakePortal) -> None:
    """truncated commits, then answers 200 with half a JSON body and a matching length."""
    portal.inject(Fault.truncated())
    response = post(portal, [add("x")])
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    with pytest.raises(requests.JSONDecodeError):
        response.json()
    assert portal.executed_commands == 1


def test_fault_response_is_sent_verbatim(portal: FakePortal) -> None:
    """response answers the given status, body and headers, unexecuted."""
    body = {"error": "INTERNAL_SERVER_ERROR", "error_description": "boom"}
    portal.inject(Fault.response(500, body, headers={"Retry-After": "3"}))
    response = post(portal, [add("x")])
    assert (response.status_code, response.json(), response.headers["Retry-After"]) == (
        500,
        body,
        "3",
    )
    assert portal.tasks == {}


def test_fault_response_with_text_body(portal: FakePortal) -> None:
    """A str body is sent as given, as text/plain."""
    portal.inject(Fault.response(502, "Bad gateway"))
    response = post(portal, [add("x")])
    assert (response.text, response.headers["Content-Type"]) == (
        "Bad gateway",
        "text/plain; charset=utf-8",
    )


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        pytest.param(Fault.overload(), 503, "OVERLOAD_LIMIT", id="overload"),
        pytest.param(Fault.rate_limited(), 503, "QUERY_LIMIT_EXCEEDED", id="rate-limited"),
        pytest.param(Fault.operating_limited(), 429, "OPERATION_TIME_LIMIT", id="operating"),
    ],
)
def test_limit_faults(portal: FakePortal, fault: Fault, status: int, code: str) -> None:
    """The canned limit faults answer their classic error and run nothing."""
    portal.inject(fault)
    response = post(portal, [add("x")])
    assert (response.status_code, error_code(response), portal.tasks) == (status, code, {})


def test_fault_times_and_order(portal: FakePortal) -> None:
    """Faults apply first in, first out, each to `times` requests, then service resumes."""
    portal.inject(Fault.overload(), times=2)
    portal.inject(Fault.html(500))
    statuses = [post(portal, [add("x")]).status_code for _ in range(4)]
    assert statuses == [503, 503, 500, 200]


@pytest.mark.parametrize(
    ("fault", "executes"),
    [
        (Fault.delay(0), True),
        (Fault.drop_before(), False),
        (Fault.drop_after(), True),
        (Fault.html(), False),
        (Fault.truncated(), True),
        (Fault.overload(), False),
    ],
)
def test_fault_declares_whether_it_executes(
    portal: FakePortal, fault: Fault, executes: bool
) -> None:
    """Fault.executes says what the portal does: a write batch under the fault runs, or not."""
    assert fault.executes is executes
    portal.inject(fault)
    with contextlib.suppress(requests.RequestException):
        post(portal, [add("x")])
    assert [task["title"] for task in portal.tasks.values()] == (["x"] if executes else [])
    assert portal.executed_commands == (1 if executes else 0)


# -- registered handlers -------------------------------------------------------------------------


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


# -- recording, reset, concurrency ---------------------------------------------------------------


def test_requests_are_recorded(portal: FakePortal) -> None:
    """Each request is recorded with method, path, query, headers, parsed and raw body."""
    url = batch_url(portal) + "?bx24_request_id=abc&bx24_sdk_ver=1.0"
    response = requests.post(url, json=[add("x")], headers={"X-Trace": "t1"}, timeout=TIMEOUT)
    assert response.status_code == 200
    (recorded,) = portal.requests
    assert isinstance(recorded, RecordedRequest)
    assert (recorded.method, recorded.path) == ("POST", "/rest/api/1/s3cr3t/batch")
    assert recorded.query == {"bx24_request_id": "abc", "bx24_sdk_ver": "1.0"}
    assert recorded.headers["x-trace"] == "t1"
    assert recorded.body == [add("x")]
    assert recorded.raw == response.request.body


def test_log_lines_never_hold_a_secret(
    portal: FakePortal, caplog: pytest.LogCaptureFixture
) -> None:
    """The DEBUG access log masks the webhook secret, also a wrong one."""
    caplog.set_level(logging.DEBUG, logger="b24batch.testing")
    post(portal, [add("x")])
    requests.post(batch_url(portal).replace("s3cr3t", "wr0ng"), json=[], timeout=TIMEOUT)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "POST /rest/api/1/***/batch -> 200",
        "POST /rest/api/1/***/batch -> 401",
    ]


def test_rejected_requests_are_recorded(portal: FakePortal) -> None:
    """Unauthorised and 404 requests are recorded too."""
    requests.post(portal.base_url + "/nowhere", json={}, timeout=TIMEOUT)
    requests.post(batch_url(portal).replace("s3cr3t", "bad"), json=[], timeout=TIMEOUT)
    assert [r.path for r in portal.requests] == ["/nowhere", "/rest/api/1/bad/batch"]


def test_reset_clears_state(portal: FakePortal) -> None:
    """reset() clears tasks, records, faults, counters and stored idempotent replies."""
    post(portal, [add("x")], headers={"Idempotency-Key": "k"})
    portal.inject(Fault.overload())
    portal.reset()
    assert (portal.tasks, portal.requests, portal.executed_commands) == ({}, [], 0)
    response = post(portal, [add("x")], headers={"Idempotency-Key": "k"})
    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response.headers
    assert response.json()["result"][0]["item"]["id"] == 1


def test_concurrent_clients_do_not_mix_up(portal: FakePortal) -> None:
    """Eight threads adding tasks each get their own results back."""
    mismatches: list[str] = []

    def worker(name: str) -> None:
        with requests.Session() as session:
            for number in range(10):
                title = f"{name}-{number}"
                rows = [
                    add(title, **{"as": "t"}),
                    cmd("tasks.task.get", {"id": {"$ref": "t.item.id"}}),
                ]
                result = session.post(batch_url(portal), json=rows, timeout=TIMEOUT).json()
                if result["result"][1]["item"]["title"] != title:
                    mismatches.append(title)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mismatches == []
    assert len(portal.tasks) == 80
    assert portal.executed_commands == 160


# -- constructor and pytest plugin ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"user_id": 0}, id="user-id"),
        pytest.param({"secret": "a/b"}, id="secret"),
        pytest.param({"rate_limit": (0, 1.0)}, id="rate-limit"),
        pytest.param({"operating_limit": 0}, id="operating-limit"),
        pytest.param({"command_cost": -1}, id="command-cost"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any]) -> None:
    """Nonsensical settings raise ValueError at construction."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FakePortal(**kwargs)


def test_inject_rejects_nonpositive_times(portal: FakePortal) -> None:
    """inject(times=0) raises ValueError."""
    with pytest.raises(ValueError, match="times"):
        portal.inject(Fault.overload(), times=0)


PLUGIN_CONFTEST = """
import b24batch.testing.pytest_plugin as plugin

def pytest_configure(config):
    # The pytest11 entry point registers the plugin once b24batch is installed.
    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "b24batch-test")
"""


def test_plugin_provides_a_started_portal(pytester: pytest.Pytester) -> None:
    """The b24_portal fixture yields a running portal and stops it afterwards."""
    pytester.makeconftest(PLUGIN_CONFTEST)
    pytester.makepyfile(
        """
        import requests

        seen = []

        def test_running(b24_portal):
            seen.append(b24_portal)
            assert b24_portal.running
            url = b24_portal.webhook_url.replace("/rest/", "/rest/api/") + "batch"
            assert requests.post(url, json=[{"method": "tasks.task.list", "query": {}}],
                                 timeout=5).status_code == 200

        def test_stopped_afterwards():
            assert not seen[0].running
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_plugin_provides_a_client_for_the_portal(pytester: pytest.Pytester) -> None:
    """The b24_client fixture is a B24Hook bound to b24_portal's address."""
    pytester.makeconftest(PLUGIN_CONFTEST)
    pytester.makepyfile(
        """
        from b24batch import B24Hook

        def test_client(b24_portal, b24_client):
            assert isinstance(b24_client, B24Hook)
            assert b24_portal.base_url in repr(b24_client)
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
