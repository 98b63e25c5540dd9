"""docs/examples/django_view.py answers as its docstring says, against a real FakePortal."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402 - only once Django is known to be installed

from b24batch import B24Hook  # noqa: E402
from b24batch.testing import FakePortal, Fault  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "django_view.py"

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only-not-secret",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402


def _load_example() -> ModuleType:
    # docs/examples is not a package. The module goes in sys.modules before it runs: cattrs
    # resolves its attrs classes' string annotations through sys.modules[cls.__module__].
    spec = importlib.util.spec_from_file_location("django_view_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


view = _load_example()
urlpatterns = [path("tasks/titles/", view.task_titles)]


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    """A FakePortal whose webhook is B24_WEBHOOK_URL for the test; no client is cached after."""
    # ROOT_URLCONF again: settings may have been configured elsewhere before this module.
    with (
        FakePortal() as fake,
        override_settings(ROOT_URLCONF=__name__, B24_WEBHOOK_URL=fake.webhook_url),
    ):
        yield fake
    assert view._client is None  # leaving override_settings fired setting_changed


def get(ids: str | None) -> tuple[int, dict[str, Any]]:
    """GET the view through Django's URL routing; (status, decoded JSON)."""
    query = {} if ids is None else {"ids": ids}
    response = Client().get("/tasks/titles/", query)
    assert response["Content-Type"] == "application/json"
    return response.status_code, json.loads(response.content)


def test_titles_come_back_in_the_order_asked(portal: FakePortal) -> None:
    """Three ids give their titles, in request order, from one batch that selects two fields."""
    first = portal.add_task(title="Write the report")
    second = portal.add_task(title="Call ACME")
    third = portal.add_task(title="Book <the> room")

    status, body = get(f"{third}, {first},{second}")

    assert status == 200
    assert body == {
        "tasks": [
            {"id": third, "title": "Book <the> room"},
            {"id": first, "title": "Write the report"},
            {"id": second, "title": "Call ACME"},
        ]
    }
    [request] = portal.requests
    assert [row["query"] for row in request.body] == [
        {"id": task_id, "select": ["id", "title"]} for task_id in (third, first, second)
    ]


@pytest.mark.parametrize(
    ("ids", "says"),
    [
        pytest.param(None, "pass ids=1,2,3", id="missing"),
        pytest.param("", "pass ids=1,2,3", id="empty"),
        pytest.param(" , ", "'' is not a task id", id="blank"),
        pytest.param("1,,2", "'' is not a task id", id="empty-item"),
        pytest.param("1,2,", "'' is not a task id", id="trailing-comma"),
        pytest.param("0", "'0' is not a task id", id="zero"),
        pytest.param("-1", "'-1' is not a task id", id="negative"),
        pytest.param("+1", "'+1' is not a task id", id="plus-sign"),
        pytest.param("1.5", "'1.5' is not a task id", id="float"),
        pytest.param("abc", "'abc' is not a task id", id="word"),
        pytest.param("\u00b2", "'\u00b2' is not a task id", id="superscript-digit"),
        pytest.param("1" * 19, "is not a task id", id="too-long"),
        pytest.param(",".join(["1"] * 51), "at most 50 ids per request, got 51", id="51-ids"),
    ],
)
def test_bad_ids_are_refused_before_anything_is_sent(
    portal: FakePortal, ids: str | None, says: str
) -> None:
    """Malformed, non-positive or too many ids answer 400, say why, and reach no portal."""
    status, body = get(ids)

    assert status == 400
    assert says in body["error"]
    assert portal.requests == []


def test_fifty_ids_are_one_batch(portal: FakePortal) -> None:
    """The limit is inclusive: 50 ids go out as one batch of 50 commands."""
    ids = [portal.add_task(title=f"Task {n}") for n in range(50)]

    status, body = get(",".join(map(str, ids)))

    assert status == 200
    assert [task["title"] for task in body["tasks"]] == [f"Task {n}" for n in range(50)]
    assert [len(request.body) for request in portal.requests] == [50]


def test_unknown_id_is_not_found(portal: FakePortal) -> None:
    """An id the portal does not have (kind NOT_FOUND) answers 404 with the portal's message."""
    known = portal.add_task(title="Exists")

    status, body = get(f"{known},424242")

    assert status == 404
    assert body["error"] == "no such task"
    [message] = body["messages"]
    assert "ENTITYNOTFOUND" in message
    assert "Record with ID = `424242` not found" in message
    assert body["request_id"] == portal.requests[0].query["bx24_request_id"]


def _envelope(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param(
            Fault.response(
                400,
                _envelope(
                    "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION",
                    "Error validating request object",
                ),
            ),
            400,
            id="validation-400",
        ),
        pytest.param(
            Fault.response(
                403,
                _envelope("BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION", "Access denied"),
            ),
            502,
            id="access-denied-403",
        ),
        pytest.param(
            Fault.response(
                400, _envelope("BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION", "Bad select")
            ),
            400,
            id="bad-select-400",
        ),
        pytest.param(
            Fault.response(418, _envelope("SOMETHING_NEW", "A code no table knows")),
            400,
            id="unknown-4xx-code-is-input",
        ),
    ],
)
def test_returned_errors_map_to_400_or_502(portal: FakePortal, fault: Fault, expected: int) -> None:
    """The answer's status follows the error's kind: INPUT 400, ACCESS and PORTAL 502."""
    task = portal.add_task(title="Exists")
    portal.inject(fault)

    status, body = get(str(task))

    assert status == expected
    [message] = body["messages"]
    assert json.loads(fault.body)["error"]["message"] in message
    assert len(portal.requests) == 1  # a 4xx is never repeated


def test_a_rate_limit_still_hit_after_retrying_is_a_503(portal: FakePortal) -> None:
    """A RateLimitError (kind LIMIT) raised after every attempt answers 503, "try later"."""
    task = portal.add_task(title="Exists")
    portal.inject(Fault.rate_limited(), times=view.RETRY.max_attempts)

    status, body = get(str(task))

    assert status == 503
    assert body["error"] == "the portal is busy: try again later"
    assert "QUERY_LIMIT_EXCEEDED" in body["messages"][0]
    assert len(portal.requests) == view.RETRY.max_attempts


def test_html_error_page_is_a_502_without_the_secret(portal: FakePortal) -> None:
    """An HTML 502 (echoing the secret path) on every attempt answers 502, secret-free."""
    task = portal.add_task(title="Exists")
    portal.inject(Fault.html(502), times=view.RETRY.max_attempts)

    response = Client().get("/tasks/titles/", {"ids": str(task)})

    assert response.status_code == 502
    body = json.loads(response.content)
    assert body["error"] == "the portal failed"
    assert "502" in body["messages"][0]
    assert portal.secret not in body["messages"][0]
    assert portal.secret.encode() not in response.content
    # tasks.task.get only reads, so the view's policy repeats it once, then gives up.
    assert len(portal.requests) == view.RETRY.max_attempts


def test_one_html_error_page_is_retried_away(portal: FakePortal) -> None:
    """A single 502 on a read-only batch is repeated and the caller never sees it."""
    task = portal.add_task(title="Exists")
    portal.inject(Fault.html(502))

    status, body = get(str(task))

    assert status == 200
    assert body == {"tasks": [{"id": task, "title": "Exists"}]}
    assert len(portal.requests) == 2


def test_refused_connection_is_a_502(portal: FakePortal) -> None:
    """A portal that is down answers 502 with the SDK's message, which names no secret."""
    task = portal.add_task(title="Exists")
    portal.stop()

    status, body = get(str(task))

    assert status == 502
    assert "could not connect" in body["messages"][0]
    assert portal.secret not in body["messages"][0]


def test_post_is_not_allowed(portal: FakePortal) -> None:
    """The view only reads: any other HTTP method is 405, and nothing is sent."""
    response = Client().post("/tasks/titles/?ids=1")

    assert response.status_code == 405
    assert portal.requests == []


def test_concurrent_requests_share_one_client_and_get_their_own_tasks(
    portal: FakePortal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight threads at once: one client is built, and each thread gets exactly its tasks."""
    threads = 8
    ids = {n: [portal.add_task(title=f"T{n}-{k}") for k in range(3)] for n in range(threads)}
    built: list[B24Hook] = []
    new_client = view._new_client

    def slow_new_client() -> B24Hook:
        time.sleep(0.05)  # widen the window in which a second builder could slip in
        client: B24Hook = new_client()
        built.append(client)
        return client

    monkeypatch.setattr(view, "_new_client", slow_new_client)
    barrier = threading.Barrier(threads)
    answers: dict[int, tuple[int, dict[str, Any]]] = {}

    def worker(n: int) -> None:
        barrier.wait()
        answers[n] = get(",".join(map(str, ids[n])))

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=30)

    assert len(built) == 1
    assert view.get_client() is built[0]
    assert answers == {
        n: (200, {"tasks": [{"id": i, "title": f"T{n}-{k}"} for k, i in enumerate(ids[n])]})
        for n in range(threads)
    }
    assert len(portal.requests) == threads


def test_changing_the_webhook_setting_replaces_the_client(portal: FakePortal) -> None:
    """override_settings(B24_WEBHOOK_URL=...) drops the cached client; the next is rebuilt."""
    first = view.get_client()
    assert view.get_client() is first

    with FakePortal() as other, override_settings(B24_WEBHOOK_URL=other.webhook_url):
        task = other.add_task(title="On the other portal")
        assert view.get_client() is not first
        assert get(str(task)) == (200, {"tasks": [{"id": task, "title": "On the other portal"}]})

    assert view.get_client() is not first
    assert portal.requests == []


def test_reset_client_closes_and_forgets_it(portal: FakePortal) -> None:
    """reset_client() makes the next get_client() build a new client."""
    first = view.get_client()

    view.reset_client()

    assert view._client is None
    assert view.get_client() is not first


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(None, "set B24_WEBHOOK_URL", id="missing"),
        pytest.param("", "set B24_WEBHOOK_URL", id="empty"),
        pytest.param("http://portal.example.com/rest/1/hidden123/", "https", id="plain-http"),
        pytest.param("https://portal.example.com/rest/", "not a webhook URL", id="no-secret"),
    ],
)
def test_a_bad_setting_is_improperly_configured(url: str | None, expected: str) -> None:
    """A missing or malformed B24_WEBHOOK_URL raises ImproperlyConfigured, secret-free."""
    overrides = {} if url is None else {"B24_WEBHOOK_URL": url}
    with override_settings(**overrides), pytest.raises(ImproperlyConfigured) as info:
        view.get_client()

    assert expected in str(info.value)
    assert "hidden123" not in str(info.value)
    assert view._client is None
