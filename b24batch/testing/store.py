"""The FakePortal's in-memory tasks store and batch executor. Pure: no I/O, no clocks, no locks.

Parses a batch body into rows, substitutes ``$ref``/``$refArray`` markers and runs each row
against the tasks store or a registered handler, in order, stopping at the first failure without
rolling anything back (as the portal's own dispatcher does, protocol §4). Time, locking,
authentication, limits and faults belong to the portal (``portal.py``, ``v3_route.py``).
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_COMMANDS",
    "MAX_PAGE_SIZE",
    "TASK_FIELDS",
    "CommandError",
    "Handler",
    "Row",
    "SortedIds",
    "TaskStore",
    "execute_batch",
    "format_datetime",
    "parse_batch",
    "validate_fields",
]

MAX_COMMANDS: Final = 50
"""Most commands one batch may carry (the documented client-side ceiling)."""
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 50
"""``tasks.task.list`` clamps ``pagination.limit`` here silently, as measured on a cloud portal
(the docs say 1000). ``limit: 0`` or a non-number is ``INVALIDPAGINATIONEXCEPTION`` (400) and
``limit: -1`` a 500 ``INTERNAL_SERVER_ERROR``, as measured too."""

INVALID_SELECT: Final = "BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION"
VALIDATION: Final = "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION"
ENTITY_NOT_FOUND: Final = "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"
UNKNOWN_PROPERTY: Final = "BITRIX_REST_V3_EXCEPTION_UNKNOWNDTOPROPERTYEXCEPTION"
UNKNOWN_FILTER_OPERATOR: Final = "BITRIX_REST_V3_EXCEPTION_UNKNOWNFILTEROPERATOREXCEPTION"
INVALID_FILTER: Final = "BITRIX_REST_V3_EXCEPTION_INVALIDFILTEREXCEPTION"
INVALID_ORDER: Final = "BITRIX_REST_V3_EXCEPTION_INVALIDORDEREXCEPTION"
INVALID_PAGINATION: Final = "BITRIX_REST_V3_EXCEPTION_INVALIDPAGINATIONEXCEPTION"
METHOD_NOT_FOUND: Final = "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION"
INTERNAL_ERROR: Final = "INTERNAL_SERVER_ERROR"

VALIDATION_MESSAGE: Final = "Error validating request object"

Handler = Callable[[dict[str, Any]], Any]
"""A registered method: receives the row's query (references substituted), returns its entry."""

# Field name -> wire type. The subset of the REST 3.0 TaskDto the fake keeps.
TASK_FIELDS: Final[Mapping[str, str]] = {
    "id": "int",
    "title": "string",
    "description": "string",
    "creatorId": "int",
    "responsibleId": "int",
    "groupId": "int?",
    "status": "string",
    "priority": "string",
    "deadline": "datetime?",
    "created": "datetime",
    "changed": "datetime",
}
_WRITABLE: Final = frozenset(
    {
        "title",
        "description",
        "creatorId",
        "responsibleId",
        "groupId",
        "status",
        "priority",
        "deadline",
    }
)
_TYPE_NAMES: Final = {"int": "int", "string": "string", "datetime": "DateTime"}
_BATCH_ROW_KEYS: Final = frozenset({"method", "query", "as", "parallel"})
_OPERATORS: Final = frozenset({"=", "!=", ">", ">=", "<", "<=", "in", "between"})


class CommandError(Exception):
    """A command failed; its error is the whole batch's answer, and the rows after it never run.

    The rows before it have run and their writes stay (protocol §4: there is no rollback).

    Raise it from a handler given to ``FakePortal.register`` to fail the batch with a REST 3.0
    error envelope ``{"error": {"code", "message", "validation"?}}``.

    Args:
        message: The ``error.message`` text.
        code: The ``error.code``, e.g. ``BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION``.
        status: The HTTP status of the whole batch response.
        validation: ``error.validation`` rows, each ``{"field": ..., "message": ...}``.

    Example:
        >>> def handler(query):
        ...     raise FakePortal.CommandError(
        ...         "Access denied",
        ...         code="BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION",
        ...         status=403,
        ...     )
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int = 400,
        validation: Iterable[Mapping[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.validation = None if validation is None else tuple(dict(row) for row in validation)

    @classmethod
    def invalid(cls, *errors: tuple[str, str]) -> CommandError:
        """A request validation error with one ``(field, message)`` row per problem."""
        return cls(
            VALIDATION_MESSAGE,
            code=VALIDATION,
            validation=[{"field": field, "message": message} for field, message in errors],
        )

    def envelope(self) -> dict[str, Any]:
        """Return the REST 3.0 error body for this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.validation is not None:
            error["validation"] = [dict(row) for row in self.validation]
        return {"error": error}


def _bad_batch(message: str) -> CommandError:
    return CommandError(message, code=INVALID_SELECT)


def format_datetime(timestamp: float) -> str:
    """Unix seconds -> ISO 8601 with the local UTC offset, as the portal writes dates."""
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc).astimezone()
    return moment.isoformat(timespec="seconds")


def _parse_datetime(value: str) -> dt.datetime:
    """ISO 8601 -> aware datetime; a naive value is read as local time. Raises ValueError."""
    # Python 3.10's fromisoformat does not read a trailing "Z".
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.astimezone()


# ---------------------------------------------------------------------------------------------
# Batch body


@attrs.frozen
class Row:
    """One validated batch command."""

    method: str
    query: dict[str, Any]
    alias: str | None = None
    parallel: bool = False

    @classmethod
    def from_json(cls, index: int, data: Any) -> Row:
        """Validate one element of the batch array. Raises CommandError (INVALIDSELECT)."""
        where = f"Command #{index}"
        if not isinstance(data, dict):
            raise _bad_batch(f"{where} must be an object")
        unknown = sorted(set(data) - _BATCH_ROW_KEYS)
        if unknown:
            raise _bad_batch(f"{where} has unknown keys: {', '.join(unknown)}")
        method = data.get("method")
        if not isinstance(method, str) or not method:
            raise _bad_batch(f"{where}: `method` must be a non-empty string")
        if method.lower() == "batch":
            raise _bad_batch(f"{where}: a batch cannot contain `batch`")
        if "query" not in data:
            raise _bad_batch(f"{where}: `query` is required")
        query = data["query"]
        if query == []:
            # PHP decodes `{}` and `[]` alike, so an empty list is an empty query there too.
            query = {}
        if not isinstance(query, dict):
            raise _bad_batch(f"{where}: `query` must be an object")
        alias = data.get("as")
        if "as" in data and (not isinstance(alias, str) or not alias):
            raise _bad_batch(f"{where}: `as` must be a non-empty string")
        parallel = data.get("parallel", False)
        if not isinstance(parallel, bool):
            raise _bad_batch(f"{where}: `parallel` must be a boolean")
        return cls(method=method, query=query, alias=alias, parallel=parallel)


def parse_batch(data: Any) -> tuple[Row, ...]:
    """Validate a decoded batch body: a bare array, or an object keyed exactly "0".."n-1".

    Raises:
        CommandError: ``INVALIDSELECTEXCEPTION`` for any other envelope, a bad row, no rows,
            more than ``MAX_COMMANDS`` rows, a nested ``batch`` or a repeated alias.
    """
    if isinstance(data, dict):
        positions = [str(i) for i in range(len(data))]
        if set(data) != set(positions):
            raise _bad_batch(
                "The batch must be a JSON array of commands (or an object keyed 0..n-1)"
            )
        items: list[Any] = [data[key] for key in positions]
    elif isinstance(data, list):
        items = data
    else:
        raise _bad_batch("The batch must be a JSON array of commands")
    if not 1 <= len(items) <= MAX_COMMANDS:
        raise _bad_batch(f"A batch must hold 1 to {MAX_COMMANDS} commands, got {len(items)}")
    rows = tuple(Row.from_json(index, item) for index, item in enumerate(items))
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        if row.alias is None:
            continue
        if row.alias in seen:
            raise _bad_batch(
                f"Command #{index}: alias `{row.alias}` is already used by "
                f"command #{seen[row.alias]}"
            )
        seen[row.alias] = index
    return rows


# ---------------------------------------------------------------------------------------------
# References


class _Context:
    """Outputs of the commands run so far; only their ``item``/``items`` parts are addressable."""

    def __init__(self) -> None:
        self._by_alias: dict[str, dict[str, Any]] = {}
        self._by_position: dict[str, dict[str, Any]] = {}

    def add(self, position: int, alias: str | None, output: Any) -> None:
        parts: dict[str, Any] = {}
        if isinstance(output, dict):
            parts = {key: output[key] for key in ("item", "items") if key in output}
        self._by_position[str(position)] = parts
        if alias is not None:
            self._by_alias[alias] = parts

    def lookup(self, name: str) -> dict[str, Any] | None:
        # An alias wins over a position, so `"as": "1"` is reachable by its own name.
        found = self._by_alias.get(name)
        return found if found is not None else self._by_position.get(name)


def _unresolved(kind: str, path: Any) -> CommandError:
    return _bad_batch(f"Unable to resolve `{kind}` path `{path}`")


def _walk(node: Any, segments: Sequence[str], kind: str, path: str) -> Any:
    for segment in segments:
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            raise _unresolved(kind, path)
    return node


def _resolve(marker: dict[str, Any], context: _Context) -> Any:
    if len(marker) != 1:
        raise _bad_batch("A reference must be an object with the single key `$ref` or `$refArray`")
    ((kind, path),) = marker.items()
    if not isinstance(path, str) or "." not in path:
        raise _unresolved(kind, path)
    name, *segments = path.split(".")
    source = context.lookup(name)
    if source is None:
        raise _unresolved(kind, path)
    if kind == "$ref":
        return copy.deepcopy(_walk(source, segments, kind, path))
    items = source.get("items")
    if not isinstance(items, list):
        raise _unresolved(kind, path)
    return [copy.deepcopy(_walk(item, segments, kind, path)) for item in items]


def _substitute(value: Any, context: _Context) -> Any:
    """Return ``value`` with every reference marker, at any depth, replaced by its target."""
    if isinstance(value, dict):
        if "$ref" in value or "$refArray" in value:
            return _resolve(value, context)
        return {key: _substitute(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, context) for item in value]
    return value


# ---------------------------------------------------------------------------------------------
# Tasks


def _type_error(field: str, kind: str) -> tuple[str, str]:
    type_name = _TYPE_NAMES[kind.rstrip("?")]
    return field, f"Field `{field}` requires data type `{type_name}` for this request"


def _required(field: str) -> CommandError:
    return CommandError.invalid((field, f"Required field `{field}` is not specified"))


def _unknown_field(field: Any) -> CommandError:
    return CommandError(f"Unknown field `{field}` for entity `TaskDto`", code=UNKNOWN_PROPERTY)


def _check_value(field: str, value: Any) -> tuple[str, str] | None:
    """Return a validation row if ``value`` does not fit ``field``'s wire type."""
    kind = TASK_FIELDS[field]
    if value is None:
        return None if kind.endswith("?") else _type_error(field, kind)
    base = kind.rstrip("?")
    if base == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base == "string":
        ok = isinstance(value, str)
    else:
        try:
            ok = isinstance(value, str) and _parse_datetime(value) is not None
        except ValueError:
            ok = False
    return None if ok else _type_error(field, kind)


def _normalise(field: str, value: Any) -> Any:
    if value is not None and TASK_FIELDS[field].startswith("datetime"):
        return _parse_datetime(value).isoformat(timespec="seconds")
    return value


def _task_id(query: Mapping[str, Any]) -> int:
    if "id" not in query:
        raise _required("id")
    value = query["id"]
    if not isinstance(value, int) or isinstance(value, bool):
        raise CommandError.invalid(_type_error("id", "int"))
    return value


def _writable_fields(query: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``query.fields`` of add/update; returns the normalised values."""
    if "fields" not in query:
        raise _required("fields")
    fields = query["fields"]
    if fields == []:
        fields = {}
    if not isinstance(fields, dict):
        raise CommandError.invalid(("fields", "Field `fields` requires data type `array`"))
    for name in fields:
        if name not in TASK_FIELDS:
            raise _unknown_field(name)
    errors = [(name, f"Field `{name}` is read-only") for name in fields if name not in _WRITABLE]
    errors += [
        err for name in fields if name in _WRITABLE and (err := _check_value(name, fields[name]))
    ]
    if "title" in fields and fields["title"] == "":
        errors.append(("title", "Required field `title` is not specified"))
    if errors:
        raise CommandError.invalid(*errors)
    return {name: _normalise(name, value) for name, value in fields.items()}


def validate_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate writable task fields as ``tasks.task.update`` would; returns them normalised.

    Raises:
        CommandError: A field is unknown, read-only or of the wrong type.
    """
    return _writable_fields({"fields": dict(fields)})


def _select(query: Mapping[str, Any], default: Sequence[str]) -> tuple[str, ...]:
    select = query.get("select")
    if select is None or select == []:
        return tuple(default)
    if not isinstance(select, list) or not all(isinstance(name, str) for name in select):
        raise CommandError.invalid(("select", "Field `select` requires data type `array`"))
    for name in select:
        if name not in TASK_FIELDS:
            raise _unknown_field(name)
    return tuple(select)


def _project(task: Mapping[str, Any], select: Sequence[str]) -> dict[str, Any]:
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
            return _parse_datetime(value)
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
        return _parse_datetime(value)
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
        raise _unknown_field(field)
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


def _filter(conditions: Any, logic: str = "and") -> _Predicate:
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
            parts.append(_filter(condition.get("conditions", []), group_logic.lower()))
        else:
            raise CommandError(
                f"Unable to recognize the filter condition `{json.dumps(condition)}`",
                code=INVALID_FILTER,
            )
    if logic == "or":
        return lambda task: any(part(task) for part in parts)
    return lambda task: all(part(task) for part in parts)


def _order(query: Mapping[str, Any]) -> list[tuple[str, bool]]:
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


def _page(query: Mapping[str, Any], page_size: int = MAX_PAGE_SIZE) -> slice:
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
    limit = min(limit, page_size)
    start = (page - 1) * limit if "page" in pagination else offset
    return slice(start, start + limit)


def _sort_key(field: str) -> Callable[[Mapping[str, Any]], tuple[bool, Any]]:
    # None sorts before any value, as SQL's NULLS FIRST does for ascending order.
    def key(task: Mapping[str, Any]) -> tuple[bool, Any]:
        value = _stored(task, field)
        return (value is not None, value)

    return key


def _id_bounds(conditions: Any) -> tuple[int | None, int | None]:
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


class SortedIds:
    """The ids of a store in ascending order, kept as records come and go, for range look-ups."""

    def __init__(self) -> None:
        self._ids: list[int] = []

    def add(self, record_id: int) -> None:
        if not self._ids or record_id > self._ids[-1]:
            self._ids.append(record_id)
        else:
            bisect.insort(self._ids, record_id)

    def extend(self, record_ids: Iterable[int]) -> None:
        self._ids = sorted([*self._ids, *record_ids])

    def remove(self, record_id: int) -> None:
        index = bisect.bisect_left(self._ids, record_id)
        if index < len(self._ids) and self._ids[index] == record_id:
            del self._ids[index]

    def between(self, low: int | None, high: int | None) -> list[int]:
        """The ids in ``[low, high)``, ascending; None leaves that end open."""
        start = 0 if low is None else bisect.bisect_left(self._ids, low)
        stop = len(self._ids) if high is None else bisect.bisect_left(self._ids, high)
        return self._ids[start:stop]


class TaskStore:
    """Tasks keyed by id, with the five ``tasks.task.*`` methods in their REST 3.0 shapes.

    Args:
        user_id: Default ``creatorId`` and ``responsibleId`` of a new task.
        page_size: Where ``tasks.task.list`` clamps ``pagination.limit``, silently.
    """

    def __init__(self, *, user_id: int, page_size: int = MAX_PAGE_SIZE) -> None:
        self._user_id = user_id
        self.page_size = page_size
        self._tasks: dict[int, dict[str, Any]] = {}
        self._ids = SortedIds()
        self._next_id = 1

    def clear(self) -> None:
        self._tasks = {}
        self._ids = SortedIds()
        self._next_id = 1

    def free_ids(self, count: int, *, sparse: bool, rand: Any, top: int) -> list[int]:
        """``count`` ids no task has: the next ones, or (``sparse``) random ones up to ``top``.

        Raises:
            ValueError: Fewer than ``count`` free ids up to ``top``.
        """
        if not sparse:
            return list(range(self._next_id, self._next_id + count))
        if count > top - len(self._tasks):
            raise ValueError(f"{count} sparse ids do not fit under {top}")
        chosen: set[int] = set()
        while len(chosen) < count:
            chosen.update(rand.sample(range(1, top + 1), count - len(chosen)))
            chosen -= self._tasks.keys()
        return sorted(chosen)

    def create_many(self, ids: Sequence[int], fields: Mapping[str, Any], *, now: float) -> None:
        """Add one task per id (all free) from already validated fields, in one go."""
        base = self._blank(now)
        base.update(fields)
        custom_title = "title" in fields
        for task_id in ids:
            task = dict(base, id=task_id)
            if not custom_title:
                task["title"] = f"Task {task_id}"
            self._tasks[task_id] = task
        self._ids.extend(ids)
        if ids:
            self._next_id = max(self._next_id, max(ids) + 1)

    def _blank(self, now: float) -> dict[str, Any]:
        """A new task's fields before the caller's: the defaults the portal gives."""
        stamp = format_datetime(now)
        return {
            "title": "",
            "description": "",
            "creatorId": self._user_id,
            "responsibleId": self._user_id,
            "groupId": None,
            "status": "pending",
            "priority": "average",
            "deadline": None,
            "created": stamp,
            "changed": stamp,
        }

    def copy_tasks(self) -> dict[int, dict[str, Any]]:
        return copy.deepcopy(self._tasks)

    def create(self, fields: Mapping[str, Any], *, now: float, task_id: int | None = None) -> int:
        """Add a task from already validated fields; returns its id."""
        if task_id is None:
            task_id = self._next_id
        elif task_id in self._tasks or task_id < 1:
            raise ValueError(f"task id {task_id} is taken or not positive")
        self._next_id = max(self._next_id, task_id + 1)
        task = {"id": task_id, **self._blank(now)}
        task.update(copy.deepcopy(dict(fields)))
        self._tasks[task_id] = task
        self._ids.add(task_id)
        return task_id

    def _existing(self, task_id: int) -> dict[str, Any]:
        task = self._tasks.get(task_id)
        if task is None:
            raise CommandError(f"Record with ID = `{task_id}` not found", code=ENTITY_NOT_FOUND)
        return task

    def add(self, query: Mapping[str, Any], now: float) -> dict[str, Any]:
        fields = _writable_fields(query)
        if not fields.get("title"):
            raise _required("title")
        task_id = self.create(fields, now=now)
        return {"item": copy.deepcopy(self._tasks[task_id])}

    def get(self, query: Mapping[str, Any], now: float) -> dict[str, Any]:
        task = self._existing(_task_id(query))
        return {"item": _project(task, _select(query, tuple(TASK_FIELDS)))}

    def list(self, query: Mapping[str, Any], now: float) -> dict[str, Any]:
        select = _select(query, ("id",))
        predicate = _filter(query.get("filter"))
        order = _order(query)
        window = _page(query, self.page_size)
        # The ids a range filter allows, in id order: an id-range walk over 100 000 tasks
        # looks at each page's tasks only, not at the whole store for every command.
        candidates = (self._tasks[i] for i in self._ids.between(*_id_bounds(query.get("filter"))))
        found = [task for task in candidates if predicate(task)]
        for field, descending in reversed(order):
            found.sort(key=_sort_key(field), reverse=descending)
        return {"items": [_project(task, select) for task in found[window]]}

    def update(self, query: Mapping[str, Any], now: float) -> dict[str, Any]:
        task_id = _task_id(query)
        fields = _writable_fields(query)
        task = self._existing(task_id)
        task.update(fields)
        task["changed"] = format_datetime(now)
        return {"result": True}

    def delete(self, query: Mapping[str, Any], now: float) -> dict[str, Any]:
        task_id = _task_id(query)
        self._existing(task_id)
        del self._tasks[task_id]
        self._ids.remove(task_id)
        return {"result": True}

    def discard(self, task_id: int) -> bool:
        """Remove a task if there is one; whether there was."""
        if self._tasks.pop(task_id, None) is None:
            return False
        self._ids.remove(task_id)
        return True

    def method(self, name: str) -> Callable[[Mapping[str, Any], float], Any] | None:
        """The built-in method called ``name`` (case-insensitive), if any."""
        methods: dict[str, Callable[[Mapping[str, Any], float], Any]] = {
            "tasks.task.add": self.add,
            "tasks.task.get": self.get,
            "tasks.task.list": self.list,
            "tasks.task.update": self.update,
            "tasks.task.delete": self.delete,
        }
        return methods.get(name.lower())


# ---------------------------------------------------------------------------------------------
# Execution


def execute_batch(
    rows: Sequence[Row],
    store: TaskStore,
    handlers: Mapping[str, Handler],
    *,
    now: float,
    on_command: Callable[[str], None] = lambda method: None,
    on_executed: Callable[[str], None] = lambda method: None,
) -> list[Any]:
    """Run ``rows`` in order until one fails; returns one result entry per row.

    As the portal's dispatcher does: no transaction, so the writes of the rows before a failing
    one stay in ``store``; the rows after it never run.

    Args:
        rows: Validated commands.
        store: The tasks store.
        handlers: Registered methods by lower-case name; they take precedence over built-ins.
        now: Wall time (unix seconds) stamped on created and changed tasks.
        on_command: Called with the lower-case method name just before each command runs, so
            the caller can charge operating time, also for commands of a batch that then fails.
        on_executed: Called with the lower-case method name after each command succeeded.

    Raises:
        CommandError: The first failing command's error (an unknown method and an unresolved
            reference fail at their row, like any other error).
        Exception: Whatever a registered handler raised.
    """
    context = _Context()
    results: list[Any] = []
    for position, row in enumerate(rows):
        query = _substitute(row.query, context)
        name = row.method.lower()
        handler = handlers.get(name)
        builtin = store.method(name)
        if handler is None and builtin is None:
            raise CommandError(
                f"Method `{row.method}` not found", code=METHOD_NOT_FOUND, status=404
            )
        on_command(name)
        if handler is not None:
            output = copy.deepcopy(handler(query))
            json.dumps(output)  # a non-JSON result fails its row, as a PHP fatal error would
        else:
            assert builtin is not None
            output = builtin(query, now)
        on_executed(name)
        context.add(position, row.alias, output)
        results.append(output)
    return results
