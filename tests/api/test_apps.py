"""OAuthApp end to end: install, store, client, expiry, failures, many portals, over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b24batch import (
    AuthError,
    BatchV3,
    InstalledPortal,
    OAuthApp,
    SdkError,
    SdkTypeError,
    SQLiteStore,
)
from b24batch.testing import FakeAuthServer, FakePortal

READ = [("tasks.task.get", {"id": 1})]
THREADS = 16
JOIN = 60.0


@pytest.fixture
def auth() -> Iterator[FakeAuthServer]:
    with FakeAuthServer(hang_seconds=30.0) as server:
        yield server


@pytest.fixture
def portal(auth: FakeAuthServer) -> Iterator[FakePortal]:
    with FakePortal(auth_server=auth) as fake:
        fake.add_task(title="Seed")
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "app.sqlite3")


def _app(auth: FakeAuthServer, store: SQLiteStore, **options: Any) -> OAuthApp:
    return OAuthApp(
        client_id=auth.client_id,
        client_secret=auth.client_secret,
        store=store,
        token_url=auth.token_url,
        **options,
    )


def _stored(app: OAuthApp, member_id: str) -> dict[str, Any]:
    found = app.store.token_read(app.prefix + member_id)
    assert found is not None
    return {"version": found[0], **json.loads(found[1].value)}


@pytest.mark.parametrize("shape", ["install", "install_form", "install_event"])
def test_each_install_shape_is_saved_and_serves_a_batch(
    auth: FakeAuthServer, portal: FakePortal, store: SQLiteStore, shape: str
) -> None:
    """The token answer, the install form and the ONAPPINSTALL event each give a working client."""
    app = _app(auth, store)
    member_id = app.save_tokens(getattr(auth, shape)(portal))
    assert member_id == portal.member_id
    with app.client(member_id, rate_limit=None) as b24:
        assert BatchV3(b24).make(READ).data[0]["item"]["title"] == "Seed"
    assert auth.refresh_calls() == 0  # nothing refreshed "just in case"
    [listed] = app.portals()
    assert (listed.member_id, listed.version) == (member_id, 1)


def test_an_expired_token_is_refreshed_once_and_stored_before_it_is_used(
    auth: FakeAuthServer, portal: FakePortal, store: SQLiteStore
) -> None:
    """expired_token: one refresh; the store holds the new pair by the time on_token sees it."""
    app = _app(auth, store)
    member_id = app.save_tokens(auth.install(portal))
    first = _stored(app, member_id)
    seen: list[dict[str, Any]] = []

    def on_token(token: str) -> None:
        seen.append({"token": token, **_stored(app, member_id)})

    with app.client(member_id, rate_limit=None, on_token=on_token) as b24:
        auth.expire_access_tokens()
        assert BatchV3(b24).make(READ).is_success
        assert BatchV3(b24).make(READ).is_success
    assert auth.refresh_calls() == 1
    [after] = seen
    assert after["version"] == 2
    assert after["token"] == after["access_token"] != first["access_token"]
    assert after["refresh_token"] != first["refresh_token"]
    [refresh] = auth.requests
    assert (refresh.method, refresh.query["grant_type"]) == ("GET", "refresh_token")
    recorded = f"{refresh.raw!r} {refresh.query!r} {refresh.path}"
    for secret in (auth.client_secret, first["refresh_token"], first["access_token"]):
        assert secret not in recorded


def test_a_client_made_after_the_stored_expiry_refreshes_first(
    auth: FakeAuthServer, portal: FakePortal, store: SQLiteStore
) -> None:
    """The stored expires has passed (by the app's clock): client() refreshes, once, first."""
    later = _app(auth, store, wall_clock=lambda: time.time() + 7200)
    member_id = later.save_tokens(auth.install(portal))
    auth.expire_access_tokens()
    with later.client(member_id, rate_limit=None) as b24:
        assert auth.refresh_calls() == 1
        assert BatchV3(b24).make(READ).is_success
    assert auth.refresh_calls() == 1


def test_a_client_with_an_old_token_takes_the_new_one_without_a_refresh(
    auth: FakeAuthServer, portal: FakePortal, store: SQLiteStore
) -> None:
    """Another client refreshed (revoking this one's token): this one re-reads, no second call."""
    app = _app(auth, store)
    member_id = app.save_tokens(auth.install(portal))
    with (
        app.client(member_id, rate_limit=None) as stale,
        app.client(member_id, rate_limit=None) as other,
    ):
        auth.expire_access_tokens()
        assert BatchV3(other).make(READ).is_success
        assert BatchV3(stale).make(READ).is_success
    assert auth.refresh_calls() == 1


def _sixteen(app: OAuthApp, member_id: str) -> list[Any]:
    outcomes: list[Any] = [None] * THREADS
    start = threading.Barrier(THREADS)
    client = app.client(member_id, rate_limit=None)

    def run(i: int) -> None:
        start.wait(JOIN)
        try:
            outcomes[i] = BatchV3(client).make(READ)
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
        assert not thread.is_alive()
    client.close()
    return outcomes


@pytest.mark.parametrize(
    ("kind", "code", "reinstall"),
    [
        pytest.param("invalid_grant", "invalid_grant", True, id="invalid-grant"),
        pytest.param("PAYMENT_REQUIRED", "PAYMENT_REQUIRED", False, id="payment"),
        pytest.param("server_error", "HTTP_500", False, id="500-html"),
        pytest.param("hang", "TRANSPORT", False, id="hang"),
    ],
)
def test_a_failing_refresh_is_one_call_and_one_failure_for_sixteen_threads(
    auth: FakeAuthServer,
    portal: FakePortal,
    store: SQLiteStore,
    kind: str,
    code: str,
    reinstall: bool,
) -> None:
    """16 threads meet expired_token; the refresh fails: one call, the same AuthError for all,
    saying whether the portal needs a reinstall; the stored pair is kept."""
    app = _app(auth, store, refresh_timeout=1.0)
    member_id = app.save_tokens(auth.install(portal))
    auth.fail_refresh(kind)  # type: ignore[arg-type]
    auth.expire_access_tokens()
    outcomes = _sixteen(app, member_id)
    assert auth.refresh_calls() == 1
    assert all(isinstance(o, AuthError) for o in outcomes), outcomes
    assert {(o.code, o.reinstall, o.may_retry) for o in outcomes} == {
        (code, reinstall, not reinstall)
    }
    assert _stored(app, member_id)["version"] == 1
    secrets = (auth.client_secret, _stored(app, member_id)["refresh_token"])
    assert not any(secret in str(o) for o in outcomes for secret in secrets)


def test_one_app_serves_many_portals_each_with_its_own_limits(
    auth: FakeAuthServer, store: SQLiteStore
) -> None:
    """Three portals of one app: each client its own portal, meter keyed by app and portal."""
    portals = [FakePortal(auth_server=auth).start() for _ in range(3)]
    try:
        app = _app(auth, store)
        members = [app.save_tokens(auth.install(p)) for p in portals]
        keys = set()
        for member_id, fake in zip(members, portals, strict=True):
            fake.add_task(title=member_id)
            with app.client(member_id) as b24:
                assert BatchV3(b24).make(READ).data[0]["item"]["title"] == member_id
                keys.add(b24.limiter.meter.key)  # type: ignore[attr-defined]
        assert len(keys) == 3
        listed = app.portals()
        assert [p.member_id for p in listed] == sorted(members)
        assert all(isinstance(p, InstalledPortal) for p in listed)
    finally:
        for fake in portals:
            fake.stop()


def test_no_secret_in_the_apps_repr_listing_or_errors(
    auth: FakeAuthServer, portal: FakePortal, store: SQLiteStore
) -> None:
    """repr, portals() and a save error show neither the client secret nor a token."""
    app = _app(auth, store)
    tokens = auth.install(portal)
    app.save_tokens(tokens)
    shown = f"{app!r} {app} {app.portals()!r} {app.client(portal.member_id, rate_limit=None)!r}"
    with pytest.raises(SdkError) as info:
        app.save_tokens({**tokens, "refresh_token": tokens["refresh_token"] + " x"})
    shown += str(info.value)
    for secret in (auth.client_secret, tokens["access_token"], tokens["refresh_token"]):
        assert secret not in shown


@pytest.mark.parametrize(
    ("options", "error"),
    [
        pytest.param({"client_id": ""}, SdkTypeError, id="client-id"),
        pytest.param({"client_id": "a:b"}, SdkError, id="client-id-colon"),
        pytest.param({"client_secret": 5}, SdkTypeError, id="secret"),
        pytest.param({"store": "redis://x"}, SdkTypeError, id="store"),
        pytest.param({"token_url": "http://oauth.example.com/"}, SdkError, id="plain-http"),
        pytest.param({"refresh_timeout": 0}, SdkError, id="timeout"),
    ],
)
def test_wrong_arguments_are_refused_by_name(
    store: SQLiteStore, options: dict[str, Any], error: type[Exception]
) -> None:
    """Each wrong argument raises before anything is stored or sent, naming it."""
    given = {"client_id": "local.a", "client_secret": "s3cretValue", "store": store, **options}
    with pytest.raises(error) as info:
        OAuthApp(**given)
    assert "s3cretValue" not in str(info.value)


def test_a_portal_without_tokens_is_an_auth_error_saying_so(
    auth: FakeAuthServer, store: SQLiteStore
) -> None:
    """client() for a member id the store does not hold: NO_TOKENS, reinstall needed."""
    with pytest.raises(AuthError) as info:
        _app(auth, store).client("nobody")
    assert (info.value.code, info.value.reinstall) == ("NO_TOKENS", True)


def test_a_store_that_cannot_be_written_fails_save_tokens_clearly(
    auth: FakeAuthServer, portal: FakePortal, tmp_path: Path
) -> None:
    """A store whose file cannot be written: AuthError TOKEN_STORE, not a raw OSError."""
    (tmp_path / "dir").mkdir()
    app = _app(auth, SQLiteStore(tmp_path / "dir"))  # a directory: SQLite cannot open it
    with pytest.raises(AuthError) as info:
        app.save_tokens(auth.install(portal))
    assert info.value.code == "TOKEN_STORE"
