"""The parallel keyset scan behind ``CallList*``/``FetchList*``: which id ranges to ask for next.

Pure planning and merging over ids, no I/O: the first batch reads a page from each end of the
list (ascending and descending); the ids between are split into disjoint ranges, one list
command each, and a range is read again from its last id until the portal says it is finished:
a page reaches past its end, or comes back empty. A page's length proves nothing (permission
filtering, a method's clamp or configuration shorten pages a client cannot see), so it only
sizes the ranges. Checks that every page stays inside its bounds and in id order, so a cursor
that does not advance is an error, never a loop.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, Final

import attrs

from b24batch.commands import MAX_COMMANDS
from b24batch.errors import DecodeError

__all__ = ["FINER", "SLACK", "Page", "Query", "Walk"]

SLACK: Final = 1.25
"""Ranges are cut to hold about 1/SLACK of a page by the density seen so far, so that a range
somewhat denser than estimated still fits in one command and needs no further round."""
FINER: Final = 4
"""Slots to spare cut a range into at most this many times the pieces its estimate needs: a
safety margin against a wrong estimate, without a command per item."""


@attrs.frozen
class Query:
    """One list command: ids in ``[low, high)`` (None: open), ascending unless ``descending``.

    It answers for the ids in ``[low, end)`` (``end`` None: up to ``high``); ``high`` may reach
    past ``end``, so that a page which goes beyond ``end`` proves the range read to its end.
    """

    low: int | None = None
    high: int | None = None
    descending: bool = False
    end: int | None = None

    @property
    def until(self) -> int | None:
        """The end of the ids this command answers for."""
        return self.high if self.end is None else self.end


@attrs.frozen
class Page:
    """What one command brought: its items and their ids, in the order the portal sent them."""

    ids: Sequence[int]
    items: Sequence[Any]


@attrs.define
class _Done:
    items: Sequence[Any]
    first: int | None = None  # the id of the first item: a known item a query may reach


@attrs.define
class _Open:
    low: int
    high: int
    density: float  # items per id, estimated from what was read around the segment


@attrs.define
class _Flying:
    low: int
    high: int
    batch: int  # the batch whose commands read it, not yet taken


class Walk:
    """The state of one scan: the id line cut into finished and open segments, in id order.

    Drive it with ``queries()`` and ``take(queries, pages)`` until ``finished``; ``take``
    returns the pages that are complete in id order (everything below the first open range).
    Several batches may be out at once: each ``hand_out()`` gives ranges no batch in flight
    reads (none while the end pages are out, or every open range is), and
    ``take(queries, pages, batch)`` merges one batch's pages, in any order of batches.

    Args:
        page_limit: The page size asked for. Pages may be shorter or longer, and no page's
            length ends a range: only an empty page, or one that reaches past the range's end,
            does. The lengths seen only size the next ranges.
        hold: When set, the most items the walk may hold between batches plus what the next
            batch can bring: fewer commands are sent while finished ranges wait above an open
            one, so a lazy export's memory stays within one batch of pages.
        where: How error messages name the list (``"tasks.task.list"``).
    """

    def __init__(self, *, page_limit: int, hold: int | None, where: str) -> None:
        self._page_limit = page_limit
        self._hold = hold
        self._where = where
        self._page = page_limit  # the portal's page as the last batch showed it: sizes ranges
        self._largest = 0  # the longest page seen: what one command may bring, for ``hold``
        self._segments: list[_Done | _Open | _Flying] | None = None
        self._flying: dict[int, int] = {}  # batch -> commands, for the batches out
        self.batches = 0  # handed out
        # The commands of the batches of ranges taken back: with what is open and what is out,
        # the walk's whole work, which ``_plan`` shares between lanes.
        self._ranges_taken = 0

    @property
    def finished(self) -> bool:
        return self._segments is not None and not self._segments

    @property
    def flying(self) -> int:
        """How many batches are out and not yet taken."""
        return len(self._flying)

    @property
    def held(self) -> int:
        """Items fetched but not yet handed out (finished ranges above an open one)."""
        return sum(len(s.items) for s in self._segments or () if isinstance(s, _Done))

    def held_pages(self) -> list[Sequence[Any]]:
        """The pages fetched but not yet handed out, in id order."""
        return [s.items for s in self._segments or () if isinstance(s, _Done) and s.items]

    def queries(self) -> list[Query]:
        """The commands of the next batch, for a walk with one batch out at a time (then
        ``take(queries, pages)``): the two end pages first, then open ranges."""
        return self._plan(None)[0]

    def hand_out(self, lanes: int | None = 1) -> tuple[int, list[Query]]:
        """``(batch, commands)`` of a batch to send now, its ranges marked as being read;
        no commands when every open range is being read (or the end pages are out) and more
        must land first. Merge its pages with ``take(queries, pages, batch)``.

        Args:
            lanes: How many batches may be in flight at once (the window). The commands
                left (the open ranges' and those in flight) are shared evenly between the
                lanes over the fewest rounds of full batches that carry them, so that the
                lanes run side by side at the portal and end together, instead of some lanes
                carrying one full batch more than others. Spare slots do not cut ranges finer
                (each command brings up to a page: a batch's time grows with it).
                None: one batch at a time, spare slots cutting ranges finer (fewer rounds).
        """
        queries, covered = self._plan(lanes)
        if not queries:
            return -1, []
        return self._mark(len(queries), covered), queries

    def _plan(self, lanes: int | None) -> tuple[list[Query], list[tuple[_Open, int]]]:
        if self._segments is None:
            return ([], []) if self._flying else ([Query(), Query(descending=True)], [])
        opened = [
            (segment, self._reach(position))
            for position, segment in enumerate(self._segments)
            if isinstance(segment, _Open)
        ]
        slots = self._slots()
        if not opened or slots == 0:
            return [], []
        page = max(self._page, 1)
        if lanes is not None:
            slots = max(1, min(slots, self._share(opened, page, max(lanes, 1))))
        return _cut(opened, slots, page, finer=lanes is None)

    def _share(self, opened: list[tuple[_Open, int | None]], page: int, lanes: int) -> int:
        """The commands for the next batch when ``lanes`` batches may be out at once.

        The walk's whole work (the commands open, out, and taken back) is shared evenly over
        the fewest rounds of full batches that carry it, ``lanes`` batches a round, so that the
        lanes run side by side and end together; the next batch gets its even share of what is
        open among the batches of that plan not yet handed out. (Counting the batches out as
        work still to share, without those taken back, shrank every batch a little as the first
        round landed, until the last round spilled into one more.) When the plan has no batch
        left, as estimates grow, what is open is shared over the rounds it needs of its own.
        """
        open_need = sum(_need(segment, page) for segment, _ in opened)
        total = open_need + sum(self._flying.values()) + self._ranges_taken
        batches = lanes * math.ceil(total / (lanes * MAX_COMMANDS))
        left = batches - (self.batches - 1)  # every batch but the end pages' is of ranges
        if left < 1:
            left = lanes * math.ceil(open_need / (lanes * MAX_COMMANDS))
        return math.ceil(open_need / left)

    def _mark(self, commands: int, covered: list[tuple[_Open, int]]) -> int:
        """Mark the ``covered`` part of each segment as read by a new batch; its number."""
        batch = self.batches
        self.batches += 1
        self._flying[batch] = commands
        for segment, high in covered:
            assert self._segments is not None
            position = next(n for n, s in enumerate(self._segments) if s is segment)
            parts: list[_Done | _Open | _Flying] = [_Flying(segment.low, high, batch)]
            if high < segment.high:
                parts.append(_Open(high, segment.high, segment.density))
            self._segments[position : position + 1] = parts
        return batch

    def _adopt(self, queries: Sequence[Query]) -> int:
        """Mark what ``queries`` (not handed out by ``hand_out``) read as a batch of its own."""
        by_low = {query.low: query for query in queries}
        covered: list[tuple[_Open, int]] = []
        for segment in self._segments or ():
            if not isinstance(segment, _Open):
                continue
            position: int | None = segment.low
            while position is not None and position < segment.high and position in by_low:
                position = by_low[position].until
            if position is not None and position > segment.low:
                covered.append((segment, min(position, segment.high)))
        return self._mark(len(queries), covered)

    def take(
        self, queries: Sequence[Query], pages: Sequence[Page], batch: int | None = None
    ) -> list[Sequence[Any]]:
        """Merge the pages of ``batch`` (None: of ``queries`` from ``queries()``); return the
        pages now complete in id order (none empty).

        Raises:
            DecodeError: A page has an id outside its range or out of order (the portal
                ignored the id filter or the order, and the walk would not advance), or the
                two end pages contradict each other (one empty, the other not).
        """
        for query, page in zip(queries, pages, strict=True):
            self._check(query, page)
        if batch is None:
            batch = self._adopt(queries)
        commands = self._flying.pop(batch)
        if self._segments is not None:  # a batch of ranges, not the end pages
            self._ranges_taken += commands
        lengths = [len(page.ids) for page in pages if page.ids]
        if lengths:
            self._page = max(lengths)
            self._largest = max(self._largest, self._page)
        if self._segments is None:
            self._segments = self._ends(pages[0], pages[1])
        else:
            self._segments = _joined(self._merged(queries, pages, batch))
        ready: list[Sequence[Any]] = []
        while self._segments and isinstance(self._segments[0], _Done):
            done = self._segments.pop(0)
            assert isinstance(done, _Done)
            if done.items:
                ready.append(done.items)
        return ready

    def _reach(self, position: int) -> int | None:
        """How far a query for the open segment at ``position`` may read: just past the first
        known item above it, so that a page reaching that item finishes the segment."""
        assert self._segments is not None
        for segment in self._segments[position + 1 :]:
            if isinstance(segment, _Open | _Flying):
                return segment.low
            if segment.first is not None:
                return segment.first + 1
        return None

    def _ends(self, first: Page, last: Page) -> list[_Done | _Open | _Flying]:
        """Segments after the two end pages: the walk may already be complete."""
        if not first.ids or not last.ids:
            if first.ids or last.ids:
                empty, full = ("ascending", last) if last.ids else ("descending", first)
                raise DecodeError(
                    f"{self._where} answered an empty {empty} end page and one of "
                    f"{len(full.ids)} items the other way in the first batch: the two ends of "
                    f"one list contradict each other, so the walk cannot tell how long it is; "
                    f"check that the method filters and orders by id_key both ways"
                )
            return []
        ascending = list(first.items)
        high_seen, low_top = first.ids[-1], last.ids[-1]
        if low_top <= high_seen + 1:
            # The two pages meet or overlap: together they hold the whole list.
            above = [
                item
                for item_id, item in zip(reversed(last.ids), reversed(last.items), strict=True)
                if item_id > high_seen
            ]
            return [_Done(ascending + above, first.ids[0])]
        spans = (high_seen - first.ids[0] + 1) + (last.ids[0] - low_top + 1)
        density = (len(first.ids) + len(last.ids)) / spans
        return [
            _Done(ascending, first.ids[0]),
            _Open(high_seen + 1, low_top, density),
            _Done(list(last.items)[::-1], low_top),
        ]

    def _merged(
        self, queries: Sequence[Query], pages: Sequence[Page], batch: int
    ) -> list[_Done | _Open | _Flying]:
        """Replace each segment ``batch`` read by what its commands brought, and what is
        still open."""
        assert self._segments is not None
        by_low = {query.low: (query, page) for query, page in zip(queries, pages, strict=True)}
        merged: list[_Done | _Open | _Flying] = []
        refresh: float | None = None  # the density just read, for the open rest above it
        for segment in self._segments:
            if isinstance(segment, _Open) and refresh is not None:
                # The rest of the segment is as dense as what was just read below it.
                merged.append(_Open(segment.low, segment.high, refresh))
                refresh = None
                continue
            if isinstance(segment, _Flying) and segment.batch != batch:
                # Other batches still out between what was read and the open rest (several
                # lanes): the reading still is the nearest one below the rest. Stopping here
                # kept the rest at the density of the first dense range read below it for the
                # whole walk, cut into ranges of a page's ids across millions of empty ids.
                merged.append(segment)
                continue
            refresh = None
            if not isinstance(segment, _Flying):
                merged.append(segment)
                continue
            position = segment.low
            seen = covered = 0  # what this batch saw of the segment: items, and ids read
            while position < segment.high:
                sent = by_low.get(position)
                end = None if sent is None else sent[0].until
                if sent is None or end is None:  # cannot be: the batch read the whole segment
                    density = max(seen, 1) / covered if covered else 1.0
                    merged.append(_Open(position, segment.high, density))
                    break
                page = sent[1]
                ids = page.ids
                own = [n for n, item_id in enumerate(ids) if item_id < end]
                merged.append(_Done([page.items[n] for n in own], ids[0] if own else None))
                seen += len(own)
                if ids and ids[-1] + 1 < end:
                    # The page stopped inside the range: whatever its length, the rest of the
                    # range is unread until a page reaches its end or comes back empty.
                    span = ids[-1] - position + 1
                    covered += span
                    merged.append(_Open(ids[-1] + 1, end, len(ids) / span))
                else:
                    covered += end - position
                position = end
            refresh = max(seen, 1) / covered if covered else None
        return merged

    def _slots(self) -> int:
        """Commands the next batch may carry: with ``hold``, what is held and what the
        batches out may bring leave room for; at least one when nothing is out."""
        slots = MAX_COMMANDS
        if self._hold is not None:
            page = max(self._page_limit, self._largest, 1)
            coming = sum(self._flying.values()) * page
            slots = (self._hold - self.held - coming) // page
        return max(0 if self._flying else 1, min(slots, MAX_COMMANDS))

    def _check(self, query: Query, page: Page) -> None:
        ids = page.ids
        for position, item_id in enumerate(ids):
            previous = ids[position - 1] if position else None
            backwards = previous is not None and (
                item_id >= previous if query.descending else item_id <= previous
            )
            outside = (query.low is not None and item_id < query.low) or (
                query.high is not None and item_id >= query.high
            )
            wrong = backwards or outside
            if wrong:
                bounds = f"[{query.low}, {query.high})"
                way = "descending" if query.descending else "ascending"
                raise DecodeError(
                    f"{self._where} answered id {item_id} for ids in {bounds}, {way}, after "
                    f"{previous}: the portal ignored the id filter or the order, so the walk "
                    f"by id would not advance; check that the method filters and orders by "
                    f"id_key"
                )


def _joined(segments: list[_Done | _Open | _Flying]) -> list[_Done | _Open | _Flying]:
    """``segments`` without empty finished ranges, and open ones that then touch made one."""
    joined: list[_Done | _Open | _Flying] = []
    for segment in segments:
        if isinstance(segment, _Done) and not segment.items:
            continue
        before = joined[-1] if joined else None
        if isinstance(segment, _Open) and isinstance(before, _Open):
            items = before.density * (before.high - before.low)
            items += segment.density * (segment.high - segment.low)
            joined[-1] = _Open(before.low, segment.high, items / (segment.high - before.low))
            continue
        joined.append(segment)
    return joined


def _piece(segment: _Open, page: int) -> int:
    """The ids of one range of ``segment``: about ``page / SLACK`` items at its density, and
    never fewer than ``page - 1`` ids — ids are distinct integers, so such a range can never
    hold more than its page, and a dense list (density 1) needs no slack at all."""
    return max(1, page - 1, math.floor(page / SLACK / segment.density))


def _need(segment: _Open, page: int) -> int:
    """The commands ``segment`` needs: one per range of ``_piece`` ids."""
    width = segment.high - segment.low
    return min(width, max(1, math.ceil(width / _piece(segment, page))))


def _cut(
    opened: list[tuple[_Open, int | None]], slots: int, page: int, *, finer: bool = True
) -> tuple[list[Query], list[tuple[_Open, int]]]:
    """Cut the open segments into at most ``slots`` id ranges, lowest ids first.

    Each range is sized to hold about ``page / SLACK`` items by the segment's density estimate.
    A segment larger than the slots left gets its lowest pieces now and keeps the rest open
    for a later batch (a window moving up the ids, so what is held waiting stays small). When
    every open segment fits with slots to spare, the spare ones cut the ranges finer (unless
    not ``finer``).

    Each command may read one range's width past its range (the segment's last one, up to the
    segment's reach: just past the next known item), so that a page which holds the range
    and goes on beyond it finishes the range in one command, however long the page is.

    Returns the queries, and each segment cut with the end of what its queries read.
    """
    plan: list[tuple[_Open, int | None, list[int]]] = []  # segment, reach, [low, high, pieces]
    left = slots
    for segment, reach in opened:
        if left == 0:
            break
        need = _need(segment, page)
        if need > left:
            piece = _piece(segment, page)
            high = min(segment.high, segment.low + piece * left)
            plan.append((segment, reach, [segment.low, high, left]))
            left = 0
            break
        plan.append((segment, reach, [segment.low, segment.high, need]))
        left -= need
    if finer and left and len(plan) == len(opened):
        total = sum(entry[2] for _, _, entry in plan)
        for _, _, entry in plan:
            pieces = entry[2] + left * entry[2] // total
            entry[2] = min(entry[1] - entry[0], pieces, entry[2] * FINER)
    queries: list[Query] = []
    covered: list[tuple[_Open, int]] = []
    for segment, reach, (low, high, count) in plan:
        width = high - low
        bounds = [low + width * k // count for k in range(count + 1)]
        for start, end in itertools.pairwise(bounds):
            beyond = end + (end - start)
            queries.append(Query(start, reach if beyond >= segment.high else beyond, end=end))
        covered.append((segment, high))
    assert len(queries) <= slots
    return queries, covered
