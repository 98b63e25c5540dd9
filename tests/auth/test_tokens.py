"""Token records: every shape an installation hands an application, and what a store gives back."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

from b24batch._auth.tokens import TokenRecord, parse_record, parse_tokens
from b24batch.errors import SdkError, SdkTypeError
from b24batch.redaction import Secret

NOW = 1_700_000_000.0
ACCESS = "s6b0cf6600705a0700005a4b00000001f0f107accessTok"
REFRESH = "c5d8f66600705a0700005a4b00000001f0f107refreshTok"
MEMBER = "da45a03b265edd8787f8a258d793cc5d"

# settings/oauth/auto-renewal.md: the authorization server's answer to a refresh.
TOKEN_ANSWER = {
    "access_token": ACCESS,
    "expires": 1_700_003_600,
    "expires_in": 3600,
    "scope": "app",
    "domain": "oauth.bitrix.info",
    "server_endpoint": "https://oauth.bitrix.info/rest/",
    "status": "L",
    "client_endpoint": "https://example.bitrix24.com/rest/",
    "member_id": MEMBER,
    "user_id": 1,
    "refresh_token": REFRESH,
}
# The install page's (and every widget's) POST, as the placement pages print it.
INSTALL_FORM = {
    "DOMAIN": "example.bitrix24.com",
    "PROTOCOL": "1",
    "LANG": "en",
    "APP_SID": "4617fa96af5d1f523fc2e2b72bd54f11",
    "AUTH_ID": ACCESS,
    "AUTH_EXPIRES": "3600",
    "REFRESH_ID": REFRESH,
    "member_id": MEMBER,
    "status": "L",
}
# _includes/auth-params-in-events.md: the ONAPPINSTALL handler's auth[...] fields.
EVENT_AUTH = {
    "access_token": ACCESS,
    "expires": "1700003600",
    "expires_in": "3600",
    "scope": "crm",
    "domain": "example.bitrix24.com",
    "server_endpoint": "https://oauth.bitrix.info/rest/",
    "status": "F",
    "client_endpoint": "https://example.bitrix24.com/rest/",
    "member_id": MEMBER,
    "refresh_token": REFRESH,
    "application_token": "51856fefc120afa4b628cc82d3935cce",
}
EVENT_FORM = {
    "event": "ONAPPINSTALL",
    "data[VERSION]": "1",
    "ts": "1700000000",
    **{f"auth[{k}]": v for k, v in EVENT_AUTH.items()},
}


def _parse(given: Any) -> TokenRecord:
    record = parse_tokens(Secret(given), NOW)
    assert isinstance(record, TokenRecord), record
    return record


@pytest.mark.parametrize(
    ("given", "expires", "domain"),
    [
        pytest.param(TOKEN_ANSWER, 1_700_003_600.0, "oauth.bitrix.info", id="token-answer"),
        pytest.param(INSTALL_FORM, NOW + 3600, "example.bitrix24.com", id="install-form"),
        pytest.param(EVENT_FORM, 1_700_003_600.0, "example.bitrix24.com", id="event-form"),
        pytest.param(
            {"event": "ONAPPINSTALL", "auth": EVENT_AUTH},
            1_700_003_600.0,
            "example.bitrix24.com",
            id="event-nested",
        ),
        pytest.param(
            {k: [v] for k, v in INSTALL_FORM.items()},
            NOW + 3600,
            "example.bitrix24.com",
            id="lists",
        ),
    ],
)
def test_every_shape_gives_the_same_record(given: Any, expires: float, domain: str) -> None:
    """The token answer, the install form and the event all read into the same pair."""
    record = _parse(given)
    assert (record.access.value, record.refresh.value) == (ACCESS, REFRESH)
    assert (record.member_id, record.client_endpoint) == (
        MEMBER,
        "https://example.bitrix24.com/rest/",
    )
    assert (record.expires, record.domain) == (expires, domain)


def test_the_install_form_over_plain_http_is_only_for_loopback() -> None:
    """PROTOCOL=0 gives http://, which only a loopback host (the FakePortal) may use."""
    local = _parse({**INSTALL_FORM, "DOMAIN": "127.0.0.1:8080", "PROTOCOL": "0"})
    assert local.client_endpoint == "http://127.0.0.1:8080/rest/"
    refused = parse_tokens(Secret({**INSTALL_FORM, "PROTOCOL": "0"}), NOW)
    assert isinstance(refused, SdkError)
    assert "client_endpoint" in str(refused)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"access_token": None}, "'access_token'", id="no-access"),
        pytest.param({"refresh_token": "has space"}, "'refresh_token'", id="bad-refresh"),
        pytest.param({"refresh_token": 12345}, "'refresh_token'", id="refresh-number"),
        pytest.param({"member_id": "../etc"}, "'member_id'", id="member"),
        pytest.param({"member_id": 7}, "'member_id'", id="member-type"),
        pytest.param({"expires": "soon", "expires_in": None}, "'expires'", id="expires"),
        pytest.param({"expires": None, "expires_in": -5}, "'expires_in'", id="expires-in"),
        pytest.param({"expires": None, "expires_in": None}, "neither", id="no-expiry"),
        pytest.param({"expires": True}, "'expires'", id="expires-bool"),
        pytest.param({"client_endpoint": "https://x/rest/1/abc/"}, "'client_endpoint'", id="hook"),
        pytest.param({"scope": {"crm": True}}, "'scope'", id="scope-type"),
    ],
)
def test_a_wrong_field_is_named_and_no_token_is_echoed(change: dict[str, Any], field: str) -> None:
    """Each wrong field is refused by name, and the message holds neither token."""
    given = {k: v for k, v in {**TOKEN_ANSWER, **change}.items() if v is not None}
    error = parse_tokens(Secret(given), NOW)
    assert isinstance(error, SdkError)
    assert field in str(error)
    assert ACCESS not in str(error)
    assert REFRESH not in str(error)


def test_not_a_mapping_is_a_type_error() -> None:
    """A JSON string instead of the decoded answer: SdkTypeError saying what to pass."""
    error = parse_tokens(Secret(json.dumps(TOKEN_ANSWER)), NOW)
    assert isinstance(error, SdkTypeError)
    assert "mapping" in str(error)
    assert str(error).endswith("not a str")


def test_a_record_round_trips_through_its_stored_form() -> None:
    """What the store keeps reads back as the same record; its repr holds no token."""
    record = _parse(TOKEN_ANSWER)
    again = parse_record(record.to_json(), "oauth:app:m")
    assert isinstance(again, TokenRecord)
    assert (again.access.value, again.refresh.value) == (ACCESS, REFRESH)
    assert attrs.evolve(again, access=record.access, refresh=record.refresh) == record
    assert ACCESS not in repr(record)
    assert REFRESH not in repr(record)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param('{"format":1,"access_token":"a', "not a JSON object", id="truncated"),
        pytest.param("[1, 2]", "not a JSON object", id="list"),
        pytest.param(b"{}", "not a JSON object", id="bytes"),
        pytest.param('{"access_token":"a"}', "no format 1", id="no-format"),
        pytest.param("STORED", "not a JSON object", id="text"),
    ],
)
def test_junk_in_the_store_is_refused_with_what_is_wrong(text: Any, says: str) -> None:
    """A record the store holds but b24batch did not write is refused, naming its key."""
    error = parse_record(text, "oauth:app:m")
    assert isinstance(error, SdkError)
    assert says in str(error)
    assert "'oauth:app:m'" in str(error)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("expires", "1700003600", id="expires-text"),
        pytest.param("expires", None, id="expires-null"),
        pytest.param("access_token", 5, id="token-number"),
        pytest.param("domain", 5, id="domain-number"),
        pytest.param("domain", 0, id="domain-zero"),
        pytest.param("scope", [], id="scope-empty-list"),
    ],
)
def test_a_stored_field_of_the_wrong_type_is_refused(field: str, value: Any) -> None:
    """A record whose field has the wrong type (edited by hand, another program) is refused."""
    data = json.loads(_parse(TOKEN_ANSWER).to_json())
    data[field] = value
    error = parse_record(json.dumps(data), "oauth:app:m")
    assert isinstance(error, SdkError)
    assert str(error).startswith("the store's record 'oauth:app:m'")
    assert ACCESS not in str(error)
    assert REFRESH not in str(error)


@pytest.mark.parametrize(
    ("change", "expires"),
    [
        pytest.param({"expires": None, "expires_in": 10**7}, NOW + 10**7, id="longest-lifetime"),
        pytest.param({"expires": None, "expires_in": "0.5"}, NOW + 0.5, id="half-a-second"),
        pytest.param({"expires": 1e11, "expires_in": None}, 1e11, id="latest-expiry"),
        pytest.param({"expires": "", "expires_in": "60"}, NOW + 60, id="empty-expires"),
        pytest.param({"expires": 1_700_000_100, "expires_in": 60}, 1_700_000_100.0, id="both"),
    ],
)
def test_the_expiry_is_expires_else_now_plus_expires_in(
    change: dict[str, Any], expires: float
) -> None:
    """``expires`` (Unix seconds) wins; without it, now + ``expires_in``; each up to its bound."""
    given = {k: v for k, v in {**TOKEN_ANSWER, **change}.items() if v is not None}
    assert _parse(given).expires == expires


@pytest.mark.parametrize(
    ("change", "says"),
    [
        pytest.param({"expires": None, "expires_in": 10**7 + 1}, "'expires_in'", id="lifetime"),
        pytest.param({"expires": None, "expires_in": 0}, "'expires_in'", id="zero-lifetime"),
        pytest.param({"expires": 1e11 + 1, "expires_in": None}, "'expires'", id="too-late"),
        pytest.param({"expires": 0}, "'expires'", id="zero-expires"),
        pytest.param({"expires": "nan"}, "'expires'", id="nan"),
        pytest.param({"member_id": "m" * 65}, "'member_id'", id="member-65"),
        pytest.param({"member_id": ""}, "'member_id'", id="member-empty"),
        pytest.param({"scope": "s" * 1001}, "'scope'", id="scope-1001"),
        pytest.param({"status": "L\n"}, "'status'", id="status-newline"),
        pytest.param({"domain": 7}, "'domain'", id="domain-number"),
    ],
)
def test_a_value_past_its_bound_is_refused_by_name(change: dict[str, Any], says: str) -> None:
    """Each field's bound: one step past it is refused, naming the field."""
    given = {k: v for k, v in {**TOKEN_ANSWER, **change}.items() if v is not None}
    error = parse_tokens(Secret(given), NOW)
    assert isinstance(error, SdkError)
    assert f"the token answer's field {says}" in str(error) or f"its field {says}" in str(error)


def test_the_longest_values_are_kept_whole() -> None:
    """A 64-character member_id and 1000-character texts are taken as they are."""
    record = _parse({**TOKEN_ANSWER, "member_id": "m" * 64, "scope": "s" * 1000, "status": ""})
    assert (record.member_id, record.scope, record.status) == ("m" * 64, "s" * 1000, "")


def test_the_install_form_gives_its_scope_and_status_or_none() -> None:
    """APPLICATION_SCOPE and status are kept; a form without them gives empty texts."""
    record = _parse({**INSTALL_FORM, "APPLICATION_SCOPE": "crm,task"})
    assert (record.scope, record.status) == ("crm,task", "L")
    bare = {k: v for k, v in INSTALL_FORM.items() if k not in ("status", "PROTOCOL")}
    record = _parse(bare)
    assert (record.scope, record.status) == ("", "")
    assert record.client_endpoint == "https://example.bitrix24.com/rest/"


@pytest.mark.parametrize(
    "domain",
    [
        pytest.param("example.bitrix24.com/evil", id="path"),
        pytest.param("", id="empty"),
        pytest.param(5, id="number"),
    ],
)
def test_an_install_form_domain_that_is_no_host_is_refused(domain: Any) -> None:
    """DOMAIN must be a bare host name: the error names the field."""
    error = parse_tokens(Secret({**INSTALL_FORM, "DOMAIN": domain}), NOW)
    assert isinstance(error, SdkError)
    assert str(error) == "the install form's field 'DOMAIN' is missing or not a host name"


def test_bracketed_fields_other_than_auth_leave_the_install_form_as_it_is() -> None:
    """A form field such as PLACEMENT_OPTIONS[x] is not an event's auth[...] field."""
    record = _parse({**INSTALL_FORM, "PLACEMENT_OPTIONS[ID]": "7"})
    assert (record.access.value, record.expires) == (ACCESS, NOW + 3600)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"member_id": 7},
            "the token answer's field 'member_id': member_id is a int; pass the portal's str",
            id="member-type",
        ),
        pytest.param(
            {"member_id": "/" * 200},
            f"the token answer's field 'member_id': member_id={'/' * 80!r} is not a portal's "
            f"member_id (1-64 letters, digits, '_', '.', '-', as Bitrix24 sends it)",
            id="member-cut-to-80",
        ),
        pytest.param(
            {"expires": None, "expires_in": None},
            "the token answer: it has neither 'expires' nor 'expires_in'",
            id="no-expiry",
        ),
    ],
)
def test_whole_messages_of_a_wrong_member_id_or_expiry(
    change: dict[str, Any], message: str
) -> None:
    """The message names the field, what it is, and (cut to 80 characters) what was given."""
    given = {k: v for k, v in {**TOKEN_ANSWER, **change}.items() if v is not None}
    assert str(parse_tokens(Secret(given), NOW)) == message
