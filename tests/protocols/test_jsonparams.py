"""What JSON can carry of params (`_protocols/jsonparams`): explanations, depth, key collisions."""

from __future__ import annotations

import collections
import datetime
import decimal
import json
import math
import re
import sys
from typing import Any

import pytest

from b24batch import SdkError
from b24batch._protocols import jsonparams as params_module
from b24batch._protocols.jsonparams import MAX_PARAMS_DEPTH, check_json_keys, explain_unencodable
from b24batch._protocols.v3 import encode_batch
from b24batch.commands import normalize


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


class _Label(str):
    """A str key that hashes apart from the equal str and prints as something else."""

    __hash__ = object.__hash__

    def __str__(self) -> str:
        return "label"


_SHARED = {"x": 1}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        pytest.param(
            {"f": [collections.OrderedDict([(1, "a"), ("1", "b")])]},
            "params['f'][0] has the keys 1 and '1'",
            id="dict-subclass-in-list",
        ),
        pytest.param(
            {"f": ({"ok": 1}, ({3: "a", "3": "b"},))},
            "params['f'][1][0] has the keys 3 and '3'",
            id="tuples",
        ),
        pytest.param(
            {"a": _SHARED, "b": [_SHARED, {"z": {2: "a", "2": "b"}}]},
            "params['b'][1]['z'] has the keys 2 and '2'",
            id="shared-and-deep",
        ),
        pytest.param(
            {"f": {_Label("title"): "a", "title": "b"}},
            "params['f'] has the keys 'title' and 'title', which JSON writes alike, as \"title\"",
            id="str-subclass-key",
        ),
    ],
)
def test_collisions_beyond_plain_dicts_are_found(params: dict[Any, Any], fragment: str) -> None:
    """Subclasses, tuples, shared and deep containers, str-enum keys: each collision is found."""
    commands = normalize([("ok.get", {"id": 1}), ("a.get", params)])
    with pytest.raises(SdkError, match=re.escape(fragment)):
        check_json_keys(commands)
    with pytest.raises(SdkError, match=re.escape(fragment)):
        encode_batch(commands, halt_on_error=True)


def test_a_cycle_in_the_body_is_named_by_the_encoder_path() -> None:
    """The encoder keeps no table of containers: a cycle is still refused, naming its path."""
    loop: dict[str, Any] = {}
    loop["again"] = [loop]
    error = encode_error({"x": loop})
    assert str(error) == (
        "calls[1] params['x']['again'][0] contains itself (a reference cycle); "
        "JSON cannot encode it"
    )


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


@pytest.mark.parametrize(
    ("value", "what"),
    [
        pytest.param({1, 2}, "is a set, which JSON cannot encode: use a list", id="set"),
        pytest.param(
            frozenset({1}), "is a frozenset, which JSON cannot encode: use a list", id="frozenset"
        ),
        pytest.param(
            b"ab",
            "is a bytes, which JSON cannot encode: decode it to str (or base64 it)",
            id="bytes",
        ),
        pytest.param(
            bytearray(b"ab"),
            "is a bytearray, which JSON cannot encode: decode it to str (or base64 it)",
            id="bytearray",
        ),
        pytest.param(
            datetime.datetime(2026, 1, 2, 3, 4),
            "is a datetime, which JSON cannot encode: send value.isoformat()",
            id="datetime",
        ),
        pytest.param(
            datetime.date(2026, 1, 2),
            "is a date, which JSON cannot encode: send value.isoformat()",
            id="date",
        ),
        pytest.param(
            decimal.Decimal("1.5"),
            "is a Decimal, which JSON cannot encode: send str(value) or float(value)",
            id="decimal",
        ),
        pytest.param(
            object(),
            "is a object, which JSON cannot encode: "
            "convert it to str, number, bool, None, list or dict",
            id="other",
        ),
        pytest.param(
            "a\ud800",
            "is text with a lone surrogate, which UTF-8 cannot carry",
            id="surrogate",
        ),
    ],
)
def test_each_unencodable_value_gets_its_own_fix(value: object, what: str) -> None:
    """The whole explanation: row, path, what the value is, and the fix for that type."""
    assert str(_explain({"x": value})) == f"calls[1] params['x'] {what}"


@pytest.mark.parametrize("key", [math.nan, math.inf, -math.inf])
def test_a_nan_or_infinite_key_is_explained(key: float) -> None:
    """A NaN or infinite dict key, which the encoder refuses, is named with its path."""
    error = encode_error({"x": {key: 1}})
    assert type(error) is SdkError
    assert str(error) == (
        f"calls[1] params['x'] has the key {key!r}; JSON has no NaN or Infinity: "
        f"use a finite number or a str"
    )


def encode_error(params: dict[Any, Any]) -> Exception:
    """What encoding a batch with ``params`` in its second row raises."""
    with pytest.raises((SdkError, TypeError)) as info:
        encode_batch(normalize([("ok.get", {}), ("a.get", params)]), halt_on_error=True)
    return info.value


def test_colliding_keys_are_refused_in_full() -> None:
    """The whole message of a collision: row, path, both keys, how JSON writes them, the fix."""
    commands = normalize([("ok.get", {"id": 1}), ("a.get", {1: "a", "1": "b"})])
    with pytest.raises(SdkError) as info:
        check_json_keys(commands)
    assert str(info.value) == (
        "calls[1] params has the keys 1 and '1', which JSON writes alike, as \"1\"; "
        "the portal would keep only one of them: use one key"
    )


@pytest.fixture
def depth_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    """A small MAX_PARAMS_DEPTH, so the boundary is tested without a deep stack (and under
    mutmut's trampoline, where 500 levels of recursion overflow)."""
    monkeypatch.setattr(params_module, "MAX_PARAMS_DEPTH", 5)
    return 5


def test_params_exactly_at_the_depth_limit_are_not_called_too_deep(depth_limit: int) -> None:
    """MAX_PARAMS_DEPTH levels (the params dict is level 1) are not reported as too deep."""
    nested = _nested(depth_limit - 1)  # depth_limit levels: dict, list, dict, list, dict
    assert str(_explain(nested)) == "the batch cannot be encoded as JSON"


def test_params_one_level_past_the_depth_limit_are_explained(depth_limit: int) -> None:
    """One level more is an SdkError naming the path, the depth reached and the limit."""
    error = _explain(_nested(depth_limit + 1))
    assert type(error) is SdkError
    assert str(error) == (
        "calls[1] params['a'][0]['a'][0]['a'] is nested 6 levels deep, beyond the 5 the "
        "portal reads (and deeper than Python's JSON encoder goes): flatten the structure"
    )


@pytest.mark.parametrize(
    ("name_length", "shown"),
    [
        pytest.param(67, "params['" + "k" * 67 + "'][0]", id="80-kept"),
        pytest.param(68, "params['" + "k" * 32 + "…" + "k" * 35 + "'][0]", id="81-cut"),
    ],
)
def test_a_long_path_to_a_too_deep_value_has_its_middle_cut_out(
    monkeypatch: pytest.MonkeyPatch, name_length: int, shown: str
) -> None:
    """A path up to 80 characters is shown whole; a longer one keeps 40 from each end."""
    monkeypatch.setattr(params_module, "MAX_PARAMS_DEPTH", 2)
    error = _explain({"k" * name_length: [[]]})
    assert str(error) == (
        f"calls[1] {shown} is nested 3 levels deep, beyond the 2 the portal reads "
        f"(and deeper than Python's JSON encoder goes): flatten the structure"
    )


def _stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    return depth


def test_params_too_deep_for_the_callers_stack_are_explained() -> None:
    """When the caller's stack leaves too little room, the answer says so: no RecursionError."""
    commands = normalize([("ok.get", {}), ("a.get", _nested(400))])
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + 100)
    try:
        error = explain_unencodable(commands)
    finally:
        sys.setrecursionlimit(limit)
    assert type(error) is SdkError
    assert str(error) == (
        "calls[1] params are nested too deeply to be encoded as JSON from this point of the "
        "program; flatten them (the portal reads at most 500 levels)"
    )
