"""A list walk's batches: the caller's params checked, each round's commands sent, pages out.

Drives the keyset scan of ``walk.py``: each round's id ranges become list commands of the
call's protocol (its ``list_row``), each batch goes through ``execute`` (the client's limiters
and retry policy), and the pages that are complete come out in id order. The commands of one
batch never depend on one another's output.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from b24batch._engine.call_options import CallOptions, checked_request_id
from b24batch._engine.execute import execute, prepare
from b24batch._engine.port import Client
from b24batch._engine.walk import Page, Query, Walk
from b24batch._protocols.base import PAGE_LIMIT, Protocol, Spec
from b24batch.commands import MAX_COMMANDS, normalize
from b24batch.errors import B24Error, DecodeError, SdkError, SdkTypeError
from b24batch.progress import Report
from b24batch.results import BatchResult, ChunkedResult, ChunkError, structure, structure_quick

__all__ = ["HOLD", "Route", "checked", "item_id", "items_of", "pages"]

HOLD: Final = MAX_COMMANDS * PAGE_LIMIT
"""What a lazy walk holds at most: one batch of full pages (see ``FetchList*.iter``)."""
_OWN_PAGING: Final = ("order", "start", "pagination", "cursor", "limit")


class Route:
    """A list walk's commands and batches in one protocol.

    Args:
        protocol: The protocol the walk's batches are sent in.
    """

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol

    def row(self, spec: Spec, query: Query) -> tuple[str, dict[str, Any]]:
        """The list command for one id range of the walk."""
        return self.protocol.list_row(spec, query.low, query.high, query.descending)

    def send(
        self, client: Client, rows: list[tuple[str, dict[str, Any]]], request_id: str
    ) -> BatchResult[Any]:
        """One batch of list commands, through the engine; stopped at the first failure."""
        commands = normalize(rows, what=self.protocol.name)
        options = CallOptions(request_id=request_id)
        return execute(client, prepare(self.protocol, commands, options), options)


def pages(
    client: Client,
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
                answered = []
                for position, data in enumerate(result.data):
                    where = f"{spec.method} (command {position} of batch {walk.batches})"
                    items = items_of(data, where)
                    answered.append(
                        Page([item_id(item, spec.id_key, where) for item in items], items)
                    )
                ready = walk.take(queries, answered)
            except B24Error as error:
                held = [item for page in walk.held_pages() for item in page]
                keys = tuple(range(len(queries)))
                error.partial = ChunkedResult(
                    data=held, errors=(ChunkError(walk.batches, keys, error),)
                )
                raise
            except KeyboardInterrupt as interrupt:  # a walk only reads: nothing is in doubt
                held = [item for page in walk.held_pages() for item in page]
                interrupt.partial = ChunkedResult(data=held)  # type: ignore[attr-defined]
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


def checked(protocol: Protocol, method: object, params: object, id_key: object) -> Spec:
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
    return Spec(method=method, params=rest, filter=conditions, id_key=id_key, low=low, high=high)


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
    value = item.get(id_key) if isinstance(item, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise DecodeError(
        f"{where} answered an item without a whole-number {id_key!r} ({value!r}); the walk "
        f"needs each item's id: pass id_key= naming the field that holds it"
    )
