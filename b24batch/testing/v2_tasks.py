"""The FakePortal's classic ``tasks.task.*``: the REST 3.0 tasks store in the classic shapes. Pure.

``get``, ``list``, ``add``, ``update``, ``delete`` as the classic route answers them
(b24restdocs ``api-reference/tasks/tasks-task-{get,list,add,update,delete}.md``): ``taskId`` and
UPPER_CASE (or camelCase) field names in; ``{"task": {...}}`` or ``{"tasks": [...]}`` with
camelCase keys and string values out; errors with the classic codes. No I/O, clocks or locks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from b24batch.testing.command_error import CommandError
from b24batch.testing.v2_store import ClassicAnswer, list_page
from b24batch.testing.v3_store import TaskStore
from b24batch.testing.v3_task_fields import parse_datetime, validate_fields

__all__ = ["STATUS_CODES", "classic_task", "classic_task_method"]

STATUS_CODES: Final[Mapping[str, str]] = {
    "new": "1",
    "pending": "2",
    "in_progress": "3",
    "supposedly_completed": "4",
    "completed": "5",
    "deferred": "6",
    "declined": "7",
}
"""REST 3.0 status -> the classic ``status`` (``tasks-task-list.md``: 2 pending … 6 deferred)."""
_PRIORITY_CODES: Final[Mapping[str, str]] = {"low": "0", "average": "1", "high": "2"}
_STATUS_NAMES: Final = {code: name for name, code in STATUS_CODES.items()}
_PRIORITY_NAMES: Final = {code: name for name, code in _PRIORITY_CODES.items()}
# Classic field -> the store's; the classic filter and order also know REAL_STATUS.
_STORE_FIELD: Final[Mapping[str, str]] = {
    "ID": "id",
    "TITLE": "title",
    "DESCRIPTION": "description",
    "CREATED_BY": "creatorId",
    "RESPONSIBLE_ID": "responsibleId",
    "GROUP_ID": "groupId",
    "STATUS": "status",
    "PRIORITY": "priority",
    "DEADLINE": "deadline",
    "CREATED_DATE": "created",
    "CHANGED_DATE": "changed",
}
_ALIASES: Final = {"REAL_STATUS": "STATUS"}
_SORTABLE: Final = frozenset({*_STORE_FIELD, "SUB_STATUS"})
_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_FILTER_PREFIX: Final = re.compile(r"^(>=|<=|!=|!%|=|!|>|<|%)?(.*)$", re.DOTALL)

_NO_TASK_ID: Final = "CTaskItem All parameters in the constructor must have real class type"
_NO_FIELDS: Final = "Could not find value for parameter {fields} (internal error)"


def _upper_snake(name: str) -> str:
    """``responsibleId`` -> ``RESPONSIBLE_ID``; an upper-case name stays as it is."""
    return _CAMEL_BOUNDARY.sub("_", name).upper()


def _camel(name: str) -> str:
    """``RESPONSIBLE_ID`` -> ``responsibleId``: the classic answer's keys."""
    first, *rest = name.lower().split("_")
    return first + "".join(part.capitalize() for part in rest)


def _classic_name(name: Any) -> str:
    upper = _upper_snake(str(name))
    return _ALIASES.get(upper, upper)


def classic_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """A stored task as the classic methods hold it: upper-case names, values as text."""
    status = STATUS_CODES.get(task["status"], str(task["status"]))
    return {
        "ID": str(task["id"]),
        "TITLE": task["title"],
        "DESCRIPTION": task["description"],
        "CREATED_BY": str(task["creatorId"]),
        "RESPONSIBLE_ID": str(task["responsibleId"]),
        "GROUP_ID": str(task["groupId"] or 0),
        "STATUS": status,
        "SUB_STATUS": status,
        "PRIORITY": _PRIORITY_CODES.get(task["priority"], str(task["priority"])),
        "DEADLINE": task["deadline"],
        "CREATED_DATE": task["created"],
        "CHANGED_DATE": task["changed"],
    }


def _answer(record: Mapping[str, Any]) -> dict[str, Any]:
    return {_camel(name): value for name, value in record.items()}


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter names are read without regard to case (``taskId``, ``TASKID``)."""
    return {str(name).upper(): value for name, value in params.items()}


def _task_id(params: Mapping[str, Any]) -> int:
    if "TASKID" not in params:
        raise CommandError(_NO_TASK_ID, code="100", status=400)
    value = params["TASKID"]
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not text.strip().isdigit() or int(text) <= 0:
        raise CommandError("wrong task id", code="0", status=400)
    return int(text)


def _core_error(description: str) -> CommandError:
    # ERROR_CORE descriptions end in <br> on the portal (tasks-task-add.md).
    return CommandError(f"{description}<br>", code="ERROR_CORE", status=400)


def _store_value(field: str, value: Any) -> Any:
    """A classic field value (text, as PHP received it) in the store's type."""
    text = "" if value is None else str(value).strip()
    if field in ("TITLE", "DESCRIPTION"):
        return "" if value is None else str(value)
    if field in ("CREATED_BY", "RESPONSIBLE_ID"):
        if not text.isdigit() or int(text) == 0:
            who = "Assignee" if field == "RESPONSIBLE_ID" else "Creator"
            raise _core_error(f"{who} not specified")
        return int(text)
    if field == "GROUP_ID":
        if text in ("", "0"):
            return None
        if not text.isdigit():
            raise _core_error("Workgroup not found")
        return int(text)
    if field == "STATUS":
        name = _STATUS_NAMES.get(text, text if text in STATUS_CODES else None)
        if name is None:
            raise _core_error("Invalid status")
        return name
    if field == "PRIORITY":
        name = _PRIORITY_NAMES.get(text, text if text in _PRIORITY_CODES else None)
        if name is None:
            raise _core_error("Invalid priority")
        return name
    if text == "":  # DEADLINE
        return None
    try:
        return parse_datetime(text).isoformat(timespec="seconds")
    except ValueError:
        raise _core_error("Invalid deadline") from None


def _fields(params: Mapping[str, Any]) -> dict[str, Any]:
    """The writable fields of ``fields``, in the store's names and types; others are ignored,
    as the portal ignores fields it does not know."""
    fields = params.get("FIELDS")
    if not isinstance(fields, Mapping) or not fields:
        raise CommandError(_NO_FIELDS, code="100", status=400)
    values: dict[str, Any] = {}
    for raw, value in fields.items():
        name = _classic_name(raw)
        if name in _STORE_FIELD and name not in ("ID", "CREATED_DATE", "CHANGED_DATE"):
            values[_STORE_FIELD[name]] = _store_value(name, value)
    try:
        return validate_fields(values)
    except CommandError as exc:  # a value the conversions above let through
        raise _core_error(exc.message) from exc


class _ClassicTasks:
    """The five methods over one ``TaskStore``."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store

    def get(self, params: Mapping[str, Any], now: float) -> ClassicAnswer:
        task = self.store.find(_task_id(params))
        if task is None:
            # tasks-task-get.md: "an empty array if the task does not exist or is not visible".
            return ClassicAnswer([])
        select = _select(params.get("SELECT"))
        record = classic_task(task)
        shown = record if select is None else {k: v for k, v in record.items() if k in select}
        return ClassicAnswer({"task": _answer(shown)})

    def list(self, params: Mapping[str, Any], now: float) -> ClassicAnswer:
        query = {
            "FILTER": _filter(params.get("FILTER")),
            "ORDER": _order(params.get("ORDER")),
            "SELECT": _select(params.get("SELECT")),
            "START": params.get("START"),
        }
        page = list_page(
            lambda low, high: map(classic_task, self.store.between(low, high)),
            query,
            page_size=self.store.page_size,
            method="tasks.task.list",
            descending=True,  # "By default — descending by ID" (tasks-task-list.md)
        )
        return ClassicAnswer({"tasks": [_answer(r) for r in page.result]}, page.total, page.next)

    def add(self, params: Mapping[str, Any], now: float) -> ClassicAnswer:
        values = _fields(params)
        if not values.get("title"):
            raise _core_error("Task title not specified")
        task_id = self.store.create(values, now=now)
        return ClassicAnswer({"task": _answer(classic_task(self._existing(task_id)))})

    def update(self, params: Mapping[str, Any], now: float) -> ClassicAnswer:
        task_id = _task_id(params)
        values = _fields(params)
        task = self.store.find(task_id)
        if task is None:
            raise CommandError("Action on the task is not allowed (internal error)", code="0")
        if "title" in values and not values["title"]:
            raise _core_error("Task title not specified")
        self.store.update({"id": task_id, "fields": values}, now)
        return ClassicAnswer({"task": _answer(classic_task(self._existing(task_id)))})

    def delete(self, params: Mapping[str, Any], now: float) -> ClassicAnswer:
        if not self.store.discard(_task_id(params)):
            raise CommandError("No access to delete the task", code="1048582")
        return ClassicAnswer({"task": True})

    def _existing(self, task_id: int) -> Mapping[str, Any]:
        task = self.store.find(task_id)
        assert task is not None
        return task


def _select(value: Any) -> list[str] | None:
    """The selected classic fields (None: all), as ``select`` names them in either case.

    Raises:
        CommandError: ``select`` is not an array (``tasks-task-get.md``, code 100).
    """
    if value is None or value == "":
        return None
    items = list(value.values()) if isinstance(value, Mapping) else value
    if not isinstance(items, list):
        raise CommandError(
            f"Invalid value {value} to match with parameter {{select}}. Should be value of "
            "type array. (internal error)",
            code="100",
        )
    names = [_classic_name(item) for item in items]
    return None if not names or "*" in names else names


def _filter(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    renamed: dict[str, Any] = {}
    for key, wanted in value.items():
        match = _FILTER_PREFIX.match(str(key))
        assert match is not None
        renamed[(match.group(1) or "") + _classic_name(match.group(2))] = wanted
    return renamed


def _order(value: Any) -> Any:
    """``order`` in classic names; a field that cannot be sorted on is the portal's error."""
    if not isinstance(value, Mapping):
        return value
    order = {}
    for key, way in value.items():
        name = _classic_name(key)
        if name not in _SORTABLE:
            raise CommandError("Invalid sorting key (internal error)", code="0")
        order[name] = way
    return order


def classic_task_method(
    store: TaskStore, name: str
) -> Callable[[Mapping[str, Any], float], ClassicAnswer] | None:
    """The classic ``tasks.task.*`` method ``name`` (lower case) over ``store``, or None.

    It takes the decoded params (names in any case) and the wall time.
    """
    prefix, _, verb = name.rpartition(".")
    if prefix != "tasks.task" or verb not in ("get", "list", "add", "update", "delete"):
        return None
    run: Callable[[Mapping[str, Any], float], ClassicAnswer] = getattr(_ClassicTasks(store), verb)
    return lambda params, now: run(_params(params), now)
