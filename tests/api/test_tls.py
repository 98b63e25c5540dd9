"""TLS over real sockets: a refused certificate means "not sent"; a TLS failure after the body
went means "may have been executed". A self-signed certificate is made with openssl."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from b24batch import B24Hook, BatchV3, TransportError
from b24batch.testing import FakePortal
from tests.guarantees.test_frames import assert_no_secret_in_frames

WRITE = [("tasks.task.add", {"fields": {"title": "x"}})]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[int, list[bytes]]]:
    """A TLS server that reads one whole request, then answers with a corrupt TLS record."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificate))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    received: list[bytes] = []

    def serve() -> None:
        raw, _ = listener.accept()
        try:
            tls = context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):  # the client refused our certificate
            raw.close()
            return
        data = b""
        while b"\r\n\r\n" not in data:
            data += tls.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += tls.recv(65536)
        received.append(body)  # a portal would execute the batch now
        os.write(tls.fileno(), b"\x17\x03\x03\x00\x10" + b"\x00" * 16)  # not a valid record
        time.sleep(0.3)
        tls.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], received
    thread.join(timeout=5)
    listener.close()


def test_refused_certificate_is_not_sent(tls_server: tuple[int, list[bytes]]) -> None:
    """An untrusted certificate fails the handshake: the batch surely did not go."""
    port, received = tls_server
    url = f"https://localhost:{port}/rest/1/s3cret/"
    with (
        B24Hook.from_webhook_url(url, retry=None, timeout=(2, 5)) as b24,
        pytest.raises(TransportError) as info,
    ):
        BatchV3(b24).make(WRITE)
    assert info.value.outcome_unknown is False
    assert "certificate" in str(info.value)
    assert received == []


def test_tls_failure_after_sending_may_have_executed(
    tls_server: tuple[int, list[bytes]],
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broken record after the body arrived: outcome unknown, and the write is not repeated."""
    port, received = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))  # read when the client is made
    url = f"https://localhost:{port}/rest/1/s3cret/"
    with (
        B24Hook.from_webhook_url(url, timeout=(2, 5)) as b24,
        pytest.raises(TransportError) as info,
    ):
        BatchV3(b24).make(WRITE)
    assert info.value.outcome_unknown is True
    assert "may have been executed" in str(info.value)
    assert len(received) == 1
    assert b"tasks.task.add" in received[0]


@pytest.mark.parametrize("trusted", [False, True], ids=["refused-certificate", "broken-record"])
def test_tls_failures_hold_no_secret_in_frames(
    tls_server: tuple[int, list[bytes]],
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    trusted: bool,
) -> None:
    """Both TLS failures: no b24batch frame of the traceback shows the webhook secret."""
    port, _ = tls_server
    if trusted:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    secret = "tlsFrameSecret4242"
    url = f"https://localhost:{port}/rest/1/{secret}/"
    with (
        B24Hook.from_webhook_url(url, retry=None, timeout=(2, 5)) as b24,
        pytest.raises(TransportError) as info,
    ):
        BatchV3(b24).make(WRITE)
    assert ("certificate" in str(info.value)) is not trusted
    assert assert_no_secret_in_frames(info.value, secret) >= 3


def test_https_to_a_plain_http_server_is_not_sent() -> None:
    """https:// to a plain-HTTP FakePortal fails the handshake: not sent, not repeated."""
    with FakePortal() as portal:
        url = portal.webhook_url.replace("http://", "https://", 1)
        with (
            B24Hook.from_webhook_url(url, timeout=(2, 5)) as b24,
            pytest.raises(TransportError) as info,
        ):
            BatchV3(b24).make(WRITE)
        assert portal.requests == []
    assert info.value.outcome_unknown is False
    assert info.value.never_connected is False
    message = str(info.value)
    assert message.startswith("the TLS handshake with ")
    assert "failed; the request was not sent (does the server speak https?" in message
    assert "may have been executed" not in message


def test_a_connection_closed_during_the_handshake_is_not_sent() -> None:
    """A server that hangs up in the middle of the handshake got no batch: not sent."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:  # the listener was closed: the test is over
                return
            accepted.append(1)
            raw.recv(65536)  # the ClientHello; no ServerHello ever comes
            raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"https://localhost:{listener.getsockname()[1]}/rest/1/s3cret/"
    try:
        with (
            B24Hook.from_webhook_url(url, timeout=(2, 5)) as b24,
            pytest.raises(TransportError) as info,
        ):
            BatchV3(b24).make(WRITE)
    finally:
        listener.close()
        thread.join(timeout=5)
    assert info.value.outcome_unknown is False
    assert str(info.value).startswith("the TLS handshake with ")
    assert accepted == [1]
