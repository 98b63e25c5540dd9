"""The parallel keyset scan behind ``CallList*``/``FetchList*``: which id ranges to ask for next.

Pure planning and merging over ids, no I/O: the first batch reads a page from each end of the
list (ascending and descending); the ids between are split into disjoint ranges, one list
command each, and only the ranges that came back full are walked (and split) again. Checks that
every page stays inside its range and in id order, so a cursor that does not advance is an
error, never a loop.
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
    """One list command: ids in ``[low, high)`` (None: open), ascending unless ``descending``."""

    low: int | None = None
    high: int | None = None
    descending: bool = False


@attrs.frozen
class Page:
    """What one command brought: its items and their ids, in the order the portal sent them."""

    ids: Sequence[int]
    items: Sequence[Any]


@attrs.define
class _Done:
    items: Sequence[Any]


@attrs.define
class _Open:
    low: int
    high: int
    density: float  # items per id, estimated from the page that came back full


class Walk:
    """The state of one scan: the id line cut into finished and open segments, in id order.

    Drive it with ``queries()`` and ``take(queries, pages)`` until ``finished``; ``take``
    returns the pages that are complete in id order (everything below the first open range).

    Args:
        page_limit: The page size asked for; pages are judged full against the largest page
            actually seen (the portal clamps silently), which never exceeds it.
        hold: When set, the most items the walk may hold between batches plus what the next
            batch can bring: fewer commands are sent while finished ranges wait above an open
            one, so a lazy export's memory stays within one batch of pages.
        where: How error messages name the list (``"tasks.task.list"``).
    """

    def __init__(self, *, page_limit: int, hold: int | None, where: str) -> None:
        self._page_limit = page_limit
        self._hold = hold
        self._where = where
        self._seen = 0  # the largest page seen: what a full page holds, as far as we know
        self._segments: list[_Done | _Open] | None = None
        self.batches = 0

    @property
    def finished(self) -> bool:
        return self._segments is not None and not self._segments

    @property
    def held(self) -> int:
        """Items fetched but not yet handed out (finished ranges above an open one)."""
        return sum(len(s.items) for s in self._segments or () if isinstance(s, _Done))

    def held_pages(self) -> list[Sequence[Any]]:
        """The pages fetched but not yet handed out, in id order."""
        return [s.items for s in self._segments or () if isinstance(s, _Done) and s.items]

    def queries(self) -> list[Query]:
        """The commands of the next batch: the two end pages first, then open ranges."""
        if self._segments is None:
            return [Query(), Query(descending=True)]
        opened = [s for s in self._segments if isinstance(s, _Open)]
        return _cut(opened, self._slots(len(opened)), max(self._seen, 1))

    def take(self, queries: Sequence[Query], pages: Sequence[Page]) -> list[Sequence[Any]]:
        """Merge a batch's pages; return the pages now complete in id order (none empty).

        Raises:
            DecodeError: A page has an id outside its range or out of order: the portal
                ignored the id filter or the order, and the walk would not advance.
        """
        self.batches += 1
        for query, page in zip(queries, pages, strict=True):
            self._check(query, page)
        self._seen = max([self._seen, *(len(page.ids) for page in pages)])
        if self._segments is None:
            self._segments = self._ends(pages[0], pages[1])
        else:
            self._segments = self._merged(queries, pages)
        ready: list[Sequence[Any]] = []
        while self._segments and isinstance(self._segments[0], _Done):
            done = self._segments.pop(0)
            assert isinstance(done, _Done)
            if done.items:
                ready.append(done.items)
        return ready

    def _full(self, page: Page) -> bool:
        return bool(page.ids) and len(page.ids) >= self._seen

    def _ends(self, first: Page, last: Page) -> list[_Done | _Open]:
        """Segments after the two end pages: the walk may already be complete."""
        ascending = list(first.items)
        high_seen = first.ids[-1] if first.ids else None
        if not self._full(first) or not self._full(last) or last.ids[-1] <= first.ids[-1]:
            # One end page holds the whole list (or the two meet): what the descending page
            # adds above the ascending one's last id, if anything, completes it.
            above = [
                item
                for item_id, item in zip(reversed(last.ids), reversed(last.items), strict=True)
                if high_seen is None or item_id > high_seen
            ]
            if not self._full(first):
                above = []  # the ascending page alone was short: it is the whole list
            return [_Done(ascending + above)] if ascending or above else []
        low, high = first.ids[-1] + 1, last.ids[-1]
        if low >= high:  # the two pages are adjacent: nothing lies between them
            return [_Done(ascending + list(last.items)[::-1])]
        spans = (first.ids[-1] - first.ids[0] + 1) + (last.ids[0] - last.ids[-1] + 1)
        density = (len(first.ids) + len(last.ids)) / spans
        return [_Done(ascending), _Open(low, high, density), _Done(list(last.items)[::-1])]

    def _merged(self, queries: Sequence[Query], pages: Sequence[Page]) -> list[_Done | _Open]:
        """Replace each open segment by what its commands brought, and what is still open."""
        assert self._segments is not None
        by_low = {query.low: (query, page) for query, page in zip(queries, pages, strict=True)}
        merged: list[_Done | _Open] = []
        for segment in self._segments:
            if isinstance(segment, _Done):
                merged.append(segment)
                continue
            position = segment.low
            seen = covered = 0  # what this batch saw of the segment: items, and ids read
            while position < segment.high:
                sent = by_low.get(position)
                if sent is None or sent[0].high is None:  # not asked for in this batch
                    # The rest of the segment is as dense as what was just read of it.
                    density = max(seen, 1) / covered if covered else segment.density
                    merged.append(_Open(position, segment.high, density))
                    break
                query, page = sent
                assert query.high is not None
                merged.append(_Done(page.items))
                seen += len(page.ids)
                if self._full(page) and page.ids[-1] + 1 < query.high:
                    span = page.ids[-1] - position + 1
                    covered += span
                    merged.append(_Open(page.ids[-1] + 1, query.high, len(page.ids) / span))
                else:
                    covered += query.high - position
                position = query.high
        return merged

    def _slots(self, opened: int) -> int:
        slots = MAX_COMMANDS
        if self._hold is not None:
            page = max(self._page_limit, self._seen, 1)
            slots = (self._hold - self.held) // page
        return max(1, min(slots, MAX_COMMANDS))

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


def _cut(opened: list[_Open], slots: int, page: int) -> list[Query]:
    """Cut the open segments into at most ``slots`` id ranges, lowest ids first.

    Each range is sized to hold about ``page / SLACK`` items by the segment's density estimate.
    A segment larger than the slots left gets its lowest pieces now and keeps the rest open
    for a later batch (a window moving up the ids, so what is held waiting stays small). When
    every open segment fits with slots to spare, the spare ones cut the ranges finer.
    """
    target = page / SLACK
    plan: list[list[int]] = []  # [low, high, pieces]
    left = slots
    for segment in opened:
        if left == 0:
            break
        width = segment.high - segment.low
        need = min(width, max(1, math.ceil(segment.density * width / target)))
        if need > left:
            piece = max(1, math.floor(target / segment.density))
            plan.append([segment.low, min(segment.high, segment.low + piece * left), left])
            left = 0
            break
        plan.append([segment.low, segment.high, need])
        left -= need
    if left and len(plan) == len(opened):
        total = sum(entry[2] for entry in plan)
        for entry in plan:
            finer = entry[2] + left * entry[2] // total
            entry[2] = min(entry[1] - entry[0], finer, entry[2] * FINER)
    queries: list[Query] = []
    for low, high, count in plan:
        width = high - low
        bounds = [low + width * k // count for k in range(count + 1)]
        queries.extend(Query(a, b) for a, b in itertools.pairwise(bounds))
    return queries[:slots]
