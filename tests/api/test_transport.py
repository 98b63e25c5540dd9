"""The transport (b24batch.transport) against hostile or broken answers, over real sockets.

Size cap, attempt deadline, 1xx interim answers, cookies, deep JSON, keep-alive.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import tracemalloc
import zlib
from typing import Any

import pytest

from b24batch import B24Hook, BatchV3, DecodeError, SdkError, SdkTypeError, TransportError
from b24batch.client import DEFAULT_TIMEOUT
from b24batch.testing import FakePortal, Fault
from b24batch.transport import DEADLINE_MARGIN, DEFAULT_MAX_RESPONSE_BYTES
from tests.support.loopback import RawServer, answer

GET = [("tasks.task.get", {"id": 1})]
OK_BODY = json.dumps({"result": [{"item": {"id": 1}}]}).encode()
MiB = 1024 * 1024


def _hook(server: RawServer, **options: Any) -> B24Hook:
    options = {"timeout": (1.0, 2.0), "retry": None, "rate_limit": None, **options}
    return B24Hook.from_webhook_url(server.webhook_url(), **options)


def _call(client: B24Hook, calls: Any = GET, bound: float = 20.0) -> BaseException | Any:
    """Run one batch in a thread with a bound on the wait; the error or the result."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(BatchV3(client).make(calls))
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=bound)
    assert outcome, f"the call did not return within {bound} s"
    return outcome[0]


def _gzip_bomb(inflated: int) -> bytes:
    """A small gzip body that inflates to ``inflated`` bytes of valid batch JSON."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b'{"result": [{"item": {"id": 1}}], "pad": "')]
    block = b" " * MiB
    for _ in range(inflated // MiB):
        parts.append(packer.compress(block))
    parts.append(packer.compress(b'"}'))
    parts.append(packer.flush())
    return b"".join(parts)


def test_defaults_are_named_constants() -> None:
    """64 MiB cap; the deadline is connect + read timeout + the margin."""
    client = B24Hook.from_webhook_url("https://x.bitrix24.com/rest/1/s/")
    assert 64 * MiB == DEFAULT_MAX_RESPONSE_BYTES
    assert client.max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES
    assert client.attempt_deadline == DEFAULT_TIMEOUT[0] + DEFAULT_TIMEOUT[1] + DEADLINE_MARGIN
    assert B24Hook.from_webhook_url(
        "https://x.bitrix24.com/rest/1/s/", timeout=3
    ).attempt_deadline == pytest.approx(6 + DEADLINE_MARGIN)


def test_gzip_bomb_is_refused_within_a_memory_bound() -> None:
    """A 60 KB gzip body inflating to 48 MiB stops at the 1 MiB cap; peak memory under 12 MiB."""
    bomb = _gzip_bomb(48 * MiB)
    assert len(bomb) < 100_000

    def handler(conn: socket.socket, request: bytes) -> bool:
        conn.sendall(answer(200, bomb, "Content-Type: application/json", "Content-Encoding: gzip"))
        return True

    with RawServer(handler) as server, _hook(server, max_response_bytes=MiB) as client:
        tracemalloc.start()
        try:
            error = _call(client)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert isinstance(error, TransportError)
    assert error.outcome_unknown is True
    assert "max_response_bytes" in str(error)
    assert peak < 12 * MiB


def test_huge_content_length_is_refused_before_reading() -> None:
    """An announced 8 GB body is refused at once, and its connection is closed."""
    closed = threading.Event()

    def handler(conn: socket.socket, request: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8000000000\r\n\r\n{")
        conn.settimeout(10)
        closed.set() if conn.recv(1) == b"" else None
        return False

    with RawServer(handler) as server, _hook(server, max_response_bytes=MiB) as client:
        error = _call(client)
        assert closed.wait(timeout=10)
    assert isinstance(error, TransportError)
    assert error.outcome_unknown is True
    assert "announced 8000000000 bytes" in str(error)


def test_endless_chunked_body_stops_at_the_cap() -> None:
    """A chunked body that never ends stops at the cap; the server is cut off, memory bounded."""
    sent: list[int] = []

    def handler(conn: socket.socket, request: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        total = 0
        try:
            while not server.stopped.is_set() and total < 200 * MiB:
                conn.sendall(chunk)
                total += 65536
        finally:
            sent.append(total)
        return False

    with RawServer(handler) as server, _hook(server, max_response_bytes=2 * MiB) as client:
        tracemalloc.start()
        try:
            error = _call(client)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert isinstance(error, TransportError)
    assert error.outcome_unknown is True
    assert "max_response_bytes" in str(error)
    assert peak < 16 * MiB
    assert len(sent) == 1
    assert sent[0] < 100 * MiB  # cut off long before the server's own bound


@pytest.mark.parametrize("phase", ["body", "headers"])
def test_trickling_answer_ends_at_the_attempt_deadline(phase: str) -> None:
    """One byte per 0.2 s never trips the read timeout; the deadline ends the call anyway."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"

    def handler(conn: socket.socket, request: bytes) -> bool:
        trickled = head + b" " * 1000 if phase == "headers" else b" " * 1000
        if phase == "body":
            conn.sendall(head)
        for byte in trickled[:150]:  # 30 s at most, far past any bound of the test
            if server.stopped.is_set():
                break
            conn.sendall(bytes([byte]))
            time.sleep(0.2)
        return False

    with (
        RawServer(handler) as server,
        _hook(server, timeout=(1.0, 1.0), attempt_deadline=1.5) as client,
    ):
        error = _call(client, bound=15)
    assert isinstance(error, TransportError)
    assert error.outcome_unknown is True
    assert "deadline of 1.5 s" in str(error)


@pytest.mark.parametrize("interim", ["103 Early Hints", "102 Processing"])
def test_interim_answers_never_hand_a_batch_another_batchs_results(interim: str) -> None:
    """A 1xx before each answer: each batch gets a clear error, none gets another's results."""

    def handler(conn: socket.socket, request: bytes) -> bool:
        task = json.loads(request.split(b"\r\n\r\n", 1)[1])[0]["query"]["id"]
        body = json.dumps({"result": [{"item": {"id": task}}]}).encode()
        conn.sendall(f"HTTP/1.1 {interim}\r\nLink: </style.css>; rel=preload\r\n\r\n".encode())
        conn.sendall(answer(200, body, "Content-Type: application/json"))
        return True

    outcomes = []
    with RawServer(handler) as server, _hook(server) as client:
        for task in (1, 2, 3):
            outcomes.append(_call(client, [("tasks.task.get", {"id": task})]))
        connections = server.connections
    for task, outcome in zip((1, 2, 3), outcomes, strict=True):
        if isinstance(outcome, TransportError):
            assert outcome.outcome_unknown is True
            assert f"HTTP {interim.split()[0]}" in str(outcome)
        else:
            assert outcome.data == [{"item": {"id": task}}]
    assert all(isinstance(outcome, TransportError) for outcome in outcomes)
    assert connections == 3  # each connection was dropped, never pooled


def test_answers_read_whole_keep_the_connection_alive() -> None:
    """Bounded reading still returns a fully read connection to the pool."""

    def handler(conn: socket.socket, request: bytes) -> bool:
        conn.sendall(answer(200, OK_BODY, "Content-Type: application/json"))
        return True

    with RawServer(handler) as server, _hook(server) as client:
        results = [_call(client) for _ in range(3)]
        connections = server.connections
    assert [result.data for result in results] == [[{"item": {"id": 1}}]] * 3
    assert connections == 1


def test_cookies_the_portal_sets_are_never_sent_back(portal: FakePortal, client: B24Hook) -> None:
    """The client's own Session refuses every cookie: the next request carries no Cookie."""
    portal.inject(
        Fault.response(200, {"result": [{"item": 1}]}, headers={"Set-Cookie": "a=1; Path=/"})
    )
    assert BatchV3(client).make(GET).data == [{"item": 1}]
    BatchV3(client).make(GET)
    assert [request.headers.get("Cookie") for request in portal.requests] == [None, None]
    assert len(client._session.cookies) == 0


def test_deeply_nested_json_is_a_decode_error(portal: FakePortal, client: B24Hook) -> None:
    """100 000 levels of JSON are a DecodeError (a B24Error), not a RecursionError."""
    deep = "[" * 100_000 + "]" * 100_000
    portal.inject(Fault.response(200, deep, headers={"Content-Type": "application/json"}))
    with pytest.raises(DecodeError, match="nested too deeply") as info:
        BatchV3(client).make(GET)
    assert info.value.outcome_unknown is True


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        pytest.param({"session": "x"}, SdkTypeError, "session='x'", id="session-str"),
        pytest.param({"sesion": None}, SdkTypeError, "unknown option sesion=", id="unknown"),
        pytest.param({"max_response_bytes": 0}, SdkError, "max_response_bytes=0", id="size-0"),
        pytest.param({"max_response_bytes": True}, SdkError, "max_response_bytes", id="size-bool"),
        pytest.param({"max_response_bytes": "1"}, SdkError, "max_response_bytes", id="size-str"),
        pytest.param({"attempt_deadline": 0}, SdkError, "attempt_deadline=0", id="deadline-0"),
        pytest.param({"attempt_deadline": "5"}, SdkError, "attempt_deadline", id="deadline-str"),
        pytest.param({"sleep": 1}, SdkTypeError, "sleep=", id="sleep-not-callable"),
        pytest.param({"retry": 3}, SdkTypeError, "retry=3", id="retry-int"),
    ],
)
def test_wrong_options_fail_at_construction(
    options: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    """A wrong option fails when the client is made, naming the option, not at the first batch."""
    with pytest.raises(error, match=fragment):
        B24Hook.from_webhook_url("https://x.bitrix24.com/rest/1/s/", **options)
