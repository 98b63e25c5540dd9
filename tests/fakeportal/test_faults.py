"""The faults ``FakePortal.inject`` queues: drops, delays, HTML, truncation, canned answers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
import requests

from b24batch.testing import FakePortal, Fault
from tests.fakeportal.v3_http import TIMEOUT, add, error_code, post, wait_for


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    with FakePortal(secret="s3cr3t") as started:
        yield started


# -- faults ---------------------------------------------------------------------------------------


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


def test_fault_rewrite_executes_then_answers_the_edited_answer(portal: FakePortal) -> None:
    """rewrite commits the batch, then answers what its function makes of the JSON answer."""
    portal.inject(Fault.rewrite(lambda answer: {**answer, "result": [], "note": "edited"}))
    reply = post(portal, [add("x"), add("y")])
    assert reply.status_code == 200
    assert reply.json()["result"] == []
    assert reply.json()["note"] == "edited"
    assert [task["title"] for task in portal.tasks.values()] == ["x", "y"]


def test_fault_rewrite_needs_a_function() -> None:
    """rewrite refuses anything that cannot be called."""
    with pytest.raises(TypeError, match="edit must be callable"):
        Fault.rewrite({"result": []})  # type: ignore[arg-type]
