"""Normalisation and validation of ``calls`` (b24batch.commands): no I/O here."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import re
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b24batch import Command, SdkError, SdkTypeError
from b24batch.commands import (
    MAX_COMMANDS,
    MAX_PARAMS_DEPTH,
    check_json_keys,
    explain_unencodable,
    normalize,
)


def test_tuple_rows_keep_order_and_positions() -> None:
    """A list of tuples becomes commands keyed 0..n-1 in call order."""
    commands = normalize([("a.get", {"id": 1}), ("b.list",)])
    assert commands.keys == (0, 1)
    assert [c.method for c in commands.items] == ["a.get", "b.list"]
    assert commands.items[0].params == {"id": 1}
    assert commands.items[1].params is None
    assert commands.aliases == (None, None)
    assert commands.named is False


def test_dict_rows_read_method_params_as_parallel() -> None:
    """A dict row maps onto Command fields, 'as' included."""
    commands = normalize([{"method": "a.get", "params": {"id": 2}, "as": "x", "parallel": True}])
    command = commands.items[0]
    assert (command.method, command.params, command.as_, command.parallel) == (
        "a.get",
        {"id": 2},
        "x",
        True,
    )
    assert commands.aliases == ("x",)


def test_named_calls_use_names_as_keys_and_aliases() -> None:
    """A dict of named rows keys by name and sends each name as 'as'."""
    commands = normalize({"first": ("a.get", {"id": 1}), "second": {"method": "a.get"}})
    assert commands.keys == ("first", "second")
    assert commands.aliases == ("first", "second")
    assert commands.named is True


def test_named_row_with_own_as_keeps_it() -> None:
    """A named row's own 'as' wins over its name on the wire."""
    commands = normalize({"first": Command("a.get", as_="alias1")})
    assert commands.aliases == ("alias1",)
    assert commands.keys == ("first",)


def test_mixed_row_kinds_in_one_list() -> None:
    """Tuples, dicts and Commands can be mixed in one list."""
    commands = normalize(
        [("a.get", {"id": 1}), {"method": "b.get"}, Command("c.get", {"id": 3}), ["d.get", {}]]
    )
    assert [c.method for c in commands.items] == ["a.get", "b.get", "c.get", "d.get"]


def test_generator_input_is_accepted() -> None:
    """Any iterable of rows works, not only lists."""
    commands = normalize(("a.get", {"id": i}) for i in range(3))
    assert [c.params for c in commands.items] == [{"id": 0}, {"id": 1}, {"id": 2}]


def test_non_dict_mapping_params_become_dict() -> None:
    """Params given as a read-only mapping are copied into a dict JSON can encode."""
    commands = normalize([("a.get", MappingProxyType({"id": 1}))])
    params = commands.items[0].params
    assert type(params) is dict
    assert params == {"id": 1}


def test_fifty_commands_are_accepted() -> None:
    """Exactly the limit is fine."""
    assert len(normalize([("a.get", {"id": i}) for i in range(MAX_COMMANDS)])) == 50


def test_more_than_fifty_stops_reading_a_generator() -> None:
    """Too many commands is refused without reading an endless generator to its end."""
    consumed = []

    def rows() -> Any:
        i = 0
        while True:
            consumed.append(i)
            yield ("a.get", {"id": i})
            i += 1

    with pytest.raises(SdkError, match="more than 50 commands"):
        normalize(rows())
    assert len(consumed) == 51


@pytest.mark.parametrize(
    ("calls", "error", "fragment"),
    [
        pytest.param([], SdkError, "calls is empty", id="empty-list"),
        pytest.param({}, SdkError, "calls is empty", id="empty-dict"),
        pytest.param([("a.get",)] * 51, SdkError, "at most 50", id="51"),
        pytest.param("tasks.task.get", SdkTypeError, "calls is a str", id="str"),
        pytest.param(42, SdkTypeError, "calls is a int", id="int"),
        pytest.param([42], SdkTypeError, "calls[0] is a int", id="row-int"),
        pytest.param(["a.get"], SdkTypeError, "calls[0] is a str", id="row-str"),
        pytest.param([("a.get", {}, "x")], SdkError, "calls[0] has 3 items", id="tuple-3"),
        pytest.param([()], SdkError, "calls[0] has 0 items", id="tuple-0"),
        pytest.param([("",)], SdkError, "calls[0] has an empty method", id="method-empty"),
        pytest.param([("  ",)], SdkError, "empty method", id="method-blank"),
        pytest.param([(5, {})], SdkTypeError, "method of type int", id="method-int"),
        pytest.param([("batch", {})], SdkError, "cannot contain another batch", id="nested"),
        pytest.param([(" a.get", {})], SdkError, "with spaces around it", id="method-padded"),
        pytest.param([("a.get\ud800", {})], SdkError, "lone surrogate", id="method-surrogate"),
        pytest.param([("a.get", [1])], SdkTypeError, "params of type list", id="params-list"),
        pytest.param([("a.get", "id=1")], SdkTypeError, "params of type str", id="params-str"),
        pytest.param([{"params": {}}], SdkError, "has no 'method'", id="dict-no-method"),
        pytest.param(
            [{"method": "a.get", "query": {"id": 1}}], SdkError, "use 'params'", id="query-key"
        ),
        pytest.param(
            [{"method": "a.get", "halt": 0}], SdkError, "unknown key 'halt'", id="unknown-key"
        ),
        pytest.param([{"method": "a.get", "as": ""}], SdkError, "is empty", id="as-empty"),
        pytest.param([{"method": "a.get", "as": 3}], SdkTypeError, "'as' of type int", id="as-int"),
        pytest.param([{"method": "a.get", "as": "a.b"}], SdkError, "contains '.'", id="as-dot"),
        pytest.param([{"method": "a.get", "as": "12"}], SdkError, "is a number", id="as-digits"),
        pytest.param(
            [{"method": "a.get", "parallel": "yes"}], SdkTypeError, "'parallel'", id="parallel-str"
        ),
        pytest.param(
            [Command("a.get", as_="x"), Command("b.get", as_="x")],
            SdkError,
            "calls[1] uses the alias 'x', as calls[0] does",
            id="duplicate-as",
        ),
        pytest.param(
            {"x": ("a.get",), "y": Command("b.get", as_="x")},
            SdkError,
            "alias 'x'",
            id="name-collides-with-as",
        ),
        pytest.param({1: ("a.get",)}, SdkTypeError, "key 1", id="name-int"),
        pytest.param({"": ("a.get",)}, SdkTypeError, "non-empty strings", id="name-empty"),
        pytest.param({"a.b": ("a.get",)}, SdkError, "own 'as'", id="name-dot"),
        pytest.param(
            {"calls": [("a.get",)], "options": {"isHaltOnError": True}},
            SdkTypeError,
            "JS SDK's {calls, options}",
            id="js-style-object",
        ),
    ],
)
def test_bad_calls_are_refused_with_the_row_named(
    calls: object, error: type[Exception], fragment: str
) -> None:
    """Each kind of bad input raises the right error, naming the row and the fix."""
    with pytest.raises(error, match=re.escape(fragment)) as info:
        normalize(calls)
    assert type(info.value) is error  # not just any subclass
    assert isinstance(info.value, ValueError)
    if error is SdkTypeError:
        assert isinstance(info.value, TypeError)


def test_named_rows_are_named_in_errors() -> None:
    """An error in a named row names it by its key."""
    with pytest.raises(SdkError, match=re.escape("calls['second'] has an empty method")):
        normalize({"first": ("a.get",), "second": ("",)})


def _explain(params: dict[str, Any]) -> SdkError:
    return explain_unencodable(normalize([("ok.get", {}), ("a.get", params)]))


@pytest.mark.parametrize(
    ("params", "fragment", "is_type"),
    [
        pytest.param({"x": math.nan}, "params['x'] is nan", False, id="nan"),
        pytest.param({"x": [1, math.inf]}, "params['x'][1] is inf", False, id="inf"),
        pytest.param({"x": {1, 2}}, "params['x'] is a set", True, id="set"),
        pytest.param({"x": b"ab"}, "params['x'] is a bytes", True, id="bytes"),
        pytest.param({"x": object()}, "params['x'] is a object", True, id="object"),
        pytest.param({"d": datetime.date(2026, 1, 2)}, "isoformat", True, id="date"),
        pytest.param({"d": decimal.Decimal("1.5")}, "str(value)", True, id="decimal"),
        pytest.param({"k": {(1, 2): 3}}, "key of type tuple", True, id="tuple-key"),
        pytest.param(
            {"t": ["ok", "a\ud800"]}, "params['t'][1] is text with a lone", False, id="surrogate"
        ),
    ],
)
def test_unencodable_params_are_explained_with_path(
    params: dict[str, Any], fragment: str, is_type: bool
) -> None:
    """The explanation names the row and the path to the value JSON cannot carry."""
    error = _explain(params)
    assert str(error).startswith("calls[1] ")
    assert fragment in str(error)
    assert isinstance(error, TypeError) is is_type


def test_cycles_are_explained() -> None:
    """A params structure that contains itself is named as a cycle."""
    cyclic: dict[str, Any] = {"a": []}
    cyclic["a"].append(cyclic)
    error = _explain(cyclic)
    assert "calls[1] params['a'][0] contains itself" in str(error)


@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["tasks.task.get", " a.get", "", "batch", "BATCH", "x.list "]),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_fast_path_for_plain_tuples_agrees_with_the_full_checks(
    rows: list[tuple[str, dict[str, int]]],
) -> None:
    """(method, dict) rows built on the fast path equal, or fail as, the row-by-row checks."""
    try:
        expected = [Command.from_row(row, f"calls[{i}]") for i, row in enumerate(rows)]
    except SdkError as error:
        with pytest.raises(SdkError, match=re.escape(str(error))):
            normalize(rows)
        return
    assert list(normalize(rows).items) == expected


def test_a_command_may_be_named_calls() -> None:
    """Only an object with both 'calls' and 'options' is taken for the JS SDK's argument."""
    assert normalize({"calls": ("a.get",)}).keys == ("calls",)


def _nested(depth: int) -> dict[str, Any]:
    """``{"a": [{"a": [...]}]}``: ``depth`` levels of dicts and lists."""
    params: dict[str, Any] = {}
    inner = params
    for _ in range(depth // 2):
        inner["a"] = [{}]
        inner = inner["a"][0]
    return params


def test_params_nested_5000_deep_are_explained_not_a_recursion_error() -> None:
    """5 000 levels of params: an SdkError naming the row, the path and the depth."""
    error = _explain(_nested(5000))
    assert type(error) is SdkError
    message = str(error)
    assert message.startswith("calls[1] params['a'][0]['a'][0]")
    assert f"is nested {MAX_PARAMS_DEPTH + 1} levels deep" in message
    assert "flatten" in message
    assert len(message) < 300  # the path's middle is cut out: one readable line


def test_params_at_the_depth_limit_encode() -> None:
    """Nesting up to MAX_PARAMS_DEPTH is not called unencodable."""
    commands = normalize([("a.get", _nested(MAX_PARAMS_DEPTH - 2))])
    assert str(explain_unencodable(commands)) == "the batch cannot be encoded as JSON"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        pytest.param({1: "a", "1": "b"}, "params has the keys 1 and '1'", id="int-str"),
        pytest.param({"true": 2, True: 1}, "params has the keys 'true' and True", id="bool-str"),
        pytest.param({False: 0, "false": 1}, "the keys False and 'false'", id="false-str"),
        pytest.param({None: 1, "null": 2}, "params has the keys None and 'null'", id="none-str"),
        pytest.param({1.0: "a", "1.0": "b"}, "params has the keys 1.0 and '1.0'", id="float-str"),
        pytest.param(
            {"f": [{"x": 1}, {2: "a", "2": "b"}]},
            "params['f'][1] has the keys 2 and '2'",
            id="deep",
        ),
    ],
)
def test_keys_that_collide_as_json_are_refused_with_the_path(
    params: dict[Any, Any], fragment: str
) -> None:
    """Two keys JSON writes alike are refused, naming row, path and both keys."""
    commands = normalize([("ok.get", {"id": 1}), ("a.get", params)])
    with pytest.raises(SdkError, match=re.escape(fragment)) as info:
        check_json_keys(commands)
    assert str(info.value).startswith("calls[1] params")
    assert "which JSON writes alike" in str(info.value)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({1: "a", 2: "b", "x": "c"}, id="ints-and-str"),
        pytest.param({True: 1, "1": 2}, id="true-and-1"),
        pytest.param({None: 1, "None": 2}, id="none-and-None"),
        pytest.param({1.5: "a", "1.50": "b", 2: "c"}, id="floats"),
    ],
)
def test_keys_of_mixed_types_that_do_not_collide_pass(params: dict[Any, Any]) -> None:
    """Non-str keys are fine as long as no two are written alike."""
    commands = normalize([("a.get", params)])
    assert check_json_keys(commands) is None
    assert len(json.loads(json.dumps(params))) == len(params)
