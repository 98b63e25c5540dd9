"""A scripted raw-socket HTTP server on 127.0.0.1, for answers no well-behaved server sends."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from types import TracebackType

Handler = Callable[[socket.socket, bytes], bool]
"""Gets the connection and one whole request; answers it; returns True to keep reading."""


def read_request(conn: socket.socket) -> bytes | None:
    """One whole request (head and Content-Length body), or None when the client closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = conn.recv(65536)
        if not part:
            return None
        data += part
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        part = conn.recv(65536)
        if not part:
            return None
        body += part
    return head + b"\r\n\r\n" + body


def answer(status: int, body: bytes, *headers: str, reason: str = "OK") -> bytes:
    """A complete HTTP/1.1 answer with Content-Length."""
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class RawServer:
    """Accepts connections and hands each request to ``handler``, one thread per connection.

    ``connections`` counts accepted connections; ``requests`` keeps every request, raw. Every
    socket has a timeout, and ``stop()`` joins every thread with a bound.
    """

    def __init__(self, handler: Handler, *, timeout: float = 10.0) -> None:
        self._handler = handler
        self._timeout = timeout
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = int(self._listener.getsockname()[1])
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def stopped(self) -> threading.Event:
        """Set when the server stops: handlers that loop check it."""
        return self._stopped

    def webhook_url(self, secret: str = "s3cr3tRawServer") -> str:
        return f"http://127.0.0.1:{self.port}/rest/1/{secret}/"

    def __enter__(self) -> RawServer:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopped.set()
        self._acceptor.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(self._timeout)
        with conn:
            try:
                while not self._stopped.is_set():
                    request = read_request(conn)
                    if request is None:
                        return
                    self.requests.append(request)
                    if not self._handler(conn, request):
                        return
            except OSError:  # the client hung up, as the tests expect it to
                return
