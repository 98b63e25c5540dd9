"""The wire format (b24batch._protocols.v3): body encoding and answer decoding, no I/O."""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b24batch import AjaxError, AuthError, Command, DecodeError, FieldError, SdkError, Time
from b24batch._protocols.v3 import decode_response, encode_batch
from b24batch.commands import normalize


def _rows(calls: Any, halt_on_error: bool = True) -> list[dict[str, Any]]:
    return json.loads(encode_batch(normalize(calls), halt_on_error=halt_on_error))  # type: ignore[no-any-return]


def test_body_is_a_bare_array_with_query_on_every_row() -> None:
    """Rows carry method, query ({} when none) and parallel; no envelope, no 'as' without one."""
    assert _rows([("a.get", {"id": 1}), ("b.list",)]) == [
        {"method": "a.get", "query": {"id": 1}, "parallel": False},
        {"method": "b.list", "query": {}, "parallel": False},
    ]


def test_parallel_is_not_halt_on_error_unless_the_row_sets_it() -> None:
    """halt_on_error=False sends parallel=True; a row's own parallel wins."""
    rows = _rows([("a.get",), Command("b.get", parallel=False)], halt_on_error=False)
    assert [row["parallel"] for row in rows] == [True, False]


def test_as_is_sent_only_when_set_and_names_become_as() -> None:
    """Named calls send their name as 'as'; a row's own 'as' wins; unnamed rows have no key."""
    rows = _rows({"one": ("a.get",), "two": Command("b.get", as_="mine")})
    assert [row["as"] for row in rows] == ["one", "mine"]
    assert "as" not in _rows([("a.get",)])[0]


def test_body_keeps_unicode_and_is_compact() -> None:
    """Non-ASCII text goes as UTF-8, not escapes, and there is no whitespace padding."""
    body = encode_batch(normalize([("a.add", {"title": "Задача"})]), halt_on_error=True)
    assert "Задача".encode() in body
    assert b", " not in body


def test_unencodable_params_raise_sdk_error_naming_the_row() -> None:
    """A NaN deep in params is refused with its path."""
    with pytest.raises(SdkError, match=r"calls\[0\] params\['f'\]\[0\]\['x'\] is nan"):
        encode_batch(normalize([("a.get", {"f": [{"x": math.nan}]})]), halt_on_error=True)


def _decode(payload: Any, n: int = 2, status: int = 200, **kwargs: Any) -> Any:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode_response(status, content, keys=tuple(range(n)), request_id="rid", **kwargs)


def test_positional_list_result() -> None:
    """A list result gives one entry per command, null included."""
    envelope = _decode({"result": [{"item": {"id": 1}}, None]})
    assert envelope.result == [{"item": {"id": 1}}, None]
    assert envelope.error is None
    assert envelope.status == 200


def test_object_keyed_result_is_put_in_order() -> None:
    """An object keyed "0".."n-1" is read positionally, whatever its key order."""
    envelope = _decode({"result": {"1": {"result": True}, "0": {"items": []}}})
    assert envelope.result == [{"items": []}, {"result": True}]


@pytest.mark.parametrize(
    ("result", "fragment"),
    [
        pytest.param([{"item": {}}], "no entry for command 1", id="short-list"),
        pytest.param({"0": {}}, "no entry for command 1", id="missing-key"),
        pytest.param({"0": {}, "2": {}}, "no entry for command 1", id="wrong-key"),
        pytest.param([1, 2, 3], "3 entries for 2 commands", id="long-list"),
        pytest.param({"0": 1, "1": 2, "x": 3}, "3 entries for 2 commands", id="extra-key"),
        pytest.param("nope", "result is a str", id="str"),
    ],
)
def test_malformed_result_raises_decode_error(result: Any, fragment: str) -> None:
    """A result that does not answer every command exactly once is malformed."""
    with pytest.raises(DecodeError, match=fragment) as info:
        _decode({"result": result})
    assert info.value.request_id == "rid"


def test_named_keys_appear_in_missing_entry_message() -> None:
    """For named calls the message names the command too."""
    with pytest.raises(DecodeError, match="command 1 \\('b'\\)"):
        decode_response(200, b'{"result": [1]}', keys=("a", "b"), request_id=None)


def test_time_block_is_decoded_and_lenient() -> None:
    """Time fields become floats or strings; a wrong type becomes None, not a failure."""
    envelope = _decode(
        {
            "result": [1, 2],
            "time": {
                "start": 1787219542,
                "finish": 1787219542.5,
                "duration": "x",
                "date_start": "2026-08-20T11:52:22+02:00",
                "operating": 0.12,
            },
        }
    )
    assert envelope.time == Time(
        start=1787219542.0,
        finish=1787219542.5,
        duration=None,
        date_start="2026-08-20T11:52:22+02:00",
        operating=0.12,
    )
    assert _decode({"result": [1, 2]}).time is None


def test_rest3_error_envelope_with_validation() -> None:
    """The REST 3.0 envelope keeps code, message and each validation row."""
    envelope = _decode(
        {
            "error": {
                "code": "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION",
                "message": "Error validating request object",
                "validation": [
                    {"field": "id", "message": "Required field `id` is not specified"},
                    {"field": "title", "message": "Too long"},
                ],
            }
        },
        status=400,
    )
    error = envelope.error
    assert type(error) is AjaxError
    assert error.code == "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION"
    assert error.message == "Error validating request object"
    assert error.status == 400
    assert error.request_id == "rid"
    assert error.validation == (
        FieldError("id", "Required field `id` is not specified"),
        FieldError("title", "Too long"),
    )
    assert str(error) == (
        "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION (HTTP 400): Error "
        "validating request object [id: Required field `id` is not specified; title: Too long]"
    )
    assert envelope.result is None


def test_classic_error_envelope() -> None:
    """The classic envelope maps error to code and error_description to message."""
    error = _decode(
        {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, status=503
    ).error
    assert (error.code, error.message, error.status) == (
        "QUERY_LIMIT_EXCEEDED",
        "Too many requests",
        503,
    )


def test_401_envelope_is_an_auth_error() -> None:
    """HTTP 401 maps to AuthError, a kind of AjaxError."""
    error = _decode({"error": "expired_token", "error_description": "expired"}, status=401).error
    assert type(error) is AuthError
    assert error.code == "expired_token"


def test_server_messages_are_redacted() -> None:
    """A server message that echoes the webhook URL loses the secret."""
    error = _decode(
        {"error": {"code": "X", "message": "bad call to /rest/api/1/s3cr3tvalue/batch"}},
        status=400,
    ).error
    assert "s3cr3tvalue" not in str(error)
    assert "/rest/api/1/***/batch" in error.message


@pytest.mark.parametrize(
    ("status", "content", "content_type", "fragment"),
    [
        pytest.param(
            502,
            b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
            "text/html",
            "HTML page, not JSON: '502 Bad Gateway'",
            id="html",
        ),
        pytest.param(
            200,
            b'{"result": [{"item": {"id": 1',
            "application/json",
            "not valid JSON, perhaps truncated",
            id="truncated",
        ),
        pytest.param(200, b"", "application/json", "empty body", id="empty"),
        pytest.param(200, b"[1, 2]", "application/json", "JSON list", id="json-list"),
        pytest.param(
            200, b'{"data": 1}', "application/json", "neither 'result' nor 'error'", id="no-result"
        ),
        pytest.param(
            500,
            b'{"result": [1, 2]}',
            "application/json",
            "HTTP 500 with JSON that has neither",
            id="result-on-500",
        ),
        pytest.param(200, b"\xff\xfe\x00garbage", "", "not valid JSON", id="binary"),
    ],
)
def test_undecodable_answers_raise_decode_error(
    status: int, content: bytes, content_type: str, fragment: str
) -> None:
    """Non-JSON, truncated and shapeless answers raise DecodeError with a clear message."""
    with pytest.raises(DecodeError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as info:
        _decode(content, status=status, headers={"Content-Type": content_type})
    assert info.value.request_id == "rid"


def test_html_snippet_is_redacted() -> None:
    """An error page that echoes the URL does not leak the secret into the message."""
    page = b"<html><body>Bad gateway for /rest/api/1/topsecret42/batch</body></html>"
    with pytest.raises(DecodeError) as info:
        _decode(page, status=502, headers={"Content-Type": "text/html"})
    assert "topsecret42" not in str(info.value)
    assert "/rest/api/1/***/batch" in str(info.value)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    params=st.lists(
        st.dictionaries(st.text(max_size=8), _json, max_size=4), min_size=1, max_size=50
    ),
    halt=st.booleans(),
)
def test_encode_round_trip(params: list[dict[str, Any]], halt: bool) -> None:
    """Whatever JSON params go in come back out of the body unchanged, in order."""
    calls = [("m.get", p) for p in params]
    rows = _rows(calls, halt_on_error=halt)
    assert [row["query"] for row in rows] == params
    assert all(row["parallel"] is (not halt) for row in rows)


@given(results=st.lists(_json, min_size=1, max_size=50), keyed=st.booleans())
def test_decode_round_trip(results: list[Any], keyed: bool) -> None:
    """Any positional result, as a list or a keyed object, decodes to the same entries."""
    result: Any = {str(i): r for i, r in enumerate(results)} if keyed else results
    envelope = _decode({"result": result}, n=len(results))
    assert envelope.result == results


@pytest.mark.parametrize(
    ("status", "content", "unknown"),
    [
        pytest.param(502, b'{"message": "x"}', True, id="502-json"),
        pytest.param(504, b"[1]", True, id="504-list"),
        pytest.param(404, b'{"message": "x"}', False, id="404-json"),
        pytest.param(503, b"<html>down</html>", False, id="503-html"),
        pytest.param(200, b'{"result": [1', True, id="200-truncated"),
    ],
)
def test_outcome_of_undecodable_answers(status: int, content: bytes, unknown: bool) -> None:
    """A 2xx or 5xx (but 503) answer that cannot be read leaves open whether the batch ran."""
    with pytest.raises(DecodeError) as info:
        _decode(content, status=status)
    assert info.value.request_id == "rid"
    assert info.value.outcome_unknown is unknown
    assert ("may have been executed" in str(info.value)) is unknown


def test_missing_entry_says_the_batch_ran() -> None:
    """A 200 whose result does not match the commands says the batch was executed."""
    with pytest.raises(DecodeError, match="the batch was executed"):
        _decode({"result": [1]})


def test_colliding_keys_are_refused_by_the_encoder() -> None:
    """encode_batch refuses {1: ..., "1": ...} instead of writing a duplicate key."""
    expected = "calls[0] params['filter'] has the keys 1 and '1'"
    with pytest.raises(SdkError, match=re.escape(expected)):
        encode_batch(normalize([("a.list", {"filter": {1: "a", "1": "b"}})]), halt_on_error=True)


def test_non_str_keys_that_do_not_collide_are_written_as_json_does() -> None:
    """Int, bool and None keys still go out, written as json.dumps writes them."""
    rows = _rows([("a.list", {"filter": {1: "a", False: "b", None: "c", 2.5: "d"}})])
    assert rows[0]["query"] == {"filter": {"1": "a", "false": "b", "null": "c", "2.5": "d"}}


def test_params_nested_5000_deep_raise_sdk_error() -> None:
    """The encoder's RecursionError becomes an SdkError naming the row and the depth."""
    params: dict[str, Any] = {}
    inner = params
    for _ in range(5000):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(SdkError, match=r"calls\[0\] params\['a'\]\['a'\].*levels deep"):
        encode_batch(normalize([("a.get", params)]), halt_on_error=True)


# -- gaps a mutant showed (issue 12) -------------------------------------------------------------


def test_json_nested_past_the_stack_is_a_decode_error_with_the_request_id() -> None:
    """An answer nested deeper than Python can decode raises DecodeError, saying it may have run."""
    with pytest.raises(DecodeError) as info:
        _decode(b"[" * 200_000 + b"]" * 200_000)
    assert str(info.value) == (
        "the portal answered HTTP 200 with JSON nested too deeply to decode; "
        "the request may have been executed"
    )
    assert (info.value.request_id, info.value.outcome_unknown) == ("rid", True)


def test_a_5xx_error_envelope_reads_in_full() -> None:
    """str() of a 500 error envelope: code, status, message and that the batch may have run."""
    error = _decode({"error": {"code": "INTERNAL", "message": "boom"}}, status=500).error
    assert type(error) is AjaxError
    assert error.outcome_unknown is True
    assert str(error) == "INTERNAL (HTTP 500): boom (the request may have been executed)"


def test_a_503_error_envelope_says_nothing_ran() -> None:
    """503 is refused before running: its error does not say the batch may have run."""
    error = _decode({"error": "OVERLOAD_LIMIT", "error_description": "blocked"}, status=503).error
    assert error.outcome_unknown is False
    assert str(error) == "OVERLOAD_LIMIT (HTTP 503): blocked"


def test_validation_rows_that_are_not_objects_are_kept_as_messages() -> None:
    """A text or number validation row becomes a FieldError without a field; null is skipped."""
    payload = {"error": {"code": "BAD", "message": "no", "validation": ["too long", None, 5]}}
    error = _decode(payload, status=400).error
    assert error.validation == (FieldError("", "too long"), FieldError("", "5"))
    assert str(error) == "BAD (HTTP 400): no [too long; 5]"


def test_time_processing_and_date_finish_are_decoded() -> None:
    """processing becomes a float and date_finish a string, as start and date_start do."""
    time = _decode(
        {"result": [1, 2], "time": {"processing": 0.25, "date_finish": "2026-08-20T11:52:23"}}
    ).time
    assert (time.processing, time.date_finish) == (0.25, "2026-08-20T11:52:23")


def test_retry_after_as_an_http_date_gives_the_seconds_until_it() -> None:
    """Retry-After: <HTTP date> two minutes ahead is about 120 s; a date past is 0."""
    ahead = email.utils.format_datetime(
        datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=120),
        usegmt=True,
    )
    payload = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    error = _decode(payload, status=503, headers={"Retry-After": ahead}).error
    assert error.retry_after == pytest.approx(120.0, abs=5.0)
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert _decode(payload, status=503, headers={"Retry-After": past}).error.retry_after == 0.0
    assert _decode(payload, status=503, headers={"Retry-After": "soon"}).error.retry_after is None


def test_an_http_date_retry_after_is_measured_from_the_answers_date() -> None:
    """Retry-After as a date counts from the answer's Date header (the server's clock sets both
    ends), whatever this host's clock says; an unreadable Date falls back to this host's."""
    payload = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    headers = {
        "Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT",
        "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
    }
    assert _decode(payload, status=503, headers=headers).error.retry_after == 30.0
    headers["Date"] = "Wed, 21 Oct 2015 07:29:00 GMT"  # the date is already past
    assert _decode(payload, status=503, headers=headers).error.retry_after == 0.0
    headers["Date"] = "yesterday"  # this host's clock: 2015 is long past
    assert _decode(payload, status=503, headers=headers).error.retry_after == 0.0


def test_numeric_retry_after_is_read_as_given_and_never_negative() -> None:
    """Retry-After "0.5" is half a second, "0" none, and a negative number counts as 0."""
    payload = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    waits = [
        _decode(payload, status=503, headers={"Retry-After": value}).error.retry_after
        for value in ("0.5", "0", "-3")
    ]
    assert waits == [0.5, 0.0, 0.0]


def test_a_missing_list_entry_names_the_command_by_its_position_alone() -> None:
    """For list calls the key is the position, so the message does not repeat it in brackets."""
    with pytest.raises(DecodeError) as info:
        _decode({"result": [1]})
    assert str(info.value) == (
        "the portal's result has 1 entries for 2 commands: no entry for command 1; "
        "the batch was executed, but its answer does not match the commands"
    )


def _not_json(content: bytes, content_type: str | None, status: int = 502) -> str:
    headers = {} if content_type is None else {"Content-Type": content_type}
    with pytest.raises(DecodeError) as info:
        _decode(content, status=status, headers=headers)
    return str(info.value)


def test_a_truncated_body_names_its_media_type_size_and_the_byte_it_broke_at() -> None:
    """The message gives the Content-Type without parameters, the length and the error's byte."""
    content = b'{"result": [{"item": {"id": 1'
    assert _not_json(content, "application/json; charset=utf-8", status=200) == (
        "the portal answered HTTP 200 (application/json, 29 bytes) with a body that is not "
        "valid JSON, perhaps truncated: JSONDecodeError at byte 29; "
        "the request may have been executed"
    )


def test_a_body_that_is_not_utf8_says_so_without_a_byte_position() -> None:
    """Invalid UTF-8 (a UnicodeDecodeError, no pos) gives '?'; no Content-Type is said so."""
    assert _not_json(b"\x80abc", None, status=404) == (
        "the portal answered HTTP 404 (no content type, 4 bytes) with a body that is not valid "
        "JSON, perhaps truncated: UnicodeDecodeError at byte ?"
    )


@pytest.mark.parametrize(
    ("content", "content_type", "shown"),
    [
        pytest.param(b"Bad gateway", "text/html; charset=utf-8", "Bad gateway", id="html-type"),
        pytest.param(b"Error <title>Down</title>", "text/plain", "Down", id="title-anywhere"),
        pytest.param(b"  \n<p>Down\n for   now</p>", "", "<p>Down for now</p>", id="leading-tag"),
        pytest.param(b"<p>caf\xe9</p>", "", "<p>caf\ufffd</p>", id="not-utf8"),
    ],
)
def test_an_html_page_is_recognised_by_type_title_or_leading_tag(
    content: bytes, content_type: str, shown: str
) -> None:
    """Any one sign makes an HTML page; it is quoted, whitespace folded, bad bytes replaced."""
    assert _not_json(content, content_type) == (
        "the portal (or a proxy before it) answered HTTP 502 with an HTML page, not JSON: "
        f"{shown!r}; the request may have been executed"
    )


def test_an_html_title_is_looked_for_in_the_first_4096_bytes_only() -> None:
    """A title that ends past byte 4096 is not found: the page's text is quoted instead."""
    tag = b"<title>late</title>"
    assert _not_json(b" " * (4096 - len(tag)) + tag, "") == (
        "the portal (or a proxy before it) answered HTTP 502 with an HTML page, not JSON: "
        "'late'; the request may have been executed"
    )
    assert _not_json(b" " * (4097 - len(tag)) + tag, "") == (
        "the portal (or a proxy before it) answered HTTP 502 with an HTML page, not JSON: "
        "'<title>late</title>'; the request may have been executed"
    )


def test_an_error_envelope_without_code_or_message_is_named_by_what_there_is() -> None:
    """No code gives UNKNOWN_ERROR; no message (or no error_description) repeats the code."""
    no_code = _decode({"error": {"message": "boom"}}, status=400).error
    assert (no_code.code, no_code.message) == ("UNKNOWN_ERROR", "boom")
    no_message = _decode({"error": {"code": "BAD"}}, status=400).error
    assert (no_message.code, no_message.message) == ("BAD", "BAD")
    classic = _decode({"error": "NOT_FOUND"}, status=404).error
    assert (classic.code, classic.message) == ("NOT_FOUND", "NOT_FOUND")


def test_a_validation_row_without_field_or_message_keeps_them_empty() -> None:
    """A row's missing field or message becomes '', never a placeholder."""
    payload = {"error": {"code": "BAD", "message": "no", "validation": [{"message": "m"}, {}]}}
    error = _decode(payload, status=400).error
    assert error.validation == (FieldError("", "m"), FieldError("", ""))


def test_json_nested_too_deeply_on_a_4xx_does_not_say_the_batch_may_have_run() -> None:
    """A 404 was not executed: the too-deep message stops after 'to decode'."""
    with pytest.raises(DecodeError) as info:
        _decode(b"[" * 200_000 + b"]" * 200_000, status=404)
    assert str(info.value) == "the portal answered HTTP 404 with JSON nested too deeply to decode"
    assert info.value.outcome_unknown is False


@pytest.mark.parametrize(
    ("status", "tail"),
    [
        pytest.param(200, "; the request may have been executed", id="200"),
        pytest.param(400, "", id="400"),
    ],
)
def test_json_that_is_not_an_object_is_named_by_its_type(status: int, tail: str) -> None:
    """A JSON list is refused in full words; only a 2xx or 5xx adds that the batch may have run."""
    assert _not_json(b"[1, 2]", "application/json", status=status) == (
        f"the portal answered HTTP {status} with JSON list, not an object with 'result' or "
        f"'error'{tail}"
    )


def test_an_object_without_result_or_error_lists_its_first_eight_keys_sorted() -> None:
    """Up to eight keys are named in sorted order, separated by commas; none says 'none'."""
    payload = {key: 1 for key in "jihgfedcba"}
    assert _not_json(json.dumps(payload).encode(), "application/json", status=200) == (
        "the portal answered HTTP 200 with JSON that has neither 'result' nor 'error' "
        "(keys: a, b, c, d, e, f, g, h); the request may have been executed"
    )
    assert _not_json(b"{}", "application/json", status=400) == (
        "the portal answered HTTP 400 with JSON that has neither 'result' nor 'error' (keys: none)"
    )


def test_a_result_on_http_300_is_not_taken_and_did_not_run() -> None:
    """Only 2xx answers carry results: a 300 with 'result' is a DecodeError, outcome known."""
    with pytest.raises(DecodeError) as info:
        _decode({"result": [1, 2]}, status=300)
    assert str(info.value) == (
        "the portal answered HTTP 300 with JSON that has neither 'result' nor 'error' "
        "(keys: result)"
    )
    assert info.value.outcome_unknown is False


def test_an_error_envelope_keeps_its_time_block() -> None:
    """The time block of an error answer is decoded too, so the operating meter can learn it."""
    payload = {"error": "OPERATION_TIME_LIMIT", "time": {"operating": 480.5, "start": 10}}
    envelope = _decode(payload, status=429)
    assert envelope.time == Time(start=10.0, operating=480.5)
