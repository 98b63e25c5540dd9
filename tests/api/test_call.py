"""CallV3.make and CallV2.make end to end over real HTTP against the FakePortal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import attrs
import pytest

from b24batch import (
    AjaxError,
    AjaxResult,
    AuthError,
    B24Hook,
    B24OAuth,
    BatchV3,
    CallV2,
    CallV3,
    DecodeError,
    ErrorKind,
    RateLimit,
    RetryPolicy,
    SdkError,
    SdkTypeError,
    TransportError,
)
from b24batch._limits.limiter import OPERATING_BASKET
from b24batch.testing import FakePortal, Fault
from tests.conftest import SECRET
from tests.support.clocks import FakeTime


@attrs.frozen
class Task:
    id: int
    title: str


@attrs.frozen
class TaskItem:
    item: Task


@attrs.frozen
class Deal:
    id: str = attrs.field(alias="ID")
    title: str = attrs.field(alias="TITLE")


@pytest.fixture
def retrying(portal: FakePortal) -> Iterator[B24Hook]:
    """A client that repeats what is safe, three sends in all, sleeping in fake time."""
    clock = FakeTime()
    with B24Hook.from_webhook_url(
        portal.webhook_url,
        timeout=(2.0, 5.0),
        retry=RetryPolicy(max_attempts=3, base_delay=0.5, max_wait=60.0),
        rate_limit=None,
        clock=clock.clock,
        wall_clock=clock.wall_clock,
        sleep=clock.sleep,
    ) as hook:
        yield hook


def _internal_error() -> Fault:
    return Fault.response(
        500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}
    )


# -- success ---------------------------------------------------------------------------------


def test_v3_call_goes_to_the_methods_own_url_as_json(portal: FakePortal, client: B24Hook) -> None:
    """A REST 3.0 call posts its params as JSON to /rest/api/USER/SECRET/METHOD, not to batch."""
    task_id = portal.add_task(title="Write docs")
    answer = CallV3(client).make("tasks.task.get", {"id": task_id, "select": ["id", "title"]})
    (sent,) = portal.requests
    assert sent.path == f"/rest/api/{portal.user_id}/{SECRET}/tasks.task.get"
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.raw) == {"id": task_id, "select": ["id", "title"]}
    assert answer.result == {"item": {"id": task_id, "title": "Write docs"}}
    assert (answer.is_success, answer.status, answer.method, answer.key) == (
        True,
        200,
        "tasks.task.get",
        0,
    )
    assert answer.request_id == sent.query["bx24_request_id"]
    assert answer.time is not None
    assert answer.time.start is not None
    assert (answer.total, answer.next) == (None, None)


def test_v3_call_without_params_sends_an_empty_object(portal: FakePortal, client: B24Hook) -> None:
    """No params is the body ``{}``."""
    portal.add_tasks(3)
    answer = CallV3(client).make("tasks.task.list")
    assert portal.requests[0].raw == b"{}"
    assert [item["id"] for item in answer.result["items"]] == [1, 2, 3]


def test_the_request_id_given_is_sent_and_kept(portal: FakePortal, client: B24Hook) -> None:
    """``request_id`` travels as bx24_request_id and comes back on the result."""
    answer = CallV3(client).make("tasks.task.list", {}, request_id="trace-7")
    assert portal.requests[0].query["bx24_request_id"] == "trace-7"
    assert answer.request_id == "trace-7"


def test_typed_results_on_both_protocols(portal: FakePortal, client: B24Hook) -> None:
    """``result_type`` structures the whole result, REST 3.0 or classic."""
    task_id = portal.add_task(title="Typed")
    deal_id = portal.add_deal(TITLE="Big one")
    task = CallV3(client).make("tasks.task.get", {"id": task_id}, result_type=TaskItem)
    deal = CallV2(client).make("crm.deal.get", {"id": deal_id}, result_type=Deal)
    assert task.result == TaskItem(Task(id=task_id, title="Typed"))
    assert deal.result == Deal(ID=str(deal_id), TITLE="Big one")


def test_a_result_that_does_not_fit_raises_with_the_untyped_answer(
    portal: FakePortal, client: B24Hook
) -> None:
    """A result not fitting ``result_type`` is a DecodeError that keeps what the portal said."""
    deal_id = portal.add_deal(TITLE="Big one")
    with pytest.raises(DecodeError, match=r"\$\.result\[0\]") as raised:
        CallV2(client).make("crm.deal.get", {"id": deal_id}, result_type=TaskItem)
    assert raised.value.result is not None
    assert raised.value.result.data[0]["TITLE"] == "Big one"


def test_classic_list_call_has_total_and_next(portal: FakePortal, client: B24Hook) -> None:
    """A classic list method's answer carries total and next; start= reads the next page."""
    portal.add_deals(70)
    first = CallV2(client).make("crm.deal.list", {"select": ["ID"], "order": {"ID": "ASC"}})
    second = CallV2(client).make("crm.deal.list", {"select": ["ID"], "start": first.next})
    assert (len(first.result), first.total, first.next) == (50, 70, 50)
    assert (len(second.result), second.total, second.next) == (20, 70, None)
    assert second.result[0] == {"ID": "51"}


def test_classic_call_sends_the_params_as_a_php_form(portal: FakePortal, client: B24Hook) -> None:
    """Classic params travel as the batch's PHP form, to /rest/USER/SECRET/METHOD."""
    answer = CallV2(client).make("crm.deal.add", {"fields": {"TITLE": "A & B", "OPPORTUNITY": 5}})
    (sent,) = portal.requests
    assert sent.path == f"/rest/{portal.user_id}/{SECRET}/crm.deal.add"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(sent.raw.decode()) == {"fields[TITLE]": ["A & B"], "fields[OPPORTUNITY]": ["5"]}
    assert portal.deals[answer.result]["TITLE"] == "A & B"


def test_the_js_sdk_paths_reach_the_same_calls(portal: FakePortal, client: B24Hook) -> None:
    """``b24.actions.v3.call`` and ``b24.actions.v2.call`` are CallV3 and CallV2."""
    task_id = portal.add_task(title="Via actions")
    deal_id = portal.add_deal(TITLE="Via actions")
    task = client.actions.v3.call.make("tasks.task.get", {"id": task_id})
    deal = client.actions.v2.call.make("crm.deal.get", {"id": deal_id})
    assert isinstance(client.actions.v3.call, CallV3)
    assert isinstance(client.actions.v2.call, CallV2)
    assert (task.result["item"]["title"], deal.result["TITLE"]) == ("Via actions", "Via actions")


def test_oauth_calls_carry_the_token_as_each_protocol_wants(portal: FakePortal) -> None:
    """REST 3.0: Bearer to /rest/api/METHOD; classic: ``auth`` in the body of /rest/METHOD."""
    task_id = portal.add_task(title="OAuth")
    with B24OAuth(portal.oauth_endpoint, portal.access_token, rate_limit=None) as oauth:
        task = CallV3(oauth).make("tasks.task.get", {"id": task_id})
        me = CallV2(oauth).make("user.current")
    v3, v2 = portal.requests
    assert (v3.path, v3.headers["Authorization"]) == (
        "/rest/api/tasks.task.get",
        f"Bearer {portal.access_token}",
    )
    assert (v2.path, parse_qs(v2.raw.decode())) == (
        "/rest/user.current",
        {"auth": [portal.access_token]},
    )
    assert "Authorization" not in v2.headers
    assert (task.result["item"]["id"], me.is_success) == (task_id, True)


# -- errors ----------------------------------------------------------------------------------


def test_an_error_envelope_is_returned_on_the_result(portal: FakePortal, client: B24Hook) -> None:
    """A 4xx envelope comes back as ``error``; nothing may have run, so nothing is in doubt."""
    answer = CallV3(client).make("tasks.task.update", {"id": 999, "fields": {"title": "x"}})
    assert not answer.is_success
    assert answer.result is None
    assert answer.error is not None
    assert (answer.error.kind, answer.error.status) == (ErrorKind.NOT_FOUND, 400)
    assert answer.error.maybe_executed == ()
    assert answer.error.request_id == answer.request_id
    assert answer.status == 400


def test_a_classic_error_is_returned_with_its_description(
    portal: FakePortal, client: B24Hook
) -> None:
    """A classic error envelope (an empty code, as CRM answers) is the result's error."""
    answer = CallV2(client).make("crm.deal.get", {"id": 404})
    assert answer.error is not None
    assert (answer.error.code, answer.error.message, answer.error.status) == ("", "Not found", 400)


@pytest.mark.parametrize("face", [CallV3, CallV2], ids=["v3", "v2"])
def test_raise_errors_raises_the_error_envelope(
    portal: FakePortal, client: B24Hook, face: type[CallV3 | CallV2]
) -> None:
    """``raise_errors=True`` raises what would be returned; False returns it again."""
    method = "tasks.task.get" if face is CallV3 else "crm.deal.get"
    with pytest.raises(AjaxError) as raised:
        face(client).make(method, {"id": 404}, raise_errors=True)
    assert raised.value.status == 400
    returned = face(client).make(method, {"id": 404}, raise_errors=False)
    assert returned.error is not None
    assert returned.error.code == raised.value.code


def test_a_crm_method_sent_to_callv3_names_callv2(portal: FakePortal, client: B24Hook) -> None:
    """Method not found in REST 3.0 for a classic method says to use CallV2."""
    answer = CallV3(client).make("crm.deal.get", {"id": 1})
    assert answer.error is not None
    assert answer.error.hint == (
        "crm.deal.get is not a REST 3.0 method: CRM, users, disk and most of the API are "
        "classic, so call it with CallV2"
    )
    assert "call it with CallV2" in str(answer.error)


def test_a_rest3_only_method_sent_to_callv2_names_callv3(
    portal: FakePortal, client: B24Hook
) -> None:
    """Method not found in classic for a REST 3.0-only method says to use CallV3."""
    answer = CallV2(client).make("note.get", {"id": 1})
    assert answer.error is not None
    assert answer.error.hint == "note.get is a REST 3.0 method: call it with CallV3"


def test_a_wrong_secret_raises_auth_error(portal: FakePortal) -> None:
    """401 is raised, as for a batch."""
    url = portal.webhook_url.replace(SECRET, "wrongSecretValue99")
    with (
        B24Hook.from_webhook_url(url, retry=None, rate_limit=None) as hook,
        pytest.raises(AuthError),
    ):
        CallV3(hook).make("tasks.task.list", {})


# -- repeats ---------------------------------------------------------------------------------


def test_a_5xx_on_a_write_is_not_repeated_and_says_it_may_have_run(
    portal: FakePortal, retrying: B24Hook
) -> None:
    """A 500 leaves a write in doubt: raised at once, ``maybe_executed`` names it."""
    portal.inject(_internal_error())
    with pytest.raises(AjaxError) as raised:
        CallV3(retrying).make("tasks.task.add", {"fields": {"title": "Once"}})
    assert len(portal.requests) == 1
    assert raised.value.maybe_executed == (0,)
    assert raised.value.outcome_unknown
    assert "1 write may have run" in str(raised.value)


def test_a_hang_up_after_a_write_is_not_repeated(portal: FakePortal, retrying: B24Hook) -> None:
    """The portal ran the write and hung up: one request, one task, the error says so."""
    portal.inject(Fault.drop_after())
    with pytest.raises(TransportError) as raised:
        CallV2(retrying).make("crm.deal.add", {"fields": {"TITLE": "Once"}})
    assert len(portal.requests) == 1
    assert [deal["TITLE"] for deal in portal.deals.values()] == ["Once"]
    assert raised.value.maybe_executed == (0,)


def test_a_hang_up_on_a_read_is_repeated(portal: FakePortal, retrying: B24Hook) -> None:
    """A read is safe to repeat: the second send answers."""
    task_id = portal.add_task(title="Read twice")
    portal.inject(Fault.drop_after())
    answer = CallV3(retrying).make("tasks.task.get", {"id": task_id})
    assert len(portal.requests) == 2
    assert answer.result["item"]["title"] == "Read twice"


def test_a_rate_limit_refusal_of_a_write_is_repeated(portal: FakePortal, retrying: B24Hook) -> None:
    """503 QUERY_LIMIT_EXCEEDED is refused before running: even a write is sent again."""
    portal.inject(Fault.rate_limited())
    answer = CallV2(retrying).make("crm.deal.add", {"fields": {"TITLE": "After a wait"}})
    assert len(portal.requests) == 2
    assert [deal["TITLE"] for deal in portal.deals.values()] == ["After a wait"]
    assert answer.is_success


def test_the_idempotency_key_makes_a_write_safe_to_repeat(
    portal: FakePortal, retrying: B24Hook
) -> None:
    """With a key the lost answer is asked for again and replayed: one task, two requests."""
    portal.inject(Fault.drop_after())
    answer = CallV3(retrying).make(
        "tasks.task.add", {"fields": {"title": "Keyed"}}, idempotency_key="job-42"
    )
    assert [sent.headers.get("Idempotency-Key") for sent in portal.requests] == ["job-42"] * 2
    assert [task["title"] for task in portal.tasks.values()] == ["Keyed"]
    assert answer.result["item"]["title"] == "Keyed"


def test_a_generated_idempotency_key_is_sent(portal: FakePortal, client: B24Hook) -> None:
    """``idempotency_key=True`` sends a fresh key."""
    CallV3(client).make("tasks.task.add", {"fields": {"title": "K"}}, idempotency_key=True)
    key = portal.requests[0].headers.get("Idempotency-Key")
    assert key is not None
    assert len(key) == 32


def test_read_only_false_keeps_a_read_from_being_repeated(
    portal: FakePortal, retrying: B24Hook
) -> None:
    """``read_only=False`` marks a method the name rule calls a read as a write."""
    portal.inject(Fault.drop_after())
    with pytest.raises(TransportError):
        CallV3(retrying).make("tasks.task.list", {}, read_only=False)
    assert len(portal.requests) == 1


# -- bad input and secrets -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("face", "method", "params", "options", "error", "words"),
    [
        pytest.param(CallV3, "tasks.task.get", [1], {}, SdkTypeError, "params", id="params-list"),
        pytest.param(CallV3, 7, None, {}, SdkTypeError, "method of type int", id="method-int"),
        pytest.param(CallV3, "tasks/../x", None, {}, SdkError, "letters, digits", id="path"),
        pytest.param(CallV3, "a.b?c=1", None, {}, SdkError, "letters, digits", id="query"),
        pytest.param(
            CallV3, "tasks.task.get", {"id": {1, 2}}, {}, SdkTypeError, "params['id']", id="set"
        ),
        pytest.param(
            CallV2, "crm.deal.add", {"fields": {"OK": True}}, {}, SdkTypeError, "params", id="bool"
        ),
        pytest.param(
            CallV2, "crm.deal.get", {}, {"idempotency_key": "k"}, SdkError, "Idempotency", id="key"
        ),
        pytest.param(
            CallV3, "tasks.task.get", {}, {"raise_errors": "yes"}, SdkTypeError, "raise_errors",
            id="raise-errors",
        ),
        pytest.param(
            CallV3, "tasks.task.get", {}, {"read_only": 1}, SdkTypeError, "read_only", id="ro"
        ),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_sending(
    portal: FakePortal,
    client: B24Hook,
    face: type[CallV3 | CallV2],
    method: Any,
    params: Any,
    options: dict[str, Any],
    error: type[SdkError],
    words: str,
) -> None:
    """A wrong method, params or option raises naming it, and nothing is sent."""
    with pytest.raises(error) as raised:
        face(client).make(method, params, **options)
    assert words in str(raised.value)
    assert portal.requests == []


def test_params_are_named_as_the_argument_not_as_a_batch_row(client: B24Hook) -> None:
    """A bad value is named by its path in ``params``, with no ``calls[0]`` of a batch."""
    with pytest.raises(SdkError) as raised:
        CallV3(client).make("tasks.task.add", {"fields": {"deadline": float("nan")}})
    assert str(raised.value).startswith("params['fields']['deadline']")


def test_a_non_client_is_refused(portal: FakePortal) -> None:
    """A webhook URL passed as the client is refused, without echoing it."""
    with pytest.raises(SdkTypeError) as raised:
        CallV3(portal.webhook_url)  # type: ignore[arg-type]
    assert "B24Hook.from_webhook_url(url)" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_the_secret_is_in_no_result_or_error(portal: FakePortal, client: B24Hook) -> None:
    """An HTML page echoing the URL, an error envelope and a result show no secret."""
    portal.inject(Fault.html(502))
    with pytest.raises(DecodeError) as raised:
        CallV3(client).make("tasks.task.list", {})
    failed = CallV3(client).make("tasks.task.get", {"id": 404})
    ok = CallV2(client).make("user.current")
    shown = [str(raised.value), repr(raised.value), repr(failed), str(failed.error), repr(ok)]
    assert "***" in str(raised.value) or "HTML" in str(raised.value)
    assert [text for text in shown if SECRET in text] == []


def test_ajax_result_raise_for_errors(portal: FakePortal, client: B24Hook) -> None:
    """``raise_for_errors()`` returns a success and raises a failure's own error."""
    portal.add_task(title="x")
    ok = CallV3(client).make("tasks.task.get", {"id": 1})
    failed = CallV3(client).make("tasks.task.get", {"id": 404})
    assert ok.raise_for_errors() is ok
    with pytest.raises(AjaxError) as raised:
        failed.raise_for_errors()
    assert raised.value is failed.error
    assert isinstance(ok, AjaxResult)


# -- operating time --------------------------------------------------------------------------


@pytest.fixture
def metered(portal: FakePortal) -> Iterator[tuple[B24Hook, FakeTime]]:
    """A client with the portal's limits (operating time included), in fake time."""
    clock = FakeTime()
    with B24Hook.from_webhook_url(
        portal.webhook_url,
        timeout=(2.0, 5.0),
        retry=RetryPolicy(max_attempts=3, base_delay=0.5, max_wait=120.0),
        rate_limit=RateLimit(),
        clock=clock.clock,
        wall_clock=clock.wall_clock,
        sleep=clock.sleep,
    ) as hook:
        yield hook, clock


def test_a_single_calls_time_is_not_the_batch_meters(
    portal: FakePortal, metered: tuple[B24Hook, FakeTime]
) -> None:
    """The meter keeps the method ``batch``'s figure; a call is charged to its own method."""
    hook, _ = metered
    portal.add_task(title="x")
    CallV3(hook).make("tasks.task.get", {"id": 1})
    assert hook.limit_state().operating is None
    BatchV3(hook).make([("tasks.task.get", {"id": 1})])
    assert hook.limit_state().operating is not None


def test_a_429_on_a_single_call_does_not_hold_the_batches(
    portal: FakePortal, metered: tuple[B24Hook, FakeTime]
) -> None:
    """The call waits a basket and is repeated; the batch meter is not marked at its limit."""
    hook, clock = metered
    portal.add_task(title="x")
    portal.inject(Fault.operating_limited())
    answer = CallV3(hook).make("tasks.task.get", {"id": 1})
    assert answer.is_success
    assert clock.sleeps == [OPERATING_BASKET]
    assert hook.limit_state().operating is None
    BatchV3(hook).make([("tasks.task.get", {"id": 1})])
    assert clock.sleeps == [OPERATING_BASKET]  # the batch did not wait for any reset
