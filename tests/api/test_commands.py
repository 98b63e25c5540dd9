"""Normalisation and validation of ``calls`` (b24batch.commands): no I/O here."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b24batch import Command, SdkError, SdkTypeError
from b24batch._protocols.v3 import V3, check_references
from b24batch.commands import MAX_COMMANDS, Commands, normalize, ref, ref_array


def as_rest3(calls: object) -> Commands:
    """``calls`` normalised and prepared for REST 3.0, whose naming rule is checked there."""
    commands = normalize(calls)
    V3.prepare(commands, halt=True)
    return commands


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
        pytest.param(["a.get", "b.get"], SdkTypeError, "calls[0] is a str", id="row-str"),
        pytest.param(["a.get"], SdkTypeError, "calls is a single row", id="one-row-as-list"),
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
        pytest.param({1.5: ("a.get",)}, SdkTypeError, "key 1.5", id="name-float"),
        pytest.param({True: ("a.get",)}, SdkTypeError, "key True", id="name-bool"),
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
        as_rest3(calls)
    assert type(info.value) is error  # not just any subclass
    assert isinstance(info.value, ValueError)
    if error is SdkTypeError:
        assert isinstance(info.value, TypeError)


def test_named_rows_are_named_in_errors() -> None:
    """An error in a named row names it by its key."""
    with pytest.raises(SdkError, match=re.escape("calls['second'] has an empty method")):
        normalize({"first": ("a.get",), "second": ("",)})


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


def test_part_keeps_the_keys_aliases_and_naming_of_its_rows() -> None:
    """Commands.part(range) is that slice of items, keys and aliases, and stays named."""
    commands = normalize(
        {"a": ("a.get",), "b": Command("b.get", as_="bee"), "c": ("c.get", {"id": 3})}
    )
    assert commands.part(range(1, 3)) == Commands(
        items=(Command("b.get", as_="bee"), Command("c.get", {"id": 3})),
        keys=("b", "c"),
        aliases=("bee", "c"),
        named=True,
    )


@pytest.mark.parametrize("read_only", [True, False, None])
def test_dict_row_read_only_reaches_the_command(read_only: bool | None) -> None:
    """A dict row's 'read_only' becomes the command's; left out, it is None (the name rule)."""
    row: dict[str, Any] = {"method": "crm.deal.add"}
    if read_only is not None:
        row["read_only"] = read_only
    assert normalize([row]).items[0].read_only is read_only


_ALIAS_RULE = "an alias is a non-empty name"
_NO_DOT = "references read 'alias.item.id', so an alias cannot contain a dot"
_NO_NUMBER = (
    "numbers already name commands by position in references ('0.item.id'), "
    "so use a name with a letter"
)
_OWN_AS = " (or give the row its own 'as')"


@pytest.mark.parametrize(
    ("calls", "message"),
    [
        pytest.param(
            {"calls": [("a.get",)], "options": {}},
            "calls looks like the JS SDK's {calls, options} object: pass the commands as the "
            "first argument and the options as keyword arguments, "
            "make(calls, halt_on_error=..., request_id=...)",
            id="js-style-object",
        ),
        pytest.param(
            [{"method": "a.get", "as": " "}],
            f"calls[0]: its 'as' is empty; {_ALIAS_RULE}",
            id="as-blank",
        ),
        pytest.param(
            [{"method": "a.get", "as": "a.b"}],
            f"calls[0]: its 'as' 'a.b' contains '.'; {_NO_DOT}",
            id="as-dot",
        ),
        pytest.param(
            [{"method": "a.get", "as": "12"}],
            f"calls[0]: its 'as' '12' is a number; {_NO_NUMBER}",
            id="as-digits",
        ),
        pytest.param(
            {" ": ("a.get",)},
            f"calls[' ']: its name, sent as 'as', is empty; {_ALIAS_RULE}{_OWN_AS}",
            id="name-blank",
        ),
        pytest.param(
            {"a.b": ("a.get",)},
            f"calls['a.b']: its name, sent as 'as', 'a.b' contains '.'; {_NO_DOT}{_OWN_AS}",
            id="name-dot",
        ),
        pytest.param(
            {"12": ("a.get",)},
            f"calls['12']: its name, sent as 'as', '12' is a number; {_NO_NUMBER}{_OWN_AS}",
            id="name-digits",
        ),
        pytest.param(
            [{"method": "a.get", "query": {"id": 1}}],
            "calls[0] has the unknown key 'query'; use 'params' for the method's parameters "
            "(b24batch sends them as 'query')",
            id="query-key",
        ),
        pytest.param(
            [{"method": "a.get", "as_": "x"}],
            "calls[0] has the unknown key 'as_'; use 'as_' in Command(...) or 'as' in a dict row",
            id="as_-key",
        ),
        pytest.param(
            [{"method": "a.get", "zz": 1, "halt": 0}],
            "calls[0] has the unknown key 'halt'; "
            "a dict row takes as, method, parallel, params, read_only",
            id="unknown-keys-first-named",
        ),
        pytest.param(
            [("a.get",), {"method": "a.get", "parallel": "yes"}],
            "calls[1] has 'parallel' of type str; use True or False",
            id="parallel-str",
        ),
        pytest.param(
            {"x": {"method": "a.get", "read_only": 1}},
            "calls['x'] has 'read_only' of type int; use True or False",
            id="read_only-int",
        ),
        pytest.param(
            ("tasks.task.get", {"id": 1}),
            "calls is a single row, ('tasks.task.get', ...), not a list of rows; "
            "put it in a list: [('tasks.task.get', {...})]",
            id="single-tuple-row",
        ),
        pytest.param(
            ["tasks.task.list"],
            "calls is a single row, ('tasks.task.list', ...), not a list of rows; "
            "put it in a list: [('tasks.task.list', {...})]",
            id="single-list-row",
        ),
        pytest.param(
            [("a.get", {}), ("BATCH", {})],
            "calls[1] calls 'batch'; a batch cannot contain another batch",
            id="nested-upper-case",
        ),
    ],
)
def test_refusals_name_the_row_and_the_whole_fix(calls: object, message: str) -> None:
    """The whole message of each refusal: the row, what is wrong, and what to do instead."""
    with pytest.raises((SdkError, SdkTypeError)) as info:
        as_rest3(calls)
    assert str(info.value) == message


@pytest.mark.parametrize("row", [("задачи.список",), ("tâches.get", {"id": 1})])
def test_a_method_in_another_script_is_valid_text(row: tuple[Any, ...]) -> None:
    """A method name beyond ASCII is text like any other (only a lone surrogate is not)."""
    command = Command.from_row(row, "calls[0]")
    assert (command.method, command.params) == (row[0], row[1] if len(row) > 1 else None)


def test_a_bad_row_outside_calls_is_called_row() -> None:
    """Command.from_row without a position names the row 'row'."""
    with pytest.raises(SdkTypeError) as info:
        Command.from_row(42)
    assert str(info.value) == (
        "row is a int; a row is a (method, params) tuple, a dict with 'method' and 'params', "
        "or a Command"
    )


_PATH_RULE = (
    "a reference path is 'alias.field' or 'alias.item.field', dot-separated with no empty part"
)


@pytest.mark.parametrize(
    ("make", "path", "error", "message"),
    [
        pytest.param(ref, "x", SdkError, f"ref('x'): {_PATH_RULE}", id="ref-no-dot"),
        pytest.param(
            ref_array, "x.", SdkError, f"ref_array('x.'): {_PATH_RULE}", id="ref_array-empty-part"
        ),
        pytest.param(ref, 5, SdkTypeError, "ref() takes a str path, not int", id="ref-int"),
        pytest.param(
            ref_array, None, SdkTypeError, "ref_array() takes a str path, not NoneType", id="none"
        ),
    ],
)
def test_bad_reference_paths_are_refused_naming_the_helper(
    make: Any, path: object, error: type[Exception], message: str
) -> None:
    """ref() and ref_array() name themselves, the path and the rule it breaks."""
    with pytest.raises(error) as info:
        make(path)
    assert type(info.value) is error
    assert str(info.value) == message


def test_a_reference_to_no_earlier_alias_names_the_row() -> None:
    """check_references names the row by key, the path, and the alias it could not find."""
    commands = normalize({"a": ("a.get",), "b": ("b.get", {"id": ref("x.item.id")})})
    with pytest.raises(SdkError) as info:
        check_references(commands)
    assert str(info.value) == (
        "calls['b'] references 'x.item.id', but no earlier command has the alias 'x'; "
        "a reference points back to an earlier command's 'as' (or name)"
    )
