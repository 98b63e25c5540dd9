"""No frame of b24batch's own code in a traceback holds a secret among its locals.

Django's technical 500 page, Sentry and ``TracebackException(capture_locals=True)`` print the
locals of every frame. For each error path (transport, decode, construction, OAuth refresh),
every b24batch frame from the caller down, and those of every chained exception, is checked.
"""

from __future__ import annotations

import socket
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

import b24batch
from b24batch import (
    AuthError,
    B24Error,
    B24Hook,
    B24OAuth,
    BatchByChunkV3,
    BatchV3,
    DecodeError,
    OAuthApp,
    RedisStore,
    RetryPolicy,
    SdkError,
    SQLiteStore,
    TransportError,
)
from b24batch.testing import FakeAuthServer, FakePortal, Fault
from tests.support.loopback import RawServer, answer

PACKAGE = Path(b24batch.__file__).resolve().parent
SECRET = "fr4meS3cretValue77"
TOKEN = "fr4meTok3nValue88"
FRESH = "fr3shTok3nValue99"
GET = [("tasks.task.get", {"id": 1})]


def _ours(filename: str) -> bool:
    return Path(filename).resolve().is_relative_to(PACKAGE)


def _shown(value: object) -> str:
    texts = []
    for show in (repr, str):
        try:
            texts.append(show(value))
        except Exception as exc:  # a half-built object: its repr fails, it shows nothing
            texts.append(type(exc).__name__)
    return " ".join(texts)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: list[BaseException] = []
    pending = [error]
    while pending:
        item = pending.pop()
        if any(item is s for s in seen):
            continue
        seen.append(item)
        yield item
        pending.extend(e for e in (item.__cause__, item.__context__) if e is not None)


def _frames(tb: TracebackType | None) -> Iterator[tuple[str, dict[str, Any]]]:
    while tb is not None:
        frame = tb.tb_frame
        if _ours(frame.f_code.co_filename):
            yield f"{frame.f_code.co_filename}:{frame.f_code.co_name}", dict(frame.f_locals)
        tb = tb.tb_next


def assert_no_secret_in_frames(error: BaseException, *secrets: str) -> int:
    """Check every b24batch frame of ``error`` and its chain; return how many were checked."""
    checked = 0
    for item in _chain(error):
        for where, local_vars in _frames(item.__traceback__):
            checked += 1
            for name, value in local_vars.items():
                shown = _shown(value)
                for secret in secrets:
                    assert secret not in shown, f"{where}: local {name!r} shows a secret"
    summary = traceback.TracebackException(
        type(error), error, error.__traceback__, capture_locals=True
    )
    pending: list[traceback.TracebackException | None] = [summary]
    while pending:
        current = pending.pop()
        if current is None:
            continue
        for frame in current.stack:
            if _ours(frame.filename):
                text = " ".join(f"{k}={v}" for k, v in (frame.locals or {}).items())
                assert not [s for s in secrets if s in text], f"{frame.name}: capture_locals"
        pending.extend([current.__cause__, current.__context__])
    return checked


def _raised(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except BaseException as error:
        return error
    raise AssertionError("nothing was raised")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def shared_portal() -> Iterator[FakePortal]:
    with FakePortal(secret=SECRET) as portal:
        yield portal


def _hook(url: str, **options: Any) -> B24Hook:
    return B24Hook.from_webhook_url(
        url, **{"timeout": (1.0, 1.0), "retry": None, "rate_limit": None, **options}
    )


def test_refused_connection_frames_hold_no_secret() -> None:
    """A refused connection (with urllib3's connect retries): no b24batch frame shows it."""
    url = f"http://127.0.0.1:{_closed_port()}/rest/1/{SECRET}/"
    with _hook(url, retry=RetryPolicy(base_delay=0.0)) as client:
        error = _raised(lambda: BatchV3(client).make(GET))
    assert isinstance(error, TransportError)
    assert assert_no_secret_in_frames(error, SECRET) >= 3  # make, _send, send at least


@pytest.mark.parametrize(
    "behaviour",
    ["timeout", "reset", "interim", "too-large", "html-echo", "deep-json", "not-json-echo"],
)
def test_raw_server_failures_hold_no_secret_in_frames(behaviour: str) -> None:
    """Timeout, reset, 1xx, size cap and bodies echoing the secret: frames stay clean."""
    echo = f"<html><title>502 /rest/1/{SECRET}/batch</title>{SECRET}</html>".encode()

    def handler(conn: socket.socket, request: bytes) -> bool:
        if behaviour == "timeout":
            server.stopped.wait(timeout=5)
        elif behaviour == "reset":
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        elif behaviour == "interim":
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\n\r\n" + answer(200, b"{}"))
        elif behaviour == "too-large":
            conn.sendall(answer(200, SECRET.encode() * 10_000))
        elif behaviour == "html-echo":
            conn.sendall(answer(502, echo, "Content-Type: text/html"))
        elif behaviour == "deep-json":
            conn.sendall(answer(200, b"[" * 100_000 + SECRET.encode()))
        else:
            conn.sendall(answer(200, SECRET.encode() + b" not json"))
        return False

    with (
        RawServer(handler) as server,
        _hook(server.webhook_url(SECRET), max_response_bytes=1000) as c,
    ):
        error = _raised(lambda: BatchV3(c).make(GET))
    assert isinstance(error, TransportError | DecodeError)
    assert SECRET not in str(error)
    assert assert_no_secret_in_frames(error, SECRET) >= 3


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda: Fault.html(502), id="html-echoes-path"),
        pytest.param(Fault.truncated, id="truncated"),
        pytest.param(Fault.drop_after, id="drop-after"),
        pytest.param(
            lambda: Fault.response(302, "", headers={"Location": f"https://x/rest/1/{SECRET}/"}),
            id="redirect",
        ),
    ],
)
def test_portal_faults_hold_no_secret_in_frames(
    shared_portal: FakePortal, fault: Callable[[], Fault]
) -> None:
    """FakePortal faults, plain and chunked calls: no b24batch frame shows the secret."""
    with _hook(shared_portal.webhook_url) as client:
        shared_portal.inject(fault())
        error = _raised(lambda: BatchV3(client).make(GET))
        assert assert_no_secret_in_frames(error, SECRET) >= 3
        shared_portal.inject(fault())
        error = _raised(lambda: BatchByChunkV3(client).make(GET * 3))
        assert assert_no_secret_in_frames(error, SECRET) >= 3


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _hook(f"https://p.example/rest/1/{SECRET}/", timeout=0), id="timeout"),
        pytest.param(lambda: _hook(f"https://p.example/rest/1/{SECRET}/", retry=3), id="retry"),
        pytest.param(lambda: _hook(f"https://p.example/rest/1/{SECRET}/", bogus=1), id="unknown"),
        pytest.param(
            lambda: _hook(f"https://p.example/rest/1/{SECRET}/", session="x"), id="session"
        ),
        pytest.param(lambda: _hook(f"https://p.example/rest/1/{SECRET}/x"), id="bad-path"),
        pytest.param(lambda: _hook(f"http://p.example/rest/1/{SECRET}/"), id="plain-http"),
        pytest.param(lambda: _hook(f"https://[p/rest/1/{SECRET}/"), id="bad-ipv6"),
        pytest.param(lambda: B24Hook("https://p.example", 1, SECRET, timeout=-1), id="hook-init"),
        pytest.param(
            lambda: B24OAuth(f"https://p.example/rest/1/{SECRET}/", TOKEN), id="oauth-webhook"
        ),
        pytest.param(
            lambda: B24OAuth("https://p.example/rest/", TOKEN, retry="x"), id="oauth-retry"
        ),
        pytest.param(
            lambda: B24OAuth("https://p.example/rest/", f"ü{TOKEN}"), id="oauth-non-ascii"
        ),
        pytest.param(
            lambda: B24OAuth("https://p.example/rest/", TOKEN, refresh=1), id="oauth-refresh"
        ),
        pytest.param(
            lambda: RedisStore(f"redis://:{SECRET}@redis.internal:6379/0", prefix="a\nb"),
            id="redis-prefix",
        ),
        pytest.param(
            lambda: RedisStore(f"redis://:{SECRET}@redis.internal:6379/0", timeout=0),
            id="redis-timeout",
        ),
        pytest.param(
            lambda: RedisStore(f"redis://:{SECRET}@redis.internal:6379/0?db=x"),
            id="redis-query",
        ),
        pytest.param(lambda: RedisStore(f"redis://:{SECRET}@[h:6379/0"), id="redis-bad-ipv6"),
    ],
)
def test_construction_errors_hold_no_secret(make: Callable[[], object]) -> None:
    """Misuse at construction: the error is a B24Error and no b24batch frame shows a secret."""
    error = _raised(make)
    assert isinstance(error, B24Error)
    assert SECRET not in str(error)
    assert TOKEN not in str(error)
    assert assert_no_secret_in_frames(error, SECRET, TOKEN) >= 1


def _oauth(portal: FakePortal, **options: Any) -> B24OAuth:
    portal.expire_token()
    return B24OAuth(
        portal.oauth_endpoint, portal.access_token, retry=None, rate_limit=None, **options
    )


def test_failing_refresh_holds_no_token_in_frames(shared_portal: FakePortal) -> None:
    """refresh raising with both tokens in its message: AuthError, frames clean of both."""
    old = shared_portal.access_token

    def refresh() -> str:
        raise RuntimeError(f"refresh failed for {old}, would have been {FRESH}")

    with _oauth(shared_portal, refresh=refresh) as client:
        error = _raised(lambda: BatchV3(client).make(GET))
    assert isinstance(error, AuthError)
    assert assert_no_secret_in_frames(error, old, FRESH) >= 3


def test_unusable_refreshed_token_holds_no_token_in_frames(shared_portal: FakePortal) -> None:
    """A refreshed token that cannot go in a header: AuthError without it, frames clean."""
    old = shared_portal.access_token
    with _oauth(shared_portal, refresh=lambda: f"ţ{FRESH}") as client:
        error = _raised(lambda: BatchV3(client).make(GET))
    assert isinstance(error, AuthError)
    assert FRESH not in str(error)
    assert "no usable token" in str(error)
    assert assert_no_secret_in_frames(error, old, FRESH) >= 3


def test_raising_on_token_holds_no_token_in_frames(shared_portal: FakePortal) -> None:
    """on_token raising: an AuthError (its exception as refresh_error), and no frame of
    renew() or of the refresh's thread holds the fresh token."""
    old = shared_portal.access_token

    def on_token(token: str) -> None:
        raise OSError("the token store is down")

    with _oauth(shared_portal, refresh=shared_portal.refresh_token, on_token=on_token) as client:
        error = _raised(lambda: BatchV3(client).make(GET))
        fresh = shared_portal.access_token
    assert isinstance(error, AuthError)
    assert isinstance(error.refresh_error, OSError)
    frames = assert_no_secret_in_frames(error, old, fresh)
    assert frames >= 3
    names = [where for where, _ in _frames(error.__traceback__)]
    assert any(where.endswith(":renew") for where in names)


def _app_and_portal(
    auth: FakeAuthServer, portal: FakePortal, tmp_path: Path
) -> tuple[OAuthApp, dict[str, Any]]:
    app = OAuthApp(
        client_id=auth.client_id,
        client_secret=auth.client_secret,
        store=SQLiteStore(tmp_path / "frames.sqlite3"),
        token_url=auth.token_url,
        refresh_timeout=1.0,
    )
    tokens = auth.install(portal)
    app.save_tokens(tokens)
    return app, tokens


@pytest.mark.parametrize("kind", ["invalid_grant", "server_error", "hang"])
def test_an_apps_failing_refresh_holds_no_secret_in_frames(tmp_path: Path, kind: str) -> None:
    """OAuthApp's refresh refused, failing or timing out: no frame holds the client secret or
    either token, and neither does the message."""
    with FakeAuthServer(hang_seconds=5.0) as auth, FakePortal(auth_server=auth) as portal:
        app, tokens = _app_and_portal(auth, portal, tmp_path)
        auth.fail_refresh(kind)  # type: ignore[arg-type]
        auth.expire_access_tokens()
        with app.client(portal.member_id, retry=None, rate_limit=None) as client:
            error = _raised(lambda: BatchV3(client).make(GET))
    secrets = (auth.client_secret, tokens["access_token"], tokens["refresh_token"])
    assert isinstance(error, AuthError)
    assert not any(secret in str(error) for secret in secrets)
    assert assert_no_secret_in_frames(error, *secrets) >= 3


def test_a_rejected_install_holds_no_token_in_frames(tmp_path: Path) -> None:
    """save_tokens() refusing a field: no frame of b24batch holds the tokens given."""
    with FakeAuthServer() as auth, FakePortal(auth_server=auth) as portal:
        app, tokens = _app_and_portal(auth, portal, tmp_path)
        error = _raised(lambda: app.save_tokens({**tokens, "member_id": "../x"}))
    assert isinstance(error, SdkError)
    secrets = (auth.client_secret, tokens["access_token"], tokens["refresh_token"])
    assert assert_no_secret_in_frames(error, *secrets) >= 1
