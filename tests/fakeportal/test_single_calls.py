"""The FakePortal serves each method it knows at its own URL, REST 3.0 and classic (§10)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from b24batch.testing import FakePortal
from tests.conftest import SECRET

TIMEOUT = 5.0


def _post(url: str, **kwargs: Any) -> requests.Response:
    return requests.post(url, timeout=TIMEOUT, **kwargs)


def test_a_v3_method_answers_result_and_time(portal: FakePortal) -> None:
    """/rest/api/USER/SECRET/METHOD runs the method on its JSON body: {"result", "time"}."""
    task_id = portal.add_task(title="Alone")
    answer = _post(f"{portal.base_url}/rest/api/1/{SECRET}/tasks.task.get", json={"id": task_id})
    body = answer.json()
    assert answer.status_code == 200
    assert body["result"] == {"item": portal.tasks[task_id]}
    assert set(body["time"]) >= {"start", "finish", "duration"}


def test_a_v3_method_over_oauth(portal: FakePortal) -> None:
    """/rest/api/METHOD takes the Bearer token; without it the answer is 401."""
    url = f"{portal.base_url}/rest/api/tasks.task.add"
    body = {"fields": {"title": "Bearer"}}
    bearer = {"Authorization": f"Bearer {portal.access_token}"}
    added = _post(url, json=body, headers=bearer)
    refused = _post(url, json=body)
    assert added.json()["result"]["item"]["title"] == "Bearer"
    assert refused.status_code == 401
    assert [task["title"] for task in portal.tasks.values()] == ["Bearer"]


def test_a_v3_method_error_is_the_rest3_envelope(portal: FakePortal) -> None:
    """An unknown id is a 400 with the REST 3.0 envelope; an unknown method a 404."""
    base = f"{portal.base_url}/rest/api/1/{SECRET}/"
    missing = _post(base + "tasks.task.get", json={"id": 5})
    unknown = _post(base + "crm.deal.get", json={"id": 5})
    assert (missing.status_code, missing.json()["error"]["code"]) == (
        400,
        "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION",
    )
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (
        404,
        "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION",
    )


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"{nope"], ids=["list", "str", "bad"])
def test_a_v3_method_body_must_be_a_json_object(portal: FakePortal, body: bytes) -> None:
    """A body that is not a JSON object of params is INVALIDJSONEXCEPTION."""
    answer = _post(
        f"{portal.base_url}/rest/api/1/{SECRET}/tasks.task.list",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION"


def test_a_v3_method_replays_a_repeated_idempotency_key(portal: FakePortal) -> None:
    """The same key and body is answered from the store; the method runs once."""
    url = f"{portal.base_url}/rest/api/1/{SECRET}/tasks.task.add"
    headers = {"Idempotency-Key": "once"}
    body = {"fields": {"title": "Keyed"}}
    first = _post(url, json=body, headers=headers)
    again = _post(url, json=body, headers=headers)
    other = _post(url, json={"fields": {"title": "Other"}}, headers=headers)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert other.status_code == 422
    assert len(portal.tasks) == 1


def test_one_key_on_two_methods_is_a_reused_key(portal: FakePortal) -> None:
    """The stored request names its method: the same body to another method is a reuse."""
    headers = {"Idempotency-Key": "shared"}
    listed = _post(
        f"{portal.base_url}/rest/api/1/{SECRET}/tasks.task.list", json={}, headers=headers
    )
    other = _post(f"{portal.base_url}/rest/api/1/{SECRET}/tasks.task.get", json={}, headers=headers)
    assert listed.status_code == 200
    assert other.status_code == 422


def test_a_classic_method_over_oauth_takes_auth_from_the_body(portal: FakePortal) -> None:
    """/rest/METHOD with ``auth`` in the form body; a wrong token is 401."""
    deal_id = portal.add_deal(TITLE="Form")
    url = f"{portal.base_url}/rest/crm.deal.get"
    found = _post(url, data={"id": deal_id, "auth": portal.access_token})
    refused = _post(url, data={"id": deal_id, "auth": "not-the-token"})
    assert found.json()["result"]["TITLE"] == "Form"
    assert refused.status_code == 401


def test_a_classic_method_answers_total_and_next(portal: FakePortal) -> None:
    """A classic list method's answer has total and, with a next page, next."""
    portal.add_deals(60)
    answer = _post(f"{portal.base_url}/rest/1/{SECRET}/crm.deal.list.json", data={})
    body = answer.json()
    assert (len(body["result"]), body["total"], body["next"]) == (50, 60, 50)
