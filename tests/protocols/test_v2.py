"""``_protocols.v2``: the classic protocol value ``V2`` — naming, references, decoding, lists.

Pure functions, called directly: the batches they prepare and the answers they decode are
built here, so each test shows exactly what goes in and what comes out.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from b24batch._protocols.base import Prepared, Spec
from b24batch._protocols.v2 import V2, Entry, check_key, decode_response, encode_batch
from b24batch.commands import normalize
from b24batch.errors import DecodeError, SdkError, SdkTypeError
from b24batch.results import Time


def prepared(calls: Any) -> Prepared:
    """``calls`` prepared as one classic batch (without halt)."""
    return V2.prepare(normalize(calls, what="classic"), halt=False)


def decode(calls: Any, answer: Any, **options: Any) -> Any:
    """The ``Answers`` V2 decodes from a 200 ``answer`` to ``calls``."""
    content = json.dumps(answer).encode()
    return V2.decode(200, content, prepared=prepared(calls), request_id="rq-1", **options)


@pytest.mark.parametrize(
    ("key", "alias", "named", "name"),
    [
        pytest.param("deal", "d", True, "deal", id="named-call-keeps-its-name"),
        pytest.param(3, "d", False, "d", id="list-row-with-as"),
        pytest.param(3, None, False, "3", id="list-row-by-position"),
    ],
)
def test_a_command_is_referenced_by_its_wire_key(
    key: Any, alias: str | None, named: bool, name: str
) -> None:
    """A command's reference name is the caller's name, else its 'as', else its position."""
    assert V2.reference_name(key, alias, named) == name


def test_referenced_lists_every_key_params_reference() -> None:
    """``referenced`` finds the keys of $result[...] and its kin, in the order written."""
    params = {"fields": {"CONTACT_ID": "$result[contact]"}, "id": "$next[0]"}
    assert V2.referenced(params) == ["contact", "0"]


def test_a_command_error_that_is_not_an_object_is_unknown_error() -> None:
    """A result_error entry that is not an object becomes UNKNOWN_ERROR with the entry as text."""
    answers = decode([("a.b",)], {"result": {"result_error": ["boom"]}})
    error = answers.errors[0]
    assert (error.code, error.message, error.status) == ("UNKNOWN_ERROR", "boom", 200)
    assert error.key == 0


def test_a_command_error_without_a_code_keeps_an_empty_code() -> None:
    """A result_error object without 'error' has the code "" and its description as message."""
    entry = {"error_description": "Deal not found"}
    answers = decode([("crm.deal.get", {"id": 9})], {"result": {"result_error": [entry]}})
    error = answers.errors[0]
    assert (error.code, error.message) == ("", "Deal not found")
    assert str(error) == "command 0: Deal not found"


def test_a_command_errors_text_goes_through_the_given_redaction() -> None:
    """A command's error message and code are masked by the redact function decode is given."""
    entry = {"error": "BAD_pw1", "error_description": "token pw1 refused"}
    answers = decode(
        [("a.b",)],
        {"result": {"result_error": {"0": entry}}},
        redact=lambda text: text.replace("pw1", "***"),
    )
    error = answers.errors[0]
    assert (error.code, error.message) == ("BAD_***", "token *** refused")


def test_an_answer_that_does_not_match_says_the_batch_ran_and_keeps_the_request_id() -> None:
    """A malformed classic answer raises DecodeError naming the request and that it ran."""
    with pytest.raises(DecodeError) as info:
        decode([("a.b",)], {"result": ["x"]})
    assert info.value.request_id == "rq-1"
    assert info.value.message == (
        "the portal's result is a list; the classic batch answers an object with result, "
        "result_error, result_total, result_next, result_time; the batch was executed, but "
        "its answer does not match the commands"
    )


def test_list_filter_folds_the_id_bounds_and_keeps_every_other_condition() -> None:
    """``>=ID`` and ``<ID`` (any case) become the walk's bounds; the other keys stay, in order."""
    value = {">OPPORTUNITY": 0, "<id": "50", "STAGE_ID": "WON", ">=Id": 10, "TYPE": "SALE"}
    kept, low, high = V2.list_filter(value, "ID")
    assert kept == {">OPPORTUNITY": 0, "STAGE_ID": "WON", "TYPE": "SALE"}
    assert (low, high) == (10, 50)


def test_list_filter_takes_negative_bounds() -> None:
    """A negative whole number is a bound like any other."""
    assert V2.list_filter({">=ID": "-5", "<ID": -1}, "ID") == ({}, -5, -1)


@pytest.mark.parametrize("wanted", ["X5", "5X", "abc", True, 2.5])
def test_list_filter_refuses_an_id_bound_that_is_not_a_whole_number(wanted: object) -> None:
    """An id bound the walk cannot compare is refused with a message naming the key and fix."""
    message = (
        f"params['filter']['>=ID'] = {wanted!r}: the walk combines it with its own id ranges, "
        f"so pass a whole number"
    )
    with pytest.raises(SdkError, match=f"^{re.escape(message)}$"):
        V2.list_filter({">=ID": wanted}, "ID")


def test_list_filter_refuses_a_filter_that_is_not_a_dict() -> None:
    """A REST 3.0-style list filter is refused for the classic walk, naming its type."""
    message = "params['filter'] is a list; a classic filter is a dict, e.g. {'>OPPORTUNITY': 0}"
    with pytest.raises(SdkTypeError, match=f"^{re.escape(message)}$"):
        V2.list_filter([["ID", ">", 1]], "ID")


@pytest.mark.parametrize(("descending", "order"), [(False, "ASC"), (True, "DESC")])
def test_list_row_orders_by_id_and_asks_for_no_count(descending: bool, order: str) -> None:
    """A classic list row: the filter with both bounds, ordered by id, with start=-1."""
    spec = Spec(
        method="crm.deal.list", params={"select": ["ID"]}, filter={"TYPE": "SALE"}, id_key="ID"
    )
    method, params = V2.list_row(spec, 10, 20, descending)
    assert method == "crm.deal.list"
    assert params == {
        "select": ["ID"],
        "filter": {"TYPE": "SALE", ">=ID": 10, "<ID": 20},
        "order": {"ID": order},
        "start": -1,
    }


def test_referenced_reads_a_shared_or_cyclic_container_once() -> None:
    """A dict met twice (or inside itself) is scanned once; scanning goes on after it."""
    shared: dict[str, Any] = {"x": "$result[a]"}
    shared["self"] = shared
    params = {"p": shared, "q": shared, "r": "$total[b]"}
    assert V2.referenced(params) == ["a", "b"]


def test_an_error_envelope_keeps_its_status_time_and_request_id() -> None:
    """A whole-request error: the error (with the request id), the status and the time block."""
    answer = {
        "error": "QUERY_LIMIT_EXCEEDED",
        "error_description": "Too many",
        "time": {"start": 5},
    }
    answers = V2.decode(
        503,
        json.dumps(answer).encode(),
        prepared=prepared([("a.b",)]),
        request_id="rq-1",
        headers={"Retry-After": "7"},
    )
    assert answers.status == 503
    assert answers.time == answers.limit_time == Time(start=5.0)
    assert answers.entries is None
    assert answers.error is not None
    assert (answers.error.code, answers.error.request_id) == ("QUERY_LIMIT_EXCEEDED", "rq-1")
    assert answers.error.retry_after == 7.0


def test_an_error_envelopes_text_goes_through_the_given_redaction() -> None:
    """The whole-request error's message is masked by the redact function decode is given."""
    answer = {"error": "ACCESS_DENIED", "error_description": "token pw1 refused"}
    answers = V2.decode(
        401,
        json.dumps(answer).encode(),
        prepared=prepared([("a.b",)]),
        request_id=None,
        redact=lambda text: text.replace("pw1", "***"),
    )
    assert answers.error is not None
    assert answers.error.message == "token *** refused"


def test_decode_response_reports_the_status_it_was_given() -> None:
    """The classic envelope carries the HTTP status, for answers and for error envelopes."""
    ok = decode_response(200, b'{"result": {"result": [1]}}', keys=[0], request_id=None)
    refused = decode_response(400, b'{"error": "BAD"}', keys=[0], request_id=None)
    assert (ok.status, refused.status) == (200, 400)


def test_an_answer_gives_per_command_results_times_totals_and_nexts() -> None:
    """A classic answer: the status, the batch time, and each command's own blocks; counts
    sent as digit strings are read as numbers."""
    answer = {
        "result": {
            "result": {"0": [{"ID": "1"}], "1": {"ID": "7"}},
            "result_total": {"0": "51"},
            "result_next": {"0": 50},
            "result_time": {"1": {"duration": 0.5}},
        },
        "time": {"duration": 1.5},
    }
    answers = decode([("crm.deal.list",), ("crm.deal.get", {"id": 7})], answer)
    assert answers.status == 200
    assert answers.time == Time(duration=1.5)
    assert answers.entries == [[{"ID": "1"}], {"ID": "7"}]
    assert answers.times == [None, Time(duration=0.5)]
    assert answers.totals == [51, None]
    assert answers.nexts == [50, None]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        pytest.param(
            {"result_time": 5},
            "the portal's result.result_time is a int; expected a list or object",
            id="not-a-list-or-object",
        ),
        pytest.param(
            {"result": {"x": 1}},
            "the portal's result.result names the command 'x', which was not sent "
            "(sent: 0, 1, 2, 3, 4, 5, 6, 7)",
            id="names-a-command-not-sent",
        ),
    ],
)
def test_a_section_that_does_not_match_names_itself_and_the_request(
    section: dict[str, Any], message: str
) -> None:
    """A bad section raises DecodeError naming the section (and at most 8 keys sent), with the
    request id, saying the batch ran."""
    calls = [("a.b", {"n": n}) for n in range(10)]
    with pytest.raises(DecodeError) as info:
        decode(calls, {"result": section})
    assert info.value.request_id == "rq-1"
    assert info.value.message == (
        message + "; the batch was executed, but its answer does not match the commands"
    )


def test_prepare_refuses_a_reference_to_no_earlier_command_by_default() -> None:
    """Unless the planner checked them, a $result[KEY] naming no earlier command is refused."""
    commands = normalize([("a.b", {"x": "$result[1]"}), ("a.c",)], what="classic")
    message = (
        "calls[0] references $result[1], which names no earlier command of this batch; the "
        "portal would pass the text on as a value. Reference a command before it by its key "
        "(its name, its 'as', or its position)"
    )
    with pytest.raises(SdkError, match=f"^{re.escape(message)}$"):
        V2.prepare(commands, halt=True)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"f": {"$result[later]": "x"}}, id="in-a-nested-key"),
        pytest.param({"f": ["Сумма $result[later]"]}, id="in-utf8-text"),
        pytest.param({"f": {"a": True, "b": "$result[later]"}}, id="beside-what-the-walk-checks"),
        pytest.param({"f": {1: "$next[later]"}}, id="under-an-int-key"),
    ],
)
def test_prepare_finds_references_wherever_the_encoding_writes_them(params: Any) -> None:
    """The one pass looks for references only where the query has a '$': it finds them in
    keys, non-ASCII text and params the checked walk encodes, before any encoding error."""
    commands = normalize([("a.b", params), ("a.c", {"as": 1})], what="classic")
    with pytest.raises(SdkError, match=r"^calls\[0\] references \$result\[later\]"):
        V2.prepare(commands, halt=True)


def test_prepare_raises_an_encoding_error_after_the_references_of_later_commands() -> None:
    """A later command's reference error wins over an earlier command's encoding error, as
    when references were checked before anything was encoded."""
    commands = normalize([("a.b", {"x": True}), ("a.c", {"y": "$result[9]"})], what="classic")
    with pytest.raises(SdkError, match=r"^calls\[1\] references \$result\[9\]"):
        V2.prepare(commands, halt=True)
    with pytest.raises(SdkTypeError, match=r"^calls\[0\]\.params\.x is True"):
        V2.prepare(normalize([("a.b", {"x": True})], what="classic"), halt=True)


def test_a_named_call_is_sent_under_its_names_even_with_an_as() -> None:
    """In a dict call the caller's name is the wire key; a row's 'as' does not replace it."""
    calls = {"deal": {"method": "crm.deal.get", "params": {"id": 1}, "as": "d"}}
    assert prepared(calls).wire_keys == ("deal",)


def test_an_encoding_error_names_the_callers_row_not_its_wire_key() -> None:
    """A row sent under its 'as' is still named calls[POSITION] in a message."""
    calls = [("a.b",), {"method": "bad?method", "as": "x"}]
    message = (
        "calls[1] has the method 'bad?method'; the portal splits METHOD?QUERY at the first "
        "'?', so a method has no '?' and no spaces around it"
    )
    with pytest.raises(SdkError, match=f"^{re.escape(message)}$"):
        prepared(calls)


@pytest.mark.parametrize("key", ["a[", "a]", "a\0b"], ids=["open", "close", "nul"])
def test_a_key_with_a_bracket_or_nul_is_refused(key: str) -> None:
    """One '[' or ']' (or a NUL) is enough to refuse a key: cmd[KEY] could not carry it."""
    message = (
        f"calls[0] has the command key {key!r}; the classic batch sends it as cmd[KEY] and "
        f"references it as $result[KEY], so it cannot contain '[', ']' or NUL"
    )
    with pytest.raises(SdkError, match=f"^{re.escape(message)}$"):
        check_key(key, "calls[0]")


def test_two_rows_sent_under_one_key_are_refused_naming_both() -> None:
    """Two entries whose keys are written alike (0 and "0") are refused, naming both rows."""
    message = (
        "calls[1] is sent as cmd[0], as calls[0] is; each command key must be unique in a batch"
    )
    with pytest.raises(SdkError, match=f"^{re.escape(message)}$"):
        encode_batch([Entry(0, "a.b"), Entry("0", "a.c", where="calls[1]")], halt=True)


def test_a_method_that_is_not_a_str_is_refused_naming_its_type() -> None:
    """``encode_batch`` refuses a method of another type, naming the row and the type."""
    message = "calls[0] has a method of type int; use a str"
    with pytest.raises(SdkTypeError, match=f"^{re.escape(message)}$"):
        encode_batch([Entry(0, 5)], halt=True)  # type: ignore[arg-type]


def test_a_method_that_is_not_valid_text_is_refused_naming_the_row() -> None:
    """A method with a lone surrogate cannot be percent-encoded: refused, naming the row."""
    with pytest.raises(SdkError, match=r"^calls\[0\] has a method that is not valid text$"):
        encode_batch([Entry(0, "a\ud800b")], halt=True)
