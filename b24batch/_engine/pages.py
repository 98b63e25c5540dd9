"""The two protocols' list commands for the keyset scan: checking params, building commands.

REST 3.0 filters are lists of conditions, classic filters dicts keyed by prefixed fields (a
PHP array holds one value per key, so the caller's own ``>=ID``/``<ID`` are folded into the
walk's ranges); each route sends its batch through its engine entry point. No planning here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from b24batch._engine.walk import Query
from b24batch._protocols.v3 import encode_batch
from b24batch.batch import execute
from b24batch.batch_v2 import execute_v2, plan_v2
from b24batch.commands import normalize
from b24batch.errors import DecodeError, SdkError, SdkTypeError

if TYPE_CHECKING:
    from b24batch.client import _Client

__all__ = ["PAGE_LIMIT", "Route", "Spec", "V2Route", "V3Route", "checked", "item_id", "items_of"]

PAGE_LIMIT: Final = 50
"""The page asked for (REST 3.0 ``pagination.limit``; a classic page is 50). The portal may
clamp it lower, silently: the walk judges a page full by the largest page it has seen."""
_OWN_PAGING: Final = ("order", "start", "pagination", "cursor", "limit")


@attrs.frozen(kw_only=True)
class Spec:
    """A checked list call: what every command of the walk shares."""

    method: str
    params: Mapping[str, Any]  # the caller's params without filter (select completed)
    filter: Any  # a REST 3.0 list of conditions, or a classic dict without our two id keys
    id_key: str
    low: int | None = None  # the caller's own classic bounds on id_key, folded into ours
    high: int | None = None


class V3Route:
    name = "REST 3.0"
    id_key = "id"

    @staticmethod
    def filter_of(value: Any, id_key: str) -> tuple[Any, int | None, int | None]:
        if value is None:
            return [], None, None
        if not isinstance(value, list):
            raise SdkTypeError(
                f"params['filter'] is a {type(value).__name__}; a REST 3.0 filter is a list of "
                f"[field, operator, value] conditions, e.g. [['responsibleId', '=', 7]]"
            )
        return list(value), None, None

    @staticmethod
    def row(spec: Spec, query: Query) -> tuple[str, dict[str, Any]]:
        conditions = list(spec.filter)
        if query.low is not None:
            conditions.append([spec.id_key, ">=", query.low])
        if query.high is not None:
            conditions.append([spec.id_key, "<", query.high])
        params = dict(spec.params)
        params["filter"] = conditions
        params["order"] = {spec.id_key: "DESC" if query.descending else "ASC"}
        params["pagination"] = {"limit": PAGE_LIMIT}
        return spec.method, params

    @staticmethod
    def send(client: _Client, rows: list[tuple[str, dict[str, Any]]], request_id: str) -> Any:
        commands = normalize(rows)
        body = encode_batch(commands, halt_on_error=True)
        return execute(
            client,
            commands,
            body,
            request_id=request_id,
            idempotency_key=None,
            result_type=None,
            return_ajax_result=False,
        )


class V2Route:
    name = "classic"
    id_key = "ID"

    @staticmethod
    def filter_of(value: Any, id_key: str) -> tuple[Any, int | None, int | None]:
        """The caller's filter without the ``>=ID``/``<ID`` keys the walk sets, which are
        folded into the walk's own bounds instead (a PHP array holds one value per key)."""
        if value is None:
            return {}, None, None
        if not isinstance(value, Mapping):
            raise SdkTypeError(
                f"params['filter'] is a {type(value).__name__}; a classic filter is a dict, "
                f"e.g. {{'>OPPORTUNITY': 0}}"
            )
        kept: dict[str, Any] = {}
        low = high = None
        for key, wanted in value.items():
            upper = str(key).upper()
            if upper not in (f">={id_key.upper()}", f"<{id_key.upper()}"):
                kept[key] = wanted
                continue
            text = str(wanted).strip()
            if isinstance(wanted, bool) or not text.lstrip("-").isdigit():
                raise SdkError(
                    f"params['filter'][{key!r}] = {wanted!r}: the walk combines it with its "
                    f"own id ranges, so pass a whole number"
                )
            if upper.startswith(">="):
                low = int(text)
            else:
                high = int(text)
        return kept, low, high

    @staticmethod
    def row(spec: Spec, query: Query) -> tuple[str, dict[str, Any]]:
        conditions = dict(spec.filter)
        low = _tighter(max, query.low, spec.low)
        high = _tighter(min, query.high, spec.high)
        if low is not None:
            conditions[f">={spec.id_key}"] = low
        if high is not None:
            conditions[f"<{spec.id_key}"] = high
        params = dict(spec.params)
        if conditions:
            params["filter"] = conditions
        params["order"] = {spec.id_key: "DESC" if query.descending else "ASC"}
        params["start"] = -1  # no count: the documented fast way through a large list
        return spec.method, params

    @staticmethod
    def send(client: _Client, rows: list[tuple[str, dict[str, Any]]], request_id: str) -> Any:
        planned = plan_v2(normalize(rows, what="classic"), halt=True)
        return execute_v2(
            client, planned, request_id=request_id, result_type=None, return_ajax_result=False
        )


Route = type[V3Route] | type[V2Route]


def _tighter(pick: Any, ours: int | None, theirs: int | None) -> int | None:
    if ours is None or theirs is None:
        return theirs if ours is None else ours
    return int(pick(ours, theirs))


def checked(route: Route, method: object, params: object, id_key: object) -> Spec:
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
    conditions, low, high = route.filter_of(found[0] if found else None, id_key)
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
