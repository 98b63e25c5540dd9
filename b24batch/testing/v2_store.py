"""The FakePortal's in-memory CRM for the classic methods. Pure: no I/O, no clocks, no locks.

``crm.deal.*`` and ``crm.contact.*`` (``add``, ``get``, ``list``, ``update``, ``delete``) and
``user.current``, in the classic shapes: upper-case field names, string ``ID``s, ``add``
answering the new id as an int, ``list`` pages of 50 with ``total`` and ``next``. Errors are
[`CommandError`][b24batch.testing.CommandError], which the classic batch reports per command.
"""

from __future__ import annotations

import copy
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from b24batch.testing.command_error import CommandError
from b24batch.testing.v3_store import SortedIds, format_datetime
from b24batch.testing.v3_task_query import PageSize, page_length

__all__ = [
    "CONTACT_FIELDS",
    "DEAL_FIELDS",
    "PAGE_SIZE",
    "ClassicAnswer",
    "CrmSeeding",
    "CrmStore",
    "list_page",
]

PAGE_SIZE: Final = 50
"""Items per page of a classic list method."""

DEAL_FIELDS: Final[Mapping[str, str | None]] = {
    "TITLE": "",
    "TYPE_ID": "SALE",
    "STAGE_ID": "NEW",
    "CATEGORY_ID": "0",
    "PROBABILITY": None,
    "CURRENCY_ID": "USD",
    "OPPORTUNITY": "0.00",
    "COMPANY_ID": "0",
    "CONTACT_ID": None,
    "BEGINDATE": None,
    "CLOSEDATE": None,
    "OPENED": "Y",
    "CLOSED": "N",
    "COMMENTS": None,
    "ASSIGNED_BY_ID": None,
    "SOURCE_ID": None,
}
"""Writable deal fields and their defaults (None: empty); ``ASSIGNED_BY_ID`` is the user."""
CONTACT_FIELDS: Final[Mapping[str, str | None]] = {
    "NAME": "",
    "SECOND_NAME": None,
    "LAST_NAME": None,
    "POST": None,
    "TYPE_ID": "CLIENT",
    "SOURCE_ID": None,
    "COMPANY_ID": None,
    "OPENED": "Y",
    "COMMENTS": None,
    "ASSIGNED_BY_ID": None,
    "BIRTHDATE": None,
}
_NUMERIC: Final = re.compile(r"ID|.*_ID|.*_BY|OPPORTUNITY|PROBABILITY|PRIORITY|STATUS")
_DATES: Final = frozenset(
    {
        "DATE_CREATE",
        "DATE_MODIFY",
        "BEGINDATE",
        "CLOSEDATE",
        "BIRTHDATE",
        "CREATED_DATE",
        "CHANGED_DATE",
        "DEADLINE",
    }
)
_PREFIXES: Final = (">=", "<=", "!=", "!%", "=", "!", ">", "<", "%")
_NOT_FOUND: Final = "Not found"
_BAD_ID: Final = "ID is not defined or invalid."  # with its period, as real answers


@attrs.frozen
class ClassicAnswer:
    """What a classic method returns: its ``result``, and ``total``/``next`` for a list page."""

    result: Any
    total: int | None = None
    next: int | None = None


def _error(description: str) -> CommandError:
    # The CRM methods answer these with an empty error code (the docs' "Empty value").
    return CommandError(description, code="", status=400)


def _upper(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter names are case-insensitive, as ``array_change_key_case`` makes them."""
    return {str(key).upper(): value for key, value in params.items()}


def _text(value: Any) -> Any:
    """A field value as the classic API stores it: text (numbers as text), arrays kept."""
    if value is None or isinstance(value, dict | list):
        return value
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def _positive_id(params: Mapping[str, Any]) -> int:
    value = params.get("ID")
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not text.isdigit() or int(text) <= 0:
        raise _error(_BAD_ID)
    return int(text)


class _Entity:
    """One CRM entity type's records: id -> fields, all values text."""

    def __init__(
        self,
        fields: Mapping[str, str | None],
        user_id: int,
        page_size: PageSize = PAGE_SIZE,
        name: str = "crm.deal",
    ) -> None:
        self.fields = fields
        self.name = name
        self._user = str(user_id)
        self.page_size = page_size
        self.records: dict[int, dict[str, Any]] = {}
        self._ids = SortedIds()
        self._next_id = 1

    def free_ids(self, count: int, *, sparse: bool, rand: Any, top: int) -> list[int]:
        """``count`` free ids: the next ones, or (``sparse``) random ones up to ``top``."""
        if not sparse:
            return list(range(self._next_id, self._next_id + count))
        if count > top - len(self.records):
            raise ValueError(f"{count} sparse ids do not fit under {top}")
        chosen: set[int] = set()
        while len(chosen) < count:
            chosen.update(rand.sample(range(1, top + 1), count - len(chosen)))
            chosen -= self.records.keys()
        return sorted(chosen)

    def create_many(self, ids: list[int], fields: Mapping[str, Any], now: float) -> None:
        """Add one record per (free) id with the same fields, in one go."""
        template = self._accepted(dict(fields)) if fields else {}
        stamp = format_datetime(now)
        base: dict[str, Any] = {key: default for key, default in self.fields.items()}
        base.update(
            ASSIGNED_BY_ID=self._user,
            CREATED_BY_ID=self._user,
            MODIFY_BY_ID=self._user,
            DATE_CREATE=stamp,
            DATE_MODIFY=stamp,
        )
        base.update(template)
        if "OPPORTUNITY" in base:
            base["OPPORTUNITY"] = _money(base["OPPORTUNITY"])
        titled = "TITLE" in self.fields and "TITLE" not in template
        for record_id in ids:
            record = {"ID": str(record_id), **base}
            if titled:
                record["TITLE"] = f"Deal {record_id}"
            self.records[record_id] = record
        self._ids.extend(ids)
        if ids:
            self._next_id = max(self._next_id, max(ids) + 1)

    def discard(self, record_id: int) -> bool:
        """Remove a record if there is one; whether there was."""
        if self.records.pop(record_id, None) is None:
            return False
        self._ids.remove(record_id)
        return True

    def _accepted(self, fields: object) -> dict[str, Any]:
        if not isinstance(fields, dict) or not fields:
            raise _error("Parameter 'fields' must be array.")
        # Like the portal, unknown fields are ignored; custom UF_ fields are kept.
        return {
            key: _text(value)
            for key, value in _upper(fields).items()
            if key in self.fields or key.startswith("UF_")
        }

    def create(self, fields: object, now: float, record_id: int | None = None) -> int:
        values = self._accepted(fields)
        if record_id is None:
            record_id = self._next_id
        elif record_id in self.records:
            raise ValueError(f"id {record_id} is taken")
        self._next_id = max(self._next_id, record_id + 1)
        stamp = format_datetime(now)
        record: dict[str, Any] = {"ID": str(record_id)}
        record.update({key: default for key, default in self.fields.items()})
        record.update(
            ASSIGNED_BY_ID=self._user,
            CREATED_BY_ID=self._user,
            MODIFY_BY_ID=self._user,
            DATE_CREATE=stamp,
            DATE_MODIFY=stamp,
        )
        record.update(values)
        if "OPPORTUNITY" in record:
            record["OPPORTUNITY"] = _money(record["OPPORTUNITY"])
        self.records[record_id] = record
        self._ids.add(record_id)
        return record_id

    def existing(self, params: Mapping[str, Any]) -> dict[str, Any]:
        record = self.records.get(_positive_id(params))
        if record is None:
            raise _error(_NOT_FOUND)
        return record

    def add(self, params: Mapping[str, Any], now: float) -> ClassicAnswer:
        return ClassicAnswer(self.create(params.get("FIELDS"), now))

    def get(self, params: Mapping[str, Any], now: float) -> ClassicAnswer:
        return ClassicAnswer(copy.deepcopy(self.existing(params)))

    def update(self, params: Mapping[str, Any], now: float) -> ClassicAnswer:
        record = self.existing(params)
        values = self._accepted(params.get("FIELDS"))
        if "OPPORTUNITY" in values:
            values["OPPORTUNITY"] = _money(values["OPPORTUNITY"])
        record.update(values, MODIFY_BY_ID=self._user, DATE_MODIFY=format_datetime(now))
        return ClassicAnswer(True)

    def delete(self, params: Mapping[str, Any], now: float) -> ClassicAnswer:
        self.existing(params)
        self.discard(_positive_id(params))
        return ClassicAnswer(True)

    def list(self, params: Mapping[str, Any], now: float) -> ClassicAnswer:
        return list_page(
            lambda low, high: (self.records[i] for i in self._ids.between(low, high)),
            params,
            page_size=self.page_size,
            method=f"{self.name}.list",
        )


def list_page(
    between: Callable[[int | None, int | None], Iterable[Mapping[str, Any]]],
    params: Mapping[str, Any],
    *,
    page_size: PageSize,
    method: str,
    descending: bool = False,
) -> ClassicAnswer:
    """One classic list page over upper-case records: ``FILTER``, ``ORDER`` (by ``ID``,
    ascending or ``descending``, when none), ``SELECT``, ``START``; ``total`` and ``next``.

    ``between(low, high)`` yields the records whose ids are in ``[low, high)`` in id order:
    a range walk over 100 000 records looks at each page's records, not at the whole store.
    """
    filters = params.get("FILTER")
    matches = [record for record in between(*_id_bounds(filters)) if _matches(record, filters)]
    for field, down in reversed(_order(params.get("ORDER"), descending)):
        matches.sort(key=lambda record: _sort_key(record, field), reverse=down)
    start = _start(params.get("START"))
    select = _select(params.get("SELECT"))
    size = page_length(page_size, method, PAGE_SIZE)
    if start < 0:  # start=-1: no count, no next (the fast way through a large list)
        return ClassicAnswer([_project(record, select) for record in matches[:size]])
    page = matches[start : start + size]
    following = start + size if start + size < len(matches) else None
    return ClassicAnswer([_project(record, select) for record in page], len(matches), following)


def _money(value: Any) -> Any:
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return value


def _start(value: Any) -> int:
    """PHP's ``intval`` of ``start``: leading digits, else 0."""
    match = re.match(r"\s*(-?\d+)", str(value)) if value is not None else None
    return int(match.group(1)) if match else 0


def _select(value: Any) -> list[str] | None:
    """The selected fields, or None for all (no select, or ``*``)."""
    items = list(value.values()) if isinstance(value, dict) else value
    if not isinstance(items, list) or not items:
        return None
    names = [str(item).upper() for item in items]
    return None if "*" in names else names


def _project(record: Mapping[str, Any], select: list[str] | None) -> dict[str, Any]:
    if select is None:
        return copy.deepcopy(dict(record))
    wanted = set(select)
    if "UF_*" in wanted:
        wanted |= {key for key in record if key.startswith("UF_")}
    return {key: copy.deepcopy(value) for key, value in record.items() if key in wanted}


def _order(value: Any, descending: bool = False) -> list[tuple[str, bool]]:
    if not isinstance(value, dict) or not value:
        return [("ID", descending)]
    return [(str(field).upper(), str(way).upper() == "DESC") for field, way in value.items()]


def _comparable(field: str, value: Any) -> tuple[int, Any]:
    """A sortable, comparable form: numbers for numeric fields, text otherwise."""
    if value is None or value == "":
        return (0, "")
    if field in _DATES:
        return (1, str(value)[:19])
    if _NUMERIC.fullmatch(field):
        try:
            return (1, float(value))
        except (TypeError, ValueError):
            pass
    return (1, str(value).lower())


def _sort_key(record: Mapping[str, Any], field: str) -> tuple[int, Any]:
    return _comparable(field, record.get(field))


def _id_bounds(filters: Any) -> tuple[int | None, int | None]:
    """The ``[low, high)`` range the filter's ``>ID``/``>=ID``/``<ID``/``<=ID``/``=ID`` keys
    allow (None: open), read as ``_matches`` compares them: as numbers."""
    low: int | None = None
    high: int | None = None
    if not isinstance(filters, dict):
        return low, high
    for raw, wanted in filters.items():
        key = str(raw).upper()
        prefix = next((p for p in _PREFIXES if key.startswith(p)), "")
        if key[len(prefix) :] != "ID" or isinstance(wanted, dict | list):
            continue
        try:
            number = float(str(wanted))
        except ValueError:
            continue
        if number != number or number in (float("inf"), float("-inf")):
            continue
        floor, ceil = math.floor(number), math.ceil(number)
        start = {">": floor + 1, ">=": ceil, "=": ceil, "": ceil}.get(prefix)
        stop = {"<": ceil, "<=": floor + 1, "=": floor + 1, "": floor + 1}.get(prefix)
        if start is not None:
            low = start if low is None else max(low, start)
        if stop is not None:
            high = stop if high is None else min(high, stop)
    return low, high


def _matches(record: Mapping[str, Any], filters: Any) -> bool:
    if not isinstance(filters, dict):
        return True
    for raw, wanted in filters.items():
        key = str(raw)
        prefix = next((p for p in _PREFIXES if key.startswith(p)), "")
        field = key[len(prefix) :].upper()
        if field not in record:
            continue  # an unknown field filters nothing, as on the portal
        if not _condition(prefix, field, record.get(field), wanted):
            return False
    return True


def _condition(prefix: str, field: str, have: Any, wanted: Any) -> bool:
    options = list(wanted.values()) if isinstance(wanted, dict) else wanted
    if isinstance(options, list):
        hit = any(_condition("=", field, have, option) for option in options)
        return not hit if prefix in ("!", "!=") else hit
    if prefix in ("%", "!%"):
        found = str(wanted).lower() in str(have or "").lower()
        return found if prefix == "%" else not found
    left, right = _comparable(field, have), _comparable(field, wanted)
    if left[0] != right[0] or type(left[1]) is not type(right[1]):
        left, right = (left[0], str(left[1])), (right[0], str(right[1]))
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "": lambda a, b: a == b,
        "=": lambda a, b: a == b,
        "!": lambda a, b: a != b,
        "!=": lambda a, b: a != b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
    }
    return compare[prefix](left, right)


class CrmStore:
    """Deals and contacts of one portal, and its current user."""

    def __init__(self, *, user_id: int, page_size: PageSize = PAGE_SIZE) -> None:
        self._user_id = user_id
        self._page_size = page_size
        self.clear()

    def clear(self) -> None:
        self.deals = _Entity(DEAL_FIELDS, self._user_id, self._page_size, "crm.deal")
        self.contacts = _Entity(CONTACT_FIELDS, self._user_id, self._page_size, "crm.contact")

    def user_current(self, params: Mapping[str, Any], now: float) -> ClassicAnswer:
        user = str(self._user_id)
        return ClassicAnswer(
            {
                "ID": user,
                "ACTIVE": True,
                "NAME": "Test",
                "LAST_NAME": "User",
                "EMAIL": f"user{user}@example.com",
                "UF_DEPARTMENT": [1],
            }
        )

    def method(self, name: str) -> Callable[[Mapping[str, Any], float], ClassicAnswer] | None:
        """The built-in classic method ``name`` (lower case); it takes the params, upper-cased."""
        if name == "user.current":
            return self.user_current
        entity_name, _, verb = name.rpartition(".")
        entity = {"crm.deal": self.deals, "crm.contact": self.contacts}.get(entity_name)
        if entity is None or verb not in ("add", "get", "list", "update", "delete"):
            return None
        run: Callable[[Mapping[str, Any], float], ClassicAnswer] = getattr(entity, verb)
        return lambda params, now: run(_upper(params), now)


class CrmSeeding:
    """``FakePortal``'s public CRM helpers: seed records, read snapshots (nothing recorded)."""

    _lock: threading.RLock
    _crm: CrmStore
    _wall_clock: Callable[[], float]

    def add_deal(self, **fields: Any) -> int:
        """Seed a deal (upper-case classic fields, plus ``id`` to choose it); returns its id.

        Raises:
            ValueError: ``id`` is not a positive int or is taken, or a field is unknown
                (the portal would ignore it; a seed with a typo should not pass silently).
        """
        return self._seed(self._crm.deals, fields, {"TITLE": "Deal"})

    def add_contact(self, **fields: Any) -> int:
        """Seed a contact, as [`add_deal`][b24batch.testing.FakePortal.add_deal] does a deal;
        returns its id."""
        return self._seed(self._crm.contacts, fields, {"NAME": "Contact"})

    @property
    def deals(self) -> dict[int, dict[str, Any]]:
        """A deep-copied snapshot: deal id -> its fields, as ``crm.deal.get`` answers them."""
        with self._lock:
            return copy.deepcopy(self._crm.deals.records)

    @property
    def contacts(self) -> dict[int, dict[str, Any]]:
        """A deep-copied snapshot: contact id -> its fields."""
        with self._lock:
            return copy.deepcopy(self._crm.contacts.records)

    def _seed(self, entity: _Entity, fields: dict[str, Any], default: dict[str, str]) -> int:
        record_id = fields.pop("id", None)
        if record_id is not None and (
            isinstance(record_id, bool) or not isinstance(record_id, int) or record_id < 1
        ):
            raise ValueError(f"id must be a positive int, got {record_id!r}")
        unknown = sorted(
            name
            for name in _upper(fields)
            if name not in entity.fields and not name.startswith("UF_")
        )
        if unknown:
            raise ValueError(f"unknown fields {unknown}; known: {', '.join(entity.fields)}")
        with self._lock:
            return entity.create({**default, **fields}, self._wall_clock(), record_id)
