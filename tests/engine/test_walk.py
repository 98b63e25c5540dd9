"""The keyset scan's planner and merger (``_engine/walk.py``, ``pages``) over an in-memory list."""

from __future__ import annotations

import bisect
import gc
import re
import tracemalloc
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from b24batch._engine.pages import HOLD, Route, pages
from b24batch._engine.walk import Page, Query, Walk
from b24batch._protocols.base import Spec
from b24batch._protocols.v3 import V3
from b24batch.errors import DecodeError
from b24batch.progress import Report


class _Memory(Route):
    """The REST 3.0 route with ``send`` answered from ids in memory, as the portal would."""

    ids: Sequence[int] = ()
    page = 50
    batches: ClassVar[list[int]] = []

    @classmethod
    def send(cls, client: Any, rows: list[tuple[str, dict[str, Any]]], request_id: str) -> Any:
        cls.batches.append(len(rows))
        return SimpleNamespace(errors=(), data=[cls._answer(params) for _, params in rows])

    @classmethod
    def _answer(cls, params: dict[str, Any]) -> dict[str, Any]:
        low, high = 0, None
        for _, op, value in params["filter"]:
            if op == ">=":
                low = value
            else:
                high = value
        start = bisect.bisect_left(cls.ids, low)
        stop = len(cls.ids) if high is None else bisect.bisect_left(cls.ids, high)
        size = min(cls.page, params["pagination"]["limit"])
        if params["order"]["id"] == "DESC":
            chosen = cls.ids[max(start, stop - size) : stop][::-1]
        else:
            chosen = cls.ids[start : min(stop, start + size)]
        return {"items": [{"id": i, "title": f"Task {i}"} for i in chosen]}


def _walk(ids: Sequence[int], *, page: int = 50, hold: int | None = HOLD) -> Any:
    _Memory.ids, _Memory.page, _Memory.batches = ids, page, []
    spec = Spec(method="tasks.task.list", params={}, filter=[], id_key="id")
    return pages(None, _Memory(V3), spec, None, hold, Report())  # type: ignore[arg-type]


def _peak(count: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        seen = 0
        for page in _walk(range(1, 3 * count + 1, 3)):
            seen += len(page)
        assert seen == count
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_fetch_list_memory_is_flat() -> None:
    """Walking 100 000 items page by page peaks within 1 MB of walking 10 000."""
    small, large = _peak(10_000), _peak(100_000)
    assert large - small < 1_000_000, (small, large)


def test_a_hundred_thousand_items_come_back_in_order() -> None:
    """100 000 items with gaps: each once, in id order, in about 2 000 items per batch."""
    ids = range(7, 700_007, 7)
    got = [item["id"] for page in _walk(ids) for item in page]
    assert got == list(ids)
    assert len(_Memory.batches) <= 100_000 // 2_000 + 3
    assert max(_Memory.batches) in (49, 50)  # a command may wait while a batch is held


def test_skewed_ids_are_found_by_the_density_seen() -> None:
    """Ids dense at one end and sparse elsewhere still need few batches."""
    ids = [*range(1, 10_000), 1_000_000]
    assert [item["id"] for page in _walk(ids) for item in page] == ids
    assert len(_Memory.batches) <= 10


@pytest.mark.parametrize("page", [1, 7, 20, 50])
def test_any_page_clamp_is_walked_whole(page: int) -> None:
    """Whatever the portal clamps a page to, every item comes back once."""
    ids = list(range(1, 4_000, 3))
    assert [item["id"] for chunk in _walk(ids, page=page) for item in chunk] == ids


def test_the_walk_never_holds_more_than_one_batch() -> None:
    """Between batches the walk holds at most 2 500 items that wait to be handed out."""
    ids = [*range(1, 20_000), *range(500_000, 520_000)]
    held: list[int] = []
    walker = Walk(page_limit=50, hold=HOLD, where="x")
    _Memory.ids, _Memory.page = ids, 50
    while not walker.finished:
        queries = walker.queries()
        pages = [_page_of(q) for q in queries]
        walker.take(queries, pages)
        held.append(walker.held + sum(len(p.ids) for p in pages))
    assert max(held) <= HOLD == 50 * 50  # one batch of 50 full pages, as the issue asks


def _page_of(query: Query) -> Page:
    params: dict[str, Any] = {
        "filter": [
            *([["id", ">=", query.low]] if query.low is not None else []),
            *([["id", "<", query.high]] if query.high is not None else []),
        ],
        "order": {"id": "DESC" if query.descending else "ASC"},
        "pagination": {"limit": 50},
    }
    items = _Memory._answer(params)["items"]
    return Page([item["id"] for item in items], items)


@pytest.mark.parametrize(
    ("ids", "where"),
    [
        pytest.param([5, 5], "after 5", id="repeated"),
        pytest.param([9, 3], "after 9", id="backwards"),
        pytest.param([100], "id 100 for ids in ", id="outside"),
    ],
)
def test_pages_that_break_the_walk_raise(ids: list[int], where: str) -> None:
    """An id repeated, out of order or outside its range is an error, never a loop."""
    walker = Walk(page_limit=50, hold=None, where="x.list")
    walker.take(
        [Query(), Query(descending=True)], [_fake(range(1, 51)), _fake(range(500, 450, -1))]
    )
    with pytest.raises(DecodeError, match=re.escape(where)):
        walker.take([Query(1, 50)], [_fake(ids)])


def _fake(ids: Sequence[int]) -> Page:
    return Page(list(ids), [{"id": i} for i in ids])
