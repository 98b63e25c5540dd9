"""The HTTP clients: URL rules, credentials, the ``requests.Session`` and its urllib3 ``Retry``.

``B24Hook`` (inbound webhook) and ``B24OAuth`` (application token) share one ``send()`` that
posts an encoded batch and returns a decoded ``Envelope`` or raises ``TransportError`` /
``DecodeError``; requests' exceptions are translated here and only here. Each client holds its
retry policy and limiters for the batch layer, but no batch logic. Secrets never leave a client
unredacted.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import SplitResult, quote, urlsplit

import requests
import requests.auth
import requests.utils
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from b24batch._version import __version__
from b24batch.errors import AuthError, RateLimitError, SdkError, SdkTypeError, TransportError
from b24batch.limits import LeakyBucket, Limiter, LimitState, OperatingMeter, RateLimit
from b24batch.limits import shared_bucket as _shared_bucket
from b24batch.redaction import install_log_filter, redact
from b24batch.results import Key
from b24batch.retry import RetryPolicy, backoff
from b24batch.wire import Envelope, decode_response

if TYPE_CHECKING:
    from b24batch.actions import Actions

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_TIMEOUT",
    "USER_AGENT",
    "B24Hook",
    "B24OAuth",
    "Timeout",
]

Timeout = float | tuple[float, float]
"""Seconds: one number for connect and read, or a ``(connect, read)`` pair, as in requests."""

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 65.0)
"""Connect 5 s; read 65 s, since the cloud cuts a request at 60 s and a full batch can need it."""


class _SharedDefault:
    """The type of :data:`DEFAULT_RATE_LIMIT`."""

    def __repr__(self) -> str:
        return "DEFAULT_RATE_LIMIT"


DEFAULT_RATE_LIMIT: Final = _SharedDefault()
"""``rate_limit=`` default: ``RateLimit()`` in one bucket shared by every client of the same
portal origin in the process, as the portal counts requests per portal and source IP."""

RateLimitArg = RateLimit | _SharedDefault | None

USER_AGENT = f"b24batch/{__version__}"
SDK_TYPE = "b24batch"
_RENEWABLE = frozenset({"expired_token", "invalid_token"})

log = logging.getLogger("b24batch")
install_log_filter()  # urllib3 logs request URLs, and a webhook URL holds the secret

_WEBHOOK_PATH = re.compile(r"^/rest/(?:api/)?(?P<user>\d+)/(?P<secret>[^/]+)/?$")
_WEBHOOK_SHAPE = "https://PORTAL/rest/USER_ID/SECRET/ (or https://PORTAL/rest/api/USER_ID/SECRET/)"
_ENDPOINT_PATH = re.compile(r"^(?:/rest(?:/api)?)?/?$")
_ENDPOINT_SHAPE = "https://PORTAL/rest/ (the client endpoint) or https://PORTAL"


_C = TypeVar("_C", bound="_Client")


class _Client:
    """What both clients share: session, timeouts, limits, retries, redaction, ``send()``."""

    def __init__(
        self,
        origin: str,
        batch_url: str,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = RetryPolicy(),  # noqa: B008 - immutable
        rate_limit: RateLimitArg = DEFAULT_RATE_LIMIT,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        """The options both clients take (see :class:`B24Hook` for each one)."""
        self._origin = origin
        self._batch_url = batch_url
        self._timeout = _checked_timeout(timeout)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise SdkTypeError(f"retry={retry!r}: pass a RetryPolicy, or None for no retries")
        self.retry: RetryPolicy = retry if retry is not None else RetryPolicy(max_attempts=1)
        """The retry policy the batch layer applies to this client's calls."""
        self._rand = rand
        self.limiter = Limiter(
            _bucket(origin, rate_limit, clock),
            OperatingMeter(_policy(rate_limit), wall_clock),
            sleep=sleep,
            wall_clock=wall_clock,
        )
        """The client's rate and operating-time limiters, shared by its threads."""
        self._own_session = session is None
        self._session = session if session is not None else _new_session(self.retry, batch_url)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}

    @property
    def timeout(self) -> Timeout:
        """The timeout every request uses."""
        return self._timeout

    @functools.cached_property
    def actions(self) -> Actions:
        """The JS SDK's path to the same objects: ``b24.actions.v3.batch.make(calls)``."""
        from b24batch.actions import Actions  # the facade sits above the client: import late

        return Actions(self)

    def limit_state(self) -> LimitState:
        """What the client's limiters know now: requests available, operating time, reset."""
        return self.limiter.state()

    def backoff(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th repeat, by the policy, with jitter."""
        return backoff(self.retry, retry, self._rand)

    def redact(self, text: str) -> str:
        """Mask this client's secrets, and any webhook secret or token, in ``text``."""
        return redact(text, self._secrets())

    def credential_version(self) -> int:
        """A number that changes whenever the credential is renewed."""
        return 0

    def renew(self, error: AuthError, version: int) -> bool:
        """Renew the credential after ``error``; True when a re-send may now succeed."""
        return False

    def send(
        self,
        body: bytes,
        *,
        keys: Sequence[Key],
        request_id: str,
        idempotency_key: str | None = None,
    ) -> Envelope:
        """POST one encoded batch and decode the answer. One HTTP request, no retries here.

        Args:
            body: The JSON body from :func:`b24batch.wire.encode_batch`.
            keys: The commands' keys, in order (the answer must have one entry per key).
            request_id: Sent as ``bx24_request_id`` and put on every error.
            idempotency_key: Sent as ``Idempotency-Key`` when given.

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
        headers = self._headers  # requests merges it into a new dict; it is never changed
        if idempotency_key is not None:
            headers = {**headers, "Idempotency-Key": idempotency_key}
        started = time.perf_counter()
        error: TransportError | None = None
        try:
            response = self._session.post(
                url,
                data=body,
                headers=headers,
                auth=self._auth(),
                timeout=self._timeout,
                allow_redirects=False,  # never carry the credential, or the body, elsewhere
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
                f"sent across a redirect: use the portal's final URL",
                request_id=request_id,
            )
        envelope = decode_response(
            status,
            response.content,
            keys=keys,
            request_id=request_id,
            headers=response.headers,
            redact=self.redact,
        )
        self.limiter.after_answer(envelope.time, refused=isinstance(envelope.error, RateLimitError))
        return envelope

    def close(self) -> None:
        """Close the connection pool (a session passed in by the caller is left open)."""
        if self._own_session:
            self._session.close()

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _secrets(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _auth(self) -> requests.auth.AuthBase | None:
        return None

    def _transport_error(self, exc: requests.RequestException, request_id: str) -> TransportError:
        """Translate a requests exception: what happened, and whether the batch may have run."""
        where = repr(self)
        inner = exc.args[0] if exc.args else None
        reason = getattr(inner, "reason", inner)
        unknown = True
        never_connected = False
        if isinstance(exc, requests.ConnectTimeout):
            message, unknown = (
                f"could not connect to {where} in time; the batch was not sent",
                False,
            )
            never_connected = True
        elif isinstance(exc, requests.ReadTimeout):
            read = self._timeout[1] if isinstance(self._timeout, tuple) else self._timeout
            message = f"{where} sent no answer within {read} s; the batch may have been executed"
        elif isinstance(exc, requests.exceptions.SSLError) and _certificate_failure(exc):
            message = f"the certificate of {where} was refused; the batch was not sent"
            unknown = False
        elif isinstance(exc, requests.exceptions.SSLError):
            # urllib3 also wraps TLS errors met while reading the answer, after the body went.
            message = f"TLS with {where} failed; the batch may have been executed"
        elif isinstance(exc, requests.ConnectionError) and isinstance(
            reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError
        ):
            message, unknown = f"could not connect to {where}; the batch was not sent", False
            never_connected = True
        elif isinstance(exc, requests.ConnectionError):
            message = (
                f"the connection to {where} broke before an answer came; the batch may have "
                f"been executed"
            )
        else:
            message = f"the request to {where} failed; the batch may have been executed"
        detail = self.redact(str(reason if isinstance(reason, BaseException) else exc))
        error = TransportError(
            f"{message} ({detail})", request_id=request_id, outcome_unknown=unknown
        )
        error.never_connected = never_connected  # the batch layer repeats these (max_wait)
        error.__cause__ = _redacted_copy(exc, detail)
        return error


class B24Hook(_Client):
    """A client for one inbound webhook of one portal.

    Create it with :meth:`from_webhook_url`, once per portal, and share it: it holds one
    ``requests.Session`` (connection pool) and its limiters, and is safe to use from several
    threads.

    Example:
        >>> with B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/abc123/") as b24:
        ...     b24
        <B24Hook https://example.bitrix24.com/rest/api/1/***/>
    """

    def __init__(self, origin: str, user_id: int, secret: str, **options: Any) -> None:
        """Prefer :meth:`from_webhook_url`, which checks the URL and builds these arguments.

        Args:
            origin: ``scheme://host[:port]`` of the portal.
            user_id: The webhook's user id.
            secret: The webhook's secret.
            **options: Keyword-only, all optional:

                - ``timeout``: seconds, or ``(connect, read)``; see :data:`DEFAULT_TIMEOUT`.
                - ``session``: a ``requests.Session`` to use as given (its adapters, headers,
                  proxies); the client neither configures nor closes it. None makes one.
                - ``retry``: the :class:`RetryPolicy` (default ``RetryPolicy()``); None sends
                  every batch once.
                - ``rate_limit``: a :class:`RateLimit` for this client alone, None for no
                  client-side limits, or the default: the common plan's limits in one bucket
                  per portal origin (:data:`DEFAULT_RATE_LIMIT`).
                - ``clock``, ``wall_clock``, ``sleep``, ``rand``: monotonic seconds, Unix
                  seconds, a sleep and a float in [0, 1) for jitter; injectable for tests.
        """
        self._user_id = user_id
        self._secret = secret
        super().__init__(origin, f"{origin}/rest/api/{user_id}/{secret}/batch", **options)

    @classmethod
    def from_webhook_url(cls, url: str, **options: Any) -> B24Hook:
        """Make a client from an inbound webhook URL, as the portal hands it out.

        Args:
            url: ``https://PORTAL/rest/USER_ID/SECRET/`` (classic form) or
                ``https://PORTAL/rest/api/USER_ID/SECRET/`` (REST 3.0 form), with or without
                the trailing slash. ``http://`` only for loopback hosts (tests, FakePortal).
            **options: The keyword arguments of :class:`B24Hook` (``timeout``, ``session``,
                ``retry``, ``rate_limit``, ...).

        Raises:
            SdkError: The URL is not a webhook URL; the message says what one looks like.

        Example:
            >>> B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/abc123/")
            <B24Hook https://example.bitrix24.com/rest/api/1/***/>
        """
        parts = _split_url(url, "webhook URL", _WEBHOOK_SHAPE)
        match = _WEBHOOK_PATH.match(parts.path)
        if match is None:
            raise SdkError(
                f"the URL for {parts.hostname} is not a webhook URL (it needs a user id and a "
                f"secret after /rest/): expected {_WEBHOOK_SHAPE}"
            )
        return cls(_origin(parts), int(match["user"]), match["secret"], **options)

    @property
    def url(self) -> str:
        """The webhook's REST 3.0 base URL with the secret masked, for display."""
        return f"{self._origin}/rest/api/{self._user_id}/***/"

    def __repr__(self) -> str:
        return f"<B24Hook {self.url}>"

    __str__ = __repr__

    def _secrets(self) -> tuple[str, ...]:
        return (self._secret,)


class B24OAuth(_Client):
    """A client for an OAuth application: ``Authorization: Bearer`` to ``/rest/api/batch``.

    The token goes only in the header (never in the body, protocol §1) and never across a
    redirect. On 401 ``expired_token`` / ``invalid_token`` the client calls ``refresh`` once —
    one call however many threads hit the 401 together — hands the new token to ``on_token``
    so the application can store it, and re-sends once, outside the retry budget. A second
    401 raises :class:`AuthError`.

    Args:
        endpoint: The portal's client endpoint as Bitrix24 hands it to applications
            (``https://PORTAL/rest/``), or the bare portal URL.
        access_token: The current access token.
        refresh: Returns a fresh access token (the application owns its OAuth credentials);
            None: a 401 is raised as it is.
        on_token: Receives each new token.
        **options: ``timeout``, ``session``, ``retry``, ``rate_limit``, ``clock``,
            ``wall_clock``, ``sleep``, ``rand``, as for :class:`B24Hook`.

    Example:
        >>> B24OAuth("https://example.bitrix24.com/rest/", "token-value")
        <B24OAuth https://example.bitrix24.com/rest/api/batch>
    """

    def __init__(
        self,
        endpoint: str,
        access_token: str,
        *,
        refresh: Callable[[], str] | None = None,
        on_token: Callable[[str], object] | None = None,
        **options: Any,
    ) -> None:
        parts = _split_url(endpoint, "client endpoint", _ENDPOINT_SHAPE)
        if not _ENDPOINT_PATH.match(parts.path):
            raise SdkError(
                f"the endpoint for {parts.hostname} has the path {parts.path!r}: "
                f"expected {_ENDPOINT_SHAPE}"
            )
        _check_token(access_token)
        if refresh is not None and not callable(refresh):
            raise SdkTypeError("refresh must be a callable that returns a new access token")
        if on_token is not None and not callable(on_token):
            raise SdkTypeError("on_token must be a callable that takes the new access token")
        self._token = access_token
        self._version = 0
        self._old_tokens: tuple[str, ...] = ()
        self._refresh = refresh
        self._on_token = on_token
        self._token_lock = threading.Lock()
        origin = _origin(parts)
        super().__init__(origin, f"{origin}/rest/api/batch", **options)

    @property
    def url(self) -> str:
        """The batch URL (it holds no secret)."""
        return self._batch_url

    def credential_version(self) -> int:
        """How many times the token has been refreshed."""
        return self._version

    def renew(self, error: AuthError, version: int) -> bool:
        """Refresh the token after an expired/invalid-token 401, once for all threads.

        Args:
            error: The 401 the batch got.
            version: :meth:`credential_version` as it was when that batch was sent.

        Returns:
            True when a fresh token is in place (refreshed now, or by another thread since).

        Raises:
            AuthError: ``refresh`` itself failed or returned no token.
        """
        if self._refresh is None or error.code not in _RENEWABLE:
            return False
        with self._token_lock:
            if self._version != version:
                return True  # another thread refreshed while this batch was in flight
            failure: AuthError | None = None
            try:
                token = self._refresh()
                _check_token(token)
            except Exception as exc:
                # Only the type goes in the message: the application's own text may carry a
                # token this client never saw, so it cannot be redacted. The exception itself
                # stays reachable as refresh_error, outside str() and tracebacks.
                failure = AuthError(
                    f"refreshing the access token failed with {type(exc).__name__}; "
                    f"see the error's refresh_error",
                    code=error.code,
                    status=error.status,
                    request_id=error.request_id,
                )
                failure.refresh_error = exc
            else:
                self._old_tokens = (*self._old_tokens[-3:], self._token)
                self._token = token
                self._version += 1
                if self._on_token is not None:
                    # Under the lock, so tokens reach the application in the order issued.
                    self._on_token(token)
        if failure is not None:
            raise failure  # outside the except block: the refresh error may name the token
        log.info("access token refreshed after %s", error.code)
        return True

    def __repr__(self) -> str:
        return f"<B24OAuth {self._batch_url}>"

    __str__ = __repr__

    def _secrets(self) -> tuple[str, ...]:
        return (self._token, *self._old_tokens)

    def _auth(self) -> requests.auth.AuthBase:
        # Passed as auth=, not as a header: with a header, a caller's Session that trusts the
        # environment would let a ~/.netrc entry for the portal replace it with Basic auth.
        return _Bearer(self._token)


class _Bearer(requests.auth.AuthBase):
    """``Authorization: Bearer TOKEN`` on one request; repr without the token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "<Bearer ***>"


def _split_url(url: object, what: str, shape: str) -> SplitResult:
    """Check scheme, host, userinfo, query and http-only-on-loopback; return the parts."""
    if not isinstance(url, str):
        raise SdkTypeError(f"the {what} is a {type(url).__name__}; pass a str")
    parts = urlsplit(url.strip())
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        host = None
    if parts.scheme.lower() not in ("https", "http") or not host:
        raise SdkError(f"this is not a {what}: expected {shape}")
    if parts.username is not None or parts.password is not None:
        raise SdkError(f"a {what} has no user:password@ part: expected {shape}")
    if parts.query or parts.fragment:
        raise SdkError(f"a {what} has no query string or fragment: expected {shape}")
    if parts.scheme.lower() == "http" and not _is_loopback(host):
        raise SdkError(
            f"{host} is reached over plain http; Bitrix24 requires https (http is allowed "
            f"only for loopback hosts such as the FakePortal)"
        )
    return parts


def _origin(parts: SplitResult) -> str:
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    port = parts.port
    return f"{parts.scheme.lower()}://{netloc}" + (f":{port}" if port is not None else "")


def _check_token(token: object) -> None:
    if not isinstance(token, str) or not token.strip() or not token.isprintable():
        raise SdkError("the access token must be a non-empty string of printable characters")


def _bucket(
    origin: str, rate_limit: RateLimitArg, clock: Callable[[], float]
) -> LeakyBucket | None:
    if rate_limit is None:
        return None
    if isinstance(rate_limit, RateLimit):
        return LeakyBucket(rate_limit, clock)
    if isinstance(rate_limit, _SharedDefault):
        return _shared_bucket(origin, clock)
    raise SdkTypeError(
        f"rate_limit={rate_limit!r}: pass a RateLimit, None for no client-side limit, "
        f"or leave the default"
    )


def _policy(rate_limit: RateLimitArg) -> RateLimit | None:
    if isinstance(rate_limit, RateLimit):
        return rate_limit
    return RateLimit() if isinstance(rate_limit, _SharedDefault) else None


def _certificate_failure(exc: BaseException) -> bool:
    """Whether a TLS error is a refused certificate, which happens before anything is sent."""
    seen: list[BaseException] = []
    pending: list[object] = [exc]
    while pending and len(seen) < 20:
        item = pending.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        if isinstance(item, ssl.SSLCertVerificationError | ssl.CertificateError):
            return True
        seen.append(item)
        pending.extend(
            [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
        )
    return False


def _redacted_copy(exc: requests.RequestException, text: str) -> BaseException:
    """The same kind of exception as ``exc``, with only a redacted message and no chain."""
    try:
        copy: BaseException = type(exc)(text)
    except Exception:  # a subclass with another constructor: keep the family, lose the leaf
        copy = requests.RequestException(text)
    copy.__suppress_context__ = True
    return copy


def _new_session(policy: RetryPolicy, url: str) -> requests.Session:
    """A Session whose urllib3 Retry repeats nothing.

    Every repeat is the batch layer's, in one loop under the policy's ``max_wait``: a connection
    that could not be opened comes back as a ``TransportError`` with ``never_connected`` and is
    repeated there (urllib3's own connect retries slept outside that budget, and uncounted).
    Anything that may have reached the portal is repeated only when the batch is safe to repeat.

    The environment (proxy variables and ``NO_PROXY``, ``REQUESTS_CA_BUNDLE`` /
    ``CURL_CA_BUNDLE``) is read once, here, instead of on every request: requests' per-request
    look-up cost about 170 µs a batch, and its ``~/.netrc`` look-up could replace an OAuth
    Bearer header with Basic auth. ``~/.netrc`` is never used.
    """
    session = requests.Session()
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(url))
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
