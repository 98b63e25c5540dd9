"""How the FakePortal reads the query of ``tasks.task.get`` and ``tasks.task.list``.

``select``, ``filter`` (conditions and logic groups), ``order`` and ``pagination``, each checked
with the portal's errors and turned into a projection, a predicate, sort keys or a slice. Pure.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from b24batch.testing.command_error import (
    INTERNAL_ERROR,
    INVALID_FILTER,
    INVALID_ORDER,
    INVALID_PAGINATION,
    UNKNOWN_FILTER_OPERATOR,
    CommandError,
)
from b24batch.testing.v3_task_fields import TASK_FIELDS, parse_datetime, unknown_field

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "PageSize",
    "id_bounds",
    "page_length",
    "parse_filter",
    "parse_order",
    "parse_page",
    "parse_select",
    "project",
    "sort_key",
]

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 50
"""``tasks.task.list`` clamps ``pagination.limit`` here silently, as measured on a cloud portal
(the docs say 1000). ``limit: 0`` or a non-number is ``INVALIDPAGINATIONEXCEPTION`` (400) and
``limit: -1`` a 500 ``INTERNAL_SERVER_ERROR``, as measured too."""
PageSize = int | Callable[[str, int], int]
"""A list page's size: an int clamps what a command asked for; a callable decides per command."""
_OPERATORS: Final = frozenset({"=", "!=", ">", ">=", "<", "<=", "in", "between"})


def parse_select(query: Mapping[str, Any], default: Sequence[str]) -> tuple[str, ...]:
    select = query.get("select")
    if select is None or select == []:
        return tuple(default)
    if not isinstance(select, list) or not all(isinstance(name, str) for name in select):
        raise CommandError.invalid(("select", "Field `select` requires data type `array`"))
    for name in select:
        if name not in TASK_FIELDS:
            raise unknown_field(name)
    return tuple(select)


def project(task: Mapping[str, Any], select: Sequence[str]) -> dict[str, Any]:
    return {name: copy.deepcopy(task[name]) for name in select}


def _comparable(field: str, value: Any, condition: Any) -> Any:
    """Coerce a filter operand to the field's type, so that it compares like the stored value."""
    if value is None:
        return None
    base = TASK_FIELDS[field].rstrip("?")
    try:
        if base == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, str):
                return int(value)
            if isinstance(value, int):
                return value
            raise ValueError(value)
        if base == "datetime":
            return parse_datetime(value)
        if isinstance(value, str):
            return value
        raise ValueError(value)
    except (TypeError, ValueError):
        raise CommandError(
            f"Unable to recognize the filter condition `{json.dumps(condition)}`",
            code=INVALID_FILTER,
        ) from None


_Predicate = Callable[[Mapping[str, Any]], bool]


def _stored(task: Mapping[str, Any], field: str) -> Any:
    value = task[field]
    if value is not None and TASK_FIELDS[field].startswith("datetime"):
        return parse_datetime(value)
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if left is None or right is None:
        return False
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if op == "<":
        return bool(left < right)
    return bool(left <= right)


def _condition(condition: list[Any]) -> _Predicate:
    bad = CommandError(
        f"Unable to recognize the filter condition `{json.dumps(condition)}`", code=INVALID_FILTER
    )
    if len(condition) == 2:
        field, value = condition
        op = "in" if isinstance(value, list) else "="
    elif len(condition) == 3:
        field, op, value = condition
    else:
        raise bad
    if not isinstance(field, str) or field not in TASK_FIELDS:
        raise unknown_field(field)
    if not isinstance(op, str) or op.lower() not in _OPERATORS:
        raise CommandError(f"Unknown filter operator `{op}`", code=UNKNOWN_FILTER_OPERATOR)
    op = op.lower()
    if op in ("in", "between"):
        if not isinstance(value, list) or (op == "between" and len(value) != 2):
            raise bad
        operands = [_comparable(field, item, condition) for item in value]
        if op == "in":
            return lambda task: _stored(task, field) in operands
        low, high = operands
        return lambda task: (
            _compare(">=", _stored(task, field), low) and _compare("<=", _stored(task, field), high)
        )
    operand = _comparable(field, value, condition)
    if operand is None and op not in ("=", "!="):
        raise bad
    return lambda task: _compare(op, _stored(task, field), operand)


def parse_filter(conditions: Any, logic: str = "and") -> _Predicate:
    if conditions is None:
        return lambda task: True
    if not isinstance(conditions, list):
        raise CommandError.invalid(("filter", "Field `filter` requires data type `array`"))
    parts: list[_Predicate] = []
    for condition in conditions:
        if isinstance(condition, list):
            parts.append(_condition(condition))
        elif isinstance(condition, dict) and set(condition) <= {"logic", "conditions"}:
            group_logic = condition.get("logic", "and")
            if not isinstance(group_logic, str) or group_logic.lower() not in ("and", "or"):
                raise CommandError(
                    f"Unable to recognize the filter logic `{group_logic}`", code=INVALID_FILTER
                )
            parts.append(parse_filter(condition.get("conditions", []), group_logic.lower()))
        else:
            raise CommandError(
                f"Unable to recognize the filter condition `{json.dumps(condition)}`",
                code=INVALID_FILTER,
            )
    if logic == "or":
        return lambda task: any(part(task) for part in parts)
    return lambda task: all(part(task) for part in parts)


def parse_order(query: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """``{"field": "ASC"|"DESC", ...}`` -> [(field, descending)], in the given key order."""
    order = query.get("order")
    if order is None or order == []:
        return [("id", False)]
    if not isinstance(order, dict):
        raise CommandError(
            f"Unable to recognize sorting parameter `{json.dumps(order)}`", code=INVALID_ORDER
        )
    keys: list[tuple[str, bool]] = []
    for field, direction in order.items():
        if (
            field not in TASK_FIELDS
            or field == "description"
            or not isinstance(direction, str)
            or direction.upper() not in ("ASC", "DESC")
        ):
            raise CommandError(
                f"Unable to recognize sorting parameter `{json.dumps({field: direction})}`",
                code=INVALID_ORDER,
            )
        keys.append((field, direction.upper() == "DESC"))
    return keys


def page_length(page_size: PageSize, method: str, asked: int) -> int:
    """How many items one list command's page holds at most.

    An int clamps ``asked`` silently, as a portal's own maximum does. A callable is called as
    ``page_size(method, asked)`` for every command and its answer is the page's size, even
    above ``asked``: pages that vary from one command to the next, a clamp that changes
    mid-walk, pages larger than asked.

    Raises:
        ValueError: The callable answered something other than an int >= 1 (an empty page
            would say the list has ended, which a portal never says of items it holds).
    """
    if not callable(page_size):
        return min(asked, page_size)
    size = page_size(method, asked)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"list_page_size({method!r}, {asked}) gave {size!r}; give an int >= 1")
    return size


def parse_page(
    query: Mapping[str, Any], page_size: PageSize = MAX_PAGE_SIZE, method: str = "tasks.task.list"
) -> slice:
    """``pagination`` -> the slice of the ordered result; ``page`` wins over ``offset``."""
    pagination = query.get("pagination")
    if pagination is None or pagination == []:
        pagination = {}
    bad = CommandError(
        f"Unable to recognize the pagination parameter `{json.dumps(pagination)}`",
        code=INVALID_PAGINATION,
    )
    if not isinstance(pagination, dict) or not set(pagination) <= {"page", "limit", "offset"}:
        raise bad
    values = {"page": 1, "limit": DEFAULT_PAGE_SIZE, "offset": 0} | pagination
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in values.values()):
        raise bad
    page, limit, offset = values["page"], values["limit"], values["offset"]
    if limit == -1:  # measured on a cloud portal: an internal error, not a validation one
        raise CommandError("Internal server error", code=INTERNAL_ERROR, status=500)
    if page < 1 or limit < 1 or offset < 0:
        raise bad
    limit = page_length(page_size, method, limit)
    start = (page - 1) * limit if "page" in pagination else offset
    return slice(start, start + limit)


def sort_key(field: str) -> Callable[[Mapping[str, Any]], tuple[bool, Any]]:
    # None sorts before any value, as SQL's NULLS FIRST does for ascending order.
    def key(task: Mapping[str, Any]) -> tuple[bool, Any]:
        value = _stored(task, field)
        return (value is not None, value)

    return key


def id_bounds(conditions: Any) -> tuple[int | None, int | None]:
    """The id range ``[low, high)`` the top-level ``id`` conditions of a filter allow, or None
    for an open end: lets ``list`` look at those tasks only (the filter still applies to them).
    """
    low: int | None = None
    high: int | None = None
    if not isinstance(conditions, list):
        return low, high
    for condition in conditions:
        if not (isinstance(condition, list) and len(condition) == 3 and condition[0] == "id"):
            continue
        _, op, value = condition
        if isinstance(value, bool) or not isinstance(value, int) or not isinstance(op, str):
            continue
        start = {">": value + 1, ">=": value, "=": value}.get(op)
        stop = {"<": value, "<=": value + 1, "=": value + 1}.get(op)
        if start is not None:
            low = start if low is None else max(low, start)
        if stop is not None:
            high = stop if high is None else min(high, stop)
    return low, high
