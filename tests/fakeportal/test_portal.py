"""FakePortal itself over real HTTP: addresses, lifecycle, auth, routes, recording, seeding."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from b24batch.testing import FakePortal, Fault, RecordedRequest
from tests.fakeportal.v3_http import TIMEOUT, add, batch_url, cmd, error_code, post


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    with FakePortal(secret="s3cr3t") as started:
        yield started


# -- addresses, lifecycle, transport --------------------------------------------------------------


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


# -- routes and authentication --------------------------------------------------------------------


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
    """A path that is no batch and no method answers 404 ERROR_METHOD_NOT_FOUND (a method's
    own URL is served: tests/fakeportal/test_single_calls.py)."""
    url = batch_url(portal).replace("/batch", "/tasks.task.get/more")
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


# -- recording, reset, concurrency ----------------------------------------------------------------


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


# -- seeding --------------------------------------------------------------------------------------


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


# -- constructor ----------------------------------------------------------------------------------


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
