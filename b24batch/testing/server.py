"""The FakePortal's HTTP layer: the threaded loopback server and its request handler.

Reads each request within bounds (Content-Length or chunked bodies, 413 past ``max_body_bytes``
with the rest drained, idle timeouts), records it, applies its fault and writes the portal's
reply; it checks the loopback-only options. What a request means is the portal's business
(``Portal._process``), never this module's.
"""

from __future__ import annotations

import contextlib
import email.utils
import html
import ipaddress
import json
import logging
import socket
import socketserver
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

import attrs
from requests.structures import CaseInsensitiveDict

from b24batch.testing.faults import Fault
from b24batch.testing.messages import MALFORMED, RecordedRequest, Reply, classic_error

__all__ = ["LoopbackService", "Portal", "Server", "check_http_options"]

logger = logging.getLogger("b24batch.testing")

_MAX_LINE: Final = 1024  # a chunk-size line, or a trailer line, longer than this is malformed
# After refusing a body as too large, read and discard at most this much of what the client is
# still sending before closing: closing with unread data resets the connection, and the client
# would lose the 413 it has not read yet.
_DRAIN_BYTES: Final = 64 * 1024 * 1024
_POLL_INTERVAL: Final = 0.01  # also the worst-case latency of stop()


def check_http_options(
    host: str, max_body_bytes: int, idle_timeout: float, max_recorded: int
) -> None:
    """Refuse, with ValueError, a host off loopback and an out-of-range HTTP option."""
    if not _is_loopback(host):
        raise ValueError(
            f"host={host!r}: the FakePortal binds to loopback only (an address in 127.0.0.0/8, "
            f"'::1' or 'localhost'); it must never face a network"
        )
    for name, value, least in (
        ("max_body_bytes", max_body_bytes, 1),
        ("max_recorded", max_recorded, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    if (
        isinstance(idle_timeout, bool)
        or not isinstance(idle_timeout, int | float)
        or not (0 < idle_timeout < float("inf"))
    ):
        raise ValueError(f"idle_timeout must be a number of seconds > 0, got {idle_timeout!r}")


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Portal(Protocol):
    """What the HTTP layer uses of the FakePortal: its HTTP options, and one call per step."""

    _max_body_bytes: int
    _idle_timeout: float
    _latency: float
    _stopping: threading.Event

    def _receive(self, request: RecordedRequest) -> Fault | None: ...

    def _answered(self) -> None: ...

    def _redact(self, path: str) -> str: ...

    def _process(self, request: RecordedRequest) -> Reply: ...


class Server(ThreadingHTTPServer):
    """The threaded loopback server; it tracks its connections so ``stop()`` can close them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], portal: Portal) -> None:
        self.portal = portal
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves a FQDN for the host: a DNS lookup we never need.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that resets or vanishes mid-answer is routine here: log, never print."""
        logger.debug(
            "FakePortal connection from %s ended in an error", client_address, exc_info=True
        )

    def close_connections(self) -> None:
        """Shut down idle keep-alive connections so their handler threads end now."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


ServiceT = TypeVar("ServiceT", bound="LoopbackService")


class LoopbackService:
    """Start, stop and address a loopback ``Server`` (the FakePortal's, FakeAuthServer's).

    The subclass sets ``_host``, ``_port`` and ``_stopping`` and implements ``Portal``.
    """

    _host: str
    _port: int
    _stopping: threading.Event
    _server: Server | None = None
    _thread: threading.Thread | None = None
    _service_name = "FakePortal"

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._server is not None

    def start(self: ServiceT) -> ServiceT:
        """Bind and serve in a daemon thread; a restarted server keeps its port and state."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = Server((self._host, self._port), self)  # type: ignore[arg-type]
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"{self._service_name}:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5.0)
        self._server = self._thread = None

    def __enter__(self: ServiceT) -> ServiceT:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``; raises RuntimeError before the first ``start()``."""
        if not self._port:
            raise RuntimeError(
                f"{self._service_name} is not started; call start() or use it as a context"
            )
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"


class _Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "FakePortal"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # A silent client's reads end in TimeoutError, which handle_one_request answers by
        # closing the connection: an idle keep-alive connection holds no thread for long.
        self.connection.settimeout(self.server.portal._idle_timeout)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log; ``_send`` logs at DEBUG instead."""

    def do_POST(self) -> None:
        self._handle()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_POST

    def _read_body(self) -> bytes | None:
        """The request body; None when its framing is broken.

        Raises:
            _TooLarge: The body is longer than ``max_body_bytes``.
        """
        limit = self.server.portal._max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunks(limit)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length < 0:
            return None
        if length > limit:
            raise _TooLarge(length)
        body = self.rfile.read(length) if length else b""
        return body if len(body) == length else None

    def _read_chunks(self, limit: int) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_MAX_LINE)
            if not line.endswith(b"\n"):
                return None
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                return None
            if size < 0:
                return None
            if size == 0:
                for _ in range(100):  # trailers: a bounded number of bounded lines
                    line = self.rfile.readline(_MAX_LINE)
                    if line in (b"\r\n", b"\n"):
                        return b"".join(parts)
                    if not line.endswith(b"\n"):
                        return None
                return None
            total += size
            if total > limit:
                raise _TooLarge(None)
            part = self.rfile.read(size)
            if len(part) != size or self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n"):
                return None
            parts.append(part)

    def _handle(self) -> None:
        try:
            self._serve()
        except OSError:
            raise  # the connection's own trouble (a timeout, a reset): nobody to answer
        except Exception:
            # A failure of the portal's own code: answer what a portal would, keep serving.
            logger.exception("FakePortal failed on %s", self.server.portal._redact(self.path))
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(
                    Reply.of(500, classic_error("INTERNAL_SERVER_ERROR", "Internal server error"))
                )

    def _serve(self) -> None:
        portal = self.server.portal
        try:
            raw = self._read_body()
        except _TooLarge as exc:
            self._refuse_too_large(exc.length)
            return
        if raw is None:
            self.close_connection = True
            self._send(Reply.of(400, MALFORMED))
            return
        url = urlsplit(self.path)
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
            body = None
        request = RecordedRequest(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=CaseInsensitiveDict(dict(self.headers.items())),
            body=body,
            raw=raw,
        )
        fault = portal._receive(request)
        try:
            self._answer(portal, request, fault)
        finally:
            portal._answered()

    def _answer(self, portal: Portal, request: RecordedRequest, fault: Fault | None) -> None:
        if portal._latency and portal._stopping.wait(portal._latency):
            self._drop(request)  # the portal is stopping: give up on the request
            return
        kind = fault.kind if fault is not None else None
        if fault is not None and fault.kind == "delay" and portal._stopping.wait(fault.seconds):
            kind = "drop_before"  # the portal is stopping: give up on the request
        if fault is not None and fault.kind == "hang":
            portal._stopping.wait(fault.seconds)
            kind = "drop_before"
        if kind == "drop_before":
            self._drop(request)
            return
        if fault is not None and kind == "html":
            self._send(_html_page(fault.status, request.path))
            return
        if fault is not None and kind == "response":
            self._send(Reply(fault.status, fault.body, fault.headers))
            return
        try:
            reply = portal._process(request)
        except Exception:
            logger.exception("FakePortal failed on %s", portal._redact(request.path))
            reply = Reply.of(500, classic_error("INTERNAL_SERVER_ERROR", "Internal server error"))
        if kind == "drop_after":
            self._drop(request)
            return
        if kind == "truncated":
            reply = attrs.evolve(reply, body=reply.body[: len(reply.body) // 2])
        if fault is not None and kind == "rewrite":
            assert fault.edit is not None
            edited = fault.edit(json.loads(reply.body))
            reply = attrs.evolve(reply, body=json.dumps(edited).encode("utf-8"))
        self._send(reply)

    def _refuse_too_large(self, length: int | None) -> None:
        """Answer 413 and close, draining (within bounds) what the client still sends."""
        limit = self.server.portal._max_body_bytes
        size = f"{length} bytes" if length is not None else "a chunked body past that"
        self.close_connection = True
        self._send(
            Reply.of(
                413,
                classic_error(
                    "REQUEST_ENTITY_TOO_LARGE",
                    f"The request body may be at most {limit} bytes; got {size}",
                ),
            )
        )
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            budget = _DRAIN_BYTES
            while budget > 0 and (data := self.rfile.read1(65536)):
                budget -= len(data)

    def _drop(self, request: RecordedRequest) -> None:
        logger.debug("%s %s -> dropped", request.method, self.server.portal._redact(request.path))
        self.close_connection = True

    def _send(self, reply: Reply) -> None:
        """Write the whole response in one send, so no client waits on Nagle or delayed ACK."""
        try:
            reason = HTTPStatus(reply.status).phrase
        except ValueError:
            reason = "Unknown"
        head = [
            f"HTTP/1.1 {reply.status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            *(f"{name}: {value}" for name, value in reply.headers),
            f"Content-Length: {len(reply.body)}",
        ]
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += reply.body
        # Logged before sending, so a client that has its answer also finds the log line.
        logger.debug(
            "%s %s -> %d",
            self.command,
            self.server.portal._redact(urlsplit(self.path).path),
            reply.status,
        )
        self.wfile.write(data)


class _TooLarge(Exception):
    """A request body over ``max_body_bytes``; ``length`` is its Content-Length, if it has one."""

    def __init__(self, length: int | None) -> None:
        super().__init__(length)
        self.length = length


def _html_page(status: int, path: str) -> Reply:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    page = (
        f"<html><head><title>{status} {reason}</title></head><body>"
        f"<h1>{status} {reason}</h1><p>The proxy could not serve {html.escape(path)}</p>"
        "<hr><center>nginx</center></body></html>\n"
    )
    return Reply(status, page.encode("utf-8"), (("Content-Type", "text/html; charset=utf-8"),))
