"""The clients ``B24Hook`` and ``B24OAuth``: a credential, options and one send; no batch logic.

``send()`` posts a prepared batch of either protocol (its ``Protocol`` says where and how)
through the client's `Transport` and returns the decoded ``Answers``
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
from b24batch._protocols.base import BATCH, Answers, Prepared, Protocol
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
    ClientOptions,
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
    # Unpack is in typing from Python 3.11; the floor is 3.10. Annotations are never evaluated
    # here (``from __future__ import annotations``), so typing_extensions is needed by type
    # checkers only (mypy and pyright bundle it), never at run time.
    from typing_extensions import Unpack

    from b24batch.actions import Actions

__all__ = [
    "DEADLINE_MARGIN",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_REFRESH_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "REFRESH_FAILURE_HOLD",
    "USER_AGENT",
    "B24Hook",
    "B24OAuth",
    "Timeout",
]

USER_AGENT = f"b24batch/{__version__}"
SDK_TYPE = "b24batch"
_RENEWABLE = frozenset({"expired_token", "invalid_token"})
DEFAULT_REFRESH_TIMEOUT = 30.0
"""Seconds ``B24OAuth``'s ``refresh`` may take before the batch raises ``AuthError``."""
REFRESH_FAILURE_HOLD = 5.0
"""Seconds a failed refresh is the answer of every thread that asks for one, instead of
another call of ``refresh``."""
_LOCK_MARGIN = 5.0  # seconds a thread waits for another's refresh beyond its timeout

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

    def __init__(
        self,
        origin: str,
        urls: Mapping[str, Secret[str]],
        options: Options,
        *,
        meter_name: str | None = None,
    ) -> None:
        """The options both clients take (see [`B24Hook`][b24batch.B24Hook] for each one), checked.

        ``urls`` maps each protocol's ``api`` segment to its batch URL; ``meter_name`` names
        the credential for the operating-time meter when the URL does not (an application).
        """
        self._origin = origin
        self._urls = dict(urls)
        batch_url = self._batch_url = self._urls[V3.api]
        retry = options.retry
        self.retry: RetryPolicy = retry if retry is not None else RetryPolicy(max_attempts=1)
        """The retry policy the batch layer applies to this client's calls."""
        self._raise_errors = options.raise_errors
        self._rand = options.rand
        credential = batch_url if meter_name is None else Secret(f"{origin}|{meter_name}")
        self.limiter = limiter(origin, credential, options)
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
    def raise_errors(self) -> bool:
        """Whether the faces raise the first error a result holds (docs/errors.md, "Returned
        or raised"); a call's own ``raise_errors=`` overrides it."""
        return self._raise_errors

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
        url = self._urls[protocol.api]
        if prepared.single:  # one method at its own URL, beside the batch's (protocol §10)
            url = Secret(url.value[: -len(BATCH)] + prepared.endpoint)
        try:
            answer = self._transport.post(
                url,
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
        """True once [`close`][b24batch.B24Hook.close] was called: the client then refuses to
        send."""
        return self._closed

    def close(self) -> None:
        """Close the connection pool (a session passed in by the caller is left open).

        From then on the client refuses to send: a batch raises [`SdkError`][b24batch.SdkError]
        naming the client, before anything is sent. Requests other threads have already started are
        not cut short: each finishes on its own connection, which is then closed rather than pooled.
        Closing twice is harmless.
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

    Create it with [`from_webhook_url`][b24batch.B24Hook.from_webhook_url], once per portal, and
    share it: it holds one ``requests.Session`` (connection pool) and its limiters, and is safe
    to use from several threads.

    Examples:
        >>> with B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/abc123/") as b24:
        ...     b24
        <B24Hook https://example.bitrix24.com/rest/api/1/***/>
    """

    def __init__(
        self, origin: str, user_id: int, secret: str, **options: Unpack[ClientOptions]
    ) -> None:
        """Prefer [`from_webhook_url`][b24batch.B24Hook.from_webhook_url], which checks the URL and
        builds these arguments.

        Args:
            origin: ``scheme://host[:port]`` of the portal.
            user_id: The webhook's user id.
            secret: The webhook's secret.
            **options: Keyword-only, all optional, each checked here: ``timeout``, ``session``,
                ``retry``, ``rate_limit``, ``limit_store``, ``max_response_bytes``,
                ``attempt_deadline``, ``raise_errors``, ``clock``, ``wall_clock``, ``sleep``,
                ``rand``; see [`ClientOptions`][b24batch.ClientOptions] for each one.

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
    def from_webhook_url(cls, url: str, **options: Unpack[ClientOptions]) -> B24Hook:
        """Make a client from an inbound webhook URL, as the portal hands it out.

        Args:
            url: ``https://PORTAL/rest/USER_ID/SECRET/`` (classic form) or
                ``https://PORTAL/rest/api/USER_ID/SECRET/`` (REST 3.0 form), with or without
                the trailing slash. ``http://`` only for loopback hosts (tests, FakePortal).
            **options: The client's options, as for [`B24Hook`][b24batch.B24Hook]: see
                [`ClientOptions`][b24batch.ClientOptions].

        Raises:
            SdkError: The URL is not a webhook URL (the message says what one looks like), or
                an option is wrong (SdkTypeError for a wrong type or an unknown option).

        Examples:
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
    so the application can store it, then uses it and re-sends once, outside the retry
    budget. A second 401 raises [`AuthError`][b24batch.AuthError]. A refresh that fails fails
    once for every thread waiting on it: none calls ``refresh`` again for 5 seconds. An
    application on many portals, or with many processes, uses
    [`OAuthApp`][b24batch.OAuthApp], whose clients refresh once across every process.

    Args:
        endpoint: The portal's client endpoint as Bitrix24 hands it to applications
            (``https://PORTAL/rest/``), or the bare portal URL.
        access_token: The current access token: printable ASCII, no spaces.
        refresh: Returns a fresh access token (the application owns its OAuth credentials);
            None: a 401 is raised as it is. It runs in a thread of its own, bounded by
            ``refresh_timeout``; a token it returns later is still taken (and given to
            ``on_token``), never dropped.
        on_token: Receives each new token before it is used; if it raises, the token is not
            used (nothing kept it) and the batch raises [`AuthError`][b24batch.AuthError].
        refresh_timeout: Seconds a refresh may take before the batch raises
            [`AuthError`][b24batch.AuthError] (default 30).
        client_id: The application's client id, when known: the operating-time meter shared
            through ``limit_store`` is then kept per application and portal, as the portal
            counts it, rather than per portal.
        **options: ``timeout``, ``session``, ``retry``, ``rate_limit``, ``limit_store``,
            ``max_response_bytes``, ``attempt_deadline``, ``raise_errors``, ``clock``,
            ``wall_clock``, ``sleep``, ``rand``, as for [`B24Hook`][b24batch.B24Hook]: see
            [`ClientOptions`][b24batch.ClientOptions].

    Examples:
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
        refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT,
        client_id: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        token = Secret(access_token)
        hidden = Secret(endpoint)  # a webhook URL passed by mistake holds a secret
        del access_token, endpoint  # a traceback's frames show their locals
        checked = checked_options(options)
        if refresh is not None and not callable(refresh):
            raise SdkTypeError("refresh must be a callable that returns a new access token")
        if on_token is not None and not callable(on_token):
            raise SdkTypeError("on_token must be a callable that takes the new access token")
        if (
            isinstance(refresh_timeout, bool)
            or not isinstance(refresh_timeout, int | float)
            or not 0 < refresh_timeout <= 3600
        ):
            raise SdkError(
                f"refresh_timeout={refresh_timeout!r}: pass seconds above 0, at most 3600"
            )
        if client_id is not None and (not isinstance(client_id, str) or not client_id):
            raise SdkTypeError("client_id must be the application's client id (a str), or None")
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
        self._refresh_timeout = float(refresh_timeout)
        self._failure: tuple[float, AuthError] | None = None
        self._clock = checked.clock
        self._token_lock = threading.Lock()
        urls = {p.api: Secret(f"{origin}/rest/{p.api}batch") for p in _PROTOCOLS}
        super().__init__(origin, urls, checked, meter_name=client_id)

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
            version: [`credential_version`][b24batch.B24OAuth.credential_version] as it was when
                that batch was sent.

        Returns:
            True when a fresh token is in place (refreshed now, or by another thread since).

        Raises:
            AuthError: ``refresh`` failed (now, or within 5 seconds
                for another thread), took longer than ``refresh_timeout``, returned no usable
                token, or ``on_token`` failed.
        """
        if self._refresh is None or error.code not in _RENEWABLE:
            return False
        bound = self._refresh_timeout + _LOCK_MARGIN
        if not self._token_lock.acquire(timeout=bound):
            raise self._refresh_failed(
                error, f"was still running in another thread after {bound:.0f} s"
            )
        try:
            if self._version != version:
                return True  # another thread refreshed while this batch was in flight
            held = self._failure
            if held is not None and self._clock() - held[0] < REFRESH_FAILURE_HOLD:
                failure: AuthError | None = _again(held[1], error)
            else:
                failure = self._refresh_now(error)
                self._failure = None if failure is None else (self._clock(), failure)
        finally:
            self._token_lock.release()
        if failure is not None:
            raise _again(failure, error)  # a copy each: the engine marks the error it raises
        log.info("access token refreshed after %s", error.code)
        return True

    def _refresh_now(self, error: AuthError) -> AuthError | None:
        """Run ``refresh`` (bounded) and put its token in place; the failure, or None."""
        assert self._refresh is not None
        pending = _PendingRefresh(self._refresh)
        if not pending.wait(self._refresh_timeout, late=self._adopt_late):
            return self._refresh_failed(
                error,
                f"took longer than refresh_timeout={self._refresh_timeout:g} s (a token it "
                f"returns later is still taken)",
            )
        raised = pending.error
        if isinstance(raised, AuthError):  # b24batch's own (OAuthApp): clear as it is
            return raised
        if raised is not None:
            # Only the type goes in the message: the application's own text may carry a
            # token this client never saw, so it cannot be redacted. The exception itself
            # stays reachable as refresh_error, outside str() and tracebacks.
            failure = self._refresh_failed(
                error, f"failed with {type(raised).__name__}; see the error's refresh_error"
            )
            failure.refresh_error = raised
            return failure
        return self._install(pending.token, error)

    def _install(self, fresh: Secret[Any], error: AuthError | None) -> AuthError | None:
        """Hand ``fresh`` to ``on_token``, then use it; the failure, or None. Under the lock."""
        if not valid_token(fresh):
            return self._refresh_failed(
                error, f"returned no usable token (a token is {TOKEN_RULE})"
            )
        if self._on_token is not None:
            try:
                # Before it is used: a token nobody kept must not be the one in use.
                self._on_token(fresh.value)
            except Exception as exc:
                failure = self._refresh_failed(
                    error,
                    f"got a new token, but on_token failed with {type(exc).__name__} (see the "
                    f"error's refresh_error); the token was not used, since nothing kept it",
                )
                failure.refresh_error = exc
                return failure
        self._old_tokens = (*self._old_tokens[-3:], self._token)
        self._token = fresh
        self._version += 1
        self._failure = None
        return None

    def _adopt_late(self, fresh: Secret[str]) -> None:
        """A refresh that outlived ``refresh_timeout`` returned: its token is not dropped."""
        with self._token_lock:
            failure = self._install(fresh, None)
        if failure is None:
            log.warning("a refresh that took longer than refresh_timeout returned: token taken")
        else:
            log.warning("a refresh that took longer than refresh_timeout returned: %s", failure)

    def __repr__(self) -> str:
        if "_batch_url" not in vars(self):  # shown in a traceback while construction failed
            return "<B24OAuth (not constructed)>"
        return f"<B24OAuth {self._batch_url.value}>"

    __str__ = __repr__

    def _refresh_failed(self, error: AuthError | None, what: str) -> AuthError:
        return AuthError(
            f"refreshing the access token {what}",
            code="expired_token" if error is None else error.code,
            status=401 if error is None else error.status,
            request_id=None if error is None else error.request_id,
        )

    def _secrets(self) -> tuple[str, ...]:
        return tuple(token.value for token in (self._token, *self._old_tokens))

    def _auth(self, protocol: Protocol) -> requests.auth.AuthBase:
        # Passed as auth=, not as a header: with a header, a caller's Session that trusts the
        # environment would let a ~/.netrc entry for the portal replace it with Basic auth. The
        # classic endpoint takes the token as the body's auth field instead (protocol §7).
        return BodyToken(self._token) if protocol.token_in_body else Bearer(self._token)


def _again(failure: AuthError, error: AuthError) -> AuthError:
    """``failure`` once more, for one more batch (the engine marks each error it raises)."""
    copy = failure.copy()
    copy.request_id = error.request_id or failure.request_id
    return copy


class _PendingRefresh:
    """One call of a ``refresh`` callable in a thread of its own, so that a caller can stop
    waiting for it; a token it returns after that goes to ``late``."""

    def __init__(self, refresh: Callable[[], str]) -> None:
        self.token: Secret[Any] = Secret(None)
        self.error: BaseException | None = None
        self._refresh = refresh
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._late: Callable[[Secret[str]], None] | None = None
        threading.Thread(target=self._run, name="b24batch-refresh", daemon=True).start()

    def _run(self) -> None:
        try:
            self.token = Secret(self._refresh())
        except Exception as exc:
            self.error = exc
        with self._lock:
            self._done.set()
            late = self._late
        if late is not None and self.error is None:
            late(self.token)

    def wait(self, timeout: float, *, late: Callable[[Secret[str]], None]) -> bool:
        """True once the call returned or raised within ``timeout``; else ``late`` gets it."""
        if self._done.wait(timeout):
            return True
        with self._lock:
            if self._done.is_set():
                return True
            self._late = late
            return False
