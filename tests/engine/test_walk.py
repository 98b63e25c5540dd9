"""The keyset scan's planner and merger (``_engine/walk.py``, ``pages``) over an in-memory list."""

from __future__ import annotations

import bisect
import gc
import random
import re
import tracemalloc
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b24batch._engine.pages import HOLD, Route, pages
from b24batch._engine.walk import Page, Query, Walk
from b24batch._protocols.base import Prepared, Spec
from b24batch._protocols.v3 import V3
from b24batch.errors import DecodeError
from b24batch.progress import Report


class _Memory(Route):
    """The REST 3.0 route with ``send`` answered from ids in memory, as the portal would."""

    ids: Sequence[int] = ()
    page = 50
    sizes: Sequence[int] = ()  # when set, the page of each command in turn, cycled
    batches: ClassVar[list[int]] = []
    commands = 0

    @classmethod
    def send(cls, client: Any, prepared: Prepared, request_id: str) -> Any:
        rows = prepared.commands.items
        cls.batches.append(len(rows))
        assert len(cls.batches) <= 2_000, "the walk stopped advancing"  # fail, never hang
        return SimpleNamespace(errors=(), data=[cls._answer(row.params) for row in rows])

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
        if cls.sizes:  # pages as a portal may give them: any length, also more than asked
            size = cls.sizes[cls.commands % len(cls.sizes)]
        cls.commands += 1
        if params["order"]["id"] == "DESC":
            chosen = cls.ids[max(start, stop - size) : stop][::-1]
        else:
            chosen = cls.ids[start : min(stop, start + size)]
        return {"items": [{"id": i, "title": f"Task {i}"} for i in chosen]}


def _walk(
    ids: Sequence[int], *, page: int = 50, hold: int | None = HOLD, sizes: Sequence[int] = ()
) -> Any:
    _Memory.ids, _Memory.page, _Memory.batches = ids, page, []
    _Memory.sizes, _Memory.commands = sizes, 0
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


@settings(max_examples=150, deadline=None)
@given(
    ids=st.sets(st.integers(1, 5_000), max_size=1_500).map(sorted),
    sizes=st.lists(st.integers(1, 90), min_size=1, max_size=20),
    lazy=st.booleans(),
)
def test_pages_of_any_length_give_every_item_once(
    ids: list[int], sizes: list[int], lazy: bool
) -> None:
    """Pages short at random or longer than asked: every id once, in order, in pages of at
    most 50 (``send`` fails a walk that stops advancing)."""
    pages = list(_walk(ids, hold=HOLD if lazy else None, sizes=sizes))
    assert [item["id"] for page in pages for item in page] == ids
    assert all(1 <= len(page) <= 50 for page in pages)


@pytest.mark.parametrize(
    ("sizes", "count"),
    [
        pytest.param([60, 60, 50], 2_120, id="60-then-50"),
        pytest.param([51, 51, 50], 2_120, id="51-then-50"),
        pytest.param([50, 50, 20], 1_234, id="50-then-20"),
    ],
)
def test_a_page_shorter_than_an_earlier_one_ends_nothing(sizes: list[int], count: int) -> None:
    """Pages shorter than the first batch's (the sizes of #22) lose nothing."""
    ids = sorted(random.Random(count).sample(range(1, 500 * count), count))
    sizes = sizes[:2] + [sizes[2]] * 10_000  # the end pages, then every later command
    assert [item["id"] for page in _walk(ids, sizes=sizes) for item in page] == ids


def test_a_short_page_leaves_the_rest_of_its_range_open() -> None:
    """A page of 3 in a range of 40 ids finishes nothing: the next command starts after it."""
    walker = Walk(page_limit=50, hold=None, where="x.list")
    walker.take(
        [Query(), Query(descending=True)], [_fake(range(1, 51)), _fake(range(500, 450, -1))]
    )
    walker.take([Query(51, 120, end=91)], [_fake([51, 52, 53])])
    assert walker.queries()[0].low == 54
    assert not walker.finished


def test_a_page_that_reaches_past_its_range_finishes_it() -> None:
    """A page holding its range and going beyond finishes the range, however short it is."""
    walker = Walk(page_limit=50, hold=None, where="x.list")
    walker.take([Query(), Query(descending=True)], [_fake([1, 2]), _fake([9, 8])])
    assert (walker.queries()[0].low, walker.queries()[-1].high) == (3, 9)  # reaches id 8
    ready = walker.take([Query(3, 9, end=8)], [_fake([4, 8])])
    assert [[item["id"] for item in page] for page in ready] == [[4], [8, 9]]
    assert walker.finished


@pytest.mark.parametrize(
    ("first", "last", "empty"),
    [
        pytest.param([], range(1_234, 1_184, -1), "empty ascending", id="ascending-empty"),
        pytest.param(range(1, 51), [], "empty descending", id="descending-empty"),
    ],
)
def test_end_pages_that_contradict_each_other_raise(
    first: Sequence[int], last: Sequence[int], empty: str
) -> None:
    """One end page empty and the other holding items is a DecodeError, not an empty list."""
    walker = Walk(page_limit=50, hold=None, where="x.list")
    with pytest.raises(DecodeError, match=f"x.list answered an {empty} end page and one of 50"):
        walker.take([Query(), Query(descending=True)], [_fake(first), _fake(last)])


def test_two_empty_end_pages_are_an_empty_list() -> None:
    """Both end pages empty: the list is empty, and the walk is finished after one batch."""
    walker = Walk(page_limit=50, hold=None, where="x.list")
    assert walker.take([Query(), Query(descending=True)], [_fake([]), _fake([])]) == []
    assert walker.finished


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


@pytest.mark.parametrize("lanes", [2, 4, 16])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_taken_in_any_order_give_every_item_once_in_order(lanes: int, seed: int) -> None:
    """Up to ``lanes`` batches out at once, their pages taken in a random order: every item
    once, in id order, and what is held plus what the batches out may bring stays within
    ``hold``, one batch of full pages a lane."""
    rand = random.Random(seed)
    ids = sorted(rand.sample(range(1, 2_000_000), 30_000)) + list(range(3_000_000, 3_030_000))
    _Memory.ids, _Memory.page, _Memory.sizes, _Memory.commands = ids, 50, (), 0
    hold = lanes * HOLD
    walker = Walk(page_limit=50, hold=hold, where="x")
    out: dict[int, list[Query]] = {}
    got: list[int] = []
    most = 0
    for _ in range(10_000):
        if walker.finished:
            break
        while len(out) < lanes:
            batch, queries = walker.hand_out(lanes)
            if not queries:
                break
            out[batch] = queries
        most = max(most, walker.held + sum(len(q) for q in out.values()) * 50)
        batch = rand.choice(sorted(out))
        queries = out.pop(batch)
        ready = walker.take(queries, [_page_of(q) for q in queries], batch)
        got.extend(item["id"] for page in ready for item in page)
    assert walker.finished
    assert got == ids
    assert most <= hold


def _in_lanes(ids: list[int], lanes: int) -> tuple[list[int], list[int]]:
    """Walk ``ids`` with up to ``lanes`` batches out, each taken as it lands, oldest first (as
    the window hands them back): the ids got, and each batch's command count in order."""
    _Memory.ids, _Memory.page, _Memory.sizes, _Memory.commands = ids, 50, (), 0
    walker = Walk(page_limit=50, hold=None, where="x")
    out: dict[int, list[Query]] = {}
    sizes: list[int] = []
    got: list[int] = []
    for _ in range(1_000):  # a walk that stops advancing fails below, never hangs
        if walker.finished:
            break
        while len(out) < lanes:
            batch, queries = walker.hand_out(lanes)
            if not queries:
                break
            out[batch] = queries
            sizes.append(len(queries))
        batch = min(out)
        queries = out.pop(batch)
        ready = walker.take(queries, [_page_of(q) for q in queries], batch)
        got.extend(item["id"] for page in ready for item in page)
    return got, sizes


@pytest.mark.parametrize(
    ("count", "lanes", "rounds"),
    [(100_000, 16, 3), (30_000, 4, 4), (10_000, 16, 1), (10_000, 1, 5)],
)
def test_lanes_share_a_dense_list_over_the_fewest_rounds(
    count: int, lanes: int, rounds: int
) -> None:
    """A dense list, ``lanes`` batches out at once: the ranges go out in ``lanes * rounds``
    batches of nearly equal size, the fewest rounds of full batches (50 commands) that carry
    the commands the walk plans (a range of 49 ids a command on a dense list), and no batch
    more."""
    ids = list(range(1, count + 1))
    got, sizes = _in_lanes(ids, lanes)
    assert got == ids
    ranges = sizes[1:]  # after the end pages
    assert len(ranges) == lanes * rounds
    assert max(ranges) - min(ranges) <= 2
    assert max(ranges) <= 50


@pytest.mark.parametrize("lanes", [4, 16])
def test_a_dense_block_inside_a_sparse_list_does_not_make_the_rest_dense(lanes: int) -> None:
    """Sparse ends and 20 000 dense ids in the middle, several batches out at once: what is
    read after the block (empty ranges) sets the density of the open rest, even with other
    batches still out between them. The rest was once kept at the block's density for the whole
    walk and cut into ranges of 49 ids across a million empty ids: 10 000 batches, where
    one batch at a time needs 13."""
    ids = sorted(
        {
            *range(1, 1_000_000, 20_000),
            *range(400_000, 420_000),
            *range(1_000_001, 2_000_000, 20_000),
        }
    )
    got, sizes = _in_lanes(ids, lanes)
    assert got == ids
    assert len(sizes) <= 40


def test_nothing_is_handed_out_while_the_end_pages_are_out() -> None:
    """The ranges come from the end pages: until they land, no second batch goes."""
    walker = Walk(page_limit=50, hold=None, where="x")
    batch, queries = walker.hand_out(4)
    assert (batch, len(queries)) == (0, 2)
    assert walker.hand_out(4) == (-1, [])
    walker.take(queries, [_fake(range(1, 51)), _fake(range(1000, 950, -1))], batch)
    first, second = walker.hand_out(4), walker.hand_out(4)
    assert first[1]
    assert second[1]
    assert first[1][-1].until == second[1][0].low  # disjoint, adjacent ranges
