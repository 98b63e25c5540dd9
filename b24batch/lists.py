"""``CallListV3``/``FetchListV3`` and ``CallListV2``/``FetchListV2``: every item of a list method.

Faces only: signatures, docstrings, examples. Each checks the caller's params and hands the
walk to the engine (``_engine/pages.py`` and ``_engine/walk.py``) with its protocol.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs

from b24batch._engine.call_options import checked_in_flight
from b24batch._engine.pages import Route, checked, checked_page_size, hold_for, pages
from b24batch._engine.port import Face
from b24batch._protocols.base import Protocol
from b24batch._protocols.v2 import V2
from b24batch._protocols.v3 import V3
from b24batch.errors import B24Error
from b24batch.progress import Progress, progress_report
from b24batch.results import ChunkedResult, check_type

__all__ = ["CallListV2", "CallListV3", "FetchListV2", "FetchListV3"]


class _Lister(Face):
    _protocol: Protocol

    def _start(
        self,
        method: object,
        params: object,
        id_key: str | None,
        result_type: Any,
        progress: Progress,
        max_in_flight: object,
        page_size: object,
        *,
        lazy: bool,
    ) -> Iterator[list[Any]]:
        protocol = self._protocol
        size = checked_page_size(protocol, page_size)
        spec = checked(protocol, method, params, id_key or protocol.id_key, page_size=size)
        if result_type is not None:
            check_type(result_type, "result_type")
        in_flight = checked_in_flight(max_in_flight)
        hold = hold_for(in_flight, size) if lazy else None
        report = progress_report(progress, None, unit="item")
        return pages(
            self._client, Route(protocol), spec, result_type, hold, report, in_flight=in_flight
        )


class _CallList(_Lister):
    def make(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        id_key: str | None = None,
        result_type: Any = None,
        *,
        progress: Progress = None,
        max_in_flight: int | Literal["auto"] = "auto",
        page_size: int = 50,
    ) -> list[Any]:
        """Every item of the list ``method`` matching ``params``' filter, in id order.

        The list is walked by id: a first batch reads a page from each end; the ids between
        are cut into disjoint ranges, one list command each, shared between the batches the
        window lets out at once (up to 50 commands a batch). A range is
        finished only when a page for it reaches past its end or comes back empty, never
        because a page looked short; the rest of a range is read (and cut) again. Each item
        that exists for the whole call comes back exactly once; one added or deleted meanwhile
        at most once.

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
            max_in_flight: How many batches may be on the wire at once, 1 to 16, or
                ``"auto"`` (the default: as many as keep the request bucket busy), as for
                ``BatchByChunkV3``; every batch goes through the client's limiters.
            page_size: The page each command asks for. REST 3.0 methods that allow more than
                50 (``pagination.limit``, up to 1000 on some) take fewer commands; a portal that
                clamps the page silently is still walked whole. Classic pages are 50.

        Returns:
            The items, in ascending id order.

        Raises:
            SdkError: Bad params or options, before anything is sent.
            DecodeError: The portal's pages break the walk (ids out of their range or order:
                the cursor would not advance; one end page empty and the other not), or an
                item does not fit ``result_type``.
            B24Error: What a batch raised, and any error the portal answered for a command:
                a list of items has no room for one, so a walk always raises, whatever
                ``raise_errors`` says (docs/errors.md, "Returned or raised");
                ``error.partial.data`` holds every item fetched until then, in id order.
        """
        pages = self._start(
            method, params, id_key, result_type, progress, max_in_flight, page_size, lazy=False
        )
        items: list[Any] = []
        try:
            for page in pages:
                items.extend(page)
        except (B24Error, KeyboardInterrupt) as error:  # keep every item already fetched
            partial = getattr(error, "partial", None)
            if partial is None:
                partial = ChunkedResult(data=[])
            if isinstance(partial.data, list):
                error.partial = attrs.evolve(partial, data=items + partial.data)  # type: ignore[union-attr]
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
        max_in_flight: int | Literal["auto"] = "auto",
        page_size: int = 50,
    ) -> Iterator[list[Any]]:
        """Yield the items of the list ``method`` page by page, in id order.

        Walks the list as ``CallList*.make`` does, and never holds more than one batch of
        full pages (2 500 items) per batch the window may keep in flight (16 with ``"auto"``),
        however long the list: pages are handed out as soon as every id below them is read,
        and while finished ranges wait above one still being read, fewer commands go out.
        Params are checked here, before the first request; arguments as for ``make``. Stop
        iterating at any time: nothing more is sent.
        Every error is raised, as by ``make`` (docs/errors.md, "Returned or raised").

        Examples:
            >>> from b24batch.testing import FakePortal
            >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
            ...     _ = portal.add_deals(120)
            ...     for page in FetchListV2(b24).iter("crm.deal.list", {"select": ["ID"]}):
            ...         print(len(page), page[0]["ID"])
            50 1
            50 51
            20 101
        """
        return self._start(
            method, params, id_key, result_type, progress, max_in_flight, page_size, lazy=True
        )

    make = iter
    """The same method as ``iter``, under the name the other faces use."""


class CallListV3(_CallList):
    """Every item of a REST 3.0 list method, in id order, in few batches (``make``).

    Examples:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     _ = portal.add_tasks(120)
        ...     tasks = CallListV3(b24).make("tasks.task.list", {"select": ["title"]})
        ...     len(tasks), tasks[0], len(portal.requests)
        (120, {'id': 1, 'title': 'Task 1'}, 2)
    """

    _protocol = V3


class FetchListV3(_FetchList):
    """A REST 3.0 list method's items page by page, in id order (``iter``).

    Examples:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     _ = portal.add_tasks(120)
        ...     pages = FetchListV3(b24).iter("tasks.task.list", {"select": ["id"]})
        ...     tuple(len(page) for page in pages)
        (50, 50, 20)
    """

    _protocol = V3


class CallListV2(_CallList):
    """Every item of a classic list method (``crm.deal.list``, ...), in id order (``make``).

    Examples:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     _ = portal.add_deals(120)
        ...     deals = CallListV2(b24).make("crm.deal.list", {"select": ["TITLE"]})
        ...     len(deals), deals[-1]
        (120, {'ID': '120', 'TITLE': 'Deal 120'})
    """

    _protocol = V2


class FetchListV2(_FetchList):
    """A classic list method's items page by page, in id order (``iter``).

    Examples:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     _ = portal.add_deals(70)
        ...     pages = FetchListV2(b24).iter("crm.deal.list", {"select": ["ID"]})
        ...     tuple(page[0].get("ID") for page in pages)
        ('1', '51')
    """

    _protocol = V2
