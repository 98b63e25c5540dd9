"""BatchV2: the classic batch end to end over real HTTP against the FakePortal's classic route."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qs

import attrs
import pytest

from b24batch import (
    AjaxResult,
    AuthError,
    B24Hook,
    B24OAuth,
    BatchByChunkV2,
    BatchV2,
    Command,
    ErrorKind,
    RetryPolicy,
    SdkError,
    SdkTypeError,
    TransportError,
)
from b24batch.testing import FakePortal, Fault
from tests.conftest import SECRET


@attrs.frozen
class Deal:
    ID: str
    TITLE: str


def form(portal: FakePortal) -> dict[str, list[str]]:
    """The last request's form, decoded once (cmd values are METHOD?QUERY strings)."""
    return parse_qs(portal.requests[-1].raw.decode("ascii"))


def test_named_calls_are_keyed_by_name_on_the_wire_and_in_data(
    portal: FakePortal, client: B24Hook
) -> None:
    """A named call goes as cmd[NAME] to /rest/USER/SECRET/batch; data is keyed by the name."""
    deal = portal.add_deal(TITLE="Big", OPPORTUNITY="100.00")
    result = BatchV2(client).make(
        {"deal": ("crm.deal.get", {"id": deal}), "me": ("user.current",)}, request_id="v2-1"
    )
    assert result.is_success
    assert result.data["deal"]["TITLE"] == "Big"
    assert result.data["me"]["ID"] == "1"
    request = portal.requests[-1]
    assert request.path == f"/rest/1/{SECRET}/batch"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.query["bx24_request_id"] == "v2-1"
    assert form(portal) == {
        "halt": ["1"],
        "cmd[deal]": [f"crm.deal.get?id={deal}"],
        "cmd[me]": ["user.current"],
    }


def test_list_calls_use_as_or_the_position(portal: FakePortal, client: B24Hook) -> None:
    """A row's 'as' is its wire key, else its position; data stays a list in call order."""
    portal.add_deal(TITLE="A")
    calls: list[Any] = [
        ("crm.deal.get", {"id": 1}),
        {"method": "crm.deal.list", "params": {"select": ["ID"]}, "as": "all"},
        Command("user.current"),
    ]
    result = BatchV2(client).make(calls, halt_on_error=False)
    assert [type(entry) for entry in result.data] == [dict, list, dict]
    assert result.data[1] == [{"ID": "1"}]
    assert sorted(key for key in form(portal) if key.startswith("cmd")) == [
        "cmd[0]",
        "cmd[2]",
        "cmd[all]",
    ]
    assert form(portal)["halt"] == ["0"]


def test_params_arrive_as_php_reads_them(portal: FakePortal, client: B24Hook) -> None:
    """Nested fields, lists and classic filter prefixes survive the form encoding."""
    portal.register("test.echo", lambda params: params)
    params = {
        "fields": {"TITLE": "a&b=c?d/e %f#[x]"},
        "select": ["ID", "TITLE"],
        "filter": {">ID": 10},
    }
    result = BatchV2(client).make([("test.echo", params), ("test.echo", {"n": 1.5, "none": None})])
    assert result.data == [
        {
            "fields": {"TITLE": "a&b=c?d/e %f#[x]"},
            "select": ["ID", "TITLE"],
            "filter": {">ID": "10"},
        },
        {"n": "1.5", "none": ""},
    ]


def test_result_references_resolve_within_the_batch(portal: FakePortal, client: B24Hook) -> None:
    """$result[KEY] in a later command is the earlier command's result."""
    result = BatchV2(client).make(
        {
            "new": ("crm.deal.add", {"fields": {"TITLE": "Made"}}),
            "got": ("crm.deal.get", {"id": "$result[new]"}),
        }
    )
    assert result.data["got"]["TITLE"] == "Made"
    assert result.data["got"]["ID"] == str(result.data["new"])


def test_a_reference_to_no_earlier_command_is_refused(portal: FakePortal, client: B24Hook) -> None:
    """A $result[KEY] naming no earlier command fails before anything is sent."""
    with pytest.raises(SdkError, match=r"calls\['got'\] references \$result\[later\]"):
        BatchV2(client).make(
            {"got": ("crm.deal.get", {"id": "$result[later]"}), "later": ("user.current",)}
        )
    assert portal.requests == []


def test_halt_stops_at_the_failing_command(portal: FakePortal, client: B24Hook) -> None:
    """halt=1: results before the failure, its error keyed right, the rest not executed."""
    calls = [
        ("crm.deal.add", {"fields": {"TITLE": "one"}}),
        ("crm.deal.get", {"id": 999}),
        ("crm.deal.add", {"fields": {"TITLE": "never"}}),
    ]
    result = BatchV2(client).make(calls)
    assert not result.is_success
    assert result.data == [1, None, None]
    (error,) = result.errors
    assert (error.key, error.message, str(error)) == (1, "Not found", "command 1: Not found")
    assert result.errors_by_key == {1: error}
    assert result.not_executed == (2,)
    assert result.maybe_executed == ()  # the answer says what ran
    assert [deal["TITLE"] for deal in portal.deals.values()] == ["one"]


def test_without_halt_every_command_runs(portal: FakePortal, client: B24Hook) -> None:
    """halt=0: the failing command's error, every other command's result."""
    calls = {
        "a": ("crm.deal.add", {"fields": {"TITLE": "one"}}),
        "bad": ("crm.deal.get", {"id": 999}),
        "b": ("crm.deal.add", {"fields": {"TITLE": "two"}}),
    }
    result = BatchV2(client).make(calls, halt_on_error=False)
    assert result.data == {"a": 1, "b": 2}
    assert list(result.errors_by_key) == ["bad"]
    assert result.not_executed == ()
    assert [deal["TITLE"] for deal in portal.deals.values()] == ["one", "two"]


def test_ajax_results_carry_total_next_and_own_time(portal: FakePortal, client: B24Hook) -> None:
    """return_ajax_result=True: each executed command's own time, total and next."""
    for n in range(60):
        portal.add_deal(TITLE=f"D{n}")
    result = BatchV2(client).make(
        {
            "page": ("crm.deal.list", {"select": ["ID"]}),
            "fast": ("crm.deal.list", {"select": ["ID"], "start": -1}),
            "bad": ("crm.deal.get", {"id": 999}),
            "skipped": ("user.current",),
        },
        return_ajax_result=True,
    )
    page, fast, bad = result.data["page"], result.data["fast"], result.data["bad"]
    assert isinstance(page, AjaxResult)
    assert (len(page.result), page.total, page.next) == (50, 60, 50)
    assert (len(fast.result), fast.total, fast.next) == (50, None, None)
    assert page.time is not None
    assert page.time.start is not None
    assert (bad.error, bad.result) == (result.errors[0], None)
    assert "skipped" not in result.data
    assert result.not_executed == ("skipped",)


def test_typed_results(portal: FakePortal, client: B24Hook) -> None:
    """result_type structures each successful result; failures stay out of a dict."""
    portal.add_deal(TITLE="Typed")
    result = BatchV2(client).make(
        {"one": ("crm.deal.get", {"id": 1}), "gone": ("crm.deal.get", {"id": 2})},
        result_type=Deal,
        halt_on_error=False,
    )
    assert result.data == {"one": Deal(ID="1", TITLE="Typed")}


@pytest.mark.parametrize(
    ("calls", "options", "error", "message"),
    [
        pytest.param(
            [("crm.deal.update", {"id": 1, "fields": {"CLOSED": True}})],
            {},
            SdkTypeError,
            "send 'Y'/'N' or 1/0",
            id="boolean",
        ),
        pytest.param(
            [{"method": "crm.deal.get", "params": {"id": 1}, "parallel": True}],
            {},
            SdkError,
            "sets 'parallel', which the classic batch does not have",
            id="parallel",
        ),
        pytest.param(
            [("crm.deal.get", {"id": 1})],
            {"idempotency_key": "k"},
            SdkError,
            "the classic batch endpoint has no Idempotency-Key",
            id="idempotency-key",
        ),
        pytest.param([("crm.deal.get", {"filter": {}})], {}, SdkError, "empty", id="empty-dict"),
        pytest.param(
            {"deal[1]": ("crm.deal.get", {"id": 1})},
            {},
            SdkError,
            "so it cannot contain '[', ']' or NUL",
            id="bracket-key",
        ),
        pytest.param(
            [("crm.deal.get",)] * 51, {}, SdkError, "one classic batch takes at most 50", id="51"
        ),
        pytest.param(
            [("user.current",), {"method": "crm.deal.get", "as": "12"}],
            {},
            SdkError,
            "calls[1]: its 'as' '12' is a number, which in a list of calls names the command at "
            "that position ($result[12])",
            id="as-number-in-a-list",
        ),
        pytest.param({-1: ("crm.deal.get",)}, {}, SdkError, "is 0 or more", id="negative-int"),
        pytest.param({True: ("crm.deal.get",)}, {}, SdkTypeError, "key True", id="bool-name"),
    ],
)
def test_misuse_fails_before_any_request(
    portal: FakePortal,
    client: B24Hook,
    calls: Any,
    options: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    """What a form cannot carry, and options the classic batch lacks, are refused up front."""
    with pytest.raises(error, match=re.escape(message)):
        BatchV2(client).make(calls, **options)
    assert portal.requests == []


def test_a_limit_refusal_inside_the_answer_is_sent_again_and_merged(portal: FakePortal) -> None:
    """A command refused by QUERY_LIMIT_EXCEEDED in result_error never ran: it is re-sent."""
    calls_seen: list[str] = []

    def flaky(params: dict[str, Any]) -> Any:
        calls_seen.append(params["n"])
        if len(calls_seen) == 2:
            raise FakePortal.CommandError("Too many requests", code="QUERY_LIMIT_EXCEEDED")
        return {"n": params["n"]}

    portal.register("app.item.add", flaky)
    policy = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)
    with B24Hook.from_webhook_url(portal.webhook_url, retry=policy, rate_limit=None) as hook:
        result = BatchV2(hook).make([("app.item.add", {"n": n}) for n in range(3)])
    assert result.is_success
    assert result.data == [{"n": "0"}, {"n": "1"}, {"n": "2"}]
    assert calls_seen == ["0", "1", "1", "2"]  # the refused one and the one halt skipped
    assert result.attempts == 2
    assert form(portal) == {
        "halt": ["1"],
        "cmd[1]": ["app.item.add?n=1"],
        "cmd[2]": ["app.item.add?n=2"],
    }


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_an_operating_limit_inside_the_answer_waits_for_the_reset() -> None:
    """A command refused by its method's operating time is re-sent after the reset."""
    clock = _Clock()
    with FakePortal(
        operating_limit=0.025,
        command_cost=0.01,
        operating_charge="method",
        clock=clock,
        wall_clock=clock,
    ) as portal:
        policy = RetryPolicy(max_attempts=3, max_wait=3600.0)
        with B24Hook.from_webhook_url(
            portal.webhook_url,
            retry=policy,
            rate_limit=None,
            clock=clock,
            wall_clock=clock,
            sleep=clock.sleep,
        ) as hook:
            calls = [("crm.deal.add", {"fields": {"TITLE": f"d{n}"}}) for n in range(4)]
            result = BatchV2(hook).make(calls, halt_on_error=False)
        assert result.is_success
        assert result.data == [1, 2, 3, 4]
        assert result.attempts == 2
        assert 0 < result.waited <= 600.0
        assert len(portal.deals) == 4


def test_oauth_token_travels_in_the_body_and_nowhere_else(
    portal: FakePortal, caplog: pytest.LogCaptureFixture
) -> None:
    """B24OAuth posts to /rest/batch with auth=TOKEN in the form; no repr or log shows it."""
    token = portal.access_token
    caplog.set_level(logging.DEBUG, logger="b24batch")
    with B24OAuth(portal.oauth_endpoint, token, retry=None, rate_limit=None) as app:
        result = BatchV2(app).make([("user.current",)])
        portal.inject(Fault.drop_after())
        with pytest.raises(TransportError) as info:
            BatchV2(app).make([("crm.deal.add", {"fields": {"TITLE": "x"}})])
    assert result.data[0]["ID"] == "1"
    request = portal.requests[0]
    assert request.path == "/rest/batch"
    assert "Authorization" not in request.headers
    assert parse_qs(request.raw.decode("ascii"))["auth"] == [token]
    assert info.value.maybe_executed == (0,)
    shown = [repr(result), repr(request), str(info.value), repr(info.value), caplog.text]
    assert all(token not in text for text in shown)


def test_an_expired_token_is_refreshed_for_the_classic_route(portal: FakePortal) -> None:
    """401 expired_token on the classic route: one refresh, and the re-send carries the new one."""
    portal.expire_token()
    with B24OAuth(
        portal.oauth_endpoint, portal.access_token, refresh=portal.refresh_token, rate_limit=None
    ) as app:
        result = BatchV2(app).make([("user.current",)])
    assert (result.is_success, result.attempts) == (True, 2)
    assert parse_qs(portal.requests[-1].raw.decode("ascii"))["auth"] == [portal.access_token]


def test_a_wrong_secret_raises(portal: FakePortal) -> None:
    """A 401 is raised as for REST 3.0, and nothing of the batch ran."""
    url = portal.webhook_url.replace(portal.secret, "wrong")
    with B24Hook.from_webhook_url(url, retry=None) as hook, pytest.raises(AuthError) as info:
        BatchV2(hook).make([("crm.deal.add", {"fields": {"TITLE": "x"}})])
    assert (info.value.maybe_executed, portal.deals) == ((), {})
    assert SECRET not in str(info.value)


def test_actions_path_mirrors_js_sdk(portal: FakePortal, client: B24Hook) -> None:
    """client.actions.v2.batch.make is BatchV2.make."""
    result = client.actions.v2.batch.make([("user.current",)])
    assert result.data[0]["ID"] == "1"
    assert client.actions.v2.batch_by_chunk.make([("user.current",)]).data[0]["ID"] == "1"


# ---------------------------------------------------------------------------------------------
# Commands named by number (record ids), and names REST 3.0 would refuse


def test_commands_keyed_by_record_id_are_sent_and_answered_under_it(
    portal: FakePortal, client: B24Hook
) -> None:
    """int and numeric-str names go as cmd[ID]; data is keyed as the caller passed them."""
    first = portal.add_deal(TITLE="First")
    second = portal.add_deal(TITLE="Second")
    result = BatchV2(client).make(
        {
            35943: ("crm.deal.get", {"id": first}),
            "35944": ("crm.deal.get", {"id": second}),
            "copy": ("crm.deal.get", {"id": "$result[35943][ID]"}),
        }
    )
    assert result.is_success
    assert result.data[35943]["TITLE"] == "First"
    assert result.data["35944"]["TITLE"] == "Second"
    assert result.data["copy"]["TITLE"] == "First"
    assert list(result.data) == [35943, "35944", "copy"]
    assert result.keys == (35943, "35944", "copy")
    assert sorted(key for key in form(portal) if key.startswith("cmd")) == [
        "cmd[35943]",
        "cmd[35944]",
        "cmd[copy]",
    ]


def test_numeric_names_key_errors_and_skipped_commands_as_passed(
    portal: FakePortal, client: B24Hook
) -> None:
    """An int-named command's error and a skipped one keep the int key the caller used."""
    deal = portal.add_deal(TITLE="Here")
    result = BatchV2(client).make(
        {deal: ("crm.deal.get", {"id": deal}), 999: ("crm.deal.get", {"id": 999}), 7: ("x.y",)}
    )
    assert list(result.data) == [deal]
    assert result.data[deal]["TITLE"] == "Here"
    (error,) = result.errors
    assert (error.key, error.message) == (999, "Not found")
    assert result.errors_by_key == {999: error}
    assert result.not_executed == (7,)


def test_positions_as_names_are_answered_as_php_lists_and_objects(
    portal: FakePortal, client: B24Hook
) -> None:
    """Names 0 and 1: PHP answers result as a list and result_error as an object; both read."""
    deal = portal.add_deal(TITLE="Zero")
    result = BatchV2(client).make(
        {0: ("crm.deal.get", {"id": deal}), 1: ("crm.deal.get", {"id": 999})},
        halt_on_error=False,
    )
    assert list(result.data) == [0]
    assert result.data[0]["TITLE"] == "Zero"
    assert [(error.key, error.message) for error in result.errors] == [(1, "Not found")]


def test_names_rest3_refuses_are_classic_names(portal: FakePortal, client: B24Hook) -> None:
    """'a.b c' and '007' are fine classic keys: sent as they are, referenced, keyed back."""
    deal = portal.add_deal(TITLE="Kept")
    result = BatchV2(client).make(
        {
            "a.b c": ("crm.deal.get", {"id": deal}),
            "007": ("crm.deal.get", {"id": "$result[a.b c][ID]"}),
        }
    )
    assert result.data["a.b c"]["TITLE"] == "Kept"
    assert result.data["007"]["ID"] == str(deal)
    assert sorted(key for key in form(portal) if key.startswith("cmd")) == [
        "cmd[007]",
        "cmd[a.b c]",
    ]


def test_two_names_alike_on_the_wire_are_refused_naming_both(
    portal: FakePortal, client: B24Hook
) -> None:
    """1 and '1' would both be cmd[1]: refused before anything is sent, naming both."""
    with pytest.raises(SdkError) as info:
        BatchV2(client).make({1: ("crm.deal.get", {"id": 1}), "1": ("crm.deal.get", {"id": 2})})
    assert "calls['1']" in str(info.value)
    assert "calls[1]" in str(info.value)
    assert portal.requests == []


def test_numeric_names_in_ajax_results(portal: FakePortal, client: B24Hook) -> None:
    """return_ajax_result=True keys each AjaxResult by the int name, and the result knows it."""
    deal = portal.add_deal(TITLE="A")
    result = BatchV2(client).make({deal: ("crm.deal.get", {"id": deal})}, return_ajax_result=True)
    assert result.data[deal].key == deal
    assert result.data[deal].result["TITLE"] == "A"


# ---------------------------------------------------------------------------------------------
# Errors with an empty code


def test_an_empty_code_inside_the_batch_is_the_callers_input(
    portal: FakePortal, client: B24Hook
) -> None:
    """{"error": "", "error_description": "ID is not defined or invalid."}: kind INPUT."""
    result = BatchV2(client).make({"bad": ("crm.deal.get", {"id": "abc"})})
    (error,) = result.errors
    assert (error.key, error.code, error.message) == ("bad", "", "ID is not defined or invalid.")
    assert error.kind is ErrorKind.INPUT


def test_an_empty_code_not_found_inside_the_batch_is_not_found(
    portal: FakePortal, client: B24Hook
) -> None:
    """A command answered {"error": "", "error_description": "Not found"} is NOT_FOUND."""
    result = BatchV2(client).make({"gone": ("crm.deal.get", {"id": 999})})
    assert [(error.key, error.kind) for error in result.errors] == [("gone", ErrorKind.NOT_FOUND)]


def test_a_whole_request_400_with_an_empty_code_is_returned_not_found(
    portal: FakePortal, client: B24Hook
) -> None:
    """HTTP 400 {"error": "", "error_description": "Not found"}: a returned NOT_FOUND error."""
    portal.inject(Fault.response(400, {"error": "", "error_description": "Not found"}))
    result = BatchV2(client).make({"x": ("crm.deal.get", {"id": 1})})
    assert not result.is_success
    assert (result.status, result.data) == (400, {})
    (error,) = result.errors
    assert (error.code, error.message, error.status) == ("", "Not found", 400)
    assert error.kind is ErrorKind.NOT_FOUND
    assert len(portal.requests) == 1


# ---------------------------------------------------------------------------------------------
# More than max_input_vars form variables in one command


def test_a_command_past_1000_form_variables_logs_one_warning(
    portal: FakePortal, client: B24Hook, caplog: pytest.LogCaptureFixture
) -> None:
    """1001 ids in one filter: sent, with one WARNING naming the command, count and the fix."""
    big = {"filter": {"@ID": list(range(1001))}, "select": ["ID"]}
    fits = {"filter": {"@ID": list(range(999))}, "select": ["ID"]}
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        result = BatchV2(client).make(
            {"big": ("crm.deal.list", big), "fits": ("crm.deal.list", fits)}
        )
    assert result.is_success
    warnings = [r for r in caplog.records if r.name == "b24batch" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert message.startswith("calls['big'] (crm.deal.list) has 1002 form variables;")
    assert "keeps the first 1000 (max_input_vars)" in message
    assert "split the filter (or list) across commands" in message
    assert len(portal.requests) == 1


def test_chunks_warn_once_per_command_past_1000_form_variables(
    portal: FakePortal, client: B24Hook, caplog: pytest.LogCaptureFixture
) -> None:
    """In a chunked call each oversized command is named once, by its global key."""
    calls = [("crm.deal.list", {"filter": {"@ID": list(range(n))}}) for n in (5, 1200, 3, 1500)]
    with caplog.at_level(logging.WARNING, logger="b24batch"):
        BatchByChunkV2(client).make(calls, chunk_size=2)
    named = [r.getMessage().split(" has ")[0] for r in caplog.records if r.name == "b24batch"]
    assert named == ["calls[1] (crm.deal.list)", "calls[3] (crm.deal.list)"]
