"""The classic wire: params to PHP's bracket form (checked by real PHP), answers to outcomes."""

from __future__ import annotations

import collections
import datetime
import decimal
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b24batch._protocols.phpform import (
    MAX_INPUT_VARS,
    _exact_pairs,
    count_variables,
    encode_queries,
)
from b24batch._protocols.v2 import (
    MAX_DEPTH,
    Entry,
    decode_response,
    encode_batch,
    encode_query,
    references,
)
from b24batch.errors import AuthError, DecodeError, RateLimitError, SdkError, SdkTypeError
from b24batch.testing.phpform import php_key
from tests.support.php import leaves, php_parse

# ---------------------------------------------------------------------------------------------
# encode_query: tables


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"id": 7}, "id=7", id="int"),
        pytest.param({"x": -0.5}, "x=-0.5", id="float-repr"),
        pytest.param({"x": 1e16}, "x=1e%2B16", id="float-exponent"),
        pytest.param({"x": None}, "x=", id="none-empty"),
        pytest.param({"fields": {"TITLE": "Deal"}}, "fields[TITLE]=Deal", id="nested"),
        pytest.param({"select": ["ID", "TITLE"]}, "select[0]=ID&select[1]=TITLE", id="list"),
        pytest.param({"select": ("ID",)}, "select[0]=ID", id="tuple"),
        pytest.param({"filter": {">=ID": 10}}, "filter[%3E%3DID]=10", id="filter-prefix"),
        pytest.param({"filter": {"%TITLE": "a"}}, "filter[%25TITLE]=a", id="percent-prefix"),
        pytest.param({"filter": {"!=X": 1}}, "filter[%21%3DX]=1", id="not-prefix"),
        pytest.param({"a": {3: "x"}}, "a[3]=x", id="int-key"),
        pytest.param(
            {"t": "a&b=c+d%e#f?g:h/i[j]k l"},
            "t=a%26b%3Dc%2Bd%25e%23f%3Fg%3Ah%2Fi%5Bj%5Dk%20l",
            id="specials",
        ),
        pytest.param(
            {"t": "Сделка €"}, "t=%D0%A1%D0%B4%D0%B5%D0%BB%D0%BA%D0%B0%20%E2%82%AC", id="utf8"
        ),
        pytest.param({}, "", id="empty-params"),
        pytest.param(None, "", id="no-params"),
    ],
)
def test_encode_query_table(params: Any, expected: str) -> None:
    """Each kind of value is written in PHP's bracket form, percent-encoded."""
    assert encode_query(params) == expected


def _cycle() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return {"a": loop}


def _deep() -> dict[str, Any]:
    node: dict[str, Any] = {"x": 1}
    for _ in range(MAX_DEPTH + 1):
        node = {"x": node}
    return node


@pytest.mark.parametrize(
    ("params", "error", "fragments"),
    [
        pytest.param(
            {"fields": {"DONE": True}},
            SdkTypeError,
            ["calls[2].params.fields.DONE", "'Y'/'N' or 1/0"],
            id="bool",
        ),
        pytest.param(
            {"select": []}, SdkError, ["calls[2].params.select", "leave it out"], id="empty-list"
        ),
        pytest.param(
            {"fields": {}}, SdkError, ["calls[2].params.fields", "empty dict"], id="empty-dict"
        ),
        pytest.param({"a": {"x[1]": 1}}, SdkError, ["calls[2].params.a", "'['"], id="bracket-key"),
        pytest.param({"a": {"x]": 1}}, SdkError, ["']'"], id="close-bracket-key"),
        pytest.param({"a": {"": 1}}, SdkError, ["empty key"], id="empty-key"),
        pytest.param({"a": {1: "a", "1": "b"}}, SdkError, ["same key '1'"], id="collision"),
        pytest.param({"a": {(1,): "a"}}, SdkTypeError, ["type tuple"], id="tuple-key"),
        pytest.param({"a": {True: "a"}}, SdkTypeError, ["type bool"], id="bool-key"),
        pytest.param({"a.b": 1}, SdkError, ["'.' and ' '"], id="dotted-top-key"),
        pytest.param({"a": datetime.date(2024, 1, 1)}, SdkTypeError, ["isoformat()"], id="date"),
        pytest.param({"a": b"x"}, SdkTypeError, ["decode it"], id="bytes"),
        pytest.param({"a": {1, 2}}, SdkTypeError, ["use a list"], id="set"),
        pytest.param({"a": decimal.Decimal("1.5")}, SdkTypeError, ["str(value)"], id="decimal"),
        pytest.param({"a": math.nan}, SdkError, ["finite"], id="nan"),
        pytest.param({"a": [1, math.inf]}, SdkError, ["calls[2].params.a[1]", "finite"], id="inf"),
        pytest.param(_cycle(), SdkError, ["cycle"], id="cycle"),
        pytest.param(_deep(), SdkError, [f"more than {MAX_DEPTH} levels"], id="depth"),
        pytest.param({"a": "\ud800"}, SdkError, ["lone surrogate"], id="surrogate"),
        pytest.param({"a": {"k\0": 1}}, SdkError, ["NUL"], id="nul-key"),
        pytest.param({"a": {"\t": 1}}, SdkError, ["append"], id="whitespace-key"),
    ],
)
def test_encode_query_refuses(params: Any, error: type[Exception], fragments: list[str]) -> None:
    """What a form cannot carry is refused naming the path and the fix."""
    with pytest.raises(error) as caught:
        encode_query(params, "calls[2].params")
    assert type(caught.value) is error
    for fragment in fragments:
        assert fragment in str(caught.value)


# ---------------------------------------------------------------------------------------------
# encode_query: round trip through PHP's own parse_str

_CHARS = list("aZ09 &=+%#?:/[]._-$!<>~\"'\\\n\t\0é€Ж😀")
_TEXT = st.text(alphabet=st.sampled_from(_CHARS), max_size=12)
_KEY_TEXT = st.text(
    alphabet=st.sampled_from([c for c in _CHARS if c not in "[]\0"]), min_size=1, max_size=8
).filter(lambda text: not text.isspace() or len(text) > 1)  # one whitespace means append
_TOP_KEY = st.text(
    alphabet=st.sampled_from([c for c in _CHARS if c not in "[]\0. "]), min_size=1, max_size=8
)
_KEY = st.one_of(_KEY_TEXT, st.integers(min_value=-(2**70), max_value=2**70))
_COMMAND_KEY = _KEY_TEXT.filter(str.strip)  # a blank command key is refused (tested apart)
_LEAF = st.one_of(
    _TEXT,
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
)


def _unique_text(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    chosen: dict[Any, Any] = {}
    texts: set[str] = set()
    for key, value in pairs:
        if str(key) not in texts:
            texts.add(str(key))
            chosen[key] = value
    return chosen


def _dicts(keys: st.SearchStrategy[Any], values: st.SearchStrategy[Any]) -> Any:
    return st.lists(st.tuples(keys, values), min_size=1, max_size=4).map(_unique_text)


_VALUE = st.recursive(
    _LEAF,
    lambda inner: st.one_of(st.lists(inner, min_size=1, max_size=4), _dicts(_KEY, inner)),
    max_leaves=12,
)
_PARAMS = _dicts(_TOP_KEY, _VALUE)


def _leaf_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, float):
        return repr(value).encode()
    return str(value).encode("utf-8")


def _expected(value: Any) -> Any:
    """The canonical PHP array that ``parse_str`` must give for ``value``."""
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        pairs = []
        for key, item in items:
            php = php_key(str(key).encode("utf-8"))
            pairs.append([php if isinstance(php, int) else "s" + php.hex(), _expected(item)])
        return pairs
    return _leaf_bytes(value).hex()


@settings(max_examples=40, deadline=None)
@given(st.lists(_PARAMS, min_size=8, max_size=8))
def test_encode_query_round_trips_through_php(batch: list[dict[Any, Any]]) -> None:
    """PHP's parse_str reads every encoded query back as the same structure, scalars as text."""
    queries = [encode_query(params).encode("ascii") for params in batch]
    assert php_parse(queries) == [_expected(params) for params in batch]


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(_COMMAND_KEY, st.integers(0, 10**6)), _PARAMS),
        min_size=1,
        max_size=6,
    ).map(lambda rows: list(_unique_text(rows).items())),
    st.booleans(),
)
def test_full_body_round_trips_through_php(rows: list[tuple[Any, Any]], halt: bool) -> None:
    """PHP reads the body as halt and cmd[KEY] => METHOD?QUERY, and each QUERY as its params."""
    entries = [Entry(key, f"crm.deal.m{i}", params) for i, (key, params) in enumerate(rows)]
    body = encode_batch(entries, halt=halt)
    (parsed,) = php_parse([body])
    assert parsed[0] == ["s" + b"halt".hex(), b"1".hex() if halt else b"0".hex()]
    assert parsed[1][0] == "s" + b"cmd".hex()
    commands = parsed[1][1]
    expected_keys = []
    for key, _ in rows:
        php = php_key(str(key).encode("utf-8"))
        expected_keys.append(php if isinstance(php, int) else "s" + php.hex())
    assert [key for key, _ in commands] == expected_keys
    values = [bytes.fromhex(value) for _, value in commands]
    methods = [value.partition(b"?")[0] for value in values]
    assert methods == [entry.method.encode() for entry in entries]
    queries = [value.partition(b"?")[2] for value in values]
    assert php_parse(queries) == [_expected(params) for _, params in rows]


@settings(max_examples=150, deadline=None)
@given(_PARAMS)
def test_the_fast_path_writes_what_the_checked_walk_writes(params: dict[Any, Any]) -> None:
    """Where the one-pass encoder takes params, it writes exactly what the checked walk does."""
    fast = encode_queries(params, {})
    assert fast is None or fast == "&".join(_exact_pairs(params, "params"))


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(
            {"select": ["ID", "TITLE"], "filter": {">=ID": 5, "%TITLE": "a b"}}, id="list"
        ),
        pytest.param({"fields": {"TITLE": "Сделка", "SUM": 1.5, "X": None}}, id="utf8-float-none"),
        pytest.param({"a": ({"b": [1, (2,)]},)}, id="tuples"),
    ],
)
def test_the_fast_path_takes_common_params(params: dict[str, Any]) -> None:
    """Common params are written by the one pass (the checked walk is not needed for them)."""
    assert encode_queries(params, {}) == encode_query(params)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"a": {1: "x"}}, id="int-key"),
        pytest.param({"a": True}, id="bool"),
        pytest.param({"a": []}, id="empty-list"),
        pytest.param({"a": {"Ж": 1}}, id="non-ascii-key"),
        pytest.param({"a b": 1}, id="top-key-with-space"),
        pytest.param({"a": {"\t": 1}}, id="whitespace-key"),
        pytest.param({"a": "\ud800"}, id="surrogate"),
        pytest.param({"a": math.inf}, id="inf"),
        pytest.param({"a": collections.OrderedDict(b=1)}, id="mapping"),
        pytest.param(collections.OrderedDict(b=1), id="mapping-params"),
    ],
)
def test_the_fast_path_leaves_the_rest_to_the_checked_walk(params: Any) -> None:
    """What the one pass does not take, it hands to the checked walk whole (None)."""
    assert encode_queries(params, {}) is None


def test_a_container_shared_by_commands_is_written_for_each() -> None:
    """A list shared by every command (written once, from the batch's memo) reaches PHP whole
    in each command, under each command's own name for it."""
    shared = ["ID", "TITLE"]
    entries = [
        Entry(0, "crm.deal.list", {"select": shared, "filter": {"ID": 1}}),
        Entry(1, "crm.deal.list", {"select": shared, "order": {"ID": "ASC"}, "x": [shared]}),
    ]
    (parsed,) = php_parse([encode_batch(entries, halt=True)])
    queries = [bytes.fromhex(value).partition(b"?")[2] for _, value in parsed[1][1]]
    assert php_parse(queries) == [_expected(entry.params) for entry in entries]


# ---------------------------------------------------------------------------------------------
# encode_batch


def test_body_encodes_query_twice() -> None:
    """The METHOD?QUERY is one form value: its own percent signs are encoded again."""
    body = encode_batch([Entry(0, "crm.deal.list", {"filter": {">ID": 10}})], halt=False)
    assert body == b"halt=0&cmd[0]=crm.deal.list%3Ffilter%5B%253EID%5D%3D10"


def test_body_without_params_sends_the_bare_method() -> None:
    """A command without params is just its method name."""
    assert encode_batch([Entry("me", "user.current")], halt=True) == (
        b"halt=1&cmd[me]=user.current"
    )


@pytest.mark.parametrize(
    ("entries", "fragments"),
    [
        pytest.param([Entry("a[b]", "x.y")], ["calls['a[b]']", "'['"], id="bracket-key"),
        pytest.param([Entry("", "x.y")], ["empty command key"], id="empty-key"),
        pytest.param([Entry("  ", "x.y")], ["empty command key"], id="blank-key"),
        pytest.param([Entry(-1, "x.y")], ["0 or more"], id="negative-position"),
        pytest.param([Entry("1", "x.y"), Entry(1, "x.y")], ["unique"], id="same-text"),
        pytest.param([Entry("a", "x.y?z")], ["'?'"], id="question-mark-method"),
        pytest.param([Entry("a", " ")], ["empty method"], id="empty-method"),
        pytest.param([Entry("\ud800", "x.y")], ["lone surrogate"], id="surrogate-key"),
        pytest.param(
            [Entry("a", "x.y", {"f": {"DONE": False}}, where="calls['row']")],
            ["calls['row'].params.f.DONE", "'Y'/'N'"],
            id="bool-names-row",
        ),
        pytest.param([], ["empty"], id="no-entries"),
        pytest.param([Entry(i, "x.y") for i in range(51)], ["at most 50"], id="too-many"),
    ],
)
def test_body_refuses(entries: list[Entry], fragments: list[str]) -> None:
    """Bad keys, methods and params are refused before any request, naming the row."""
    with pytest.raises(SdkError) as caught:
        encode_batch(entries, halt=True)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(Entry(1.5, "x.y"), id="float-key"),  # type: ignore[arg-type]
        pytest.param(Entry(True, "x.y"), id="bool-key"),
        pytest.param(Entry("a", 7), id="int-method"),  # type: ignore[arg-type]
        pytest.param(Entry("a", "x.y", ["id"]), id="list-params"),  # type: ignore[arg-type]
    ],
)
def test_body_refuses_wrong_types(entry: Entry) -> None:
    """A key, method or params of the wrong type is a TypeError naming the row."""
    with pytest.raises(SdkTypeError, match=r"calls\["):
        encode_batch([entry], halt=True)


# ---------------------------------------------------------------------------------------------
# references


def test_references_found_in_values_and_keys() -> None:
    """Every reference kind is found, in values and keys, in order, at any depth."""
    params = {
        "fields": {"CONTACT_ID": "$result[contact]", "$total[list]": "x"},
        "filter": ["a $next[0] b $time[t][start]", {"k": "$error[e]"}],
        "plain": "$other[x] $result[]",
    }
    assert references(params) == ["contact", "list", "0", "t", "e"]


# ---------------------------------------------------------------------------------------------
# decode_response


def _answer(**sections: Any) -> bytes:
    return json.dumps({"result": sections, "time": {"start": 1.0, "duration": 0.5}}).encode()


@pytest.mark.parametrize(
    "result",
    [
        pytest.param(["r0", "r1", "r2"], id="list"),
        pytest.param({"0": "r0", "1": "r1", "2": "r2"}, id="object"),
    ],
)
def test_decoder_accepts_list_and_object_sections(result: Any) -> None:
    """A section keyed 0..n-1 may arrive as a JSON list or an object."""
    envelope = decode_response(
        200, _answer(result=result, result_error=[]), keys=[0, 1, 2], request_id=None
    )
    assert [outcome.result for outcome in envelope.outcomes] == ["r0", "r1", "r2"]
    assert [outcome.key for outcome in envelope.outcomes] == [0, 1, 2]
    assert envelope.time is not None
    assert envelope.time.duration == 0.5


def test_decoder_accepts_gapped_object_and_empty_list() -> None:
    """A gapped object keeps each entry on its command; [] is an empty section."""
    content = _answer(
        result={"0": "r0", "2": "r2"},
        result_error={"1": {"error": "ERROR_CORE", "error_description": "boom"}},
        result_total=[],
        result_next=[],
        result_time={"0": {"duration": 0.1}, "2": {"duration": 0.3}},
    )
    outcomes = decode_response(200, content, keys=[0, 1, 2, 3], request_id="r").outcomes
    assert [o.result for o in outcomes] == ["r0", None, "r2", None]
    assert [o.executed for o in outcomes] == [True, True, True, False]
    error = outcomes[1].error
    assert error is not None
    assert (error.code, error.message, error.request_id) == ("ERROR_CORE", "boom", "r")
    assert [o.time.duration if o.time else None for o in outcomes] == [0.1, None, 0.3, None]


def test_decoder_maps_named_keys_and_list_fields() -> None:
    """Named keys map back to the caller's names; total and next are read per command."""
    content = _answer(
        result={"deals": [{"ID": "1"}], "me": {"ID": "1"}},
        result_total={"deals": 120},
        result_next={"deals": 50},
    )
    deals, me = decode_response(200, content, keys=["deals", "me"], request_id=None).outcomes
    assert (deals.key, deals.result, deals.total, deals.next) == ("deals", [{"ID": "1"}], 120, 50)
    assert (me.key, me.total, me.next) == ("me", None, None)


def test_decoder_checks_odd_counts_and_counts_any_section_as_executed() -> None:
    """An int count is kept; digits are read as a number; a bool, float or list is no count.
    A command named only by result_time (even as null) ran."""
    content = _answer(
        result={"a": 1, "b": 2, "c": 3},
        result_total={"a": 120, "b": "75", "c": True},
        result_next={"a": 50.0, "b": [1], "c": "x"},
        result_time={"d": None},
    )
    a, b, c, d = decode_response(200, content, keys=["a", "b", "c", "d"], request_id=None).outcomes
    assert [(o.total, o.next) for o in (a, b, c, d)] == [(120, None), (75, None), (None, None),
                                                         (None, None)]  # fmt: skip
    assert [o.executed for o in (a, b, c, d)] == [True, True, True, True]
    assert d.time is None


def test_decoder_refuses_a_list_section_longer_than_a_batch() -> None:
    """A list section of 51 entries names position 50, which no batch of 50 sent."""
    content = _answer(result=list(range(51)))
    with pytest.raises(DecodeError, match="'50', which was not sent"):
        decode_response(200, content, keys=list(range(50)), request_id=None)


def test_decoder_types_limit_errors() -> None:
    """A command refused by a limit inside the answer carries the limit's error type."""
    content = _answer(
        result_error={
            "a": {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
        }
    )
    (outcome,) = decode_response(200, content, keys=["a"], request_id=None).outcomes
    assert isinstance(outcome.error, RateLimitError)


def test_decoder_returns_whole_request_error() -> None:
    """A 401 error envelope is the envelope's error, read by the shared REST decoder."""
    content = json.dumps({"error": "expired_token", "error_description": "expired"}).encode()
    envelope = decode_response(401, content, keys=[0], request_id=None)
    assert isinstance(envelope.error, AuthError)
    assert envelope.outcomes == ()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(_answer(result={"zz": 1}), "'zz', which was not sent", id="unknown-key"),
        pytest.param(_answer(result=[1, 2]), "'1', which was not sent", id="list-too-long"),
        pytest.param(_answer(result="x"), "result.result is a str", id="section-type"),
        pytest.param(json.dumps({"result": [1]}).encode(), "result is a list", id="result-type"),
        pytest.param(b"<html><title>502 Bad Gateway</title></html>", "HTML page", id="html"),
    ],
)
def test_decoder_refuses_malformed(content: bytes, fragment: str) -> None:
    """An answer that does not fit the commands is a DecodeError saying why."""
    with pytest.raises(DecodeError) as caught:
        decode_response(200, content, keys=[0], request_id=None)
    assert fragment in str(caught.value)


# ---------------------------------------------------------------------------------------------
# max_input_vars: how many variables parse_str makes of a command's query


_SHAPES = [
    pytest.param({"id": 7}, id="one"),
    pytest.param({"filter": {"@ID": list(range(999))}, "select": ["ID"]}, id="1000"),
    pytest.param({"filter": {"@ID": list(range(1001))}}, id="1001"),
    pytest.param({"filter": {"@ID": list(range(600)), ">ID": 5}, "select": ["ID"] * 400}, id="mix"),
    pytest.param(
        {"fields": {f"UF_{n}": {"a": [None, "x & y", 1.5]} for n in range(340)}}, id="nested"
    ),
    pytest.param({"x": {"y": {"z": ""}}, "n": None}, id="empty-values"),
]


@pytest.mark.parametrize("params", _SHAPES)
def test_variables_are_counted_as_php_counts_them(params: dict[str, Any]) -> None:
    """One variable per leaf; PHP's default max_input_vars keeps exactly min(count, 1000)."""
    query = encode_query(params).encode("ascii")
    count = count_variables(query.decode("ascii"))
    everything, default = php_parse([query]), php_parse([query], max_input_vars=MAX_INPUT_VARS)
    assert leaves(everything[0]) == count
    assert leaves(default[0]) == min(count, MAX_INPUT_VARS)
