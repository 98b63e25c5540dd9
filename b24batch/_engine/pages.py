"""A list walk's batches: the caller's params checked, each round's commands sent, pages out.

Drives the keyset scan of ``walk.py``: its id ranges become list commands of the call's
protocol (its ``list_row``), batches of them go out through a ``Window`` (up to
``max_in_flight`` at once, each through ``execute``: the client's limiters, ledger and retry
policy), and the pages that are complete come out in id order. The commands of one batch
never depend on one another's output, nor on another batch in flight.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import attrs

from b24batch._engine.call_options import (
    MAX_IN_FLIGHT,
    CallOptions,
    InFlight,
    checked_request_id,
)
from b24batch._engine.execute import execute, prepare
from b24batch._engine.outcomes import CallRecord, Stopped
from b24batch._engine.plan import Chunk
from b24batch._engine.port import Client
from b24batch._engine.walk import Page, Query, Walk
from b24batch._engine.window import Outcome, Window
from b24batch._limits.policy import RateLimit
from b24batch._protocols.base import PAGE_LIMIT, Prepared, Protocol, Spec
from b24batch.commands import MAX_COMMANDS, normalize
from b24batch.errors import B24Error, DecodeError, SdkError, SdkTypeError
from b24batch.progress import Report
from b24batch.results import BatchResult, ChunkedResult, ChunkError, structure, structure_quick

__all__ = [
    "HOLD",
    "MAX_PAGE_SIZE",
    "Route",
    "checked",
    "checked_page_size",
    "hold_for",
    "item_id",
    "items_of",
    "pages",
]

HOLD: Final = MAX_COMMANDS * PAGE_LIMIT
"""What a lazy walk holds at most per batch in flight: one batch of full pages."""
MAX_PAGE_SIZE: Final = 1000
"""The largest ``page_size``: the largest REST 3.0 ``pagination.limit`` any method documents."""
_OWN_PAGING: Final = ("order", "start", "pagination", "cursor", "limit")


def hold_for(in_flight: InFlight, page_size: int) -> int:
    """What a lazy walk holds at most: one batch of full pages per batch the window may keep
    in flight (``FetchList*.iter``), so that pages landing out of order wait in a bounded
    buffer."""
    batches = MAX_IN_FLIGHT if in_flight == "auto" else in_flight
    return batches * MAX_COMMANDS * max(page_size, PAGE_LIMIT)


class Route:
    """A list walk's commands and batches in one protocol.

    Args:
        protocol: The protocol the walk's batches are sent in.
    """

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.record = CallRecord()
        """The walk's stop signal: after an interrupt no batch waiting in a limiter leaves."""

    def row(self, spec: Spec, query: Query) -> tuple[str, dict[str, Any]]:
        """The list command for one id range of the walk."""
        return self.protocol.list_row(spec, query.low, query.high, query.descending)

    def prepare(self, spec: Spec, queries: Sequence[Query]) -> Prepared:
        """One batch of list commands, checked and encoded; weighed by its pages' size."""
        rows = [self.row(spec, query) for query in queries]
        commands = normalize(rows, what=self.protocol.name)
        prepared = prepare(self.protocol, commands, CallOptions(request_id=""))
        return attrs.evolve(prepared, unit=max(spec.page_size, PAGE_LIMIT) / PAGE_LIMIT)

    def send(self, client: Client, prepared: Prepared, request_id: str) -> BatchResult[Any]:
        """One batch of list commands, through the engine; stopped at the first failure."""
        options = CallOptions(request_id=request_id)
        return execute(client, prepared, options, record=self.record)


def pages(
    client: Client,
    route: Route,
    spec: Spec,
    result_type: Any,
    hold: int | None,
    report: Report,
    *,
    in_flight: InFlight = 1,
) -> Iterator[list[Any]]:
    """Run the walk: batches of id ranges through a window of ``in_flight``, the pages that
    are complete yielded in id order.

    Once the end pages have shown the ids' span and density, the open ranges are shared
    between as many batches as the window lets out at once, so they run side by side at the
    portal. A ``B24Error`` raised on the way carries what was fetched and not yet handed out in
    ``error.partial.data`` (in id order), the batches in flight with it included.
    """
    walk = Walk(page_limit=spec.page_size, hold=hold, where=spec.method)
    base = checked_request_id(None)
    asked: dict[int, list[Query]] = {}
    window = _window(client, route, base, in_flight)

    def batches() -> Iterator[Chunk | None]:
        while not walk.finished:
            lanes = window.size  # one lane: one batch at a time, cut as without a window
            index, queries = walk.hand_out(None if lanes == 1 else lanes)
            if not queries:
                yield None  # every open range is being read: wait for an answer
                continue
            asked[index] = queries
            prepared = route.prepare(spec, queries)
            yield Chunk(index=index, prepared=prepared, positions=range(len(queries)))

    try:
        for outcome in window.run(batches()):
            index = outcome.chunk.index
            try:
                ready = _taken(walk, spec, asked.pop(index), outcome)
            except B24Error as error:
                route.record.stop()  # nothing more leaves; what is on the wire still lands
                held = _landed(walk, spec, asked, window)
                keys = tuple(range(len(outcome.chunk.commands)))
                error.partial = ChunkedResult(data=held, errors=(ChunkError(index, keys, error),))
                raise
            except KeyboardInterrupt as interrupt:  # a walk only reads: nothing is in doubt
                route.record.stop()
                held = [item for page in walk.held_pages() for item in page]
                interrupt.partial = ChunkedResult(data=held)  # type: ignore[attr-defined]
                raise
            request_id = f"{base}.{index}"
            for page in _packed(ready):
                yield _structured(page, result_type, spec.method, request_id)
            report(sum(map(len, ready)))
        if not walk.finished:  # cannot be: the window ends only with nothing left to send
            raise DecodeError(f"{spec.method}: the walk stopped before its end")
    except KeyboardInterrupt as interrupt:
        if not hasattr(interrupt, "partial"):
            route.record.stop()
            held = [item for page in walk.held_pages() for item in page]
            interrupt.partial = ChunkedResult(data=held)  # type: ignore[attr-defined]
        raise
    finally:
        route.record.stop()  # an abandoned iteration: nothing more leaves
        report.close()


def _window(client: Client, route: Route, base: str, in_flight: InFlight) -> Window:
    """The walk's window: batches sent through ``route``, paced by the client's bucket."""
    limiter = getattr(client, "limiter", None)
    bucket = None if limiter is None else limiter.bucket
    limit = bucket.limit if bucket is not None else RateLimit()
    return Window(
        lambda chunk: route.send(client, chunk.prepared, f"{base}.{chunk.index}"),
        in_flight,
        rate=(limit.burst, limit.per_second),
        available=bucket.available if bucket is not None else lambda: 0.0,
        interrupt=route.record.stop,
    )


def _taken(walk: Walk, spec: Spec, queries: list[Query], outcome: Outcome) -> list[Sequence[Any]]:
    """Merge one batch's outcome into the walk; the pages now complete in id order.

    Raises:
        B24Error: What the batch raised or answered as an error; pages that break the walk.
    """
    if outcome.error is not None:
        raise outcome.error
    result = outcome.result
    assert result is not None
    if result.errors:
        raise result.errors[0]
    index = outcome.chunk.index
    answered = []
    for position, data in enumerate(result.data):
        where = f"{spec.method} (command {position} of batch {index})"
        items = items_of(data, where)
        answered.append(Page([item_id(item, spec.id_key, where) for item in items], items))
    return walk.take(queries, answered, index)


def _landed(walk: Walk, spec: Spec, asked: dict[int, list[Query]], window: Window) -> list[Any]:
    """After a failure: every item fetched and not handed out, in id order, the batches that
    were in flight with the failed one included (their answers are kept, not dropped)."""
    for outcome in window.drain():
        if isinstance(outcome.error, Stopped):
            continue
        try:
            _taken(walk, spec, asked.pop(outcome.chunk.index), outcome)
        except B24Error:
            continue  # its own failure: what it would have brought is not fetched
    return [item for page in walk.held_pages() for item in page]


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


def checked_page_size(protocol: Protocol, value: object) -> int:
    """Check ``page_size``: a whole number from 1 to ``MAX_PAGE_SIZE`` (REST 3.0), 50 on the
    classic protocol, whose list pages are always 50.

    Raises:
        SdkError: A number out of range; SdkTypeError for anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise SdkTypeError(
            f"page_size={value!r}: pass a whole number of items per page (50 by default)"
        )
    if protocol.list_page_fixed and value != PAGE_LIMIT:
        raise SdkError(
            f"page_size={value}: a classic ({protocol.name}) list page is always "
            f"{PAGE_LIMIT} items and takes no limit; leave page_size at {PAGE_LIMIT}"
        )
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise SdkError(
            f"page_size={value}: pass 1 to {MAX_PAGE_SIZE} (what the method allows: "
            f"its documented pagination limit; a larger one is clamped by the portal)"
        )
    return value


def checked(
    protocol: Protocol, method: object, params: object, id_key: object, *, page_size: int = 50
) -> Spec:
    """Check a list call before anything is sent.

    Raises:
        SdkError: A param the walk owns (order, start, pagination), a bad filter or select.
    """
    if not isinstance(method, str) or not method.strip():
        raise SdkTypeError(f"method={method!r}: pass the list method's name, e.g. 'crm.deal.list'")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise SdkTypeError(f"params is a {type(params).__name__}; pass a dict (or None)")
    if not isinstance(id_key, str) or not id_key:
        raise SdkTypeError(f"id_key={id_key!r}: pass the name of the field holding the id")
    for key in params:
        if str(key).lower() in _OWN_PAGING:
            raise SdkError(
                f"params[{key!r}]: the walk orders the list by {id_key!r} and pages it by id "
                f"ranges itself, so it cannot take an order or paging of its own; drop "
                f"{key!r} (sort the items afterwards if you need another order)"
            )
    rest = {key: value for key, value in params.items() if str(key).lower() != "filter"}
    found = [params[key] for key in params if str(key).lower() == "filter"]
    conditions, low, high = protocol.list_filter(found[0] if found else None, id_key)
    select_key = next((key for key in rest if str(key).lower() == "select"), None)
    if select_key is not None:
        rest[select_key] = _with_id(rest[select_key], id_key)
    return Spec(
        method=method,
        params=rest,
        filter=conditions,
        id_key=id_key,
        low=low,
        high=high,
        page_size=page_size,
    )


def _with_id(select: object, id_key: str) -> list[Any]:
    """``select`` with ``id_key`` added when it is missing: the walk needs every item's id."""
    if not isinstance(select, list | tuple) or not all(isinstance(f, str) for f in select):
        raise SdkTypeError(f"params['select'] = {select!r}: pass a list of field names")
    names = list(select)
    if id_key not in names and "*" not in names:
        names.insert(0, id_key)
    return names


def items_of(result: Any, where: str) -> list[Any]:
    """The items of one list command's result: a bare list, or the one list in a dict."""
    if isinstance(result, list):
        return result
    if isinstance(result, Mapping):
        if isinstance(result.get("items"), list):
            return list(result["items"])
        lists = [value for value in result.values() if isinstance(value, list)]
        if len(lists) == 1:
            return lists[0]
    raise DecodeError(f"{where} answered {type(result).__name__} where a page of items was due")


def item_id(item: Any, id_key: str, where: str) -> int:
    # Exact types first: a walk reads every item's id, and isinstance against an ABC is slow.
    value = item.get(id_key) if type(item) is dict or isinstance(item, Mapping) else None
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise DecodeError(
        f"{where} answered an item without a whole-number {id_key!r} ({value!r}); the walk "
        f"needs each item's id: pass id_key= naming the field that holds it"
    )
