"""The HTTP client (b24batch.client): webhook URL rules, session setup, transport errors."""

from __future__ import annotations

import logging
import re
import socket
import time
import traceback
from pathlib import Path

import pytest
import requests
from urllib3.util.retry import Retry

from b24batch import (
    AuthError,
    B24Hook,
    BatchV3,
    DecodeError,
    RetryPolicy,
    SdkError,
    SdkTypeError,
    SQLiteStore,
    TransportError,
)
from b24batch._limits.shared import SharedMeter
from b24batch.client import DEFAULT_TIMEOUT, USER_AGENT
from b24batch.testing import FakePortal, Fault
from tests.support.loopback import RawServer, answer

CONNECT_RETRIES = RetryPolicy().max_attempts - 1  # made by the batch layer, under max_wait

SECRET = "abc123secretXYZ"


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"https://example.bitrix24.com/rest/1/{SECRET}/", id="classic"),
        pytest.param(f"https://example.bitrix24.com/rest/1/{SECRET}", id="classic-no-slash"),
        pytest.param(f"https://example.bitrix24.com/rest/api/1/{SECRET}/", id="v3"),
        pytest.param(f"https://example.bitrix24.com/rest/api/1/{SECRET}", id="v3-no-slash"),
        pytest.param(f"  HTTPS://Example.Bitrix24.com/rest/1/{SECRET}/ ", id="case-and-spaces"),
    ],
)
def test_webhook_url_forms_all_post_to_the_v3_batch(url: str) -> None:
    """Classic and REST 3.0 forms, with or without slash, give the same REST 3.0 batch URL."""
    client = B24Hook.from_webhook_url(url)
    assert client._batch_url.value == f"https://example.bitrix24.com/rest/api/1/{SECRET}/batch"


def test_port_and_ipv6_loopback_are_kept() -> None:
    """An explicit port survives, and an IPv6 loopback host is bracketed again."""
    client = B24Hook.from_webhook_url(f"http://[::1]:8080/rest/7/{SECRET}/")
    assert client._batch_url.value == f"http://[::1]:8080/rest/api/7/{SECRET}/batch"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        pytest.param(
            "https://example.bitrix24.com/rest/", "needs a user id and a secret", id="no-user"
        ),
        pytest.param("https://example.bitrix24.com/rest/1/", "needs a user id", id="no-secret"),
        pytest.param(
            "https://example.bitrix24.com/rest/x/abc/", "needs a user id", id="user-not-number"
        ),
        pytest.param(
            f"https://example.bitrix24.com/api/1/{SECRET}/", "needs a user id", id="other-path"
        ),
        pytest.param(
            f"https://example.bitrix24.com/rest/1/{SECRET}/?x=1", "no query string", id="query"
        ),
        pytest.param(
            f"https://example.bitrix24.com/rest/1/{SECRET}/#f", "no query string", id="fragment"
        ),
        pytest.param(f"ftp://example.bitrix24.com/rest/1/{SECRET}/", "not a webhook URL", id="ftp"),
        pytest.param(f"example.bitrix24.com/rest/1/{SECRET}/", "not a webhook URL", id="no-scheme"),
        pytest.param(
            f"https://u:p@example.bitrix24.com/rest/1/{SECRET}/", "user:password", id="userinfo"
        ),
        pytest.param(
            f"http://example.bitrix24.com/rest/1/{SECRET}/", "requires https", id="plain-http"
        ),
        pytest.param(f"http://10.0.0.1/rest/1/{SECRET}/", "requires https", id="http-private"),
    ],
)
def test_bad_webhook_urls_are_refused_without_echoing_the_secret(url: str, fragment: str) -> None:
    """Anything but a webhook URL raises SdkError (a ValueError) saying what one looks like."""
    with pytest.raises(SdkError, match=fragment) as info:
        B24Hook.from_webhook_url(url)
    assert isinstance(info.value, ValueError)
    assert SECRET not in str(info.value)
    assert "https://PORTAL/rest/USER_ID/SECRET/" in str(info.value) or "https" in str(info.value)


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        pytest.param(f"https://example.bitrix24.com/rest/1/{SECRET}/profile.json", "profile.json"),
        pytest.param(f"https://example.bitrix24.com/rest/1/{SECRET}/profile", "profile"),
        pytest.param(
            f"https://example.bitrix24.com/rest/api/1/{SECRET}/tasks.task.get/", "tasks.task.get"
        ),
        pytest.param(f"https://example.bitrix24.com/rest/1/{SECRET}/batch", "batch"),
    ],
)
def test_a_method_after_the_secret_is_named_for_removal(url: str, extra: str) -> None:
    """A webhook URL with a method appended says which part to remove, and keeps the secret."""
    with pytest.raises(SdkError) as info:
        B24Hook.from_webhook_url(url)
    assert str(info.value) == (
        f"the webhook URL for example.bitrix24.com ends in {extra!r} after its secret: remove "
        f"it, the batch names each method itself; expected https://PORTAL/rest/USER_ID/SECRET/ "
        f"(or https://PORTAL/rest/api/USER_ID/SECRET/)"
    )
    assert SECRET not in repr(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "[::1]"])
def test_plain_http_is_allowed_for_loopback(host: str) -> None:
    """http:// works for loopback hosts only, so tests and the FakePortal can use it."""
    assert B24Hook.from_webhook_url(
        f"http://{host}:1/rest/1/{SECRET}/"
    )._batch_url.value.startswith("http://")


def test_non_str_url_is_a_type_error() -> None:
    """A URL of the wrong type is an SdkTypeError."""
    with pytest.raises(SdkTypeError):
        B24Hook.from_webhook_url(b"https://x/rest/1/s/")  # type: ignore[arg-type]


def test_repr_and_str_hide_the_secret() -> None:
    """repr() and str() show the portal and user, never the secret."""
    client = B24Hook.from_webhook_url(f"https://example.bitrix24.com/rest/1/{SECRET}/")
    for text in (repr(client), str(client), client.url):
        assert SECRET not in text
    assert repr(client) == "<B24Hook https://example.bitrix24.com/rest/api/1/***/>"


def test_own_session_has_connect_only_retry_timeout_and_user_agent() -> None:
    """The client's own Session repeats nothing: every repeat is the batch layer's."""
    client = B24Hook.from_webhook_url(f"https://example.bitrix24.com/rest/1/{SECRET}/")
    adapter = client._session.get_adapter("https://example.bitrix24.com/")
    retry = adapter.max_retries
    assert isinstance(retry, Retry)
    assert retry.connect == 0
    assert (retry.read, retry.status, retry.redirect, retry.other) == (0, 0, 0, 0)
    assert "POST" not in (retry.allowed_methods or ())
    assert retry.allowed_methods  # empty would mean "any method" to urllib3 2.x
    assert client._session.headers["User-Agent"] == USER_AGENT
    assert client.timeout == DEFAULT_TIMEOUT
    assert DEFAULT_TIMEOUT[1] >= 60


def test_callers_session_is_used_as_given_and_not_closed() -> None:
    """A session passed in sends the batch, and is neither reconfigured nor closed by close()."""
    session = requests.Session()
    session.headers["X-Callers-Session"] = "yes"
    closed = []
    session.close = lambda: closed.append(True)  # type: ignore[method-assign]
    with (
        FakePortal() as portal,
        B24Hook.from_webhook_url(portal.webhook_url, session=session, rate_limit=None) as c,
    ):
        assert c._session is session
        assert BatchV3(c).make([("tasks.task.list", {})]).is_success
        (request,) = portal.requests
    assert request.headers["X-Callers-Session"] == "yes"
    assert closed == []
    assert session.headers["User-Agent"] != USER_AGENT


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [(3, 3.0), (2.5, 2.5), ((1, 70), (1.0, 70.0))],
)
def test_timeouts_are_accepted(timeout: object, expected: object) -> None:
    """A positive number or a (connect, read) pair is accepted."""
    client = B24Hook.from_webhook_url(
        f"https://x.bitrix24.com/rest/1/{SECRET}/",
        timeout=timeout,  # type: ignore[arg-type]
    )
    assert client.timeout == expected


@pytest.mark.parametrize("timeout", [None, 0, -1, (1,), (1, None), "5", True, (0, 5)])
def test_bad_timeouts_are_refused(timeout: object) -> None:
    """No timeout, a zero or a malformed one fails at construction."""
    with pytest.raises(SdkError, match="timeout="):
        B24Hook.from_webhook_url(
            f"https://x.bitrix24.com/rest/1/{SECRET}/",
            timeout=timeout,  # type: ignore[arg-type]
        )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_connection_is_a_transport_error_that_surely_did_not_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused connection raises TransportError, outcome known, secret absent everywhere."""
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{_closed_port()}/rest/1/{SECRET}/"
    policy = RetryPolicy(base_delay=0.0)
    with (
        B24Hook.from_webhook_url(url, retry=policy) as client,
        pytest.raises(TransportError) as info,
    ):
        BatchV3(client).make([("tasks.task.get", {"id": 1})], request_id="rid-1")
    error = info.value
    assert error.outcome_unknown is False
    assert error.request_id == "rid-1"
    assert error.never_connected is True
    assert error.attempts == 1 + CONNECT_RETRIES  # a request that never left is repeated
    assert "could not connect" in str(error)
    assert isinstance(error.__cause__, requests.ConnectionError)
    formatted = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    assert "could not connect" in formatted
    assert SECRET not in formatted
    assert SECRET not in str(error.__cause__)
    assert error.__context__ is None
    # the batch layer logged each repeat (WARNING); urllib3 logged the URL, and it was masked
    retries = [r for r in caplog.records if r.name == "b24batch" and r.levelname == "WARNING"]
    assert [r.getMessage().split(": ", 1)[1] for r in retries] == [
        "attempt 2 of 3 in 0.00 s after TransportError",
        "attempt 3 of 3 in 0.00 s after TransportError",
    ]
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_environment_is_read_once_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy and CA-bundle variables are taken when the client is made; NO_PROXY is honoured."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = B24Hook.from_webhook_url(f"https://x.bitrix24.com/rest/1/{SECRET}/")
    assert client._session.trust_env is False
    assert client._session.proxies["https"] == "http://proxy.example:3128"
    assert client._session.verify == "/etc/ssl/corporate.pem"
    monkeypatch.setenv("HTTPS_PROXY", "http://later.example:3128")  # read once: not seen now
    assert client._session.proxies["https"] == "http://proxy.example:3128"
    monkeypatch.setenv("NO_PROXY", "x.bitrix24.com")
    bypass = B24Hook.from_webhook_url(f"https://x.bitrix24.com/rest/1/{SECRET}/")
    assert "https" not in bypass._session.proxies


def test_a_closed_client_refuses_to_send() -> None:
    """After close(), a batch raises SdkError naming the client, and nothing reaches the portal."""
    from b24batch.testing import FakePortal

    with FakePortal() as portal:
        client = B24Hook.from_webhook_url(portal.webhook_url)
        BatchV3(client).make([("tasks.task.list", {})])
        client.close()
        with pytest.raises(
            SdkError, match=r"<B24Hook http://127.0.0.1:\d+/rest/api/1/\*\*\*/> is closed"
        ) as info:
            BatchV3(client).make([("tasks.task.list", {})])
        assert len(portal.requests) == 1
    assert client.closed
    assert portal.secret not in str(info.value)


def test_a_client_leaving_its_with_block_refuses_to_send() -> None:
    """The with block closes the client; using it afterwards is refused, not silently reopened."""
    from b24batch.testing import FakePortal

    with FakePortal() as portal:
        with B24Hook.from_webhook_url(portal.webhook_url) as client:
            pass
        with pytest.raises(SdkError, match="create a new client"):
            BatchV3(client).make([("tasks.task.list", {})])
        assert portal.requests == []


def test_closing_while_another_thread_is_mid_request_lets_that_request_finish() -> None:
    """A request already on the wire when close() is called gets its answer; the next is refused."""
    import threading

    from b24batch.testing import FakePortal

    arrived, release = threading.Event(), threading.Event()

    def slow(query: object) -> object:
        arrived.set()
        release.wait(5)
        return {"item": {"id": 7}}

    outcome: list[object] = []
    with FakePortal() as portal:
        portal.register("slow.thing.get", slow)
        client = B24Hook.from_webhook_url(portal.webhook_url)
        worker = threading.Thread(
            target=lambda: outcome.append(BatchV3(client).make([("slow.thing.get", {})]).data)
        )
        worker.start()
        assert arrived.wait(5)
        client.close()
        release.set()
        worker.join(5)
        assert not worker.is_alive()
        with pytest.raises(SdkError, match="is closed"):
            BatchV3(client).make([("slow.thing.get", {})])
    assert outcome == [[{"item": {"id": 7}}]]
    assert len(portal.requests) == 1


# -- gaps a mutant showed (issue 12) -------------------------------------------------------------


def test_a_user_without_a_password_is_refused_too() -> None:
    """https://user@host/... (no password) is refused like user:password@, naming no secret."""
    with pytest.raises(SdkError) as info:
        B24Hook.from_webhook_url(f"https://someone@x.bitrix24.com/rest/1/{SECRET}/")
    assert str(info.value) == (
        "a webhook URL has no user:password@ part: expected https://PORTAL/rest/USER_ID/SECRET/ "
        "(or https://PORTAL/rest/api/USER_ID/SECRET/)"
    )


def test_curl_ca_bundle_is_taken_when_requests_ca_bundle_is_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CURL_CA_BUNDLE sets the session's CA bundle; REQUESTS_CA_BUNDLE wins when both are set."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/curl.pem")
    client = B24Hook.from_webhook_url(f"https://x.bitrix24.com/rest/1/{SECRET}/")
    assert client._session.verify == "/etc/ssl/curl.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/requests.pem")
    both = B24Hook.from_webhook_url(f"https://x.bitrix24.com/rest/1/{SECRET}/")
    assert both._session.verify == "/etc/ssl/requests.pem"


def _keep_alive(conn: socket.socket, request: bytes) -> bool:
    conn.sendall(
        answer(200, b'{"result": [{"item": {"id": 1}}]}', "Content-Type: application/json")
    )
    return True


def test_close_closes_the_clients_own_connections() -> None:
    """close() ends the own session's kept-alive connection: the server sees it hang up."""
    with RawServer(_keep_alive) as server:
        client = B24Hook.from_webhook_url(server.webhook_url(), retry=None, rate_limit=None)
        assert BatchV3(client).make([("tasks.task.get", {"id": 1})]).is_success
        (serving,) = server._threads
        serving.join(timeout=0.3)
        assert serving.is_alive()  # the connection is kept alive for the next batch
        client.close()
        serving.join(timeout=5)
        assert not serving.is_alive()


def _slow(conn: socket.socket, request: bytes) -> bool:
    time.sleep(0.5)
    return _keep_alive(conn, request)


def test_a_scalar_timeout_bounds_the_read() -> None:
    """timeout=0.15 (one number) is the read timeout too: a slower answer is a TransportError."""
    with RawServer(_slow) as server:
        client = B24Hook.from_webhook_url(
            server.webhook_url(), timeout=0.15, retry=None, rate_limit=None
        )
        assert client.timeout == 0.15
        with client, pytest.raises(TransportError) as info:
            BatchV3(client).make([("tasks.task.get", {"id": 1})])
    assert info.value.outcome_unknown is True
    assert "may have been executed" in str(info.value)


def test_a_connect_timeout_is_classified_as_not_sent() -> None:
    """A listener whose backlog is full never accepts: a connect timeout, surely not executed."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        port = listener.getsockname()[1]
        for _ in range(8):  # fill the accept queue (its size is a little above the backlog)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        url = f"http://127.0.0.1:{port}/rest/1/{SECRET}/"
        with (
            B24Hook.from_webhook_url(url, timeout=(0.2, 5.0), retry=None, rate_limit=None) as b24,
            pytest.raises(TransportError) as info,
        ):
            BatchV3(b24).make([("tasks.task.add", {"fields": {"title": "x"}})])
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert (info.value.outcome_unknown, info.value.maybe_executed) == (False, ())
    assert SECRET not in str(info.value)


def test_a_refused_connection_is_repeated_with_a_scalar_timeout_too() -> None:
    """timeout=0.5 (one number) is the connect timeout the repeats count: same repeats."""
    url = f"http://127.0.0.1:{_closed_port()}/rest/1/{SECRET}/"
    with (
        B24Hook.from_webhook_url(url, timeout=0.5, retry=RetryPolicy(base_delay=0.0)) as client,
        pytest.raises(TransportError) as info,
    ):
        BatchV3(client).make([("tasks.task.get", {"id": 1})])
    assert (info.value.never_connected, info.value.attempts) == (True, 1 + CONNECT_RETRIES)


def test_a_webhook_client_has_no_credential_to_renew() -> None:
    """B24Hook: version 0, renew() says no, and a 401 is raised after one request."""
    expired = {"error": "expired_token", "error_description": "The access token has expired."}
    with FakePortal() as portal:
        portal.inject(Fault.response(401, expired), times=2)
        with B24Hook.from_webhook_url(portal.webhook_url, rate_limit=None) as client:
            with pytest.raises(AuthError) as info:
                BatchV3(client).make([("tasks.task.get", {"id": 1})])
            assert client.credential_version() == 0
            assert client.renew(info.value, 0) is False
        assert len(portal.requests) == 1
    assert (info.value.code, info.value.attempts) == ("expired_token", 1)


def test_closed_is_false_until_close() -> None:
    """closed is the bool False on a new client and True after close()."""
    client = B24Hook.from_webhook_url(f"https://x.bitrix24.com/rest/1/{SECRET}/")
    assert client.closed is False
    client.close()
    assert client.closed is True


@pytest.mark.parametrize("secret", ["", 123, None])
def test_the_constructor_refuses_an_empty_or_non_str_secret(secret: object) -> None:
    """B24Hook(origin, user, secret) with a secret that is no non-empty str: SdkTypeError."""
    with pytest.raises(SdkTypeError) as info:
        B24Hook("https://x.bitrix24.com", 1, secret)  # type: ignore[arg-type]
    assert str(info.value) == "the webhook secret must be a non-empty str"


def test_a_refused_connection_names_the_client_without_its_secret() -> None:
    """The TransportError says which client could not connect, with the secret masked."""
    port = _closed_port()
    url = f"http://127.0.0.1:{port}/rest/1/{SECRET}/"
    with (
        B24Hook.from_webhook_url(url, retry=None, rate_limit=None) as client,
        pytest.raises(TransportError) as info,
    ):
        BatchV3(client).make([("tasks.task.get", {"id": 1})], request_id="rid-2")
    assert str(info.value).startswith(
        f"could not connect to <B24Hook http://127.0.0.1:{port}/rest/api/1/***/>; "
        "the request was not sent ("
    )
    assert info.value.request_id == "rid-2"


def test_each_batch_is_logged_at_debug_with_its_request_id_and_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DEBUG: one line per answered batch (status, size) and one per failed one (the error)."""
    caplog.set_level(logging.DEBUG, logger="b24batch")
    with (
        FakePortal() as portal,
        B24Hook.from_webhook_url(portal.webhook_url, retry=None, rate_limit=None) as client,
    ):
        BatchV3(client).make([("tasks.task.list", {}), ("tasks.task.list", {})], request_id="a")
        portal.inject(Fault.html(502))
        with pytest.raises(DecodeError) as info:
            BatchV3(client).make([("tasks.task.list", {})], request_id="b")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("batch ")]
    assert len(lines) == 3
    assert re.fullmatch(r"batch a: 2 commands -> HTTP 200, \d+ bytes in \d+\.\d ms", lines[0])
    assert re.fullmatch(r"batch b: 1 commands -> HTTP 502, \d+ bytes in \d+\.\d ms", lines[1])
    failed = re.fullmatch(r"batch b: 1 commands failed after \d+\.\d ms: (.*)", lines[2])
    assert failed is not None
    assert failed[1] == str(info.value)


def test_every_batch_asks_for_json_and_says_what_it_sends(
    client: B24Hook, portal: FakePortal
) -> None:
    """Accept: application/json and the protocol's Content-Type go with each batch."""
    BatchV3(client).make([("tasks.task.list", {})])
    (request,) = portal.requests
    assert (request.headers["Accept"], request.headers["Content-Type"]) == (
        "application/json",
        "application/json",
    )


def test_each_webhook_has_its_own_operating_meter_in_a_store(tmp_path: Path) -> None:
    """In a limit store each webhook has its own operating meter: one key per secret."""
    store = SQLiteStore(tmp_path / "limits.sqlite3")
    one, again, other = (
        B24Hook.from_webhook_url(f"https://x.bitrix24.com/rest/1/{secret}/", limit_store=store)
        for secret in (SECRET, SECRET, "anotherSecret77")
    )
    keys = [client.limiter.meter for client in (one, again, other)]
    assert all(isinstance(meter, SharedMeter) for meter in keys)
    first, same, second = (meter.key for meter in keys if isinstance(meter, SharedMeter))
    assert first == same
    assert first != second
    assert SECRET not in first
