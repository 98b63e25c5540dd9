"""FakeAuthServer over real HTTP: installs, single-use refresh, revocation, expiry, failures."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from b24batch import B24OAuth, BatchV3
from b24batch.testing import FakeAuthServer, FakePortal

TIMEOUT = 10.0


@pytest.fixture
def auth() -> Iterator[FakeAuthServer]:
    with FakeAuthServer(client_id="local.app.1", client_secret="topSecretValue42") as started:
        yield started


@pytest.fixture
def portal(auth: FakeAuthServer) -> Iterator[FakePortal]:
    with FakePortal(auth_server=auth, member_id="member0001") as started:
        yield started


def refresh(auth: FakeAuthServer, token: str, **override: str) -> requests.Response:
    params = {
        "grant_type": "refresh_token",
        "client_id": auth.client_id,
        "client_secret": auth.client_secret,
        "refresh_token": token,
        **override,
    }
    return requests.get(auth.token_url, params=params, timeout=TIMEOUT)


def call(portal: FakePortal, token: str) -> requests.Response:
    """One REST 3.0 batch with the Bearer token."""
    return requests.post(
        portal.oauth_endpoint + "api/batch",
        json=[{"method": "tasks.task.list", "query": {}}],
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )


def code(response: requests.Response) -> Any:
    return response.json().get("error")


# -- addresses and installs -----------------------------------------------------------------------


def test_token_url_is_the_oauth_token_path(auth: FakeAuthServer) -> None:
    """token_url is http://127.0.0.1:PORT/oauth/token/."""
    assert auth.token_url == f"{auth.base_url}/oauth/token/"
    assert auth.base_url.startswith("http://127.0.0.1:")


def test_random_credentials_when_omitted() -> None:
    """Without client_id/client_secret each server has its own random pair."""
    one, two = FakeAuthServer(), FakeAuthServer()
    assert one.client_id != two.client_id
    assert one.client_id.startswith("local.")
    assert one.client_secret != two.client_secret
    assert len(one.client_secret) >= 32


def test_install_answers_the_full_token_shape(auth: FakeAuthServer, portal: FakePortal) -> None:
    """install() answers every field of the documented token answer, for that portal."""
    before = int(time.time())
    answer = auth.install(portal)
    assert set(answer) == {
        "access_token",
        "client_endpoint",
        "domain",
        "expires",
        "expires_in",
        "member_id",
        "refresh_token",
        "scope",
        "server_endpoint",
        "status",
        "user_id",
    }
    assert answer["client_endpoint"] == portal.oauth_endpoint
    assert answer["server_endpoint"] == auth.base_url + "/rest/"
    assert answer["domain"] == auth.base_url.removeprefix("http://")
    assert answer["member_id"] == "member0001" == portal.member_id
    assert answer["expires_in"] == 3600
    assert before + 3600 <= answer["expires"] <= int(time.time()) + 3600
    assert answer["status"] == "L"
    assert call(portal, answer["access_token"]).status_code == 200


def test_install_form_carries_a_working_pair(auth: FakeAuthServer, portal: FakePortal) -> None:
    """install_form() has the install page's fields, and its AUTH_ID/REFRESH_ID work."""
    form = auth.install_form(portal)
    assert {"DOMAIN", "PROTOCOL", "LANG", "APP_SID", "AUTH_ID", "AUTH_EXPIRES", "REFRESH_ID"} <= (
        set(form)
    )
    assert form["member_id"] == portal.member_id
    assert form["DOMAIN"] == portal.base_url.removeprefix("http://")
    assert form["AUTH_EXPIRES"] == "3600"
    assert form["status"] == "L"
    assert all(isinstance(value, str) for value in form.values())
    assert call(portal, form["AUTH_ID"]).status_code == 200
    assert refresh(auth, form["REFRESH_ID"]).status_code == 200


def test_install_event_is_the_onappinstall_form(auth: FakeAuthServer, portal: FakePortal) -> None:
    """install_event() is ONAPPINSTALL in bracket form; its pair works; one app token per portal."""
    event = auth.install_event(portal)
    again = auth.install_event(portal)
    assert event["event"] == "ONAPPINSTALL"
    assert event["data[VERSION]"] == "1"
    assert event["auth[member_id]"] == portal.member_id
    assert event["auth[client_endpoint]"] == portal.oauth_endpoint
    assert event["auth[server_endpoint]"] == auth.base_url + "/rest/"
    assert event["auth[expires_in]"] == "3600"
    assert event["auth[application_token]"] == again["auth[application_token]"]
    assert event["auth[access_token]"] != again["auth[access_token]"]
    assert call(portal, event["auth[access_token]"]).status_code == 200
    assert refresh(auth, event["auth[refresh_token]"]).status_code == 200


def test_install_refuses_a_portal_of_another_server(auth: FakeAuthServer) -> None:
    """install() of a portal not registered with this server raises ValueError."""
    with (
        FakeAuthServer() as other,
        FakePortal(auth_server=other) as foreign,
        pytest.raises(ValueError, match="not registered"),
    ):
        auth.install(foreign)


def test_a_member_id_registers_once(auth: FakeAuthServer, portal: FakePortal) -> None:
    """A second portal with the same member_id on one server is refused."""
    with pytest.raises(ValueError, match="already registered"):
        FakePortal(auth_server=auth, member_id=portal.member_id)


def test_member_id_is_random_hex_when_omitted() -> None:
    """Portals without member_id= get different 32-hex-digit ids."""
    one, two = FakePortal().member_id, FakePortal().member_id
    assert one != two
    assert len(one) == 32
    assert int(one, 16) >= 0


# -- refresh --------------------------------------------------------------------------------------


def test_refresh_issues_a_new_pair_and_revokes_the_old_access_token(
    auth: FakeAuthServer, portal: FakePortal
) -> None:
    """A refresh answers a new working pair; the old access token answers 401 invalid_token."""
    first = auth.install(portal)
    response = refresh(auth, first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert second["member_id"] == portal.member_id
    assert second["client_endpoint"] == portal.oauth_endpoint
    assert {second["access_token"], second["refresh_token"]}.isdisjoint(
        {first["access_token"], first["refresh_token"]}
    )
    old = call(portal, first["access_token"])
    assert (old.status_code, code(old)) == (401, "invalid_token")
    assert call(portal, second["access_token"]).status_code == 200


def test_refresh_accepts_a_post_form(auth: FakeAuthServer, portal: FakePortal) -> None:
    """The same fields as a POST form renew the pair too."""
    pair = auth.install(portal)
    response = requests.post(
        auth.token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": auth.client_id,
            "client_secret": auth.client_secret,
            "refresh_token": pair["refresh_token"],
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert call(portal, response.json()["access_token"]).status_code == 200


def test_a_refresh_token_is_single_use(auth: FakeAuthServer, portal: FakePortal) -> None:
    """The second use of one refresh token answers 400 invalid_grant and issues nothing."""
    pair = auth.install(portal)
    winner = refresh(auth, pair["refresh_token"])
    loser = refresh(auth, pair["refresh_token"])
    assert winner.status_code == 200
    assert (loser.status_code, code(loser)) == (400, "invalid_grant")
    assert "access_token" not in loser.json()
    assert call(portal, winner.json()["access_token"]).status_code == 200


def test_concurrent_refreshes_of_one_token_have_one_winner(
    auth: FakeAuthServer, portal: FakePortal
) -> None:
    """Two processes refreshing one token at once: one 200, one invalid_grant."""
    pair = auth.install(portal)
    auth.delay_refresh(0.3)  # both requests are inside the server together
    answers: list[requests.Response] = []
    threads = [
        threading.Thread(target=lambda: answers.append(refresh(auth, pair["refresh_token"])))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT)
    assert sorted(response.status_code for response in answers) == [200, 400]
    assert auth.refresh_calls(portal.member_id) == 2


def test_an_unknown_refresh_token_is_invalid_grant(auth: FakeAuthServer) -> None:
    """A refresh token the server never issued answers 400 invalid_grant."""
    response = refresh(auth, "never-issued")
    assert (response.status_code, code(response)) == (400, "invalid_grant")


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"client_secret": "wrong"}, id="wrong-secret"),
        pytest.param({"client_id": "local.other"}, id="wrong-client-id"),
    ],
)
def test_wrong_client_credentials_are_invalid_client(
    auth: FakeAuthServer, portal: FakePortal, override: dict[str, str]
) -> None:
    """A wrong client_id or client_secret answers invalid_client and spends nothing."""
    pair = auth.install(portal)
    response = refresh(auth, pair["refresh_token"], **override)
    assert (response.status_code, code(response)) == (400, "invalid_client")
    assert "wrong" not in response.text
    assert refresh(auth, pair["refresh_token"]).status_code == 200


def test_missing_fields_are_invalid_request(auth: FakeAuthServer) -> None:
    """A refresh without refresh_token, or with another grant_type, is invalid_request."""
    no_token = refresh(auth, "")
    other = refresh(auth, "x", grant_type="authorization_code")
    assert (no_token.status_code, code(no_token)) == (400, "invalid_request")
    assert "refresh_token" in no_token.json()["error_description"]
    assert (other.status_code, code(other)) == (400, "invalid_request")


def test_access_tokens_expire_after_their_lifetime() -> None:
    """With a short lifetime the access token answers 401 expired_token once it has passed."""
    with FakeAuthServer(access_token_lifetime=0.2) as auth, FakePortal(auth_server=auth) as portal:
        pair = auth.install(portal)
        assert pair["expires_in"] == 0  # whole seconds, as the real answer
        deadline = time.monotonic() + 5.0
        response = call(portal, pair["access_token"])
        while response.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
            response = call(portal, pair["access_token"])
        assert (response.status_code, code(response)) == (401, "expired_token")
        renewed = refresh(auth, pair["refresh_token"])
        assert renewed.status_code == 200
        assert call(portal, renewed.json()["access_token"]).status_code == 200


def test_expiry_reads_the_injected_clock() -> None:
    """Expiry is read on clock=: a token is good until its lifetime has passed on it."""
    now = [1_000_000.0]
    with (
        FakeAuthServer(access_token_lifetime=60, clock=lambda: now[0]) as auth,
        FakePortal(auth_server=auth) as portal,
    ):
        pair = auth.install(portal)
        assert pair["expires"] == 1_000_060
        now[0] += 59.9
        assert call(portal, pair["access_token"]).status_code == 200
        now[0] += 0.1
        assert code(call(portal, pair["access_token"])) == "expired_token"


def test_expire_access_tokens_lever(auth: FakeAuthServer, portal: FakePortal) -> None:
    """expire_access_tokens() makes current tokens answer expired_token; refresh still works."""
    pair = auth.install(portal)
    auth.expire_access_tokens(portal.member_id)
    expired = call(portal, pair["access_token"])
    assert (expired.status_code, code(expired)) == (401, "expired_token")
    assert refresh(auth, pair["refresh_token"]).status_code == 200


def test_portal_own_token_levers_still_work(auth: FakeAuthServer, portal: FakePortal) -> None:
    """With an auth server, the portal's own access_token/expire_token/refresh_token work."""
    assert call(portal, portal.access_token).status_code == 200
    portal.expire_token()
    assert code(call(portal, portal.access_token)) == "expired_token"
    assert call(portal, portal.refresh_token()).status_code == 200


def test_an_unknown_bearer_token_is_no_auth(auth: FakeAuthServer, portal: FakePortal) -> None:
    """A token neither the server nor the portal issued answers 401 NO_AUTH_FOUND."""
    response = call(portal, "not-a-token")
    assert (response.status_code, code(response)) == (401, "NO_AUTH_FOUND")


def test_classic_batch_takes_the_servers_token(auth: FakeAuthServer, portal: FakePortal) -> None:
    """The classic OAuth batch (token as auth in the body) accepts the issued token."""
    pair = auth.install(portal)
    response = requests.post(
        portal.oauth_endpoint + "batch",
        data={"cmd[0]": "user.current", "auth": pair["access_token"]},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert response.json()["result"]["result"][0]["ID"] == str(portal.user_id)


# -- several portals ------------------------------------------------------------------------------


def test_two_portals_keep_separate_tokens(auth: FakeAuthServer, portal: FakePortal) -> None:
    """Tokens are per portal: one portal's token is refused by the other, refreshes apart."""
    with FakePortal(auth_server=auth, member_id="member0002") as second:
        one, two = auth.install(portal), auth.install(second)
        assert call(second, one["access_token"]).status_code == 401
        assert call(portal, two["access_token"]).status_code == 401
        renewed = refresh(auth, one["refresh_token"])
        assert renewed.json()["member_id"] == portal.member_id
        assert renewed.json()["client_endpoint"] == portal.oauth_endpoint
        assert call(second, two["access_token"]).status_code == 200  # not revoked by the other
        auth.expire_access_tokens(second.member_id)
        assert call(portal, renewed.json()["access_token"]).status_code == 200
        assert code(call(second, two["access_token"])) == "expired_token"
        assert auth.refresh_calls(portal.member_id) == 1
        assert auth.refresh_calls(second.member_id) == 0


# -- failures and counts --------------------------------------------------------------------------


def test_refresh_calls_counts_every_request(auth: FakeAuthServer, portal: FakePortal) -> None:
    """refresh_calls counts successes, refusals and unknown tokens; per portal only its own."""
    pair = auth.install(portal)
    refresh(auth, pair["refresh_token"])
    refresh(auth, pair["refresh_token"])  # spent: still a call of that portal
    refresh(auth, "unknown")
    assert auth.refresh_calls(portal.member_id) == 2
    assert auth.refresh_calls() == 3


def test_payment_required(auth: FakeAuthServer, portal: FakePortal) -> None:
    """fail_refresh("PAYMENT_REQUIRED") answers the documented body once; nothing is spent."""
    pair = auth.install(portal)
    auth.fail_refresh("PAYMENT_REQUIRED")
    refused = refresh(auth, pair["refresh_token"])
    assert refused.status_code == 402
    assert refused.json() == {"error": "PAYMENT_REQUIRED", "error_description": "Payment required"}
    assert refresh(auth, pair["refresh_token"]).status_code == 200


def test_injected_invalid_grant_and_server_error(auth: FakeAuthServer, portal: FakePortal) -> None:
    """fail_refresh queues in order: invalid_grant JSON, then an HTML 500, then normal."""
    pair = auth.install(portal)
    auth.fail_refresh("invalid_grant")
    auth.fail_refresh("server_error", times=2)
    grant = refresh(auth, pair["refresh_token"])
    assert (grant.status_code, code(grant)) == (400, "invalid_grant")
    for _ in range(2):
        page = refresh(auth, pair["refresh_token"])
        assert page.status_code == 500
        assert page.headers["Content-Type"].startswith("text/html")
    assert refresh(auth, pair["refresh_token"]).status_code == 200
    assert auth.refresh_calls() == 4


def test_a_failure_for_one_portal_spares_the_other(
    auth: FakeAuthServer, portal: FakePortal
) -> None:
    """fail_refresh(member_id=...) fails only refreshes of that portal's tokens."""
    with FakePortal(auth_server=auth) as second:
        one, two = auth.install(portal), auth.install(second)
        auth.fail_refresh("PAYMENT_REQUIRED", member_id=second.member_id)
        assert refresh(auth, one["refresh_token"]).status_code == 200
        assert refresh(auth, two["refresh_token"]).status_code == 402


def test_hang_holds_until_the_bound_then_closes() -> None:
    """fail_refresh("hang"): no answer within the client's timeout; the token is not spent."""
    with (
        FakeAuthServer(hang_seconds=0.5) as auth,
        FakePortal(auth_server=auth) as portal,
    ):
        pair = auth.install(portal)
        auth.fail_refresh("hang")
        params = {
            "grant_type": "refresh_token",
            "client_id": auth.client_id,
            "client_secret": auth.client_secret,
            "refresh_token": pair["refresh_token"],
        }
        with pytest.raises(requests.ConnectionError):
            # the server closes without an answer after 0.5 s; 10 s bounds the wait
            requests.get(auth.token_url, params=params, timeout=TIMEOUT)
        assert refresh(auth, pair["refresh_token"]).status_code == 200


def test_hang_ends_at_stop() -> None:
    """A hung refresh is released by stop(): the client's read fails, it does not wait out."""
    auth = FakeAuthServer(hang_seconds=60).start()
    portal = FakePortal(auth_server=auth).start()
    try:
        pair = auth.install(portal)
        auth.fail_refresh("hang")
        failures: list[BaseException] = []

        def hung() -> None:
            try:
                refresh(auth, pair["refresh_token"])
            except requests.RequestException as exc:
                failures.append(exc)

        thread = threading.Thread(target=hung)
        thread.start()
        deadline = time.monotonic() + 5.0
        while auth.refresh_calls() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        auth.stop()
        thread.join(timeout=TIMEOUT)
        assert not thread.is_alive()
        assert len(failures) == 1
    finally:
        auth.stop()
        portal.stop()


def test_bad_lever_arguments_are_refused(auth: FakeAuthServer) -> None:
    """Unknown failure kinds, non-positive times and negative delays raise ValueError."""
    with pytest.raises(ValueError, match="kind must be one of"):
        auth.fail_refresh("timeout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        auth.fail_refresh("hang", times=0)
    with pytest.raises(ValueError, match="seconds"):
        auth.delay_refresh(-1)
    with pytest.raises(ValueError, match="access_token_lifetime"):
        FakeAuthServer(access_token_lifetime=0)


# -- secrets --------------------------------------------------------------------------------------


def test_secrets_never_in_recordings_or_logs(
    auth: FakeAuthServer, portal: FakePortal, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither server's recordings (repr, query, raw) nor logs hold the secret or a token."""
    caplog.set_level(logging.DEBUG)
    pair = auth.install(portal)
    renewed = refresh(auth, pair["refresh_token"]).json()
    requests.post(
        auth.token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": auth.client_id,
            "client_secret": auth.client_secret,
            "refresh_token": renewed["refresh_token"],
        },
        timeout=TIMEOUT,
    )
    call(portal, renewed["access_token"])
    secrets = {
        auth.client_secret,
        pair["access_token"],
        pair["refresh_token"],
        renewed["access_token"],
        renewed["refresh_token"],
    }
    recorded = [
        repr(request) + repr(dict(request.query)) + request.raw.decode() + repr(request.headers)
        for request in auth.requests
    ]
    shown = "\n".join([*recorded, *(repr(r) for r in portal.requests), caplog.text, repr(auth)])
    assert len(auth.requests) == 2
    assert auth.requests[0].query["client_id"] == auth.client_id  # recorded, not emptied
    assert not [secret for secret in secrets if secret in shown]


def test_b24oauth_renews_through_the_server(auth: FakeAuthServer, portal: FakePortal) -> None:
    """End to end: B24OAuth's refresh callable renews at token_url after expired_token."""
    pair = dict(auth.install(portal))
    stored: list[str] = []

    def renew() -> str:
        answer = refresh(auth, pair["refresh_token"]).json()
        pair.update(answer)
        return str(answer["access_token"])

    client = B24OAuth(
        portal.oauth_endpoint, pair["access_token"], refresh=renew, on_token=stored.append
    )
    portal.add_task(title="seen")
    auth.expire_access_tokens()
    result = BatchV3(client).make({"t": ("tasks.task.list", {"select": ["id", "title"]})})
    assert [item["title"] for item in result.data["t"]["items"]] == ["seen"]
    assert stored == [pair["access_token"]]
    assert auth.refresh_calls(portal.member_id) == 1
