"""The clients ``B24Hook`` and ``B24OAuth``: a credential, options and one send; no batch logic.

``send()`` posts a prepared batch of either protocol (its ``Protocol`` says where and how)
through the client's :class:`~b24batch.transport.Transport` and returns the decoded ``Answers``
or raises. The client holds the retry policy and limiters the engine's loop uses; secrets live
only in a masked ``Secret``; URL rules and token placement are ``credentials.py``'s.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import requests
import requests.auth

from b24batch._limits.policy import LimitState
from b24batch._limits.shared import fingerprint
from b24batch._protocols.base import Answers, Prepared, Protocol
from b24batch._protocols.v2 import V2
from b24batch._protocols.v3 import V3
from b24batch._version import __version__
from b24batch.credentials import (
    TOKEN_RULE,
    Bearer,
    BodyToken,
    endpoint_origin,
    valid_token,
    webhook_parts,
)
from b24batch.errors import (
    AuthError,
    B24Error,
    RateLimitError,
    SdkError,
    SdkTypeError,
)
from b24batch.options import (
    DEFAULT_RATE_LIMIT,
    DEFAULT_TIMEOUT,
    Options,
    checked_options,
    limiter,
)
from b24batch.redaction import Secret, install_log_filter, redact
from b24batch.retry import RetryPolicy, backoff
from b24batch.transport import (
    DEADLINE_MARGIN,
    DEFAULT_MAX_RESPONSE_BYTES,
    Timeout,
    Transport,
    new_session,
)

if TYPE_CHECKING:
    from b24batch.actions import Actions

__all__ = [
    "DEADLINE_MARGIN",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_TIMEOUT",
    "USER_AGENT",
    "B24Hook",
    "B24OAuth",
    "Timeout",
]

USER_AGENT = f"b24batch/{__version__}"
SDK_TYPE = "b24batch"
_RENEWABLE = frozenset({"expired_token", "invalid_token"})

log = logging.getLogger("b24batch")
install_log_filter()  # urllib3 logs request URLs, and a webhook URL holds the secret


_C = TypeVar("_C", bound="_Client")
_PROTOCOLS: tuple[Protocol, ...] = (V3, V2)
# What ``client.actions`` builds, installed by ``b24batch/__init__.py`` before any client can
# exist. The faces sit above the client, so the client never imports them; it only holds the
# one factory the package hands it.
_ACTIONS: list[Callable[[_Client], Actions]] = []


def install_actions(factory: Callable[[_Client], Actions]) -> None:
    """Install what ``client.actions`` returns (``b24batch/__init__.py`` calls this once)."""
    _ACTIONS[:] = [factory]


class _Client:
    """What both clients share: transport, timeouts, limits, retries, redaction, ``send()``."""

    def __init__(self, origin: str, urls: Mapping[str, Secret[str]], options: Options) -> None:
        """The options both clients take (see :class:`B24Hook` for each one), checked.

        ``urls`` maps each protocol's ``api`` segment to its batch URL.
        """
        self._origin = origin
        self._urls = dict(urls)
        batch_url = self._batch_url = self._urls[V3.api]
        retry = options.retry
        self.retry: RetryPolicy = retry if retry is not None else RetryPolicy(max_attempts=1)
        """The retry policy the batch layer applies to this client's calls."""
        self._rand = options.rand
        self.limiter = limiter(origin, fingerprint(batch_url), options)
        """The client's rate and operating-time limiters, shared by its threads."""
        self._own_session = options.session is None
        self._closed = False
        session = options.session
        if session is None:
            session = new_session(self.retry, batch_url, USER_AGENT)
        timeout = options.timeout
        deadline = options.attempt_deadline
        if deadline is None:
            connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
            deadline = connect + read + DEADLINE_MARGIN
        self._transport = Transport(
            session,
            timeout=timeout,
            max_response_bytes=options.max_response_bytes,
            attempt_deadline=deadline,
        )
        self._headers = {
            protocol.api: {"Content-Type": protocol.content_type, "Accept": "application/json"}
            for protocol in _PROTOCOLS
        }

    @property
    def origin(self) -> str:
        """The portal's ``scheme://host[:port]``: no path, so never a webhook's secret."""
        return self._origin

    @property
    def timeout(self) -> Timeout:
        """The timeout every request uses."""
        return self._transport.timeout

    @property
    def max_response_bytes(self) -> int:
        """The most an answer may hold, decoded; a bigger one is a ``TransportError``."""
        return self._transport.max_response_bytes

    @property
    def attempt_deadline(self) -> float:
        """Seconds one HTTP attempt may take in all, however slowly the answer comes."""
        return self._transport.attempt_deadline

    @property
    def _session(self) -> requests.Session:
        return self._transport.session

    @functools.cached_property
    def actions(self) -> Actions:
        """The JS SDK's path to the same objects: ``b24.actions.v3.batch.make(calls)``."""
        return _ACTIONS[0](self)

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
        self, prepared: Prepared, *, request_id: str, idempotency_key: str | None = None
    ) -> Answers:
        """POST one prepared batch and decode the answer. One HTTP request, no retries here.

        Args:
            prepared: The batch, encoded for its protocol, which says where it goes, as what,
                how an OAuth token travels, and how the answer decodes.
            request_id: Sent as ``bx24_request_id`` and put on every error.
            idempotency_key: Sent as ``Idempotency-Key`` when given (REST 3.0 only).

        Returns:
            The decoded answers: results, or the portal's error envelope.

        Raises:
            TransportError: No usable HTTP answer (refused, timeout, TLS, reset, redirect, an
                interim 1xx answer, an answer past ``max_response_bytes`` or past the
                attempt's deadline).
            DecodeError: An answer that is not a batch envelope.
        """
        if self._closed:
            # requests would silently open a new pool on a closed Session: refuse instead.
            raise SdkError(f"{self!r} is closed and sends nothing more; create a new client")
        protocol = prepared.protocol
        headers = self._headers[protocol.api]  # requests merges it into a new dict: never changed
        if idempotency_key is not None:
            headers = {**headers, "Idempotency-Key": idempotency_key}
        count = len(prepared.commands)
        started = time.perf_counter()
        try:
            answer = self._transport.post(
                self._urls[protocol.api],
                f"?bx24_request_id={quote(request_id, safe='')}"
                f"&bx24_sdk_ver={__version__}&bx24_sdk_type={SDK_TYPE}",
                prepared.body,
                headers=headers,
                auth=self._auth(protocol),
                where=repr(self),
                redact=self.redact,
                request_id=request_id,
            )
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "batch %s: %d commands -> HTTP %d, %d bytes in %.1f ms",
                    request_id,
                    count,
                    answer.status,
                    len(answer.content),
                    (time.perf_counter() - started) * 1000,
                )
            answers = protocol.decode(
                answer.status,
                answer.content,
                prepared=prepared,
                request_id=request_id,
                headers=answer.headers,
                redact=self.redact,
            )
        except B24Error as error:
            # The frames below hold the answer's body, which may echo the secret: tracebacks
            # shown with their locals (Sentry, Django's debug page) must not print them.
            traceback.clear_frames(error.__traceback__)
            log.debug(
                "batch %s: %d commands failed after %.1f ms: %s",
                request_id,
                count,
                (time.perf_counter() - started) * 1000,
                error,
            )
            raise
        self.limiter.after_answer(
            answers.limit_time,
            refused=isinstance(answers.error, RateLimitError),
            weight=prepared.weight,
        )
        return answers

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called: the client then refuses to send."""
        return self._closed

    def close(self) -> None:
        """Close the connection pool (a session passed in by the caller is left open).

        From then on the client refuses to send: a batch raises :class:`SdkError` naming the
        client, before anything is sent. Requests other threads have already started are not
        cut short: each finishes on its own connection, which is then closed rather than
        pooled. Closing twice is harmless.
        """
        self._closed = True
        if self._own_session:
            self._transport.close()

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

    def _auth(self, protocol: Protocol) -> requests.auth.AuthBase | None:
        return None


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
            **options: Keyword-only, all optional, each checked here:

                - ``timeout``: seconds, or ``(connect, read)``; see :data:`DEFAULT_TIMEOUT`.
                - ``session``: a ``requests.Session`` to use as given (its adapters, headers,
                  proxies, cookies); the client neither configures nor closes it. None makes
                  one, which stores no cookies and reads answers within the deadline.
                - ``retry``: the :class:`RetryPolicy` (default ``RetryPolicy()``); None sends
                  every batch once.
                - ``rate_limit``: a :class:`RateLimit` for this client alone, None for no
                  client-side limits, or the default: the common plan's limits in one bucket
                  per portal origin (:data:`DEFAULT_RATE_LIMIT`).
                - ``limit_store``: a :class:`RedisStore` or :class:`SQLiteStore` that keeps
                  the request-rate bucket (one per portal) and the operating-time meter for
                  every process using it; None (the default) keeps them in this process.
                - ``max_response_bytes``: the most an answer may hold once decoded (default
                  :data:`DEFAULT_MAX_RESPONSE_BYTES`, 64 MiB); a bigger one is dropped as a
                  ``TransportError`` whose ``outcome_unknown`` is True.
                - ``attempt_deadline``: seconds one HTTP attempt may take in all, from sending
                  to the answer's last byte (default: connect + read timeout +
                  :data:`DEADLINE_MARGIN`). With a ``session`` of your own it is checked only
                  between reads of the body.
                - ``clock``, ``wall_clock``, ``sleep``, ``rand``: monotonic seconds, Unix
                  seconds, a sleep and a float in [0, 1) for jitter; injectable for tests.

        Raises:
            SdkError: An option of the wrong value; SdkTypeError (also a TypeError) for one of
                the wrong type or an unknown option.
        """
        hidden = Secret(secret)
        del secret  # a traceback's frames show their locals: keep only the masked holder
        checked = checked_options(options)
        if not isinstance(hidden.value, str) or not hidden.value:
            raise SdkTypeError("the webhook secret must be a non-empty str")
        self._user_id = user_id
        super().__init__(
            origin,
            {
                p.api: Secret(f"{origin}/rest/{p.api}{user_id}/{hidden.value}/batch")
                for p in _PROTOCOLS
            },
            checked,
        )
        self._secret = hidden

    @classmethod
    def from_webhook_url(cls, url: str, **options: Any) -> B24Hook:
        """Make a client from an inbound webhook URL, as the portal hands it out.

        Args:
            url: ``https://PORTAL/rest/USER_ID/SECRET/`` (classic form) or
                ``https://PORTAL/rest/api/USER_ID/SECRET/`` (REST 3.0 form), with or without
                the trailing slash. ``http://`` only for loopback hosts (tests, FakePortal).
            **options: The keyword arguments of :class:`B24Hook` (``timeout``, ``session``,
                ``retry``, ``rate_limit``, ``limit_store``, ``max_response_bytes``,
                ``attempt_deadline``, ...).

        Raises:
            SdkError: The URL is not a webhook URL (the message says what one looks like), or
                an option is wrong (SdkTypeError for a wrong type or an unknown option).

        Example:
            >>> B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/abc123/")
            <B24Hook https://example.bitrix24.com/rest/api/1/***/>
        """
        hidden = Secret(url)
        del url  # a traceback's frames show their locals: keep only the masked holder
        checked_options(options)  # before the URL is taken apart, so misuse names no secret
        parsed = webhook_parts(hidden)
        if isinstance(parsed, SdkError):
            raise parsed
        origin, user_id, secret = parsed
        return cls(origin, user_id, secret.value, **options)

    @property
    def url(self) -> str:
        """The webhook's REST 3.0 base URL with the secret masked, for display."""
        return f"{self._origin}/rest/api/{self._user_id}/***/"

    def __repr__(self) -> str:
        if "_batch_url" not in vars(self):  # shown in a traceback while construction failed
            return "<B24Hook (not constructed)>"
        return f"<B24Hook {self.url}>"

    __str__ = __repr__

    def _secrets(self) -> tuple[str, ...]:
        return (self._secret.value,)


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
        access_token: The current access token: printable ASCII, no spaces.
        refresh: Returns a fresh access token (the application owns its OAuth credentials);
            None: a 401 is raised as it is.
        on_token: Receives each new token.
        **options: ``timeout``, ``session``, ``retry``, ``rate_limit``, ``limit_store``,
            ``max_response_bytes``, ``attempt_deadline``, ``clock``, ``wall_clock``,
            ``sleep``, ``rand``, as for :class:`B24Hook`.

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
        token = Secret(access_token)
        hidden = Secret(endpoint)  # a webhook URL passed by mistake holds a secret
        del access_token, endpoint  # a traceback's frames show their locals
        checked = checked_options(options)
        if refresh is not None and not callable(refresh):
            raise SdkTypeError("refresh must be a callable that returns a new access token")
        if on_token is not None and not callable(on_token):
            raise SdkTypeError("on_token must be a callable that takes the new access token")
        origin = endpoint_origin(hidden)
        if isinstance(origin, SdkError):
            raise origin
        if not valid_token(token):
            raise SdkError(f"the access token must be {TOKEN_RULE}")
        self._token = token
        self._version = 0
        self._old_tokens: tuple[Secret[str], ...] = ()
        self._refresh = refresh
        self._on_token = on_token
        self._token_lock = threading.Lock()
        super().__init__(
            origin, {p.api: Secret(f"{origin}/rest/{p.api}batch") for p in _PROTOCOLS}, checked
        )

    @property
    def url(self) -> str:
        """The batch URL (it holds no secret)."""
        return self._batch_url.value

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
            AuthError: ``refresh`` itself failed or returned no usable token.
        """
        if self._refresh is None or error.code not in _RENEWABLE:
            return False
        with self._token_lock:
            if self._version != version:
                return True  # another thread refreshed while this batch was in flight
            failure: AuthError | None = None
            try:
                fresh = Secret(self._refresh())  # never a plain local: on_token may raise
            except Exception as exc:
                # Only the type goes in the message: the application's own text may carry a
                # token this client never saw, so it cannot be redacted. The exception itself
                # stays reachable as refresh_error, outside str() and tracebacks.
                failure = self._refresh_failed(
                    error, f"failed with {type(exc).__name__}; see the error's refresh_error"
                )
                failure.refresh_error = exc
            else:
                if not valid_token(fresh):
                    failure = self._refresh_failed(
                        error, f"returned no usable token (a token is {TOKEN_RULE})"
                    )
                else:
                    self._old_tokens = (*self._old_tokens[-3:], self._token)
                    self._token = fresh
                    self._version += 1
                    if self._on_token is not None:
                        # Under the lock, so tokens reach the application in the order issued.
                        self._on_token(fresh.value)
        if failure is not None:
            raise failure  # outside the except block: the refresh error may name the token
        log.info("access token refreshed after %s", error.code)
        return True

    def __repr__(self) -> str:
        if "_batch_url" not in vars(self):  # shown in a traceback while construction failed
            return "<B24OAuth (not constructed)>"
        return f"<B24OAuth {self._batch_url.value}>"

    __str__ = __repr__

    def _refresh_failed(self, error: AuthError, what: str) -> AuthError:
        return AuthError(
            f"refreshing the access token {what}",
            code=error.code,
            status=error.status,
            request_id=error.request_id,
        )

    def _secrets(self) -> tuple[str, ...]:
        return tuple(token.value for token in (self._token, *self._old_tokens))

    def _auth(self, protocol: Protocol) -> requests.auth.AuthBase:
        # Passed as auth=, not as a header: with a header, a caller's Session that trusts the
        # environment would let a ~/.netrc entry for the portal replace it with Basic auth. The
        # classic endpoint takes the token as the body's auth field instead (protocol §7).
        return BodyToken(self._token) if protocol.token_in_body else Bearer(self._token)
