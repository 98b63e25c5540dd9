"""The HTTP transport: the ``requests.Session``, one POST read within bounds, requests' errors.

``Transport.post`` sends one request and returns the whole answer as an ``Answer``, or raises
``TransportError``: no answer, an interim (1xx) or redirect answer, a body past the size cap or
an attempt past its deadline. requests' exceptions are translated here and only here. It knows
no credentials (the URL comes as a ``Secret``) and no batches.
"""

from __future__ import annotations

import contextvars
import http.client
import http.cookiejar
import io
import os
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
import requests
import requests.auth
import requests.utils
import urllib3.connection
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

from b24batch.errors import TransportError
from b24batch.redaction import Secret
from b24batch.retry import RetryPolicy

__all__ = [
    "DEADLINE_MARGIN",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "POOL_SIZE",
    "Answer",
    "Transport",
    "new_session",
]

DEFAULT_MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024
"""The most an answer may hold once decoded (64 MiB); a batch of 50 big lists is a few MiB."""

DEADLINE_MARGIN: Final = 5.0
"""Seconds added to connect + read timeout to make the default deadline of one HTTP attempt."""

_CHUNK = 64 * 1024
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "b24batch_deadline", default=None
)

Timeout = float | tuple[float, float]


@attrs.frozen
class Answer:
    """One complete HTTP answer: status, headers, and the decoded body (left out of repr)."""

    status: int
    headers: Mapping[str, str]
    content: bytes = attrs.field(repr=False)


class Transport:
    """POSTs to one portal through one Session, each answer read within size and time bounds."""

    def __init__(
        self,
        session: requests.Session,
        *,
        timeout: Timeout,
        max_response_bytes: int,
        attempt_deadline: float,
    ) -> None:
        self.session = session
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.attempt_deadline = attempt_deadline

    def post(
        self,
        url: Secret[str],
        query: str,
        body: bytes,
        *,
        headers: Mapping[str, str],
        auth: requests.auth.AuthBase | None,
        where: str,
        redact: Callable[[str], str],
        request_id: str,
        method: str = "POST",
    ) -> Answer:
        """POST ``body`` to ``url`` + ``query`` and return the whole answer; no retries here.

        ``method="GET"`` sends the same way without a body (the OAuth refresh, which the
        authorization server documents as a GET).

        Raises:
            TransportError: No usable answer; ``outcome_unknown`` says whether the batch may
                have run.
        """
        deadline = time.monotonic() + self.attempt_deadline
        error: TransportError | None = None
        context = _DEADLINE.set(deadline)
        try:
            # POST through session.post, as ever (a caller's Session may override it).
            send = self.session.post if method == "POST" else self.session.get
            response = send(
                url.value + query,
                data=body or None,
                headers=headers,
                auth=auth,
                timeout=self.timeout,
                allow_redirects=False,  # never carry the credential, or the body, elsewhere
                stream=True,
            )
        except requests.RequestException as exc:
            error = self._error(exc, where, deadline, redact, request_id)
        finally:
            _DEADLINE.reset(context)
        if error is not None:
            # Raised outside the except block, so the original exception (URL and secret in
            # its message) is not kept as __context__; __cause__ is a redacted copy.
            raise error
        status = response.status_code
        if status < 200:
            # http.client skips only 100 Continue: the real answer would stay on the connection
            # and become the next batch's answer. Closing drops the connection from the pool.
            response.close()
            raise TransportError(
                f"{where} answered HTTP {status}, an interim answer, where the batch's answer "
                f"belongs; the connection was dropped; the request may have been executed",
                request_id=request_id,
                outcome_unknown=True,
            )
        content = self._read(response, deadline, where, redact, request_id)
        if 300 <= status < 400:
            location = redact(response.headers.get("Location", "nowhere"))
            raise TransportError(
                f"the portal answered HTTP {status}, redirecting to {location}; a batch is never "
                f"sent across a redirect: use the portal's final URL",
                request_id=request_id,
            )
        return Answer(status=status, headers=response.headers, content=content)

    def close(self) -> None:
        """Close the Session's connection pool."""
        self.session.close()

    def _read(
        self,
        response: requests.Response,
        deadline: float,
        where: str,
        redact: Callable[[str], str],
        request_id: str,
    ) -> bytes:
        """The decoded body, or TransportError past the size cap or the deadline."""
        cap = self.max_response_bytes
        declared = getattr(response.raw, "length_remaining", None)
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        parts: list[bytes] = []
        size = 0
        problem = ""
        error: TransportError | None = None
        if isinstance(declared, int) and declared > cap and not encoded:
            problem = f"announced {declared} bytes"
        else:
            try:
                for part in response.iter_content(_CHUNK):
                    size += len(part)
                    if size > cap:
                        problem = f"sent more than {cap} bytes"
                        break
                    if time.monotonic() > deadline:
                        problem = "was still sending"
                        break
                    parts.append(part)
            except requests.RequestException as exc:
                error = self._error(exc, where, deadline, redact, request_id, reading=True)
        if problem and error is None:
            late = problem == "was still sending"
            error = TransportError(
                f"{where} {problem} "
                + (
                    f"after the attempt's deadline of {self.attempt_deadline} s"
                    if late
                    else f"for an answer capped at {cap} bytes (max_response_bytes)"
                )
                + "; the answer was dropped; the request may have been executed",
                request_id=request_id,
                outcome_unknown=True,
            )
        if error is not None:
            parts.clear()  # nothing of a refused body is kept
            response.close()  # closes the connection instead of returning it to the pool
            raise error
        return b"".join(parts)

    def _error(
        self,
        exc: requests.RequestException,
        where: str,
        deadline: float,
        redact: Callable[[str], str],
        request_id: str,
        *,
        reading: bool = False,
    ) -> TransportError:
        """Translate a requests exception: what happened, and whether the batch may have run."""
        inner = exc.args[0] if exc.args else None
        reason = getattr(inner, "reason", inner)
        unknown = True
        never_connected = False
        timed_out = isinstance(exc, requests.ReadTimeout) or isinstance(
            reason, urllib3.exceptions.ReadTimeoutError | TimeoutError
        )
        if isinstance(exc, requests.ConnectTimeout):
            message, unknown = (
                f"could not connect to {where} in time; the request was not sent",
                False,
            )
            never_connected = True
        elif isinstance(exc, requests.exceptions.SSLError) and _certificate_failure(exc):
            message, unknown = (
                f"the certificate of {where} was refused; the request was not sent",
                False,
            )
        elif _handshake_failure(exc):
            # Nothing goes before the handshake completes: a server speaking plain http, or one
            # that hangs up mid-handshake, never saw the batch.
            message, unknown = (
                f"the TLS handshake with {where} failed; the request was not sent (does the server "
                f"speak https? a plain-http server fails the handshake)",
                False,
            )
        elif timed_out and time.monotonic() >= deadline:
            message = (
                f"{where} did not send its whole answer within the attempt's deadline of "
                f"{self.attempt_deadline} s; the request may have been executed"
            )
        elif timed_out:
            read = self.timeout[1] if isinstance(self.timeout, tuple) else self.timeout
            message = f"{where} sent no answer within {read} s; the request may have been executed"
        elif isinstance(exc, requests.exceptions.SSLError):
            # urllib3 also wraps TLS errors met while reading the answer, after the body went.
            message = f"TLS with {where} failed; the request may have been executed"
        elif reading:
            message = f"the answer of {where} broke off; the request may have been executed"
        elif isinstance(exc, requests.ConnectionError) and isinstance(
            reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError
        ):
            message, unknown = f"could not connect to {where}; the request was not sent", False
            never_connected = True
        elif isinstance(exc, requests.ConnectionError):
            message = (
                f"the connection to {where} broke before an answer came; the batch may have "
                f"been executed"
            )
        else:
            message = f"the request to {where} failed; the request may have been executed"
        detail = redact(str(reason if isinstance(reason, BaseException) else exc))
        error = TransportError(
            f"{message} ({detail})", request_id=request_id, outcome_unknown=unknown
        )
        error.never_connected = never_connected  # the batch layer repeats these (max_wait)
        error.__cause__ = _redacted_copy(exc, detail)
        return error


POOL_SIZE = 16
"""Connections the client's own Session keeps per host: as many as a window has in flight."""


def new_session(policy: RetryPolicy, url: Secret[str], user_agent: str) -> requests.Session:
    """A Session whose urllib3 Retry repeats nothing.

    Every repeat is the batch layer's, in one loop under the policy's ``max_wait``: a connection
    that could not be opened comes back as a ``TransportError`` with ``never_connected`` and is
    repeated there (urllib3's own connect retries slept outside that budget, and uncounted).
    Anything that may have reached the portal is repeated only when the batch is safe to repeat.

    The environment (proxy variables and ``NO_PROXY``, ``REQUESTS_CA_BUNDLE`` /
    ``CURL_CA_BUNDLE``) is read once, here, instead of on every request: requests' per-request
    look-up cost about 170 µs a batch, and its ``~/.netrc`` look-up could replace an OAuth
    Bearer header with Basic auth. ``~/.netrc`` is never used. No cookie is ever stored or
    sent: a REST client needs none, and a portal setting many would grow every request.
    """
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(_NoCookies())
    session.proxies.update(requests.utils.get_environ_proxies(url.value))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    retry = Retry(
        total=None,
        connect=0,
        read=0,
        redirect=0,
        status=0,
        other=0,
        # POST is left out on purpose. (An empty set would mean "every method" to urllib3 2.x.)
        allowed_methods=frozenset({"GET", "HEAD", "OPTIONS"}),
        backoff_factor=policy.base_delay,
        backoff_max=policy.max_delay,
        raise_on_redirect=False,
        raise_on_status=False,
        respect_retry_after_header=False,
    )
    # One connection per batch a chunked call keeps in flight (window.MAX_IN_FLIGHT).
    adapter = _Adapter(max_retries=retry, pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Accepts no cookie from an answer and returns none to a request."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


class _DeadlineReader(io.RawIOBase):
    """A socket's reading side that never waits past a deadline, however slowly bytes come."""

    def __init__(self, sock: Any, deadline: float) -> None:
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the attempt's deadline passed")
        timeout = self._sock.gettimeout()
        if timeout is not None and timeout <= remaining:
            return self._raw.readinto(buffer)  # type: ignore[no-any-return]
        self._sock.settimeout(remaining)
        try:
            return self._raw.readinto(buffer)  # type: ignore[no-any-return]
        finally:
            self._sock.settimeout(timeout)

    def fileno(self) -> int:
        return self._raw.fileno()  # type: ignore[no-any-return]

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineSocket:
    """What http.client's response asks of a socket (``makefile``), bound by a deadline."""

    def __init__(self, sock: Any, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


class _BoundedResponse(http.client.HTTPResponse):
    """http.client's response, reading status, headers and body within the attempt's deadline."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        deadline = _DEADLINE.get()
        bounded: Any = sock if deadline is None else _DeadlineSocket(sock, deadline)
        super().__init__(bounded, *args, **kwargs)


class _HTTPConnection(urllib3.connection.HTTPConnection):
    response_class = _BoundedResponse


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    response_class = _BoundedResponse


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS: Final = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(HTTPAdapter):
    """requests' adapter with connections whose answers are read within the deadline.

    Without it only the time between reads could be checked: a server trickling its headers
    one byte at a time would hold the call for as long as it liked.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools are classes of their own
            manager.pool_classes_by_scheme = _POOLS
        return manager


def _certificate_failure(exc: BaseException) -> bool:
    """Whether a TLS error is a refused certificate, which happens before anything is sent."""
    return any(
        isinstance(item, ssl.SSLCertVerificationError | ssl.CertificateError)
        for item in _wrapped(exc)
    )


def _handshake_failure(exc: BaseException) -> bool:
    """Whether an error was raised inside the TLS handshake, before any byte of the request.

    Told by where it was raised, not by its class: the same ``SSLError`` or reset met while
    reading the answer comes after the body went.
    """
    for item in _wrapped(exc):
        tb = item.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_name == "do_handshake":
                return True
            tb = tb.tb_next
    return False


def _wrapped(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it wraps (args, ``reason``, cause, context), at most 20."""
    seen: list[BaseException] = []
    pending: list[object] = [exc]
    while pending and len(seen) < 20:
        item = pending.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        pending.extend(
            [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
        )
    return seen


def _redacted_copy(exc: requests.RequestException, text: str) -> BaseException:
    """The same kind of exception as ``exc``, with only a redacted message and no chain."""
    try:
        copy: BaseException = type(exc)(text)
    except Exception:  # a subclass with another constructor: keep the family, lose the leaf
        copy = requests.RequestException(text)
    copy.__suppress_context__ = True
    return copy
