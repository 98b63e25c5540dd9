"""The HTTP client: webhook URL rules, the ``requests.Session`` and its urllib3 ``Retry``.

``B24Hook.send`` posts one encoded batch body and returns a decoded ``Envelope`` or raises
``TransportError`` / ``DecodeError``; requests' exceptions are translated here and only here.
No batch logic lives here, and the webhook secret never leaves this object unredacted.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from b24batch._version import __version__
from b24batch.errors import SdkError, SdkTypeError, TransportError
from b24batch.redaction import install_log_filter, redact
from b24batch.results import Key
from b24batch.wire import Envelope, decode_response

if TYPE_CHECKING:
    from collections.abc import Sequence

    from b24batch.batch import Actions

__all__ = [
    "CONNECT_RETRIES",
    "DEFAULT_TIMEOUT",
    "USER_AGENT",
    "B24Hook",
    "Timeout",
]

Timeout = float | tuple[float, float]
"""Seconds: one number for connect and read, or a ``(connect, read)`` pair, as in requests."""

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 65.0)
"""Connect 5 s; read 65 s, since the cloud cuts a request at 60 s and a full batch can need it."""

CONNECT_RETRIES = 2
"""urllib3 retries of a connection that could not be opened: the request never left, so a
repeat is always safe. Nothing that may have reached the portal is retried at this layer."""

USER_AGENT = f"b24batch/{__version__}"
SDK_TYPE = "b24batch"

log = logging.getLogger("b24batch")
install_log_filter()  # urllib3 logs request URLs, and a webhook URL holds the secret

_WEBHOOK_PATH = re.compile(r"^/rest/(?:api/)?(?P<user>\d+)/(?P<secret>[^/]+)/?$")
_WEBHOOK_SHAPE = "https://PORTAL/rest/USER_ID/SECRET/ (or https://PORTAL/rest/api/USER_ID/SECRET/)"


class B24Hook:
    """A client for one inbound webhook of one portal.

    Create it with :meth:`from_webhook_url`, once per portal, and share it: it holds one
    ``requests.Session`` (connection pool) and is safe to use from several threads.

    Example:
        >>> with B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/abc123/") as b24:
        ...     b24
        <B24Hook https://example.bitrix24.com/rest/api/1/***/>
    """

    def __init__(
        self,
        origin: str,
        user_id: int,
        secret: str,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> None:
        """Prefer :meth:`from_webhook_url`, which checks the URL and builds these arguments.

        Args:
            origin: ``scheme://host[:port]`` of the portal.
            user_id: The webhook's user id.
            secret: The webhook's secret.
            timeout: Seconds, or ``(connect, read)``; see :data:`DEFAULT_TIMEOUT`.
            session: A ``requests.Session`` to use as given (its adapters, headers, proxies);
                the client then neither configures nor closes it. None makes one of its own.
        """
        self._origin = origin
        self._user_id = user_id
        self._secret = secret
        self._timeout = _checked_timeout(timeout)
        self._own_session = session is None
        self._session = session if session is not None else _new_session()
        self._batch_url = f"{origin}/rest/api/{user_id}/{secret}/batch"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}

    @classmethod
    def from_webhook_url(
        cls,
        url: str,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> B24Hook:
        """Make a client from an inbound webhook URL, as the portal hands it out.

        Args:
            url: ``https://PORTAL/rest/USER_ID/SECRET/`` (classic form) or
                ``https://PORTAL/rest/api/USER_ID/SECRET/`` (REST 3.0 form), with or without
                the trailing slash. ``http://`` only for loopback hosts (tests, FakePortal).
            timeout: Seconds, or a ``(connect, read)`` pair.
            session: A ``requests.Session`` to use as given; None makes one.

        Raises:
            SdkError: The URL is not a webhook URL; the message says what one looks like.

        Example:
            >>> B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/abc123/")
            <B24Hook https://example.bitrix24.com/rest/api/1/***/>
        """
        if not isinstance(url, str):
            raise SdkTypeError(f"the webhook URL is a {type(url).__name__}; pass a str")
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        try:
            host = parts.hostname
            port = parts.port
        except ValueError:
            host = None
            port = None
        if scheme not in ("https", "http") or not host:
            raise SdkError(f"this is not a webhook URL: expected {_WEBHOOK_SHAPE}")
        if parts.username is not None or parts.password is not None:
            raise SdkError(f"a webhook URL has no user:password@ part: expected {_WEBHOOK_SHAPE}")
        if parts.query or parts.fragment:
            raise SdkError(
                f"a webhook URL has no query string or fragment: expected {_WEBHOOK_SHAPE}"
            )
        match = _WEBHOOK_PATH.match(parts.path)
        if match is None:
            raise SdkError(
                f"the URL for {host} is not a webhook URL (it needs a user id and a secret "
                f"after /rest/): expected {_WEBHOOK_SHAPE}"
            )
        if scheme == "http" and not _is_loopback(host):
            raise SdkError(
                f"{host} is reached over plain http; Bitrix24 requires https (http is allowed "
                f"only for loopback hosts such as the FakePortal)"
            )
        netloc = f"[{host}]" if ":" in host else host
        origin = f"{scheme}://{netloc}" + (f":{port}" if port is not None else "")
        return cls(origin, int(match["user"]), match["secret"], timeout=timeout, session=session)

    @property
    def timeout(self) -> Timeout:
        """The timeout every request uses."""
        return self._timeout

    @property
    def url(self) -> str:
        """The webhook's REST 3.0 base URL with the secret masked, for display."""
        return f"{self._origin}/rest/api/{self._user_id}/***/"

    @functools.cached_property
    def actions(self) -> Actions:
        """The JS SDK's path to the same objects: ``b24.actions.v3.batch.make(calls)``."""
        from b24batch.batch import Actions  # the facade sits above the client: import late

        return Actions(self)

    def redact(self, text: str) -> str:
        """Mask this client's secret, and any webhook secret or token, in ``text``."""
        return redact(text, (self._secret,))

    def send(self, body: bytes, *, keys: Sequence[Key], request_id: str) -> Envelope:
        """POST one encoded batch and decode the answer.

        Args:
            body: The JSON body from :func:`b24batch.wire.encode_batch`.
            keys: The commands' keys, in order (the answer must have one entry per key).
            request_id: Sent as ``bx24_request_id`` and put on every error.

        Returns:
            The decoded envelope: results, or the portal's error envelope.

        Raises:
            TransportError: No usable HTTP answer (refused, timeout, TLS, reset, redirect).
            DecodeError: An answer that is not a batch envelope.
        """
        url = (
            f"{self._batch_url}?bx24_request_id={quote(request_id, safe='')}"
            f"&bx24_sdk_ver={__version__}&bx24_sdk_type={SDK_TYPE}"
        )
        started = time.perf_counter()
        error: TransportError | None = None
        try:
            response = self._session.post(
                url,
                data=body,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,  # never carry the secret, or the body, elsewhere
            )
        except requests.RequestException as exc:
            error = self._transport_error(exc, request_id)
        if error is not None:
            # Raised outside the except block, so the original exception (URL and secret in
            # its message) is not kept as __context__; __cause__ is a redacted copy.
            log.debug(
                "batch %s: %d commands failed after %.1f ms: %s",
                request_id,
                len(keys),
                (time.perf_counter() - started) * 1000,
                error,
            )
            raise error
        status = response.status_code
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "batch %s: %d commands -> HTTP %d, %d bytes in %.1f ms",
                request_id,
                len(keys),
                status,
                len(response.content),
                (time.perf_counter() - started) * 1000,
            )
        if 300 <= status < 400:
            location = self.redact(response.headers.get("Location", "nowhere"))
            raise TransportError(
                f"the portal answered HTTP {status}, redirecting to {location}; a batch is never "
                f"sent across a redirect: use the portal's final URL in the webhook",
                request_id=request_id,
            )
        return decode_response(
            status,
            response.content,
            keys=keys,
            request_id=request_id,
            content_type=response.headers.get("Content-Type", ""),
            redact=self.redact,
        )

    def close(self) -> None:
        """Close the connection pool (a session passed in by the caller is left open)."""
        if self._own_session:
            self._session.close()

    def __enter__(self) -> B24Hook:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<B24Hook {self.url}>"

    __str__ = __repr__

    def _transport_error(self, exc: requests.RequestException, request_id: str) -> TransportError:
        """Translate a requests exception: what happened, and whether the batch may have run."""
        where = self.url
        inner = exc.args[0] if exc.args else None
        reason = getattr(inner, "reason", inner)
        if isinstance(exc, requests.ConnectTimeout):
            message, unknown = (
                f"could not connect to {where} in time; the batch was not sent",
                False,
            )
        elif isinstance(exc, requests.ReadTimeout):
            message = (
                f"{where} sent no answer within {self._read_timeout()} s; the batch may have "
                f"been executed"
            )
            unknown = True
        elif isinstance(exc, requests.exceptions.SSLError):
            message, unknown = f"TLS with {where} failed; the batch was not sent", False
        elif isinstance(exc, requests.ConnectionError) and isinstance(
            reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError
        ):
            message = f"could not connect to {where}; the batch was not sent"
            unknown = False
        elif isinstance(exc, requests.ConnectionError):
            message = (
                f"the connection to {where} broke before an answer came; the batch may have "
                f"been executed"
            )
            unknown = True
        else:
            message = f"the request to {where} failed; the batch may have been executed"
            unknown = True
        detail = self.redact(str(reason if isinstance(reason, BaseException) else exc))
        error = TransportError(
            f"{message} ({detail})", request_id=request_id, outcome_unknown=unknown
        )
        error.__cause__ = _redacted_copy(exc, detail)
        return error

    def _read_timeout(self) -> float:
        timeout = self._timeout
        return timeout[1] if isinstance(timeout, tuple) else timeout


def _redacted_copy(exc: requests.RequestException, text: str) -> BaseException:
    """The same kind of exception as ``exc``, with only a redacted message and no chain."""
    try:
        copy: BaseException = type(exc)(text)
    except Exception:  # a subclass with another constructor: keep the family, lose the leaf
        copy = requests.RequestException(text)
    copy.__suppress_context__ = True
    return copy


def _new_session() -> requests.Session:
    session = requests.Session()
    retry = Retry(
        total=None,
        connect=CONNECT_RETRIES,
        read=0,  # a read error means the batch may have run: never repeated here
        redirect=0,
        status=0,
        other=0,
        # POST is left out on purpose. (An empty set would mean "every method" to urllib3 2.x.)
        allowed_methods=frozenset({"GET", "HEAD", "OPTIONS"}),
        backoff_factor=0.1,
        raise_on_redirect=False,
        raise_on_status=False,
        respect_retry_after_header=False,
    )
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def _checked_timeout(timeout: Any) -> Timeout:
    def positive(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e6

    if isinstance(timeout, tuple) and len(timeout) == 2 and all(map(positive, timeout)):
        return (float(timeout[0]), float(timeout[1]))
    if positive(timeout):
        return float(timeout)
    raise SdkError(
        f"timeout={timeout!r}: pass seconds as a positive number, or a (connect, read) pair; "
        f"a request without a timeout could hang forever"
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
