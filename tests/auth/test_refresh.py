"""A refused refresh over real HTTP: the whole error a user sees, for each kind of refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from b24batch import AuthError, BatchV3, OAuthApp, SQLiteStore
from b24batch.redaction import Secret
from b24batch.testing import FakeAuthServer, FakePortal

READ = [("tasks.task.get", {"id": 1})]
REINSTALL = (
    "the portal's tokens are unusable: the application must be installed (or opened by an "
    "administrator) again on this portal, then save_tokens() its new tokens"
)
KEPT = "the tokens are kept; the refresh may succeed later"
CONFIG = (
    "check the application's client_id and client_secret (the tokens are kept; nothing will "
    "succeed until they are right)"
)


@pytest.fixture
def auth() -> Iterator[FakeAuthServer]:
    with FakeAuthServer() as server:
        yield server


@pytest.fixture
def portal(auth: FakeAuthServer) -> Iterator[FakePortal]:
    with FakePortal(auth_server=auth) as fake:
        fake.add_task(title="Seed")
        yield fake


def _refused(auth: FakeAuthServer, portal: FakePortal, tmp_path: Path, secret: str) -> AuthError:
    """Save the portal's tokens, expire them, run one batch: the AuthError it raises."""
    app = OAuthApp(
        client_id=auth.client_id,
        client_secret=secret,
        store=SQLiteStore(tmp_path / "app.sqlite3"),
        token_url=auth.token_url,
    )
    member_id = app.save_tokens(auth.install(portal))
    auth.expire_access_tokens()
    with app.client(member_id, rate_limit=None) as b24, pytest.raises(AuthError) as info:
        BatchV3(b24).make(READ)
    assert auth.refresh_calls() == 1
    return info.value


@pytest.mark.parametrize(
    ("kind", "status", "message"),
    [
        pytest.param(
            "invalid_grant",
            400,
            "refreshing the access token failed: the authorization server {url} refused the "
            f"refresh token Invalid grant; {REINSTALL}",
            id="invalid-grant",
        ),
        pytest.param(
            "PAYMENT_REQUIRED",
            402,
            "refreshing the access token failed: the authorization server {url} refused the "
            f"refresh Payment required; {KEPT}",
            id="payment",
        ),
    ],
)
def test_a_refused_refresh_says_what_the_server_said_and_what_it_means(
    auth: FakeAuthServer,
    portal: FakePortal,
    tmp_path: Path,
    kind: str,
    status: int,
    message: str,
) -> None:
    """The error carries the server's code and HTTP status and says, in one line, what the
    server answered and whether the tokens can still be used."""
    auth.fail_refresh(kind)  # type: ignore[arg-type]
    error = _refused(auth, portal, tmp_path, auth.client_secret)
    assert (error.code, error.status, error.reinstall, error.may_retry) == (
        kind,
        status,
        kind == "invalid_grant",
        kind != "invalid_grant",
    )
    assert str(error) == f"{kind} (HTTP {status}): " + message.format(url=auth.token_url)


def test_a_wrong_client_secret_is_not_retried_and_names_the_fix(
    auth: FakeAuthServer, portal: FakePortal, tmp_path: Path
) -> None:
    """invalid_client: neither a reinstall nor worth retrying; the message says what to check,
    and the wrong secret is not in it."""
    error = _refused(auth, portal, tmp_path, "wrongSecret1")
    assert (error.code, error.status, error.reinstall, error.may_retry) == (
        "invalid_client",
        400,
        False,
        False,
    )
    assert str(error) == (
        f"invalid_client (HTTP 400): the authorization server {auth.token_url} refused the "
        f"refresh Invalid client data; {CONFIG}"
    )


def test_tokens_answered_for_another_portal_are_refused_and_not_stored(
    auth: FakeAuthServer, portal: FakePortal, tmp_path: Path
) -> None:
    """A record whose refresh token belongs to another portal (a store edited by hand): the
    answer's member_id differs, so the new pair is refused as BAD_ANSWER, not stored."""
    store = SQLiteStore(tmp_path / "app.sqlite3")
    app = OAuthApp(
        client_id=auth.client_id,
        client_secret=auth.client_secret,
        store=store,
        token_url=auth.token_url,
    )
    member_id = app.save_tokens(auth.install(portal))
    found = store.token_read(app.prefix + member_id)
    assert found is not None
    moved = json.loads(found[1].value)
    moved["member_id"] = "someone.else"
    store.token_write(app.prefix + "someone.else", Secret(json.dumps(moved)), None)
    auth.expire_access_tokens()
    with app.client("someone.else", rate_limit=None) as b24, pytest.raises(AuthError) as info:
        BatchV3(b24).make(READ)
    # the answer spent the refresh token and its pair belongs elsewhere: nothing usable is left
    assert (info.value.code, info.value.status) == ("BAD_ANSWER", 200)
    assert (info.value.reinstall, info.value.may_retry) == (True, False)
    assert "must be installed (or opened by an administrator) again" in str(info.value)
    assert (
        f"BAD_ANSWER: refreshing the access token failed: the authorization server "
        f"{auth.token_url} answered tokens for another portal ({member_id!r});"
    ) in str(info.value)
    assert app.portals()[1].version == 1  # someone.else's record is as it was
