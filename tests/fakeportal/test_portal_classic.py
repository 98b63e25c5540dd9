"""FakePortal's classic (v2) batch over real HTTP, driven by plain ``requests`` form posts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from b24batch._protocols.v2 import Entry, decode_response, encode_batch
from b24batch.testing import ClassicAnswer, CommandError, FakePortal, Fault
from b24batch.testing.phpform import parse_str_bytes
from tests.support.php import canon, php_parse

TIMEOUT = 5.0
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class FakeClock:
    """A settable clock, so limiter tests never sleep."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    with FakePortal(secret="s3cr3t") as started:
        yield started


def body(commands: dict[Any, str] | list[str], *, halt: bool = False, **extra: str) -> str:
    """A form body: each command is METHOD?QUERY (a query already in PHP's bracket form)."""
    items = commands.items() if isinstance(commands, dict) else enumerate(commands)
    parts = [f"halt={int(halt)}"]
    parts += [f"cmd[{quote(str(key), safe='')}]={quote(cmd, safe='')}" for key, cmd in items]
    parts += [f"{name}={quote(value, safe='')}" for name, value in extra.items()]
    return "&".join(parts)


def post(portal: FakePortal, commands: Any, *, halt: bool = False, path: str = "batch") -> Any:
    """POST a form batch to the webhook; returns the answer's ``result`` object."""
    response = requests.post(
        portal.webhook_url + path, data=body(commands, halt=halt), headers=FORM, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    return response.json()["result"]


def q(text: str) -> str:
    return quote(text, safe="")


# ---------------------------------------------------------------------------------------------
# Route and credentials


def test_webhook_form_batch_runs_commands(portal: FakePortal) -> None:
    """A form batch on /rest/USER/SECRET/batch runs each command and answers by key."""
    result = post(portal, {"new": f"crm.deal.add?fields[TITLE]={q('A & B')}", "me": "user.current"})
    assert result["result"] == {"new": 1, "me": result["result"]["me"]}
    assert result["result"]["me"]["ID"] == "1"
    assert portal.deals[1]["TITLE"] == "A & B"


def test_json_suffix_is_the_same_route(portal: FakePortal) -> None:
    """batch.json is served like batch."""
    result = post(portal, ["crm.deal.add?fields[TITLE]=x"], path="batch.json")
    assert result["result"] == [1]


def test_json_body_is_accepted(portal: FakePortal) -> None:
    """A JSON body {halt, cmd} works too; a cmd entry that is not a string is skipped."""
    response = requests.post(
        portal.webhook_url + "batch",
        json={"halt": 0, "cmd": {"a": "crm.deal.add?fields[TITLE]=x", "skip": {"m": 1}}},
        timeout=TIMEOUT,
    )
    assert response.json()["result"]["result"] == {"a": 1}
    assert len(portal.deals) == 1


def test_oauth_token_in_the_body(portal: FakePortal) -> None:
    """OAuth on /rest/batch takes the token as the auth field of the body."""
    url = portal.oauth_endpoint + "batch"
    good = body(["user.current"], auth=portal.access_token)
    answer = requests.post(url, data=good, headers=FORM, timeout=TIMEOUT)
    assert answer.json()["result"]["result"][0]["ID"] == "1"
    missing = requests.post(url, data=body(["user.current"]), headers=FORM, timeout=TIMEOUT)
    assert (missing.status_code, missing.json()["error"]) == (401, "NO_AUTH_FOUND")


def test_oauth_token_in_a_json_body_and_expired(portal: FakePortal) -> None:
    """A JSON body carries auth as well; an expired token answers expired_token."""
    url = portal.oauth_endpoint + "batch"
    token = portal.access_token
    ok = requests.post(url, json={"cmd": ["user.current"], "auth": token}, timeout=TIMEOUT)
    assert ok.status_code == 200
    portal.expire_token()
    expired = requests.post(url, json={"cmd": ["user.current"], "auth": token}, timeout=TIMEOUT)
    assert (expired.status_code, expired.json()["error"]) == (401, "expired_token")


def test_wrong_secret_runs_nothing(portal: FakePortal) -> None:
    """A wrong webhook secret answers 401 before any command runs."""
    url = portal.webhook_url.replace("s3cr3t", "wrong") + "batch"
    response = requests.post(
        url, data=body(["crm.deal.add?fields[TITLE]=x"]), headers=FORM, timeout=TIMEOUT
    )
    assert response.status_code == 401
    assert portal.deals == {}


def test_get_is_405(portal: FakePortal) -> None:
    """The classic batch accepts POST only."""
    response = requests.get(portal.webhook_url + "batch", timeout=TIMEOUT)
    assert response.status_code == 405


@pytest.mark.parametrize("cmd", [5, "user.current", None], ids=["int", "str", "null"])
def test_json_cmd_that_is_not_an_array_is_400(portal: FakePortal, cmd: Any) -> None:
    """A JSON body whose cmd is not an object or array is refused whole."""
    response = requests.post(portal.webhook_url + "batch", json={"cmd": cmd}, timeout=TIMEOUT)
    assert (response.status_code, response.json()["error"]) == (400, "INVALID_REQUEST")


def test_missing_cmd_is_400(portal: FakePortal) -> None:
    """A body without a cmd array is refused whole."""
    response = requests.post(
        portal.webhook_url + "batch", data="halt=0", headers=FORM, timeout=TIMEOUT
    )
    assert (response.status_code, response.json()["error"]) == (400, "INVALID_REQUEST")


def test_request_is_recorded(portal: FakePortal) -> None:
    """The classic request is recorded with its raw form body, as REST 3.0 requests are."""
    sent = body(["user.current"])
    requests.post(portal.webhook_url + "batch", data=sent, headers=FORM, timeout=TIMEOUT)
    (recorded,) = portal.requests
    assert recorded.raw == sent.encode()
    assert portal.executed_commands == 1


# ---------------------------------------------------------------------------------------------
# Execution: halt, errors, length, shapes


def test_halt_stops_after_the_failing_command(portal: FakePortal) -> None:
    """halt=1: the failing command is in result_error, the ones after it did not run."""
    result = post(
        portal,
        ["crm.deal.add?fields[TITLE]=a", "crm.deal.get?id=99", "crm.deal.add?fields[TITLE]=b"],
        halt=True,
    )
    assert result["result"] == [1]
    assert result["result_error"] == {"1": {"error": "", "error_description": "Not found"}}
    assert list(portal.deals) == [1]


def test_no_halt_runs_every_command(portal: FakePortal) -> None:
    """halt=0: commands after a failure still run; the results section has a gap."""
    result = post(
        portal,
        ["crm.deal.add?fields[TITLE]=a", "crm.deal.get?id=99", "crm.deal.add?fields[TITLE]=b"],
    )
    assert result["result"] == {"0": 1, "2": 2}
    assert list(result["result_error"]) == ["1"]
    assert list(portal.deals) == [1, 2]


def test_record_id_keys_answer_lists_and_objects_in_one_answer(portal: FakePortal) -> None:
    """Keys 0, 1 give a JSON list; 35943, '007' and a gap give objects, as PHP's json_encode."""
    result = post(portal, {0: "crm.deal.add?fields[TITLE]=a", 1: "crm.deal.add?fields[TITLE]=b"})
    assert result["result"] == [1, 2]
    result = post(
        portal,
        {
            0: "crm.deal.get?id=1",
            1: "crm.deal.get?id=99",
            35943: "crm.deal.get?id=$result[0][ID]",
            "007": "crm.deal.get?id=$result[35943][ID]",
        },
    )
    assert isinstance(result["result"], dict)
    assert list(result["result"]) == ["0", "35943", "007"]
    assert result["result"]["007"]["ID"] == "1"
    assert result["result_error"] == {"1": {"error": "", "error_description": "Not found"}}


def test_empty_sections_are_empty_lists(portal: FakePortal) -> None:
    """PHP's json_encode writes an empty section as []."""
    result = post(portal, ["user.current"])
    assert result["result_error"] == []
    assert result["result_total"] == []
    assert result["result_next"] == []


def test_more_than_50_commands_are_refused_one_by_one(portal: FakePortal) -> None:
    """Commands past the 50th answer ERROR_BATCH_LENGTH_EXCEEDED; the first 50 ran."""
    result = post(portal, [f"crm.deal.add?fields[TITLE]=d{i}" for i in range(52)])
    assert len(result["result"]) == 50
    assert {key: value["error"] for key, value in result["result_error"].items()} == {
        "50": "ERROR_BATCH_LENGTH_EXCEEDED",
        "51": "ERROR_BATCH_LENGTH_EXCEEDED",
    }
    assert len(portal.deals) == 50


@pytest.mark.parametrize(
    ("command", "code"),
    [
        pytest.param("batch?cmd[0]=user.current", "ERROR_BATCH_METHOD_NOT_ALLOWED", id="nested"),
        pytest.param("no.such.method", "ERROR_METHOD_NOT_FOUND", id="unknown"),
        pytest.param("crm.deal.get?id=abc", "", id="bad-id"),
        pytest.param("crm.deal.add", "", id="no-fields"),
    ],
)
def test_command_errors(portal: FakePortal, command: str, code: str) -> None:
    """A command that cannot run is answered in result_error with the classic code."""
    result = post(portal, {"x": command})
    assert result["result"] == []
    assert result["result_error"]["x"]["error"] == code


def test_result_time_per_command(portal: FakePortal) -> None:
    """Each command that ran has its own time block; by default (as measured) methods read 0."""
    result = post(portal, {"a": "user.current", "b": "crm.deal.get?id=5"})
    assert list(result["result_time"]) == ["a"]
    assert result["result_time"]["a"]["operating"] == 0


def test_result_time_per_method_when_charged_by_method() -> None:
    """With operating_charge="method" each command's time block has its method's figure."""
    with FakePortal(operating_charge="method") as portal:
        result = post(portal, {"a": "user.current", "b": "user.current"})
    assert result["result_time"]["a"]["operating"] == pytest.approx(0.01)
    assert result["result_time"]["b"]["operating"] == pytest.approx(0.02)


# ---------------------------------------------------------------------------------------------
# References


@pytest.fixture
def echo(portal: FakePortal) -> FakePortal:
    """A portal with test.echo, which answers the params it received."""
    portal.register("test.echo", lambda params: params)
    return portal


def test_reference_to_an_earlier_result(portal: FakePortal) -> None:
    """$result[KEY] in a later command is the earlier command's result."""
    post(
        portal,
        {
            "contact": "crm.contact.add?fields[NAME]=Ann",
            "deal": "crm.deal.add?fields[TITLE]=D&fields[CONTACT_ID]=$result[contact]",
        },
        halt=True,
    )
    assert portal.deals[1]["CONTACT_ID"] == "1"


def test_reference_kinds_and_partial_paths(echo: FakePortal) -> None:
    """Whole references keep arrays, embedded ones become text, partial paths stop early."""
    for i in range(3):
        echo.add_deal(TITLE=f"d{i}")
    result = post(
        echo,
        {
            "list": "crm.deal.list?select[0]=ID&select[1]=TITLE",
            "bad": "crm.deal.get?id=99",
            "e": "test.echo?"
            + "&".join(
                [
                    "whole=$result[list][1]",
                    "text=id:$result[list][0][ID]!",
                    "partial=$result[list][0][NOPE]",
                    "total=$total[list]",
                    "error=$error[bad][error_description]",
                    "unknown=$result[nobody][ID]",
                ]
            ),
        },
    )
    assert result["result"]["e"] == {
        "whole": {"ID": "2", "TITLE": "d1"},
        "text": "id:1!",
        "partial": {"ID": "1", "TITLE": "d0"},
        "total": 3,
        "error": "Not found",
        "unknown": "$result[nobody][ID]",
    }


# ---------------------------------------------------------------------------------------------
# CRM methods


def test_deal_add_get_update_delete(portal: FakePortal) -> None:
    """add answers an int id; get the record with string IDs; update and delete answer true."""
    result = post(
        portal,
        {
            "add": "crm.deal.add?fields[TITLE]=D&fields[OPPORTUNITY]=12.5",
            "upd": "crm.deal.update?id=$result[add]&fields[STAGE_ID]=WON",
            "get": "crm.deal.get?ID=$result[add]",
            "del": "crm.deal.delete?id=$result[add]",
            "gone": "crm.deal.get?id=$result[add]",
        },
    )
    assert result["result"]["add"] == 1
    assert (result["result"]["upd"], result["result"]["del"]) == (True, True)
    deal = result["result"]["get"]
    assert (deal["ID"], deal["TITLE"], deal["OPPORTUNITY"], deal["STAGE_ID"]) == (
        "1",
        "D",
        "12.50",
        "WON",
    )
    assert result["result_error"]["gone"]["error_description"] == "Not found"
    assert portal.deals == {}


def test_contact_methods(portal: FakePortal) -> None:
    """crm.contact.* keep contacts apart from deals."""
    portal.add_deal(TITLE="deal")
    result = post(portal, ["crm.contact.add?fields[NAME]=Ann", "crm.contact.list"])
    assert result["result"][0] == 1
    assert [c["NAME"] for c in result["result"][1]] == ["Ann"]
    assert portal.contacts[1]["NAME"] == "Ann"


@pytest.fixture
def many(portal: FakePortal) -> FakePortal:
    for i in range(1, 121):
        portal.add_deal(TITLE=f"Deal {i}", OPPORTUNITY=i * 10, STAGE_ID="WON" if i % 2 else "NEW")
    return portal


def test_list_pages_with_total_and_next(many: FakePortal) -> None:
    """Pages of 50 with total and next; the last page has no next."""
    result = post(many, {p: f"crm.deal.list?select[0]=ID&start={p}" for p in ("0", "50", "100")})
    pages = result["result"]
    assert [len(pages[p]) for p in ("0", "50", "100")] == [50, 50, 20]
    assert pages["50"][0] == {"ID": "51"}
    assert result["result_total"] == {"0": 120, "50": 120, "100": 120}
    assert result["result_next"] == {"0": 50, "50": 100}


def test_list_start_minus_one_skips_the_count(many: FakePortal) -> None:
    """start=-1 answers the first page without total and next."""
    result = post(many, {"fast": "crm.deal.list?order[ID]=ASC&filter[>ID]=100&start=-1"})
    assert [deal["ID"] for deal in result["result"]["fast"]] == [str(i) for i in range(101, 121)]
    assert result["result_total"] == []
    assert result["result_next"] == []


def test_list_select_default_and_star_give_every_field(many: FakePortal) -> None:
    """No select, and select=*, give all fields; a select gives just those."""
    result = post(
        many,
        {
            "all": "crm.deal.list",
            "star": "crm.deal.list?select[]=*",
            "two": "crm.deal.list?select[]=ID&select[]=TITLE",
        },
    )
    assert result["result"]["all"][0] == many.deals[1]
    assert result["result"]["star"][0] == many.deals[1]
    assert result["result"]["two"][0] == {"ID": "1", "TITLE": "Deal 1"}


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        pytest.param("filter[%3DID]=3", [3], id="equal"),
        pytest.param("filter[ID]=3", [3], id="no-prefix"),
        pytest.param("filter[>ID]=117", [118, 119, 120], id="greater"),
        pytest.param("filter[%3E%3DID]=118", [118, 119, 120], id="greater-equal"),
        pytest.param("filter[<ID]=3", [1, 2], id="less"),
        pytest.param("filter[%3C%3DID]=2", [1, 2], id="less-equal"),
        pytest.param("filter[<OPPORTUNITY]=30", [1, 2], id="numeric-not-text"),
        pytest.param("filter[%TITLE]=deal 11", [11, *range(110, 120)], id="substring"),
        pytest.param("filter[!STAGE_ID]=WON&filter[<ID]=7", [2, 4, 6], id="not"),
        pytest.param("filter[ID][]=5&filter[ID][]=7", [5, 7], id="in"),
    ],
)
def test_list_filter_prefixes(many: FakePortal, query: str, ids: list[int]) -> None:
    """The classic filter prefixes select the matching deals."""
    result = post(many, {"x": f"crm.deal.list?select[]=ID&{query}"})
    assert [int(deal["ID"]) for deal in result["result"]["x"]] == ids


def test_list_order_descending(many: FakePortal) -> None:
    """order[FIELD]=DESC sorts that way."""
    result = post(many, {"x": "crm.deal.list?select[]=ID&order[OPPORTUNITY]=DESC&start=-1"})
    assert result["result"]["x"][0] == {"ID": "120"}


# ---------------------------------------------------------------------------------------------
# Shared with the REST 3.0 route: register, limits, faults, seeding


def test_registered_handler_serves_the_classic_route(portal: FakePortal) -> None:
    """register() works here: params arrive as strings; errors stay per command."""

    def handler(params: dict[str, Any]) -> Any:
        if params.get("fail") == "1":
            raise CommandError("denied", code="ACCESS_DENIED")
        if params.get("crash"):
            raise RuntimeError("bug")
        return ClassicAnswer({"got": params}, total=7)

    portal.register("app.thing", handler)
    result = post(
        portal, {"ok": "app.thing?n=5&a[]=x", "no": "app.thing?fail=1", "bad": "app.thing?crash=1"}
    )
    assert result["result"] == {"ok": {"got": {"n": "5", "a": ["x"]}}}
    assert result["result_total"] == {"ok": 7}
    assert result["result_error"]["no"] == {"error": "ACCESS_DENIED", "error_description": "denied"}
    assert result["result_error"]["bad"]["error"] == "INTERNAL_SERVER_ERROR"


def test_rate_limit_bucket_is_shared_with_rest_v3() -> None:
    """A REST 3.0 and a classic request drain the same leaky bucket."""
    with FakePortal(rate_limit=(1, 0.001), clock=FakeClock(1000.0)) as portal:
        v3 = requests.post(
            portal.webhook_url.replace("/rest/", "/rest/api/") + "batch",
            json=[{"method": "tasks.task.list", "query": {}}],
            timeout=TIMEOUT,
        )
        assert v3.status_code == 200
        classic = requests.post(
            portal.webhook_url + "batch", data=body(["user.current"]), headers=FORM, timeout=TIMEOUT
        )
        assert (classic.status_code, classic.json()["error"]) == (503, "QUERY_LIMIT_EXCEEDED")


def test_operating_limit_refuses_commands_one_by_one() -> None:
    """A method over its operating budget is refused in result_error and does not run."""
    with FakePortal(
        operating_limit=0.025, clock=FakeClock(0.0), operating_charge="method"
    ) as portal:
        response = requests.post(
            portal.webhook_url + "batch",
            data=body([f"crm.deal.add?fields[TITLE]=d{i}" for i in range(4)] + ["user.current"]),
            headers=FORM,
            timeout=TIMEOUT,
        )
        result = response.json()["result"]
        assert result["result"] == {"0": 1, "1": 2, "2": 3, "4": result["result"]["4"]}
        assert result["result_error"]["3"]["error"] == "OPERATION_TIME_LIMIT"
        assert len(portal.deals) == 3


def test_operating_limit_on_batch_refuses_the_request() -> None:
    """When batch itself is over its budget the whole request answers 429."""
    with FakePortal(operating_limit=0.02, clock=FakeClock(0.0)) as portal:
        first = requests.post(
            portal.webhook_url + "batch",
            data=body(["user.current", "user.current"]),
            headers=FORM,
            timeout=TIMEOUT,
        )
        assert first.status_code == 200
        second = requests.post(
            portal.webhook_url + "batch", data=body(["user.current"]), headers=FORM, timeout=TIMEOUT
        )
        assert (second.status_code, second.json()["error"]) == (429, "OPERATION_TIME_LIMIT")


def test_faults_apply_to_the_classic_route(portal: FakePortal) -> None:
    """An injected HTML fault answers the classic route and runs nothing."""
    portal.inject(Fault.html(502))
    response = requests.post(
        portal.webhook_url + "batch",
        data=body(["crm.deal.add?fields[T]=x"]),
        headers=FORM,
        timeout=TIMEOUT,
    )
    assert response.status_code == 502
    assert "text/html" in response.headers["Content-Type"]
    assert portal.deals == {}


def test_seeding_helpers_and_reset(portal: FakePortal) -> None:
    """add_deal/add_contact seed records (id chosen or next); reset() clears them."""
    assert portal.add_deal(TITLE="a", id=10) == 10
    assert portal.add_deal() == 11
    assert portal.add_contact(NAME="Ann") == 1
    assert portal.deals[11]["TITLE"] == "Deal"
    with pytest.raises(ValueError, match="taken"):
        portal.add_deal(id=10)
    with pytest.raises(ValueError, match="unknown fields \\['TITEL'\\]"):
        portal.add_deal(TITEL="typo")
    portal.reset()
    assert (portal.deals, portal.contacts) == ({}, {})


# ---------------------------------------------------------------------------------------------
# The portal's parse_str against PHP's own

_TOKENS = [*"ab1 .+&=[]%_-\0\t", "%5B", "%5d", "%20", "%26", "%3D", "%00", "%C3%A9", "é"]
_RAW = st.lists(st.sampled_from(_TOKENS), max_size=30).map("".join)


@settings(max_examples=40, deadline=None)
@given(st.lists(_RAW, min_size=10, max_size=10))
def test_parse_str_matches_php(queries: list[str]) -> None:
    """The portal decodes any query string exactly as PHP's parse_str does."""
    raw = [query.encode("utf-8") for query in queries]
    assert [canon(parse_str_bytes(query)) for query in raw] == php_parse(raw)


def test_parse_str_quirks_match_php() -> None:
    """Hand-picked PHP quirks: dots, unclosed brackets, appends, negative keys, nesting."""
    raw = [
        b" a.b c=1",
        b"a[b=1",
        b"a[b][c=1",
        b"a[b]x[c]=1",
        b"a[-5]=1&a[]=2",
        b"a[05]=x&a[5]=y",
        b"a=1&a[b]=2",
        b"a[%09]=1",
        b"a[%00]=1",
        b"x=1&x" + b"[a]" * 70 + b"=1",
        b"a[9223372036854775807]=1&a[]=2",
        b"a[9223372036854775808]=1",
    ]
    assert [canon(parse_str_bytes(query)) for query in raw] == php_parse(raw)


def test_encoder_portal_decoder_end_to_end(portal: FakePortal) -> None:
    """wire_v2's body runs on the portal and its answer decodes into outcomes by key."""
    entries = [
        Entry("contact", "crm.contact.add", {"fields": {"NAME": "Ann & Co", "POST": None}}),
        Entry(
            "deal",
            "crm.deal.add",
            {"fields": {"TITLE": "50% off", "CONTACT_ID": "$result[contact]"}},
        ),
        Entry("missing", "crm.deal.get", {"id": 404}),
        Entry("list", "crm.deal.list", {"select": ["ID", "TITLE"], "filter": {">=ID": 1}}),
    ]
    response = requests.post(
        portal.webhook_url + "batch",
        data=encode_batch(entries, halt=False),
        headers=FORM,
        timeout=TIMEOUT,
    )
    keys = [entry.key for entry in entries]
    envelope = decode_response(response.status_code, response.content, keys=keys, request_id="r1")
    contact, deal, missing, listed = envelope.outcomes
    assert (contact.result, deal.result) == (1, 1)
    assert portal.deals[1]["CONTACT_ID"] == "1"
    assert portal.contacts[1]["NAME"] == "Ann & Co"
    assert missing.executed
    assert missing.error is not None
    assert missing.error.message == "Not found"
    assert (listed.result, listed.total, listed.next) == (
        [{"ID": "1", "TITLE": "50% off"}],
        1,
        None,
    )
