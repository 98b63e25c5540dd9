"""No webhook secret or token leaks: a property over every error path, every log level."""

from __future__ import annotations

import logging
import pickle
import socket
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b24batch import (
    AuthError,
    B24Error,
    B24Hook,
    B24OAuth,
    BatchByChunkV3,
    BatchV3,
    CallV2,
    CallV3,
    DecodeError,
    OAuthApp,
    RetryPolicy,
    SdkError,
    SQLiteStore,
)
from b24batch._auth.refresh import RefreshQuery
from b24batch._auth.tokens import parse_tokens
from b24batch._protocols.v2 import V2
from b24batch._protocols.v3 import V3, decode_response
from b24batch.redaction import (
    Secret,
    UrlRedactingFilter,
    install_log_filter,
    redact,
    redact_data,
)
from b24batch.testing import FakePortal, Fault

secrets = st.from_regex(r"[A-Za-z0-9]{16,40}", fullmatch=True)


class Collect(logging.Handler):
    """Keeps every formatted record, of every logger and level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def shared_portal() -> Iterator[FakePortal]:
    with FakePortal() as portal:
        portal.add_task(title="Seed")
        yield portal


@pytest.fixture
def collect() -> Iterator[Collect]:
    handler = Collect()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _shown(error: B24Error) -> list[str]:
    """Everything a person could see of an error: str, repr, the formatted chain."""
    texts = [str(error), repr(error)]
    texts.append("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    cause = error.__cause__
    while cause is not None:
        texts.extend([str(cause), repr(cause)])
        cause = cause.__cause__
    return texts


def _run(client: Any, calls: Any, **options: Any) -> list[str]:
    try:
        result = BatchV3(client).make(calls, **options)
    except B24Error as error:
        return _shown(error)
    texts = [repr(result), result._repr_html_(), *result.error_messages]
    for error in result.errors:
        texts.extend(_shown(error))
    return texts


def _call(face: Any, client: Any, method: str, params: Any) -> list[str]:
    try:
        answer = face(client).make(method, params)
    except B24Error as error:
        return _shown(error)
    return [repr(answer)] + ([] if answer.error is None else _shown(answer.error))


FAULTS = [
    lambda s: Fault.html(502),  # echoes the request path, secret included
    lambda s: Fault.truncated(),
    lambda s: Fault.drop_after(),
    lambda s: Fault.response(500, {"error": {"code": "X", "message": f"/rest/api/1/{s}/batch"}}),
    lambda s: Fault.response(
        400,
        {"error": {"code": "Y", "message": f"bad {s}", "validation": [{"field": s, "message": s}]}},
    ),
    lambda s: Fault.response(401, {"error": "NO_AUTH_FOUND", "error_description": f"hook {s}"}),
    lambda s: Fault.response(503, "<html>Service unavailable for " + s + "</html>"),
    lambda s: Fault.response(302, "", headers={"Location": f"https://x.example/rest/1/{s}/"}),
]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(secret=secrets, fault=st.sampled_from(range(len(FAULTS))), single=st.booleans())
def test_webhook_secret_never_leaks(
    shared_portal: FakePortal, collect: Collect, secret: str, fault: int, single: bool
) -> None:
    """Any secret, any failure, a batch or a single call (whose URL holds the secret too): no
    message, repr, traceback or log line shows it."""
    collect.lines.clear()
    url = shared_portal.webhook_url.replace(shared_portal.secret, secret)
    policy = RetryPolicy(max_attempts=2, base_delay=0.0)
    with B24Hook.from_webhook_url(url, retry=policy, rate_limit=None) as client:
        shared_portal.inject(FAULTS[fault](secret), times=2)
        if single:
            shown = _call(CallV3, client, "tasks.task.add", {"fields": {"title": "x"}})
            shown += _call(CallV2, client, "crm.deal.get", {"id": 1})
        else:
            shown = _run(client, [("tasks.task.add", {"fields": {"title": "x"}})])
            shown += _run(client, [("tasks.task.get", {"id": 1})])  # the portal says 401 itself
        shown.append(repr(client))
    shown += collect.lines
    assert collect.lines  # the calls did log
    assert not [text for text in shown if secret in text]


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(secret=secrets)
def test_secret_never_leaks_on_transport_failures(collect: Collect, secret: str) -> None:
    """Refused connections (repeated and logged) and bad URLs stay secret-free."""
    collect.lines.clear()
    url = f"http://127.0.0.1:{_closed_port()}/rest/1/{secret}/"
    with B24Hook.from_webhook_url(url, retry=RetryPolicy(base_delay=0.0), rate_limit=None) as c:
        shown = _run(c, [("tasks.task.get", {"id": 1})])
    for bad in (f"https://h.example/rest/1/{secret}/x", f"http://h.example/rest/1/{secret}/"):
        with pytest.raises(B24Error) as info:
            B24Hook.from_webhook_url(bad)
        shown += _shown(info.value)
    shown += collect.lines
    assert any("attempt 2 of 3" in line for line in collect.lines)  # the repeats were logged
    assert not [text for text in shown if secret in text]


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(token=secrets)
def test_oauth_tokens_never_leak(shared_portal: FakePortal, collect: Collect, token: str) -> None:
    """A refused token, a failing refresh and a chunked failure never show either token."""
    collect.lines.clear()
    fresh = token[::-1]

    def refresh() -> str:
        raise RuntimeError(f"refresh failed for {token}, would have been {fresh}")

    policy = RetryPolicy(base_delay=0.0)
    with B24OAuth(
        shared_portal.oauth_endpoint, token, refresh=refresh, rate_limit=None, retry=policy
    ) as c:
        shared_portal.inject(
            Fault.response(401, {"error": "expired_token", "error_description": f"{token} old"})
        )
        shown = _run(c, [("tasks.task.get", {"id": 1})])
        shared_portal.inject(Fault.html(502), times=3)
        try:
            BatchByChunkV3(c).make([("tasks.task.get", {"id": 1})] * 60)
        except B24Error as error:
            shown += _shown(error)
        shown.append(repr(c))
    shown += collect.lines
    assert not [text for text in shown if token in text or fresh in text]


@given(secret=secrets)
def test_redact_masks_by_shape_and_by_value(secret: str) -> None:
    """redact() masks a secret in webhook paths, Bearer headers, token parameters and literally."""
    texts = [
        f"https://p.example/rest/1/{secret}/batch",
        f"/rest/api/12/{secret}",
        f"Authorization: Bearer {secret}",
        f"access_token={secret}&x=1",
        f'{{"refresh_token": "{secret}"}}',
        f"password: {secret}",
    ]
    for text in texts:
        assert secret not in redact(text), text
    assert secret not in redact(f"anything {secret} else", (secret,))


def test_redact_data_masks_sensitive_keys_at_any_depth() -> None:
    """Body-like data keeps its shape; auth-like values are masked, in lists too."""
    body = [
        {"method": "a", "query": {"AUTH": "x1", "n": [{"client_secret": "x2", "keep": 1}]}},
        {"access_token": "x3", "refresh_token": "x4", "password": "x5", "Authorization": "x6"},
    ]
    masked = redact_data(body)
    assert masked == [
        {"method": "a", "query": {"AUTH": "***", "n": [{"client_secret": "***", "keep": 1}]}},
        {"access_token": "***", "refresh_token": "***", "password": "***", "Authorization": "***"},
    ]
    assert body[0]["query"]["AUTH"] == "x1"  # a copy: the original is untouched


def test_html_page_is_redacted_before_it_is_cut() -> None:
    """A secret straddling the 160-character cut of an HTML title is still masked whole."""
    secret = "StraddlingSecretValue1234"
    page = f"<html><title>{'x' * 150}{secret}</title></html>".encode()
    with pytest.raises(DecodeError) as info:
        decode_response(502, page, keys=[0], request_id="r", redact=lambda t: redact(t, (secret,)))
    assert secret[:10] not in str(info.value)
    assert "x" * 150 in str(info.value)


def test_webhook_url_given_as_oauth_endpoint_is_refused_without_its_secret() -> None:
    """B24OAuth("https://p/rest/1/SECRET/", token): the SdkError names neither."""
    with pytest.raises(SdkError, match="webhook URL") as info:
        B24OAuth("https://p.example/rest/1/WebhookSecret99/", "token-value")
    assert "WebhookSecret99" not in str(info.value)


@pytest.mark.parametrize("token", ["tökenValue", "token value", "tøken", "\u200btoken"])
def test_tokens_outside_printable_ascii_are_refused_at_construction(token: str) -> None:
    """A token that cannot go in a header fails at construction, not as a UnicodeEncodeError."""
    with pytest.raises(SdkError, match="printable ASCII") as info:
        B24OAuth("https://p.example/rest/", token)
    assert token not in str(info.value)


def test_unusable_refreshed_token_is_an_auth_error_without_it(shared_portal: FakePortal) -> None:
    """refresh returning a non-ASCII token: AuthError naming neither token; nothing re-sent."""
    shared_portal.expire_token()
    old, fresh = shared_portal.access_token, "ţokenFromRefresh42"
    sent = len(shared_portal.requests)
    with B24OAuth(
        shared_portal.oauth_endpoint, old, refresh=lambda: fresh, retry=None, rate_limit=None
    ) as client:
        with pytest.raises(AuthError, match="no usable token") as info:
            BatchV3(client).make([("tasks.task.get", {"id": 1})])
        assert client.credential_version() == 0
    assert len(shared_portal.requests) == sent + 1  # the refused send only
    assert not [text for text in _shown(info.value) if fresh in text or old in text]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "BeArEr", "bEARER"])
def test_a_bearer_credential_in_any_case_is_masked(scheme: str) -> None:
    """Authorization: Bearer TOKEN is masked whatever the case of the scheme."""
    assert redact(f"Authorization: {scheme} abc123tok, next") == (
        f"Authorization: {scheme} ***, next"
    )


def test_the_log_filter_masks_a_record_and_keeps_it() -> None:
    """UrlRedactingFilter: a record naming a webhook URL is kept, its message masked in place."""
    record = logging.LogRecord(
        "urllib3.connectionpool",
        logging.DEBUG,
        __file__,
        1,
        "POST %s",
        ("/rest/1/abcSecret9/x",),
        None,
    )
    plain = logging.LogRecord("urllib3", logging.DEBUG, __file__, 1, "pool %s", ("full",), None)
    flt = UrlRedactingFilter()
    assert (flt.filter(record), flt.filter(plain)) == (True, True)
    assert (record.getMessage(), record.msg, record.args) == (
        "POST /rest/1/***/x",
        "POST /rest/1/***/x",
        None,
    )
    assert (plain.msg, plain.args) == ("pool %s", ("full",))  # nothing to mask: left as it was


def test_install_log_filter_puts_one_filter_on_each_named_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """install_log_filter(names) filters those loggers once, however often it is called."""
    fresh = uuid.uuid4().hex  # loggers outlive a test: new ones, which have no filter yet
    names = (f"b24batch-test.{fresh}.a", f"b24batch-test.{fresh}.b")
    install_log_filter(names)
    install_log_filter(names)
    for name in names:
        assert [type(f) for f in logging.getLogger(name).filters] == [UrlRedactingFilter]
    assert not any(isinstance(f, UrlRedactingFilter) for f in logging.getLogger().filters)
    caplog.set_level(logging.INFO, logger=names[1])
    logging.getLogger(names[1]).info("GET %s", "https://p/rest/1/abcSecret9/")
    assert [r.getMessage() for r in caplog.records] == ["GET https://p/rest/1/***/"]


def test_a_secret_refuses_to_be_pickled() -> None:
    """pickle.dumps(Secret(...)) raises TypeError saying so, and never writes the value."""
    with pytest.raises(TypeError) as info:
        pickle.dumps(Secret("abcSecret9"))
    assert str(info.value) == "a Secret is not pickled"


def test_the_auth_objects_of_an_oauth_client_hide_the_token() -> None:
    """The Bearer header and the classic body field requests holds show *** in their repr."""
    client = B24OAuth("https://p.example/rest/", "tokenValue42")
    assert (repr(client._auth(V3)), repr(client._auth(V2))) == ("<Bearer ***>", "<auth field ***>")


def test_the_objects_of_an_oauth_app_hide_the_secret_and_tokens(tmp_path: Path) -> None:
    """OAuthApp, its clients' refresh, a token record and the refresh form show no secret."""
    secrets = ("clientSecret42", "accessTok42", "refreshTok42")
    app = OAuthApp(
        client_id="local.app", client_secret=secrets[0], store=SQLiteStore(tmp_path / "s.db")
    )
    answer = {
        "access_token": secrets[1],
        "refresh_token": secrets[2],
        "expires_in": 3600,
        "member_id": "m1",
        "client_endpoint": "https://example.bitrix24.com/rest/",
    }
    record = parse_tokens(Secret(answer), 0.0)
    app.save_tokens(answer)
    client = app.client("m1", rate_limit=None)
    shown = " ".join(
        [
            repr(app),
            str(app),
            repr(record),
            repr(RefreshQuery(Secret(secrets[0]), Secret(secrets[2]))),
            repr(client),
            repr(client._refresh),
            repr(app.portals()),
            repr(vars(app)),
        ]
    )
    assert not any(secret in shown for secret in secrets), shown
