"""Static typing of the public API, checked by mypy (pyproject's ``files``); never run.

Each ``assert_type`` fails the type check when an overload stops giving what it promises:
``result_type=T`` gives ``list[T]`` data for list calls and ``dict[str, T]`` for dict calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from b24batch import (
    AjaxResult,
    B24Hook,
    B24OAuth,
    BatchByChunkV2,
    BatchByChunkV3,
    BatchResult,
    BatchV2,
    BatchV3,
    CallV2,
    CallV3,
    ChunkedResult,
    ClientOptions,
    ErrorKind,
)

if TYPE_CHECKING:
    from typing_extensions import assert_type


@attrs.frozen
class Item:
    """A result entry, as a user would type it."""

    item: dict[str, Any]


def batch_types(b24: B24Hook) -> None:
    """BatchV3.make: typed list and dict data, Any without result_type."""
    rows = [("tasks.task.get", {"id": 1})]
    assert_type(BatchV3(b24).make(rows, result_type=Item), BatchResult[list[Item]])
    assert_type(BatchV3(b24).make({"a": rows[0]}, result_type=Item), BatchResult[dict[str, Item]])
    assert_type(BatchV3(b24).make(rows), BatchResult[Any])


def chunk_types(b24: B24Hook) -> None:
    """BatchByChunkV3.make and iter: the same overloads as BatchV3.make."""
    chunked = BatchByChunkV3(b24)
    rows = [("tasks.task.get", {"id": i}) for i in range(120)]
    named = {f"t{i}": row for i, row in enumerate(rows)}
    assert_type(chunked.make(rows, result_type=Item), ChunkedResult[list[Item]])
    assert_type(chunked.make(named, result_type=Item), ChunkedResult[dict[str, Item]])
    assert_type(chunked.make(rows), ChunkedResult[Any])
    assert_type(chunked.make(rows, result_type=Item).data, list[Item])
    assert_type(chunked.iter(iter(rows), result_type=Item), Iterator[BatchResult[list[Item]]])
    assert_type(chunked.iter(named, result_type=Item), Iterator[BatchResult[dict[str, Item]]])
    assert_type(chunked.iter(rows), Iterator[BatchResult[Any]])
    for chunk in chunked.iter(rows, result_type=Item):
        assert_type(chunk.data[0], Item)
    journaled = chunked.make(rows, result_type=Item, journal=Path("job.journal"), in_doubt="resend")
    assert_type(journaled, ChunkedResult[list[Item]])
    assert_type(chunked.iter(named, journal="job.journal"), Iterator[BatchResult[Any]])


def classic_types(b24: B24Hook) -> None:
    """BatchV2 and BatchByChunkV2 have the REST 3.0 faces' overloads; the JS SDK's path too."""
    rows = [("crm.deal.get", {"id": i}) for i in range(120)]
    named = {f"d{i}": row for i, row in enumerate(rows)}
    assert_type(BatchV2(b24).make(rows[:50], result_type=Item), BatchResult[list[Item]])
    assert_type(BatchV2(b24).make({"a": rows[0]}, result_type=Item), BatchResult[dict[str, Item]])
    by_id = {35943 + i: row for i, row in enumerate(rows)}
    assert_type(BatchV2(b24).make({7: rows[0]}, result_type=Item), BatchResult[dict[int, Item]])
    chunked = BatchByChunkV2(b24)
    assert_type(chunked.make(by_id, result_type=Item), ChunkedResult[dict[int, Item]])
    assert_type(chunked.iter(by_id, result_type=Item), Iterator[BatchResult[dict[int, Item]]])
    assert_type(chunked.make(rows, result_type=Item), ChunkedResult[list[Item]])
    assert_type(chunked.make(named, result_type=Item), ChunkedResult[dict[str, Item]])
    assert_type(chunked.make(rows), ChunkedResult[Any])
    assert_type(chunked.iter(named, result_type=Item), Iterator[BatchResult[dict[str, Item]]])
    assert_type(chunked.make(rows, journal="deals.journal"), ChunkedResult[Any])
    assert_type(b24.actions.v2.batch_by_chunk, BatchByChunkV2)
    assert_type(b24.actions.v3.batch.make(rows[:1], result_type=Item), BatchResult[list[Item]])


def error_types(error: Exception) -> None:
    """Every B24Error has a kind, an ErrorKind."""
    from b24batch import B24Error

    if isinstance(error, B24Error):
        assert_type(error.kind, ErrorKind)


def call_types(b24: B24Hook) -> None:
    """CallV3/CallV2.make give an AjaxResult; ``raise_errors`` takes a bool or None."""
    assert_type(CallV3(b24).make("tasks.task.get", {"id": 1}, raise_errors=True), AjaxResult)
    assert_type(b24.actions.v2.call.make("crm.deal.get", {"id": 1}), AjaxResult)
    assert_type(CallV2(b24).make("crm.deal.list").total, int | None)


def client_option_types(url: str) -> None:
    """The clients' options are typed: a wrong type or an unknown name fails the type check.

    Each ``type: ignore`` below is needed (mypy's strict mode reports an unused one), so each
    line is an error mypy finds; with ``**options: Any`` none of them would be.
    """
    options: ClientOptions = {"timeout": (5.0, 30.0), "retry": None}
    B24Hook.from_webhook_url(url, **options).close()
    B24Hook.from_webhook_url(url, timeout=10, rate_limit=None, max_response_bytes=1 << 20)
    B24Hook.from_webhook_url(url, timeout="10")  # type: ignore[arg-type]
    B24Hook.from_webhook_url(url, retries=3)  # type: ignore[call-arg]
    B24Hook("https://example.bitrix24.com", 1, "secret", max_response_bytes="1MB")  # type: ignore[arg-type]
    B24OAuth("https://example.bitrix24.com/rest/", "token", retry=3)  # type: ignore[arg-type]
    B24OAuth("https://example.bitrix24.com/rest/", "token", rate_limt=None)  # type: ignore[call-arg]
