"""The REST 3.0 ``Idempotency-Key``: replays, conflicts, expiry, per-credential scope."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from b24batch.testing import FakePortal, Fault
from tests.fakeportal.v3_http import TIMEOUT, FakeClock, add, cmd, error_code, post


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    with FakePortal(secret="s3cr3t") as started:
        yield started


# -- idempotency ----------------------------------------------------------------------------------


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
