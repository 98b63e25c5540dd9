"""What JSON can carry of params (b24batch.params): explanations, depth, colliding keys; no I/O."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import re
from typing import Any

import pytest

from b24batch import SdkError
from b24batch.commands import normalize
from b24batch.params import MAX_PARAMS_DEPTH, check_json_keys, explain_unencodable


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


def test_a_cycle_is_a_value_error_not_a_type_error() -> None:
    """A cycle is explained as SdkError (a ValueError), the whole message naming the path."""
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    error = _explain({"x": cyclic})
    assert type(error) is SdkError
    assert str(error) == (
        "calls[1] params['x'][0] contains itself (a reference cycle); JSON cannot encode it"
    )


def test_a_shared_acyclic_sub_object_is_no_cycle() -> None:
    """The same list under two keys (and twice in one list) is not reported as a cycle."""
    shared = [1, 2]
    params = {"a": shared, "b": shared, "c": [shared, shared], "d": math.nan}
    assert str(_explain(params)) == (
        "calls[1] params['d'] is nan; JSON has no NaN or Infinity: send null or a number"
    )
