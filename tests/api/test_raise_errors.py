"""Returned or raised: every face under ``raise_errors`` False and True, per client and per call.

The rule (docs/errors.md, "Returned or raised"): faces that return a result object return the
portal's error envelopes in it, unless ``raise_errors``; faces that return bare items (list
walks) raise them always; whole-request failures are raised always.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from b24batch import (
    AjaxError,
    B24Hook,
    BatchByChunkV2,
    BatchByChunkV3,
    BatchResult,
    BatchV2,
    BatchV3,
    CallListV2,
    CallListV3,
    CallV2,
    CallV3,
    ChunkedResult,
    FetchListV2,
    FetchListV3,
    SdkTypeError,
)
from b24batch.testing import FakePortal

MISSING = 999_999


@pytest.fixture(params=[False, True], ids=["client-returns", "client-raises"])
def hook(request: pytest.FixtureRequest, portal: FakePortal) -> Iterator[B24Hook]:
    """A client with ``raise_errors`` False, then True."""
    with B24Hook.from_webhook_url(
        portal.webhook_url,
        timeout=(2.0, 5.0),
        retry=None,
        rate_limit=None,
        raise_errors=request.param,
    ) as client:
        yield client


def _v3_reads(portal: FakePortal) -> list[tuple[str, dict[str, Any]]]:
    task_id = portal.add_task(title="Here")
    return [("tasks.task.get", {"id": task_id}), ("tasks.task.get", {"id": MISSING})]


def _v2_reads(portal: FakePortal) -> dict[str, tuple[str, dict[str, Any]]]:
    deal_id = portal.add_deal(TITLE="Here")
    return {
        "ok": ("crm.deal.get", {"id": deal_id}),
        "gone": ("crm.deal.get", {"id": MISSING}),
        "also": ("crm.deal.get", {"id": MISSING + 1}),
    }


def test_batch_v3_returns_or_raises_as_the_client_says(portal: FakePortal, hook: B24Hook) -> None:
    """BatchV3: the error is returned, or raised with the result on ``error.result``."""
    calls = _v3_reads(portal)
    if not hook.raise_errors:
        result = BatchV3(hook).make(calls)
        assert (result.is_success, result.errors[0].status) == (False, 400)
        return
    with pytest.raises(AjaxError) as raised:
        BatchV3(hook).make(calls)
    assert isinstance(raised.value.result, BatchResult)
    assert raised.value.result.errors == (raised.value,)
    assert raised.value.others == ()


@pytest.mark.parametrize("per_call", [False, True])
def test_the_calls_own_setting_wins(portal: FakePortal, hook: B24Hook, per_call: bool) -> None:
    """``make(raise_errors=...)`` overrides the client's, both ways."""
    calls = _v3_reads(portal)
    if per_call:
        with pytest.raises(AjaxError):
            BatchV3(hook).make(calls, raise_errors=True)
    else:
        assert not BatchV3(hook).make(calls, raise_errors=False).is_success


def test_batch_v2_raises_the_first_error_with_the_others(portal: FakePortal, hook: B24Hook) -> None:
    """BatchV2: each command's error; raised, the first carries the rest and the result."""
    calls = _v2_reads(portal)
    if not hook.raise_errors:
        result = BatchV2(hook).make(calls, halt_on_error=False)
        assert sorted(result.errors_by_key) == ["also", "gone"]
        return
    with pytest.raises(AjaxError) as raised:
        BatchV2(hook).make(calls, halt_on_error=False)
    error = raised.value
    assert (error.key, [other.key for other in error.others]) == ("gone", ["also"])
    assert error.result is not None
    assert error.result.data["ok"]["TITLE"] == "Here"  # what ran is not lost


def test_batch_by_chunk_v3_raises_once_the_call_is_done(portal: FakePortal, hook: B24Hook) -> None:
    """BatchByChunkV3.make: chunk errors returned, or the first raised with the whole result."""
    ids = portal.add_tasks(4)
    calls = [("tasks.task.get", {"id": task_id}) for task_id in ids]
    calls[1] = ("tasks.task.get", {"id": MISSING})
    if not hook.raise_errors:
        result = BatchByChunkV3(hook).make(calls, chunk_size=2, halt_on_error=False)
        assert [error.chunk for error in result.errors] == [0]
        return
    with pytest.raises(AjaxError) as raised:
        BatchByChunkV3(hook).make(calls, chunk_size=2, halt_on_error=False)
    partial = raised.value.partial
    assert isinstance(partial, ChunkedResult)
    assert len(partial.chunks) == 2
    assert [item["item"]["id"] for item in partial.data] == ids[2:]


def test_batch_by_chunk_v2_raises_every_failed_command(portal: FakePortal, hook: B24Hook) -> None:
    """BatchByChunkV2.make: one ChunkError per failed command; raised, the first with others."""
    calls = _v2_reads(portal)
    if not hook.raise_errors:
        result = BatchByChunkV2(hook).make(calls, chunk_size=2, halt_on_error=False)
        assert [error.keys for error in result.errors] == [("gone",), ("also",)]
        return
    with pytest.raises(AjaxError) as raised:
        BatchByChunkV2(hook).make(calls, chunk_size=2, halt_on_error=False)
    assert raised.value.key == "gone"
    assert [other.key for other in raised.value.others] == ["also"]
    assert raised.value.partial is not None
    assert raised.value.partial.data["ok"]["TITLE"] == "Here"


def test_batch_by_chunk_iter_raises_at_the_failed_chunk(portal: FakePortal, hook: B24Hook) -> None:
    """BatchByChunkV3.iter: the chunks before are yielded; the failed one is raised."""
    ids = portal.add_tasks(6)
    calls = [("tasks.task.get", {"id": task_id}) for task_id in ids]
    calls[3] = ("tasks.task.get", {"id": MISSING})
    seen: list[BatchResult[Any]] = []
    chunks = BatchByChunkV3(hook).iter(calls, chunk_size=2, halt_on_error=False, max_in_flight=1)
    if not hook.raise_errors:
        seen.extend(chunks)
        assert [chunk.is_success for chunk in seen] == [True, False, True]
        return
    with pytest.raises(AjaxError) as raised:
        seen.extend(chunks)
    assert [chunk.is_success for chunk in seen] == [True]
    assert raised.value.result is not None
    assert raised.value.result.positions == range(2, 4)
    assert raised.value.partial is not None  # what else landed, if anything


@pytest.mark.parametrize(
    ("face", "method"),
    [
        pytest.param(CallListV3, "tasks.task.list", id="call-list-v3"),
        pytest.param(FetchListV3, "tasks.task.list", id="fetch-list-v3"),
        pytest.param(CallListV2, "crm.deal.list", id="call-list-v2"),
        pytest.param(FetchListV2, "crm.deal.list", id="fetch-list-v2"),
    ],
)
def test_list_walks_raise_under_either_setting(
    portal: FakePortal, hook: B24Hook, face: Any, method: str
) -> None:
    """A list walk returns bare items, which have no room for an error: it always raises."""

    def refuse(query: dict[str, Any]) -> Any:
        raise FakePortal.CommandError("Access denied", code="ACCESS_DENIED", status=403)

    portal.register(method, refuse)
    lister = face(hook)
    with pytest.raises(AjaxError) as raised:
        list(lister.make(method, {}))
    assert raised.value.code == "ACCESS_DENIED"


@pytest.mark.parametrize("face", [CallV3, CallV2], ids=["v3", "v2"])
def test_single_calls_return_or_raise_as_the_client_says(
    portal: FakePortal, hook: B24Hook, face: Any
) -> None:
    """CallV3/CallV2: the error on the AjaxResult, or raised."""
    method = "tasks.task.get" if face is CallV3 else "crm.deal.get"
    if not hook.raise_errors:
        assert face(hook).make(method, {"id": MISSING}).error is not None
        return
    with pytest.raises(AjaxError) as raised:
        face(hook).make(method, {"id": MISSING})
    assert raised.value.status == 400


def test_success_is_returned_under_either_setting(portal: FakePortal, hook: B24Hook) -> None:
    """Nothing is raised when nothing failed."""
    task_id = portal.add_task(title="Fine")
    assert BatchV3(hook).make([("tasks.task.get", {"id": task_id})]).is_success
    assert CallV3(hook).make("tasks.task.get", {"id": task_id}).is_success


def test_the_client_option_must_be_a_bool(portal: FakePortal) -> None:
    """``raise_errors="yes"`` is refused at construction, naming the option."""
    with pytest.raises(SdkTypeError, match="raise_errors='yes': pass True or False"):
        B24Hook.from_webhook_url(portal.webhook_url, raise_errors="yes")
