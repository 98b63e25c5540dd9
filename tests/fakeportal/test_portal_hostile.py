"""The FakePortal's HTTP layer under hostile or broken clients, over real sockets.

Each test sends what a careless or malicious client would, asserts the answer the client got,
and that the portal still serves the next request.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from b24batch.testing import FakePortal
from b24batch.testing.portal import DEFAULT_MAX_RECORDED

SECRET = "hostileSecret1"
TIMEOUT = 5.0  # every socket wait of these tests ends within it


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    """A started FakePortal with a known secret."""
    with FakePortal(secret=SECRET) as fake:
        yield fake


def _batch_path(portal: FakePortal) -> str:
    return f"/rest/api/{portal.user_id}/{portal.secret}/batch"


def _connect(portal: FakePortal) -> socket.socket:
    host, port = portal.base_url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=TIMEOUT)


def _exchange(portal: FakePortal, data: bytes) -> tuple[int, dict[str, Any], str]:
    """Send raw bytes on a new connection; return status, JSON body and Connection header."""
    with _connect(portal) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = json.loads(response.read())
        return response.status, body, response.getheader("Connection", "")


def _head(portal: FakePortal, *lines: str) -> bytes:
    """A POST to the batch path with ``lines`` as extra headers, up to the blank line."""
    head = [f"POST {_batch_path(portal)} HTTP/1.1", "Host: 127.0.0.1", *lines, "", ""]
    return "\r\n".join(head).encode("ascii")


def _serves(portal: FakePortal) -> None:
    """The portal answers a valid batch with its result."""
    task = portal.add_task(title="Still here")
    response = requests.post(
        portal.base_url + _batch_path(portal),
        json=[{"method": "tasks.task.get", "query": {"id": task}}],
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert response.json()["result"][0]["item"]["title"] == "Still here"


def _error(body: dict[str, Any]) -> str:
    error = body["error"]
    return str(error["code"] if isinstance(error, dict) else error)


def test_a_json_body_nested_100000_deep_is_invalid_json(
    portal: FakePortal, capsys: pytest.CaptureFixture[str]
) -> None:
    """100 000 nested arrays: 400 INVALIDJSONEXCEPTION, no traceback, the portal serves on."""
    body = b"[" * 100_000 + b"]" * 100_000
    status, answer, _ = _exchange(
        portal,
        _head(portal, "Content-Type: application/json", f"Content-Length: {len(body)}") + body,
    )
    assert status == 400
    assert _error(answer) == "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION"
    assert portal.requests[-1].raw == body
    assert portal.requests[-1].body is None
    _serves(portal)
    assert "Traceback" not in capsys.readouterr().err


def test_a_chunk_size_of_sixteen_f_is_refused_as_too_large(portal: FakePortal) -> None:
    """Chunk size FFFFFFFFFFFFFFFF: 413 REQUEST_ENTITY_TOO_LARGE, closed; the portal serves on."""
    data = _head(portal, "Transfer-Encoding: chunked") + b"FFFFFFFFFFFFFFFF\r\n[]"
    status, answer, connection = _exchange(portal, data)
    assert status == 413
    assert _error(answer) == "REQUEST_ENTITY_TOO_LARGE"
    assert connection == "close"
    assert portal.requests == []
    _serves(portal)


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param(b"zz\r\n[]\r\n0\r\n\r\n", id="size-not-hex"),
        pytest.param(b"-2\r\n[]\r\n0\r\n\r\n", id="size-negative"),
        pytest.param(b"2\r\n[]XX0\r\n\r\n", id="no-crlf-after-data"),
        pytest.param(b"1" * 5000 + b"\r\n", id="size-line-too-long"),
    ],
)
def test_broken_chunked_framing_is_a_400(portal: FakePortal, chunks: bytes) -> None:
    """Broken chunked framing: 400 INVALID_REQUEST and close; the portal serves on."""
    status, answer, connection = _exchange(
        portal, _head(portal, "Transfer-Encoding: chunked") + chunks
    )
    assert (status, _error(answer), connection) == (400, "INVALID_REQUEST", "close")
    _serves(portal)


@pytest.mark.parametrize("length", ["-5", "12abc", "9" * 5000])
def test_a_bad_content_length_is_a_400(portal: FakePortal, length: str) -> None:
    """Content-Length negative, not a number, or of 5000 digits: 400 INVALID_REQUEST."""
    status, answer, _ = _exchange(portal, _head(portal, f"Content-Length: {length}") + b"[]")
    assert (status, _error(answer)) == (400, "INVALID_REQUEST")
    _serves(portal)


def test_a_body_over_max_body_bytes_is_a_413() -> None:
    """A 4 KiB body to a portal capped at 1 KiB: requests gets 413 naming the cap."""
    with FakePortal(secret=SECRET, max_body_bytes=1024) as portal:
        response = requests.post(
            portal.base_url + _batch_path(portal), data=b"[" + b" " * 4096 + b"]", timeout=TIMEOUT
        )
        assert response.status_code == 413
        assert response.json()["error"] == "REQUEST_ENTITY_TOO_LARGE"
        assert "at most 1024 bytes; got 4098 bytes" in response.json()["error_description"]
        assert portal.requests == []
        _serves(portal)


def test_a_body_at_max_body_bytes_is_accepted() -> None:
    """A body of exactly max_body_bytes is read and answered."""
    body = json.dumps([{"method": "tasks.task.list", "query": {}}]).encode()
    with FakePortal(secret=SECRET, max_body_bytes=len(body)) as portal:
        response = requests.post(portal.base_url + _batch_path(portal), data=body, timeout=TIMEOUT)
        assert response.status_code == 200
        assert portal.requests[-1].raw == body


def test_an_8_gb_content_length_is_answered_without_reading_it(portal: FakePortal) -> None:
    """Content-Length of 8 GB and 2 bytes sent: the 413 comes at once, not after 8 GB."""
    data = _head(portal, "Content-Length: 8000000000") + b"[]"
    status, answer, connection = _exchange(portal, data)
    assert (status, _error(answer), connection) == (413, "REQUEST_ENTITY_TOO_LARGE", "close")
    assert "got 8000000000 bytes" in answer["error_description"]
    _serves(portal)


def test_a_chunked_body_adding_up_past_the_cap_is_a_413() -> None:
    """Chunks of 600 bytes to a portal capped at 1000: 413 on the second chunk."""
    chunk = b"258\r\n" + b" " * 600 + b"\r\n"
    with FakePortal(secret=SECRET, max_body_bytes=1000) as portal:
        data = _head(portal, "Transfer-Encoding: chunked") + chunk * 2 + b"0\r\n\r\n"
        status, answer, _ = _exchange(portal, data)
        assert (status, _error(answer)) == (413, "REQUEST_ENTITY_TOO_LARGE")
        _serves(portal)


def test_a_well_formed_chunked_body_is_still_read(portal: FakePortal) -> None:
    """A chunked batch with a chunk extension and a trailer is decoded and run."""
    body = b'[{"method": "tasks.task.list", "query": {}}]'
    half = len(body) // 2
    chunks = (
        f"{half:x};ext=1\r\n".encode()
        + body[:half]
        + b"\r\n"
        + f"{len(body) - half:x}\r\n".encode()
        + body[half:]
        + b"\r\n"
        + b"0\r\nX-Trailer: 1\r\n\r\n"
    )
    status, answer, _ = _exchange(portal, _head(portal, "Transfer-Encoding: chunked") + chunks)
    assert status == 200
    assert answer["result"] == [{"items": []}]
    assert portal.requests[-1].raw == body


def test_a_client_that_resets_mid_body_leaves_no_traceback(
    portal: FakePortal, capsys: pytest.CaptureFixture[str]
) -> None:
    """Headers promise 100 bytes, 10 come, then a RST: no traceback, the portal serves on."""
    sock = _connect(portal)
    sock.sendall(_head(portal, "Content-Length: 100") + b"[" * 10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    _serves(portal)
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"POST /rest/api/batch HTTP/1.1\r\nHost: x\r\n", id="half-a-head"),
        pytest.param(b"POST /rest/api/batch HTTP/1.1\r\nContent-Length: 50\r\n\r\n[", id="body"),
    ],
)
def test_an_idle_connection_is_closed_after_idle_timeout(sent: bytes) -> None:
    """A client that goes silent is disconnected (EOF, not our 5 s socket timeout)."""
    with FakePortal(secret=SECRET, idle_timeout=0.2) as portal:
        with _connect(portal) as sock:
            sock.sendall(sent)
            assert sock.recv(1024) == b""
        _serves(portal)


def test_an_idle_keep_alive_connection_is_closed_after_its_answer() -> None:
    """After an answered request, a keep-alive connection left silent is closed."""
    with FakePortal(secret=SECRET, idle_timeout=0.2) as portal, _connect(portal) as sock:
        sock.sendall(f"GET /nowhere HTTP/1.1\r\nHost: {portal.base_url}\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.read()
        assert response.status == 404
        assert response.getheader("Connection") is None  # kept alive, then timed out
        assert sock.recv(1024) == b""


def _get_many(portal: FakePortal, count: int) -> None:
    """``count`` GETs to /n/<i> on one keep-alive connection."""
    with _connect(portal) as sock:
        for number in range(count):
            sock.sendall(f"GET /n/{number} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()


def test_max_recorded_keeps_the_most_recent_requests() -> None:
    """max_recorded=3 after 5 requests: the last 3 are kept, in arrival order."""
    with FakePortal(max_recorded=3) as portal:
        _get_many(portal, 5)
        assert [request.path for request in portal.requests] == ["/n/2", "/n/3", "/n/4"]


def test_by_default_the_last_thousand_requests_are_kept() -> None:
    """1005 requests with the default: the most recent DEFAULT_MAX_RECORDED (1000) are kept."""
    with FakePortal() as portal:
        _get_many(portal, DEFAULT_MAX_RECORDED + 5)
        paths = [request.path for request in portal.requests]
    assert DEFAULT_MAX_RECORDED == 1000
    assert len(paths) == 1000
    assert (paths[0], paths[-1]) == ("/n/5", "/n/1004")


def test_max_recorded_zero_records_nothing_and_still_serves() -> None:
    """max_recorded=0: nothing is recorded; batches are answered as usual."""
    with FakePortal(secret=SECRET, max_recorded=0) as portal:
        _serves(portal)
        assert portal.requests == []


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.com", "", "localhost.evil"]
)
def test_a_non_loopback_host_is_refused_at_construction(host: str) -> None:
    """host= outside 127.0.0.0/8, ::1 and localhost: ValueError naming the rule."""
    with pytest.raises(ValueError, match=r"loopback only .*127\.0\.0\.0/8"):
        FakePortal(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "::1"])
def test_a_loopback_host_is_accepted(host: str) -> None:
    """Loopback addresses and localhost construct a portal."""
    assert "stopped" in repr(FakePortal(host=host))


@pytest.mark.parametrize("host", ["127.0.0.2", "localhost"])
def test_a_portal_on_another_loopback_address_serves(host: str) -> None:
    """127.0.0.2 and localhost bind and answer."""
    with FakePortal(secret=SECRET, host=host) as portal:
        assert portal.base_url.startswith(f"http://{host}:")
        _serves(portal)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_body_bytes", 0),
        ("max_body_bytes", 1.5),
        ("max_recorded", -1),
        ("max_recorded", True),
        ("idle_timeout", 0),
        ("idle_timeout", float("inf")),
        ("idle_timeout", float("nan")),
        ("idle_timeout", "30"),
    ],
)
def test_bad_http_options_are_refused(option: str, value: object) -> None:
    """max_body_bytes, max_recorded and idle_timeout out of range: ValueError naming them."""
    with pytest.raises(ValueError, match=option):
        FakePortal(**{option: value})
