"""``CallListV3``/``FetchListV3`` and ``CallListV2``/``FetchListV2``: every item of a list method.

Checks the caller's params, turns the scan's id ranges (``lists_plan.py``) into list commands of
each protocol, sends each batch through the engine (``batch.execute`` / ``batch_v2.execute_v2``:
the client's limiters and retry policy) and hands the pages out in id order. No HTTP of its own;
the commands of one batch never depend on one another's output.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from b24batch._engine.pages import (
    PAGE_LIMIT,
    Route,
    Spec,
    V2Route,
    V3Route,
    checked,
    item_id,
    items_of,
)
from b24batch._engine.walk import Page, Walk
from b24batch.batch import checked_request_id
from b24batch.commands import MAX_COMMANDS
from b24batch.errors import B24Error
from b24batch.progress import Progress, Report, progress_report
from b24batch.results import ChunkedResult, ChunkError, check_type, structure, structure_quick

if TYPE_CHECKING:
    from b24batch.client import _Client

__all__ = ["PAGE_LIMIT", "CallListV2", "CallListV3", "FetchListV2", "FetchListV3"]

_HOLD: Final = MAX_COMMANDS * PAGE_LIMIT  # one batch of full pages: see FetchList.iter


def _pages(
    client: _Client,
    route: Route,
    spec: Spec,
    result_type: Any,
    hold: int | None,
    report: Report,
) -> Iterator[list[Any]]:
    """Run the walk: one batch per round, the pages that are complete yielded in id order.

    A ``B24Error`` raised on the way carries what was fetched and not yet handed out in
    ``error.partial.data`` (in id order).
    """
    walk = Walk(page_limit=PAGE_LIMIT, hold=hold, where=spec.method)
    base = checked_request_id(None)
    try:
        while not walk.finished:
            queries = walk.queries()
            rows = [route.row(spec, query) for query in queries]
            request_id = f"{base}.{walk.batches}"
            try:
                result = route.send(client, rows, request_id)
                if result.errors:
                    raise result.errors[0]
                pages = []
                for position, data in enumerate(result.data):
                    where = f"{spec.method} (command {position} of batch {walk.batches})"
                    items = items_of(data, where)
                    pages.append(Page([item_id(item, spec.id_key, where) for item in items], items))
                ready = walk.take(queries, pages)
            except B24Error as error:
                held = [item for page in walk.held_pages() for item in page]
                keys = tuple(range(len(queries)))
                error.partial = ChunkedResult(
                    data=held, errors=(ChunkError(walk.batches, keys, error),)
                )
                raise
            for page in _packed(ready):
                yield _structured(page, result_type, spec.method, request_id)
            report(sum(map(len, ready)))
    finally:
        report.close()


def _packed(pages: Sequence[Sequence[Any]]) -> Iterator[list[Any]]:
    """The pages' items, in order, as pages of ``PAGE_LIMIT`` (the last may be shorter):
    ranges cut finer than a page, or an end page merged with its neighbour, still come out
    as pages of the usual size."""
    current: list[Any] = []
    for page in pages:
        for item in page:
            current.append(item)
            if len(current) == PAGE_LIMIT:
                yield current
                current = []
    if current:
        yield current


def _structured(page: Sequence[Any], result_type: Any, method: str, request_id: str) -> list[Any]:
    if result_type is None:
        return list(page)
    try:
        return [structure_quick(item, result_type) for item in page]
    except Exception:  # the detailed converter says where and why
        return [
            structure(
                item, result_type, path=f"$[{n}]", label=f"{method} item", request_id=request_id
            )
            for n, item in enumerate(page)
        ]


class _Lister:
    _route: Route

    def __init__(self, client: _Client) -> None:
        """Args: client: the portal client (B24Hook or B24OAuth) the batches go through."""
        self._client = client

    def _start(
        self,
        method: object,
        params: object,
        id_key: str | None,
        result_type: Any,
        progress: Progress,
        hold: int | None,
    ) -> Iterator[list[Any]]:
        spec = checked(self._route, method, params, id_key or self._route.id_key)
        if result_type is not None:
            check_type(result_type, "result_type")
        report = progress_report(progress, None, unit="item")
        return _pages(self._client, self._route, spec, result_type, hold, report)


class _CallList(_Lister):
    def make(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        id_key: str | None = None,
        result_type: Any = None,
        *,
        progress: Progress = None,
    ) -> list[Any]:
        """Every item of the list ``method`` matching ``params``' filter, in id order.

        The list is walked by id: a first batch reads a page from each end; the ids between
        are cut into up to 50 disjoint ranges, one list command each, in one batch; only the
        ranges that came back full are read (and cut) again. Each item that exists for the
        whole call comes back exactly once; one added or deleted meanwhile at most once.

        Args:
            method: The list method, e.g. ``"tasks.task.list"``, ``"crm.deal.list"``.
            params: Its params: ``filter`` (kept, and combined with the id ranges), ``select``
                (``id_key`` is added when missing, so the items carry it) and any other the
                method takes. ``order``, ``start`` and ``pagination`` are refused: the walk
                orders by id and pages by itself.
            id_key: The field holding the item id (``"id"`` on REST 3.0, ``"ID"`` classic).
            result_type: What to structure each item into (an attrs class, ...); None keeps
                JSON.
            progress: True for a tqdm bar, or a callable given ``(items_so_far, None)`` after
                every batch.

        Returns:
            The items, in ascending id order.

        Raises:
            SdkError: Bad params or options, before anything is sent.
            DecodeError: The portal's pages break the walk (ids out of their range or order:
                the cursor would not advance), or an item does not fit ``result_type``.
            B24Error: What a batch raised; ``error.partial.data`` holds every item fetched
                until then, in id order.
        """
        pages = self._start(method, params, id_key, result_type, progress, hold=None)
        items: list[Any] = []
        try:
            for page in pages:
                items.extend(page)
        except B24Error as error:
            partial = error.partial
            if partial is not None and isinstance(partial.data, list):
                error.partial = attrs.evolve(partial, data=items + partial.data)
            raise
        return items


class _FetchList(_Lister):
    def iter(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        id_key: str | None = None,
        result_type: Any = None,
        *,
        progress: Progress = None,
    ) -> Iterator[list[Any]]:
        """Yield the items of the list ``method`` page by page, in id order.

        Walks the list as ``CallList*.make`` does, and never holds more than one batch of
        full pages (2 500 items) at once, however long the list: pages are handed out as soon
        as every id below them is read, and while finished ranges wait above one still being
        read, the next batch carries fewer commands. Params are checked here, before the first
        request; arguments as for ``make``. Stop iterating at any time: nothing more is sent.

        Example:
            >>> pages = FetchListV2(b24).iter("crm.deal.list", {"select": ["ID"]})  # doctest: +SKIP
            >>> for page in pages:  # doctest: +SKIP
            ...     save(page)
        """
        return self._start(method, params, id_key, result_type, progress, hold=_HOLD)

    make = iter


class CallListV3(_CallList):
    """Every item of a REST 3.0 list method, in id order, in few batches (``make``).

    Example:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     _ = portal.add_tasks(120)
        ...     tasks = CallListV3(b24).make("tasks.task.list", {"select": ["title"]})
        ...     len(tasks), tasks[0], len(portal.requests)
        (120, {'id': 1, 'title': 'Task 1'}, 2)
    """

    _route = V3Route


class FetchListV3(_FetchList):
    """A REST 3.0 list method's items page by page, in id order (``iter``).

    Example:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     _ = portal.add_tasks(120)
        ...     pages = FetchListV3(b24).iter("tasks.task.list", {"select": ["id"]})
        ...     tuple(len(page) for page in pages)
        (50, 50, 20)
    """

    _route = V3Route


class CallListV2(_CallList):
    """Every item of a classic list method (``crm.deal.list``, ...), in id order (``make``).

    Example:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     _ = portal.add_deals(120)
        ...     deals = CallListV2(b24).make("crm.deal.list", {"select": ["TITLE"]})
        ...     len(deals), deals[-1]
        (120, {'ID': '120', 'TITLE': 'Deal 120'})
    """

    _route = V2Route


class FetchListV2(_FetchList):
    """A classic list method's items page by page, in id order (``iter``).

    Example:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     _ = portal.add_deals(70)
        ...     pages = FetchListV2(b24).iter("crm.deal.list", {"select": ["ID"]})
        ...     tuple(page[0].get("ID") for page in pages)
        ('1', '51')
    """

    _route = V2Route
