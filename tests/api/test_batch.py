"""BatchV3.make end to end over real HTTP against the FakePortal."""

from __future__ import annotations

import logging
import math
import re
import traceback
import uuid
from typing import Any

import attrs
import pytest

import b24batch
from b24batch import (
    AjaxError,
    AjaxResult,
    AuthError,
    B24Error,
    B24Hook,
    BatchByChunkV3,
    BatchV3,
    Command,
    DecodeError,
    FieldError,
    OperatingLimitError,
    RateLimitError,
    SdkError,
    SdkTypeError,
    Time,
    TransportError,
)
from b24batch.client import USER_AGENT
from b24batch.testing import FakePortal, Fault
from tests.conftest import SECRET


@attrs.frozen
class Task:
    id: int
    title: str
    responsible_id: int = attrs.field(alias="responsibleId")


@attrs.frozen
class TaskItem:
    item: Task


def _seed(portal: FakePortal, *titles: str) -> list[int]:
    return [portal.add_task(title=title) for title in titles]


def test_tuple_calls_return_results_in_call_order(portal: FakePortal, client: B24Hook) -> None:
    """List calls give a list of raw results, in call order."""
    first, second = _seed(portal, "One", "Two")
    result = BatchV3(client).make(
        [
            ("tasks.task.get", {"id": second, "select": ["id", "title"]}),
            ("tasks.task.get", {"id": first, "select": ["title"]}),
        ]
    )
    assert result.is_success
    assert result.errors == ()
    assert result.error_messages == []
    assert result.status == 200
    assert result.data == [{"item": {"id": second, "title": "Two"}}, {"item": {"title": "One"}}]


def test_request_goes_to_v3_batch_as_json_array(portal: FakePortal, client: B24Hook) -> None:
    """One POST to /rest/api/USER/SECRET/batch, JSON content type, body a bare array."""
    _seed(portal, "One")
    BatchV3(client).make(
        [("tasks.task.get", {"id": 1}), ("tasks.task.list",)], request_id="trace-7"
    )
    (request,) = portal.requests
    assert request.method == "POST"
    assert request.path == f"/rest/api/1/{SECRET}/batch"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.query["bx24_request_id"] == "trace-7"
    assert request.query["bx24_sdk_type"] == "b24batch"
    assert request.body == [
        {"method": "tasks.task.get", "query": {"id": 1}, "parallel": False},
        {"method": "tasks.task.list", "query": {}, "parallel": False},
    ]


def test_dict_rows_send_as_and_parallel(portal: FakePortal, client: B24Hook) -> None:
    """Dict rows put 'as' and their own 'parallel' on the wire."""
    _seed(portal, "One")
    result = BatchV3(client).make(
        [
            {"method": "tasks.task.get", "params": {"id": 1, "select": ["id"]}, "as": "t"},
            {
                "method": "tasks.task.get",
                "params": {"id": {"$ref": "t.item.id"}, "select": ["title"]},
                "parallel": True,
            },
        ],
        halt_on_error=True,
    )
    assert result.data == [{"item": {"id": 1}}, {"item": {"title": "One"}}]
    rows = portal.requests[-1].body
    assert [row.get("as") for row in rows] == ["t", None]
    assert "as" not in rows[1]
    assert [row["parallel"] for row in rows] == [False, True]


def test_no_halt_sends_parallel_true(portal: FakePortal, client: B24Hook) -> None:
    """halt_on_error=False sends parallel=true on every row."""
    _seed(portal, "One")
    BatchV3(client).make([("tasks.task.get", {"id": 1})] * 2, halt_on_error=False)
    assert [row["parallel"] for row in portal.requests[-1].body] == [True, True]


def test_named_calls_key_data_by_caller_names_not_as(portal: FakePortal, client: B24Hook) -> None:
    """Named calls give a dict keyed by the caller's names, even where a row sets its own 'as'."""
    _seed(portal, "One", "Two")
    result = BatchV3(client).make(
        {
            "second": ("tasks.task.get", {"id": 2, "select": ["title"]}),
            "first": Command("tasks.task.get", {"id": 1, "select": ["title"]}, as_="alias"),
        }
    )
    assert result.data == {
        "second": {"item": {"title": "Two"}},
        "first": {"item": {"title": "One"}},
    }
    assert list(result.data) == ["second", "first"]
    assert [row["as"] for row in portal.requests[-1].body] == ["second", "alias"]


def test_null_results_are_kept_as_none(portal: FakePortal, client: B24Hook) -> None:
    """A JSON null result is a legitimate answer: None in data, typed or not."""
    portal.register("custom.nothing", lambda query: None)
    _seed(portal, "One")
    result = BatchV3(client).make(
        [("custom.nothing",), ("tasks.task.get", {"id": 1}), ("custom.nothing", {"x": 1})],
        result_type=TaskItem,
    )
    assert result.data[0] is None
    assert result.data[2] is None
    assert result.data[1].item.title == "One"


def test_typed_results_map_camel_case(portal: FakePortal, client: B24Hook) -> None:
    """result_type structures each result into attrs classes, camelCase to snake_case."""
    portal.add_task(title="Typed", responsibleId=7)
    result = BatchV3(client).make([("tasks.task.get", {"id": 1})], result_type=TaskItem)
    assert result.data == [TaskItem(Task(id=1, title="Typed", responsibleId=7))]
    assert result.data[0].item.responsible_id == 7


def test_per_command_result_type_overrides_make(portal: FakePortal, client: B24Hook) -> None:
    """A Command's result_type wins over make's; others fall back to make's."""
    _seed(portal, "One")
    result = BatchV3(client).make(
        [
            Command(
                "tasks.task.list", {"select": ["id"]}, result_type=dict[str, list[dict[str, int]]]
            ),
            ("tasks.task.get", {"id": 1}),
        ],
        result_type=TaskItem,
    )
    assert result.data[0] == {"items": [{"id": 1}]}
    assert isinstance(result.data[1], TaskItem)


def test_type_mismatch_raises_decode_error_with_path(portal: FakePortal, client: B24Hook) -> None:
    """A result that does not fit result_type raises DecodeError naming command and path."""
    portal.register(
        "custom.badtask", lambda q: {"item": {"id": "nope", "title": "x", "responsibleId": 1}}
    )
    _seed(portal, "One")
    with pytest.raises(DecodeError) as info:
        BatchV3(client).make(
            {"ok": ("tasks.task.get", {"id": 1}), "bad": ("custom.badtask",)},
            result_type=TaskItem,
            request_id="r-9",
        )
    message = str(info.value)
    assert "command 'bad' (custom.badtask)" in message
    assert "$.result[1].item.id" in message
    assert "the batch was executed" in message
    assert info.value.request_id == "r-9"
    kept = info.value.result  # nothing the portal returned is lost
    assert kept is not None
    assert kept.data["bad"] == {"item": {"id": "nope", "title": "x", "responsibleId": 1}}
    assert kept.data["ok"]["item"]["id"] == 1


def test_return_ajax_result_gives_ajax_results(portal: FakePortal, client: B24Hook) -> None:
    """return_ajax_result=True fills data with AjaxResult objects carrying key and method."""
    _seed(portal, "One")
    result = BatchV3(client).make(
        {"a": ("tasks.task.get", {"id": 1, "select": ["id"]})}, return_ajax_result=True
    )
    item = result.data["a"]
    assert isinstance(item, AjaxResult)
    assert (item.key, item.method, item.params, item.result, item.status, item.error) == (
        "a",
        "tasks.task.get",
        {"id": 1, "select": ["id"]},
        {"item": {"id": 1}},
        200,
        None,
    )
    assert item.is_success
    assert isinstance(item.time, Time)
    assert item.time is result.time
    assert result.time.duration is not None


def test_generated_request_id_is_a_uuid4(portal: FakePortal, client: B24Hook) -> None:
    """Without request_id the batch gets a new uuid4, on the wire and on the result."""
    _seed(portal, "One")
    result = BatchV3(client).make([("tasks.task.get", {"id": 1})])
    assert uuid.UUID(result.request_id).version == 4
    assert portal.requests[-1].query["bx24_request_id"] == result.request_id


def test_actions_path_mirrors_js_sdk(portal: FakePortal, client: B24Hook) -> None:
    """client.actions.v3.batch.make is the same BatchV3.make."""
    _seed(portal, "One")
    result = client.actions.v3.batch.make([("tasks.task.get", {"id": 1, "select": ["id"]})])
    assert result.data == [{"item": {"id": 1}}]
    assert client.actions is client.actions


@pytest.mark.parametrize(
    ("calls", "options", "error"),
    [
        pytest.param([], {}, SdkError, id="empty"),
        pytest.param([("a.get",)] * 51, {}, SdkError, id="51"),
        pytest.param([("a.get", {"x": math.nan})], {}, SdkError, id="nan"),
        pytest.param([("a.get", {"x": {1, 2}})], {}, SdkTypeError, id="set"),
        pytest.param([{"method": "a.get", "query": {}}], {}, SdkError, id="query-key"),
        pytest.param([("a.get",)], {"halt_on_error": "yes"}, SdkTypeError, id="halt-str"),
        pytest.param([("a.get",)], {"return_ajax_result": 1}, SdkTypeError, id="ajax-int"),
        pytest.param([("a.get",)], {"request_id": 5}, SdkTypeError, id="request-id-int"),
        pytest.param([("a.get",)], {"request_id": ""}, SdkError, id="request-id-empty"),
        pytest.param([("a.get",)], {"request_id": "a\nb"}, SdkError, id="request-id-newline"),
        pytest.param(
            [("a.get",)], {"options": {"isHaltOnError": True}}, TypeError, id="unknown-kwarg"
        ),
    ],
)
def test_misuse_fails_before_any_request(
    portal: FakePortal,
    client: B24Hook,
    calls: Any,
    options: dict[str, Any],
    error: type[Exception],
) -> None:
    """Every validation error is raised before anything reaches the portal."""
    with pytest.raises(error):
        BatchV3(client).make(calls, **options)
    assert portal.requests == []


@pytest.mark.parametrize(
    ("calls", "error", "message"),
    [
        pytest.param({"0": ("a.get",)}, SdkError, "sent as 'as', '0' is a number", id="0"),
        pytest.param({"a.b c": ("a.get",)}, SdkError, "'a.b c' contains '.'", id="dot"),
        pytest.param({35943: ("a.get",)}, SdkTypeError, "calls has the key 35943", id="int"),
        pytest.param([{"method": "a.get", "as": "7"}], SdkError, "'7' is a number", id="as-7"),
    ],
)
def test_rest3_naming_rules_still_hold(
    portal: FakePortal, client: B24Hook, calls: Any, error: type[Exception], message: str
) -> None:
    """REST 3.0 keeps its own rule: names are non-empty strings, not numbers, without dots."""
    with pytest.raises(error, match=re.escape(message)) as info:
        BatchV3(client).make(calls)
    assert type(info.value) is error
    with pytest.raises(error, match=re.escape(message)):
        BatchByChunkV3(client).make(calls)
    assert portal.requests == []


def test_not_found_is_returned_not_raised(portal: FakePortal, client: B24Hook) -> None:
    """A 4xx error envelope comes back in errors; data is empty; the write before it ran."""
    _seed(portal, "One")
    result = BatchV3(client).make(
        [("tasks.task.add", {"fields": {"title": "New"}}), ("tasks.task.get", {"id": 99})],
        request_id="nf-1",
    )
    assert not result.is_success
    assert result.data == []
    assert result.status == 400
    (error,) = result.errors
    assert type(error) is AjaxError
    assert error.code == "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"
    assert error.status == 400
    assert error.request_id == "nf-1"
    assert result.error_messages == [str(error)]
    assert "99" in result.error_messages[0]
    assert sorted(portal.tasks) == [1, 2]
    assert result.maybe_executed == error.maybe_executed == (0,)


def test_named_failure_gives_empty_dict(portal: FakePortal, client: B24Hook) -> None:
    """A failed named batch has an empty dict as data."""
    result = BatchV3(client).make({"x": ("tasks.task.get", {"id": 5})})
    assert result.data == {}
    assert not result.is_success


def test_validation_rows_are_structured(portal: FakePortal, client: B24Hook) -> None:
    """A validation error keeps each field and message as a FieldError."""
    result = BatchV3(client).make([("tasks.task.get", {})])
    (error,) = result.errors
    assert error.code == "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION"
    assert error.validation
    assert all(isinstance(row, FieldError) for row in error.validation)
    assert error.validation[0].field == "id"
    assert f"id: {error.validation[0].message}" in str(error)


def test_unknown_method_is_returned(portal: FakePortal, client: B24Hook) -> None:
    """An unknown method's 404 envelope is returned with its code."""
    result = BatchV3(client).make([("no.such.method",)])
    assert result.status == 404
    assert "METHODNOTFOUND" in result.errors[0].code


def test_classic_envelope_is_returned(portal: FakePortal, client: B24Hook) -> None:
    """The classic {error, error_description} envelope maps to the same AjaxError."""
    portal.inject(
        Fault.response(
            403,
            {
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges",
            },
        )
    )
    result = BatchV3(client).make([("tasks.task.get", {"id": 1})])
    (error,) = result.errors
    assert (error.code, error.message, error.status) == (
        "insufficient_scope",
        "The request requires higher privileges",
        403,
    )


def test_raise_for_errors(portal: FakePortal, client: B24Hook) -> None:
    """raise_for_errors returns self on success and raises the error on failure."""
    _seed(portal, "One")
    ok = BatchV3(client).make([("tasks.task.get", {"id": 1})])
    assert ok.raise_for_errors() is ok
    failed = BatchV3(client).make([("tasks.task.get", {"id": 2})])
    with pytest.raises(AjaxError) as info:
        failed.raise_for_errors()
    assert info.value is failed.errors[0]
    assert info.value.others == ()


def test_wrong_secret_raises_auth_error(portal: FakePortal) -> None:
    """HTTP 401 raises AuthError; its message does not carry the (wrong) secret."""
    url = portal.webhook_url.replace(SECRET, "wrongSecretValue")
    with B24Hook.from_webhook_url(url) as hook, pytest.raises(AuthError) as info:
        BatchV3(hook).make([("tasks.task.get", {"id": 1})], request_id="a-1")
    assert info.value.status == 401
    assert info.value.code == "NO_AUTH_FOUND"
    assert info.value.request_id == "a-1"
    assert "wrongSecretValue" not in str(info.value)


@pytest.mark.parametrize(
    ("fault", "status", "code", "error_type"),
    [
        pytest.param(
            Fault.operating_limited(), 429, "OPERATION_TIME_LIMIT", OperatingLimitError, id="429"
        ),
        pytest.param(
            Fault.rate_limited(), 503, "QUERY_LIMIT_EXCEEDED", RateLimitError, id="503-rate"
        ),
        pytest.param(Fault.overload(), 503, "OVERLOAD_LIMIT", AjaxError, id="503-overload"),
        pytest.param(
            Fault.response(500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "boom"}),
            500,
            "INTERNAL_SERVER_ERROR",
            AjaxError,
            id="500",
        ),
    ],
)
def test_limit_and_server_envelopes_are_raised(
    portal: FakePortal,
    client: B24Hook,
    fault: Fault,
    status: int,
    code: str,
    error_type: type[AjaxError],
) -> None:
    """429, 503 and 5xx envelopes are raised as AjaxError, never returned."""
    portal.inject(fault)
    with pytest.raises(AjaxError) as info:
        BatchV3(client).make([("tasks.task.list",)])
    assert (info.value.status, info.value.code) == (status, code)
    assert type(info.value) is error_type
    assert info.value.attempts == 1
    assert len(portal.requests) == 1


def test_read_timeout_is_transport_error_with_unknown_outcome(portal: FakePortal) -> None:
    """A batch that outlives the read timeout raises TransportError; it may have run."""
    portal.inject(Fault.delay(0.6))
    with (
        B24Hook.from_webhook_url(portal.webhook_url, timeout=(2.0, 0.15)) as hook,
        pytest.raises(TransportError) as info,
    ):
        BatchV3(hook).make([("tasks.task.add", {"fields": {"title": "Slow"}})])
    assert info.value.outcome_unknown is True
    assert "may have been executed" in str(info.value)
    assert len(portal.requests) == 1  # never repeated


def test_connection_dropped_after_execution_is_not_repeated(
    portal: FakePortal, client: B24Hook
) -> None:
    """A connection lost after the portal ran the batch raises, and the write runs once."""
    portal.inject(Fault.drop_after())
    with pytest.raises(TransportError) as info:
        BatchV3(client).make([("tasks.task.add", {"fields": {"title": "Once"}})])
    assert info.value.outcome_unknown is True
    assert len(portal.requests) == 1
    assert portal.executed_commands == 1
    assert [task["title"] for task in portal.tasks.values()] == ["Once"]


def test_connection_dropped_before_execution(portal: FakePortal, client: B24Hook) -> None:
    """A connection dropped without an answer is reported; the SDK cannot know it did not run."""
    portal.inject(Fault.drop_before())
    with pytest.raises(TransportError) as info:
        BatchV3(client).make([("tasks.task.list",)])
    assert info.value.outcome_unknown is True
    assert len(portal.requests) == 1
    assert portal.executed_commands == 0


@pytest.mark.parametrize("status", [500, 502, 504])
def test_html_error_page_is_a_decode_error(
    portal: FakePortal, client: B24Hook, status: int
) -> None:
    """A proxy's HTML page raises DecodeError saying so, with the secret it echoed masked."""
    portal.inject(Fault.html(status))
    with pytest.raises(DecodeError) as info:
        BatchV3(client).make([("tasks.task.list",)])
    message = str(info.value)
    assert f"HTTP {status} with an HTML page" in message
    assert SECRET not in message


def test_truncated_json_is_a_decode_error(portal: FakePortal, client: B24Hook) -> None:
    """A truncated JSON answer raises DecodeError, not a crash or a partial result."""
    portal.inject(Fault.truncated())
    with pytest.raises(DecodeError, match="not valid JSON, perhaps truncated"):
        BatchV3(client).make([("tasks.task.list",)])


def test_non_json_200_is_a_decode_error(portal: FakePortal, client: B24Hook) -> None:
    """A 200 with a text body is not a result."""
    portal.inject(Fault.response(200, "OK"))
    with pytest.raises(DecodeError, match="HTTP 200"):
        BatchV3(client).make([("tasks.task.list",)])


def test_one_debug_line_per_call(
    portal: FakePortal, client: B24Hook, caplog: pytest.LogCaptureFixture
) -> None:
    """Each HTTP call logs one DEBUG line with request id, commands, status and duration."""
    caplog.set_level(logging.DEBUG, logger="b24batch")
    _seed(portal, "One")
    BatchV3(client).make([("tasks.task.get", {"id": 1})] * 3, request_id="log-1")
    lines = [r.getMessage() for r in caplog.records if r.name == "b24batch"]
    assert len(lines) == 1
    assert re.fullmatch(r"batch log-1: 3 commands -> HTTP 200, \d+ bytes in [\d.]+ ms", lines[0])


def _every_failure(portal: FakePortal, client: B24Hook) -> list[B24Error]:
    """Run one batch per failure path and collect what each raised or returned."""
    errors: list[B24Error] = []
    batch = BatchV3(client)
    faults = [
        Fault.html(502),
        Fault.truncated(),
        Fault.drop_after(),
        Fault.response(500, {"error": {"code": "X", "message": f"at /rest/api/1/{SECRET}/batch"}}),
        Fault.response(
            400,
            {
                "error": {
                    "code": "Y",
                    "message": f"echo {SECRET}",
                    "validation": [{"field": SECRET, "message": SECRET}],
                }
            },
        ),
    ]
    for fault in faults:
        portal.inject(fault)
        try:
            errors.extend(batch.make([("tasks.task.get", {"id": 1})]).errors)
        except B24Error as exc:
            errors.append(exc)
    wrong = B24Hook.from_webhook_url(portal.webhook_url.replace(SECRET, SECRET[::-1]))
    try:
        BatchV3(wrong).make([("tasks.task.get", {"id": 1})])
    except B24Error as exc:
        errors.append(exc)
    return errors


def test_secret_never_leaks(
    portal: FakePortal, client: B24Hook, caplog: pytest.LogCaptureFixture
) -> None:
    """No repr, message, formatted traceback (with chains) or log line holds the secret."""
    caplog.set_level(logging.DEBUG)
    errors = _every_failure(portal, client)
    assert len(errors) == 6
    for error in errors:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        for shown in (text, str(error), repr(error), repr(error.__cause__)):
            assert SECRET not in shown
            assert SECRET[::-1] not in shown
    assert SECRET not in repr(client)
    records = [record.getMessage() for record in caplog.records]
    assert records  # urllib3 and b24batch did log these calls
    assert not [line for line in records if SECRET in line or SECRET[::-1] in line]


def test_unusable_result_type_fails_before_sending(portal: FakePortal, client: B24Hook) -> None:
    """A result_type cattrs cannot resolve is our caller's mistake: SdkTypeError, no request."""

    @attrs.frozen
    class Local:
        value: int

    @attrs.frozen
    class Wrapper:
        item: Local  # a string annotation (PEP 563) naming a class local to this function

    with pytest.raises(SdkTypeError, match=r"result_type=.*Wrapper cannot be used"):
        BatchV3(client).make([("tasks.task.get", {"id": 1})], result_type=Wrapper)
    with pytest.raises(SdkTypeError, match=r"calls\[0\] result_type"):
        BatchV3(client).make([Command("tasks.task.get", {"id": 1}, result_type=Wrapper)])
    assert portal.requests == []


# -- gaps a mutant showed (issue 12) -------------------------------------------------------------


def test_51_named_calls_are_refused_and_50_are_sent(portal: FakePortal, client: B24Hook) -> None:
    """51 named calls raise SdkError before sending (never 50 sent, one dropped); 50 go out."""
    named = {f"c{n}": ("tasks.task.list", {"select": ["id"]}) for n in range(51)}
    with pytest.raises(SdkError) as info:
        BatchV3(client).make(named)
    assert str(info.value) == (
        "calls has more than 50 commands; one REST 3.0 batch takes at most 50: "
        "split them into several batches, or let BatchByChunkV3 (BatchByChunkV2 for classic) "
        "send them in chunks"
    )
    assert portal.requests == []
    del named["c50"]
    result = BatchV3(client).make(named)
    assert list(result.data) == [f"c{n}" for n in range(50)]
    assert [row["as"] for row in portal.requests[0].body] == [f"c{n}" for n in range(50)]


def test_per_command_result_type_without_one_on_make(portal: FakePortal, client: B24Hook) -> None:
    """A Command's result_type applies with none on make(); the other rows stay JSON."""
    portal.add_task(title="Typed", responsibleId=7)
    result = BatchV3(client).make(
        [
            Command("tasks.task.get", {"id": 1}, result_type=TaskItem),
            ("tasks.task.get", {"id": 1, "select": ["id"]}),
        ]
    )
    assert result.data == [
        TaskItem(Task(id=1, title="Typed", responsibleId=7)),
        {"item": {"id": 1}},
    ]


def test_ajax_results_carry_typed_results(portal: FakePortal, client: B24Hook) -> None:
    """return_ajax_result=True with result_type: each AjaxResult.result is the typed value."""
    portal.add_task(title="Typed", responsibleId=7)
    result = BatchV3(client).make(
        {"t": ("tasks.task.get", {"id": 1})}, return_ajax_result=True, result_type=TaskItem
    )
    assert result.data["t"].result == TaskItem(Task(id=1, title="Typed", responsibleId=7))
    assert result.data["t"].key == "t"


@pytest.mark.parametrize("request_id", ["r", "r" * 255])
def test_request_id_of_1_to_255_characters_is_sent(
    portal: FakePortal, client: B24Hook, request_id: str
) -> None:
    """request_id is sent as given at both ends of its range."""
    result = BatchV3(client).make([("tasks.task.list", {})], request_id=request_id)
    assert result.request_id == request_id
    assert portal.requests[0].query["bx24_request_id"] == request_id


def test_request_id_of_256_characters_is_refused(portal: FakePortal, client: B24Hook) -> None:
    """A request_id longer than 255 characters raises SdkError saying the range."""
    with pytest.raises(SdkError) as info:
        BatchV3(client).make([("tasks.task.list", {})], request_id="r" * 256)
    assert str(info.value) == (
        "request_id must be 1 to 255 printable characters; leave it None for a generated one"
    )
    assert portal.requests == []


@pytest.mark.parametrize("key", ["k", "k" * 255, "~", "! ~"])
def test_idempotency_key_at_its_limits_is_sent(
    portal: FakePortal, client: B24Hook, key: str
) -> None:
    """Keys of 1 and 255 characters, and of the printable ASCII range's ends, are sent."""
    assert BatchV3(client).make([("tasks.task.list", {})], idempotency_key=key).is_success
    assert portal.requests[0].headers["Idempotency-Key"] == key


@pytest.mark.parametrize(
    ("key", "length"), [("", 0), ("k" * 256, 256), ("\x1f", 1), ("\x7f", 1), ("é", 1)]
)
def test_idempotency_key_outside_its_limits_is_refused(
    portal: FakePortal, client: B24Hook, key: str, length: int
) -> None:
    """An empty, too long or non-printable-ASCII key raises SdkError naming its length."""
    with pytest.raises(SdkError) as info:
        BatchV3(client).make([("tasks.task.list", {})], idempotency_key=key)
    assert str(info.value) == (
        f"idempotency_key must be 1 to 255 printable ASCII characters (got {length} "
        f"characters); pass True to have one generated"
    )
    assert portal.requests == []


@pytest.mark.parametrize("key", [" ", " k", "k "])
def test_idempotency_key_with_an_outer_space_is_refused(
    portal: FakePortal, client: B24Hook, key: str
) -> None:
    """A key starting or ending with a space (no HTTP header carries it) fails before sending."""
    with pytest.raises(SdkError) as info:
        BatchV3(client).make([("tasks.task.list", {})], idempotency_key=key)
    assert str(info.value) == (
        f"idempotency_key {key!r} starts or ends with a space, which an HTTP header cannot "
        f"carry; remove it, or pass True to have one generated"
    )
    assert portal.requests == []


def test_a_result_that_does_not_fit_keeps_the_untyped_batch(
    portal: FakePortal, client: B24Hook
) -> None:
    """The DecodeError says the batch ran, in full; error.result is the whole untyped result."""
    portal.register("custom.badtask", lambda q: {"item": {"id": "nope"}})
    with pytest.raises(DecodeError) as info:
        BatchV3(client).make(
            {"made": ("tasks.task.add", {"fields": {"title": "x"}}), "bad": ("custom.badtask",)},
            result_type=TaskItem,
            request_id="r-7",
        )
    error = info.value
    assert str(error).startswith("the result of command 'bad' (custom.badtask)")
    assert str(error).endswith("; the batch was executed: its untyped results are on error.result")
    assert (error.attempts, error.maybe_executed, error.request_id) == (1, ("made", "bad"), "r-7")
    kept = error.result
    assert kept is not None
    assert (kept.request_id, kept.attempts, kept.waited) == ("r-7", 1, 0.0)
    assert kept.data["bad"] == {"item": {"id": "nope"}}


def test_a_batch_refused_before_running_marks_no_write(portal: FakePortal, client: B24Hook) -> None:
    """422 for a reused Idempotency-Key: nothing ran, so no write is marked and none is named."""
    writes = [("tasks.task.add", {"fields": {"title": t}}) for t in ("a", "b")]
    assert BatchV3(client).make(writes, idempotency_key="k-1").is_success
    result = BatchV3(client).make([*writes, writes[0]], idempotency_key="k-1")
    (error,) = result.errors
    assert (error.status, error.maybe_executed) == (422, ())
    assert "may have run" not in str(error)
    assert len(portal.tasks) == 2


def test_a_returned_error_result_reports_its_wait(portal: FakePortal, client: B24Hook) -> None:
    """A batch whose error envelope is returned still says it waited 0.0 s, not None."""
    result = BatchV3(client).make([("tasks.task.get", {"id": 404})])
    assert (result.is_success, result.attempts, result.waited) == (False, 1, 0.0)


_FACES = [
    "BatchV3",
    "BatchV2",
    "BatchByChunkV3",
    "BatchByChunkV2",
    "CallListV3",
    "CallListV2",
    "FetchListV3",
    "FetchListV2",
]


@pytest.mark.parametrize("face", _FACES)
def test_a_webhook_url_instead_of_a_client_is_refused_with_the_fix(face: str) -> None:
    """Every face refuses a URL str at construction, names the fix, and never echoes the secret."""
    url = f"https://example.bitrix24.com/rest/1/{SECRET}/"
    with pytest.raises(SdkTypeError) as info:
        getattr(b24batch, face)(url)
    assert str(info.value) == (
        f"{face} takes a client, not a str; for a webhook URL make one first: "
        f"{face}(B24Hook.from_webhook_url(url))"
    )
    assert isinstance(info.value, TypeError)
    assert SECRET not in repr(info.value)


@pytest.mark.parametrize("face", _FACES)
def test_a_non_client_object_is_refused_at_construction(face: str) -> None:
    """Any object without a client's members (here a dict) is refused with what to pass."""
    with pytest.raises(SdkTypeError) as info:
        getattr(b24batch, face)({"url": "x"})
    assert str(info.value) == (
        f"{face} takes a client, not a dict; pass B24Hook.from_webhook_url(url) or a B24OAuth"
    )


@pytest.mark.parametrize(
    ("face", "entry"),
    [
        pytest.param("BatchV3", "make", id="BatchV3.make"),
        pytest.param("BatchV2", "make", id="BatchV2.make"),
        pytest.param("BatchByChunkV3", "make", id="BatchByChunkV3.make"),
        pytest.param("BatchByChunkV3", "iter", id="BatchByChunkV3.iter"),
        pytest.param("BatchByChunkV2", "make", id="BatchByChunkV2.make"),
        pytest.param("BatchByChunkV2", "iter", id="BatchByChunkV2.iter"),
    ],
)
def test_a_single_row_as_calls_is_named_as_such(
    portal: FakePortal, client: B24Hook, face: str, entry: str
) -> None:
    """A bare (method, params) tuple as calls says it is one row and to put it in a list."""
    with pytest.raises(SdkTypeError) as info:
        getattr(getattr(b24batch, face)(client), entry)(("tasks.task.get", {"id": 1}))
    assert str(info.value) == (
        "calls is a single row, ('tasks.task.get', ...), not a list of rows; put it in a list: "
        "[('tasks.task.get', {...})]"
    )
    assert portal.requests == []
