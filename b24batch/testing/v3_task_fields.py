"""The tasks' fields as the FakePortal keeps them: wire types, value and id checks, date format.

Pure: no I/O, no store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from b24batch.testing.command_error import UNKNOWN_PROPERTY, CommandError

__all__ = [
    "TASK_FIELDS",
    "format_datetime",
    "parse_datetime",
    "query_task_id",
    "required_field",
    "unknown_field",
    "validate_fields",
    "writable_fields",
]

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


def format_datetime(timestamp: float) -> str:
    """Unix seconds -> ISO 8601 with the local UTC offset, as the portal writes dates."""
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc).astimezone()
    return moment.isoformat(timespec="seconds")


def parse_datetime(value: str) -> dt.datetime:
    """ISO 8601 -> aware datetime; a naive value is read as local time. Raises ValueError."""
    # Python 3.10's fromisoformat does not read a trailing "Z".
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.astimezone()


def _type_error(field: str, kind: str) -> tuple[str, str]:
    type_name = _TYPE_NAMES[kind.rstrip("?")]
    return field, f"Field `{field}` requires data type `{type_name}` for this request"


def required_field(field: str) -> CommandError:
    return CommandError.invalid((field, f"Required field `{field}` is not specified"))


def unknown_field(field: Any) -> CommandError:
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
            ok = isinstance(value, str) and parse_datetime(value) is not None
        except ValueError:
            ok = False
    return None if ok else _type_error(field, kind)


def _normalise(field: str, value: Any) -> Any:
    if value is not None and TASK_FIELDS[field].startswith("datetime"):
        return parse_datetime(value).isoformat(timespec="seconds")
    return value


def query_task_id(query: Mapping[str, Any]) -> int:
    if "id" not in query:
        raise required_field("id")
    value = query["id"]
    if not isinstance(value, int) or isinstance(value, bool):
        raise CommandError.invalid(_type_error("id", "int"))
    return value


def writable_fields(query: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``query.fields`` of add/update; returns the normalised values."""
    if "fields" not in query:
        raise required_field("fields")
    fields = query["fields"]
    if fields == []:
        fields = {}
    if not isinstance(fields, dict):
        raise CommandError.invalid(("fields", "Field `fields` requires data type `array`"))
    for name in fields:
        if name not in TASK_FIELDS:
            raise unknown_field(name)
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
    return writable_fields({"fields": dict(fields)})
