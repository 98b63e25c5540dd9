"""The FakePortal's in-memory tasks store and REST 3.0 batch executor. Pure: no I/O, clocks, locks.

Parses a batch body into rows and runs each against the tasks store or a registered handler, in
order, references substituted (``v3_references.py``), stopping at the first failure without
rollback (protocol §4). Time, locking, authentication, limits and faults are the portal's.
"""

from __future__ import annotations

import bisect
import copy
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import attrs

from b24batch.testing.command_error import (
    ENTITY_NOT_FOUND,
    METHOD_NOT_FOUND,
    CommandError,
    bad_batch,
)
from b24batch.testing.v3_references import Context, substitute
from b24batch.testing.v3_task_fields import (
    TASK_FIELDS,
    format_datetime,
    query_task_id,
    required_field,
    validate_fields,
    writable_fields,
)
from b24batch.testing.v3_task_query import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    PageSize,
    id_bounds,
    parse_filter,
    parse_order,
    parse_page,
    parse_select,
    project,
    sort_key,
)

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


Handler = Callable[[dict[str, Any]], Any]
"""A registered method: receives the row's query (references substituted), returns its entry."""

_BATCH_ROW_KEYS: Final = frozenset({"method", "query", "as", "parallel"})


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
            raise bad_batch(f"{where} must be an object")
        unknown = sorted(set(data) - _BATCH_ROW_KEYS)
        if unknown:
            raise bad_batch(f"{where} has unknown keys: {', '.join(unknown)}")
        method = data.get("method")
        if not isinstance(method, str) or not method:
            raise bad_batch(f"{where}: `method` must be a non-empty string")
        if method.lower() == "batch":
            raise bad_batch(f"{where}: a batch cannot contain `batch`")
        if "query" not in data:
            raise bad_batch(f"{where}: `query` is required")
        query = data["query"]
        if query == []:
            # PHP decodes `{}` and `[]` alike, so an empty list is an empty query there too.
            query = {}
        if not isinstance(query, dict):
            raise bad_batch(f"{where}: `query` must be an object")
        alias = data.get("as")
        if "as" in data and (not isinstance(alias, str) or not alias):
            raise bad_batch(f"{where}: `as` must be a non-empty string")
        parallel = data.get("parallel", False)
        if not isinstance(parallel, bool):
            raise bad_batch(f"{where}: `parallel` must be a boolean")
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
            raise bad_batch(
                "The batch must be a JSON array of commands (or an object keyed 0..n-1)"
            )
        items: list[Any] = [data[key] for key in positions]
    elif isinstance(data, list):
        items = data
    else:
        raise bad_batch("The batch must be a JSON array of commands")
    if not 1 <= len(items) <= MAX_COMMANDS:
        raise bad_batch(f"A batch must hold 1 to {MAX_COMMANDS} commands, got {len(items)}")
    rows = tuple(Row.from_json(index, item) for index, item in enumerate(items))
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        if row.alias is None:
            continue
        if row.alias in seen:
            raise bad_batch(
                f"Command #{index}: alias `{row.alias}` is already used by "
                f"command #{seen[row.alias]}"
            )
        seen[row.alias] = index
    return rows


# Tasks


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
        page_size: Where ``tasks.task.list`` clamps ``pagination.limit``, silently, or a
            callable that sizes each page (see ``page_length``).
    """

    def __init__(self, *, user_id: int, page_size: PageSize = MAX_PAGE_SIZE) -> None:
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
        fields = writable_fields(query)
        if not fields.get("title"):
            raise required_field("title")
        task_id = self.create(fields, now=now)
        return {"item": copy.deepcopy(self._tasks[task_id])}

    def get(self, query: Mapping[str, Any], now: float) -> dict[str, Any]:
        task = self._existing(query_task_id(query))
        return {"item": project(task, parse_select(query, tuple(TASK_FIELDS)))}

    def list(self, query: Mapping[str, Any], now: float) -> dict[str, Any]:
        select = parse_select(query, ("id",))
        predicate = parse_filter(query.get("filter"))
        order = parse_order(query)
        window = parse_page(query, self.page_size, "tasks.task.list")
        # The ids a range filter allows, in id order: an id-range walk over 100 000 tasks
        # looks at each page's tasks only, not at the whole store for every command.
        candidates = (self._tasks[i] for i in self._ids.between(*id_bounds(query.get("filter"))))
        found = [task for task in candidates if predicate(task)]
        for field, descending in reversed(order):
            found.sort(key=sort_key(field), reverse=descending)
        return {"items": [project(task, select) for task in found[window]]}

    def update(self, query: Mapping[str, Any], now: float) -> dict[str, Any]:
        task_id = query_task_id(query)
        fields = writable_fields(query)
        task = self._existing(task_id)
        task.update(fields)
        task["changed"] = format_datetime(now)
        return {"result": True}

    def delete(self, query: Mapping[str, Any], now: float) -> dict[str, Any]:
        task_id = query_task_id(query)
        self._existing(task_id)
        del self._tasks[task_id]
        self._ids.remove(task_id)
        return {"result": True}

    def find(self, task_id: int) -> dict[str, Any] | None:
        """The stored task (not a copy) with ``task_id``, or None."""
        return self._tasks.get(task_id)

    def between(self, low: int | None, high: int | None) -> Iterator[dict[str, Any]]:
        """The stored tasks (not copies) with ids in ``[low, high)``, in id order."""
        return (self._tasks[i] for i in self._ids.between(low, high))

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
    context = Context()
    results: list[Any] = []
    for position, row in enumerate(rows):
        query = substitute(row.query, context)
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
