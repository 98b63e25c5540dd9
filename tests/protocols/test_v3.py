"""``_protocols.v3``: the REST 3.0 protocol value ``V3`` — references, decoding, list rows.

Pure functions, called directly with batches and answers built here.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Any

import pytest

from b24batch._protocols.base import Answers, Spec
from b24batch._protocols.v3 import V3, references
from b24batch.commands import Command, normalize
from b24batch.errors import SdkError, SdkTypeError
from b24batch.results import Time


def decode(answer: Any, headers: dict[str, str] | None = None) -> Answers:
    """The ``Answers`` V3 decodes from a 200 ``answer`` to a batch of one command."""
    prepared = V3.prepare(normalize([("tasks.task.get", {"id": 1})]), halt=True)
    content = json.dumps(answer).encode()
    return V3.decode(200, content, prepared=prepared, request_id="rq-1", headers=headers or {})


@pytest.mark.parametrize(
    ("headers", "replayed"),
    [
        pytest.param({"Idempotent-Replayed": " True "}, True, id="true-any-case-and-spaces"),
        pytest.param({"Idempotent-Replayed": "false"}, False, id="false"),
        pytest.param({}, False, id="absent"),
    ],
)
def test_an_answer_is_replayed_only_when_the_portal_says_true(
    headers: dict[str, str], replayed: bool
) -> None:
    """``Idempotent-Replayed: true`` (any case, spaces around) marks an answer replayed."""
    assert decode({"result": [{"item": {}}]}, headers).replayed is replayed


def test_an_answers_time_is_also_what_the_meter_learns_from() -> None:
    """REST 3.0 has one time block: it is the answer's time and its limit time."""
    answers = decode({"result": [{"item": {}}], "time": {"operating": 2.5}})
    assert answers.time == answers.limit_time == Time(operating=2.5)
    assert answers.status == 200


def test_referenced_names_the_command_each_reference_starts_with() -> None:
    """``referenced`` gives each $ref/$refArray path's first segment: the alias it names."""
    params = {"id": {"$ref": "deal.item.id"}}
    assert V3.referenced(params) == ["deal"]
    assert V3.referenced({"ids": {"$refArray": "list.items.id"}}) == ["list"]


class _Kind(str, enum.Enum):
    """A value of a type the walk does not know (a str subclass): JSON writes it as a string."""

    TASK = "task"


def test_references_are_found_past_values_of_unknown_types() -> None:
    """A value of a type other than the JSON scalars and containers is stepped over, and the
    walk goes on to what is left (here popped first, before the reference)."""
    params = {"fields": {"parent": {"$ref": "deal.item.id"}, "kind": _Kind.TASK}}
    assert references(params) == ["deal.item.id"]
    assert references([{"$refArray": "list.items.id"}, (_Kind.TASK,)]) == ["list.items.id"]


def test_a_dict_with_more_than_the_marker_is_not_a_reference() -> None:
    """A reference is a dict of one key, ``$ref`` or ``$refArray``: with another key beside it
    it is plain data, sent as it is."""
    assert references({"filter": {"$ref": "deal.item.id", "other": 1}}) == []
    assert references({"filter": {"$refArray": "x.items.id", "$ref": "y.item.id"}}) == []


def test_a_reference_to_no_earlier_alias_names_the_row_and_the_alias() -> None:
    """``targets`` refuses a reference to an alias no earlier command has, naming the row."""
    command = Command("tasks.task.get", {"id": {"$ref": "later.item.id"}})
    message = (
        "calls['b'] references 'later.item.id', but no earlier command has the alias "
        "'later'; a reference points back to an earlier command's 'as' (or name)"
    )
    with pytest.raises(SdkError, match=f"^{re.escape(message)}$"):
        V3.targets(command, {"deal": 0}, 1, "calls['b']")


def test_list_filter_refuses_a_filter_that_is_not_a_list() -> None:
    """A classic-style dict filter is refused for a REST 3.0 walk, naming its type."""
    message = (
        "params['filter'] is a dict; a REST 3.0 filter is a list of [field, operator, value] "
        "conditions, e.g. [['responsibleId', '=', 7]]"
    )
    with pytest.raises(SdkTypeError, match=f"^{re.escape(message)}$"):
        V3.list_filter({">ID": 1}, "id")


@pytest.mark.parametrize(("descending", "order"), [(False, "ASC"), (True, "DESC")])
def test_list_row_adds_the_bounds_the_order_and_the_page(descending: bool, order: str) -> None:
    """A REST 3.0 list row: the caller's conditions plus both bounds, ordered by id, one page."""
    spec = Spec(
        method="tasks.task.list", params={"select": ["id"]}, filter=[["x", "=", 1]], id_key="id"
    )
    method, params = V3.list_row(spec, 10, 20, descending)
    assert method == "tasks.task.list"
    assert params == {
        "select": ["id"],
        "filter": [["x", "=", 1], ["id", ">=", 10], ["id", "<", 20]],
        "order": {"id": order},
        "pagination": {"limit": 50},
    }
