"""FakeAuthServer: a loopback Bitrix24 authorization server that issues and renews OAuth tokens.

It plays ``oauth.bitrix.info``'s ``/oauth/token/`` for one application installed on any number of
FakePortals (``FakePortal(auth_server=...)``): single-use refresh tokens, access tokens that
expire and are revoked by the next refresh, and test levers for failed, slow and hung refreshes.
It never records or logs a client secret or a token; the portals ask it whether a Bearer token
is good. Meant for tests; it binds to loopback and must never face a network.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import parse_qsl

import attrs

from b24batch.redaction import MASK, redact
from b24batch.testing.faults import Fault
from b24batch.testing.messages import RecordedRequest, Reply, classic_error
from b24batch.testing.server import LoopbackService, check_http_options

if TYPE_CHECKING:
    from b24batch.testing.portal import FakePortal

__all__ = [
    "DEFAULT_HANG_SECONDS",
    "REFRESH_TOKEN_LIFETIME",
    "FakeAuthServer",
    "RefreshFailure",
    "TokenCheck",
    "check_member_id",
]

REFRESH_TOKEN_LIFETIME: Final = 180 * 24 * 3600.0
"""A refresh token lives 180 days (``settings/oauth/auto-renewal.md``)."""
DEFAULT_HANG_SECONDS: Final = 5.0
"""How long ``fail_refresh("hang")`` holds a refresh before closing it without an answer."""

RefreshFailure = Literal["invalid_grant", "PAYMENT_REQUIRED", "server_error", "hang"]
"""What ``FakeAuthServer.fail_refresh`` makes the next refreshes answer."""
TokenCheck = Literal["valid", "expired", "revoked", "unknown"]
"""What the authorization server says of a Bearer token a portal received."""

_FAILURES: Final = ("invalid_grant", "PAYMENT_REQUIRED", "server_error", "hang")
_TOKEN_PATHS: Final = frozenset({"/oauth/token/", "/oauth/token"})
_MEMBER_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The error answers. Bitrix24 documents the codes (settings/oauth/error-codes.md) and the
# PAYMENT_REQUIRED body (settings/oauth/auto-renewal.md) but not the HTTP statuses: 400 is what
# a refused refresh is seen answering; 402 for PAYMENT_REQUIRED is this fake's choice.
_INVALID_CLIENT: Final = classic_error("invalid_client", "Invalid client data")
_INVALID_GRANT: Final = classic_error("invalid_grant", "Invalid grant")
_PAYMENT: Final = classic_error("PAYMENT_REQUIRED", "Payment required")


@attrs.define
class _Grant:
    """One issued refresh token: whose portal, the access token issued with it, when."""

    member_id: str
    access_token: str
    issued: float
    spent: bool = False


@attrs.define
class _Access:
    """One issued access token: whose portal, until when, and whether a refresh revoked it."""

    member_id: str
    expires: float
    revoked: bool = False
    expired: bool = False


@attrs.define
class _Failure:
    kind: RefreshFailure
    member_id: str | None
    times: int


class FakeAuthServer(LoopbackService):
    """The Bitrix24 authorization server (``oauth.bitrix.info``) of one application, on loopback.

    Portals register with it (``FakePortal(auth_server=auth)``) and then accept the Bearer
    tokens it issued for them. ``install(portal)`` gives what an installation hands the
    application (a fresh token pair); ``token_url`` renews a pair as the real server does
    (``settings/oauth/auto-renewal.md``)::

        GET /oauth/token/?grant_type=refresh_token&client_id=…&client_secret=…&refresh_token=…

    answers 200 ``{"access_token", "client_endpoint", "domain", "expires", "expires_in",
    "member_id", "refresh_token", "scope", "server_endpoint", "status", "user_id"}``
    (``expires`` and ``user_id`` are in real answers though not in the docs' example:
    bitrix-tools/b24-rest-docs#285). A POST with the same fields as a form is accepted too.

    - A refresh token is single-use: spent, or unknown, it answers 400 ``invalid_grant``.
    - A successful refresh revokes the access token issued with the refresh token it spent:
      the portal then answers 401 ``invalid_token``. An access token past
      ``access_token_lifetime`` (on ``clock``) answers 401 ``expired_token``.
    - A wrong ``client_id`` or ``client_secret`` answers 400 ``invalid_client``
      (``settings/oauth/error-codes.md``); missing fields or another ``grant_type`` answer
      400 ``invalid_request``.

    Args:
        client_id: The application's ``client_id`` (random ``local.…`` when omitted).
        client_secret: Its ``client_secret`` (random when omitted).
        access_token_lifetime: Seconds an access token is good for (an hour on Bitrix24).
        refresh_token_lifetime: Seconds a refresh token is good for, if unused (180 days).
        scope: The ``scope`` the answers carry.
        status: The application's ``status`` on the portal (``"L"``: local; ``"F"``, ``"P"``,
            ``"T"`` for market applications: free, paid, trial).
        clock: Unix seconds; token expiry is read on it (the real clock by default).
        hang_seconds: How long a ``fail_refresh("hang")`` holds its request.
        host: Loopback interface to bind; any other raises ValueError.
        port: Port to bind; 0 picks a free one (kept across stop/start).
        idle_timeout: Seconds a connection may stay silent before it is closed.
        max_recorded: How many (redacted) requests ``requests`` keeps.

    Examples:
        >>> with FakeAuthServer() as auth, FakePortal(auth_server=auth) as portal:  # doctest: +SKIP
        ...     tokens = auth.install(portal)
        ...     requests.get(auth.token_url, params={"grant_type": "refresh_token",
        ...         "client_id": auth.client_id, "client_secret": auth.client_secret,
        ...         "refresh_token": tokens["refresh_token"]}).json()["access_token"]
    """

    _service_name = "FakeAuthServer"

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        access_token_lifetime: float = 3600.0,
        *,
        refresh_token_lifetime: float = REFRESH_TOKEN_LIFETIME,
        scope: str = "crm,task,user",
        status: str = "L",
        clock: Callable[[], float] = time.time,
        hang_seconds: float = DEFAULT_HANG_SECONDS,
        host: str = "127.0.0.1",
        port: int = 0,
        idle_timeout: float = 30.0,
        max_recorded: int = 1000,
    ) -> None:
        for name, value in (
            ("access_token_lifetime", access_token_lifetime),
            ("refresh_token_lifetime", refresh_token_lifetime),
            ("hang_seconds", hang_seconds),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (0 < value < float("inf"))
            ):
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        for name, text in (("client_id", client_id), ("client_secret", client_secret)):
            if text is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", text):
                raise ValueError(f"{name} must be letters, digits, '_', '.' or '-'")
        check_http_options(host, 1024 * 1024, idle_timeout, max_recorded)
        self._client_id = client_id or f"local.{secrets.token_hex(7)}.{secrets.token_hex(4)}"
        self._client_secret = client_secret or secrets.token_urlsafe(36)
        self._lifetime = float(access_token_lifetime)
        self._refresh_lifetime = float(refresh_token_lifetime)
        self._scope = scope
        self._status = status
        self._clock = clock
        self._hang_seconds = float(hang_seconds)
        self._host = host
        self._port = port
        self._max_body_bytes = 1024 * 1024
        self._idle_timeout = idle_timeout
        self._latency = 0.0
        self._stopping = threading.Event()
        self._lock = threading.RLock()
        self._portals: dict[str, FakePortal] = {}
        self._app_tokens: dict[str, str] = {}
        self._grants: dict[str, _Grant] = {}
        self._access: dict[str, _Access] = {}
        self._calls: dict[str | None, int] = {}
        self._failures: deque[_Failure] = deque()
        self._delay = 0.0
        self._requests: deque[RecordedRequest] = deque(maxlen=max_recorded)

    def __repr__(self) -> str:
        state = f"http://{self._host}:{self._port}" if self.running else "stopped"
        return (
            f"<FakeAuthServer {state} client_id={self._client_id} client_secret={MASK} "
            f"portals={len(self._portals)}>"
        )

    # -- credentials and addresses ---------------------------------------------------------------

    @property
    def client_id(self) -> str:
        """The application's client id (``client_id=``, or random)."""
        return self._client_id

    @property
    def client_secret(self) -> str:
        """The application's client secret (``client_secret=``, or random); a test value."""
        return self._client_secret

    @property
    def token_url(self) -> str:
        """``http://HOST:PORT/oauth/token/``, where refresh tokens are renewed."""
        return f"{self.base_url}/oauth/token/"

    @property
    def server_endpoint(self) -> str:
        """``http://HOST:PORT/rest/``, the answers' ``server_endpoint``."""
        return f"{self.base_url}/rest/"

    # -- portals and installs --------------------------------------------------------------------

    def _register(self, portal: FakePortal) -> None:
        """Called by ``FakePortal(auth_server=self)``: the application is on that portal."""
        with self._lock:
            if portal.member_id in self._portals:
                raise ValueError(
                    f"member_id {portal.member_id!r} is already registered with this "
                    "FakeAuthServer; give each portal its own member_id"
                )
            self._portals[portal.member_id] = portal
            self._app_tokens[portal.member_id] = secrets.token_hex(16)

    def _portal(self, portal: FakePortal) -> FakePortal:
        with self._lock:
            if self._portals.get(portal.member_id) is not portal:
                raise ValueError(
                    "this portal is not registered with this FakeAuthServer; create it as "
                    "FakePortal(auth_server=auth)"
                )
        return portal

    def install(self, portal: FakePortal) -> dict[str, Any]:
        """A fresh token pair for ``portal``, in the shape of a token answer (see the class).

        Earlier pairs stay as they are (valid until spent, revoked or expired).

        Raises:
            ValueError: ``portal`` was not created with ``auth_server=`` this server.
        """
        with self._lock:
            return self._issue(self._portal(portal).member_id)

    def install_form(self, portal: FakePortal) -> dict[str, str]:
        """The POST fields an application's page receives when it is opened or installed.

        As ``settings/oauth/simple-way.md`` (``DOMAIN``, ``PROTOCOL``, ``LANG``, ``APP_SID``,
        ``AUTH_ID``, ``AUTH_EXPIRES``, ``REFRESH_ID``, ``member_id``, ``status``) and
        ``local-integrations/serverside-local-app-with-ui.md`` (``SERVER_ENDPOINT``,
        ``APPLICATION_TOKEN``, ``APPLICATION_SCOPE``, ``PLACEMENT``) list them; a fresh pair.
        ``PROTOCOL`` is ``"0"`` (http): the FakePortal serves plain HTTP.
        """
        with self._lock:
            answer = self._issue(self._portal(portal).member_id)
            return {
                "DOMAIN": _domain(portal.base_url),
                "PROTOCOL": "0",
                "LANG": "en",
                "APP_SID": secrets.token_hex(16),
                "AUTH_ID": answer["access_token"],
                "AUTH_EXPIRES": str(answer["expires_in"]),
                "REFRESH_ID": answer["refresh_token"],
                "SERVER_ENDPOINT": answer["server_endpoint"],
                "APPLICATION_TOKEN": self._app_tokens[portal.member_id],
                "APPLICATION_SCOPE": self._scope,
                "member_id": portal.member_id,
                "status": self._status,
                "PLACEMENT": "DEFAULT",
            }

    def install_event(self, portal: FakePortal) -> dict[str, str]:
        """The form fields of the ``ONAPPINSTALL`` event sent to the installation handler.

        In PHP's bracket form (``application/x-www-form-urlencoded``), as
        ``settings/oauth/simple-way.md`` ("Application Installation Event") and
        ``api-reference/common/events/on-app-install.md`` show it; a fresh pair.
        ``auth[application_token]`` is the same for every event of this portal.
        """
        with self._lock:
            answer = self._issue(self._portal(portal).member_id)
            return {
                "event": "ONAPPINSTALL",
                "data[VERSION]": "1",
                "data[ACTIVE]": "Y",
                "data[INSTALLED]": "Y",
                "data[LANGUAGE_ID]": "en",
                "ts": str(int(self._clock())),
                "auth[access_token]": answer["access_token"],
                "auth[expires]": str(answer["expires"]),
                "auth[expires_in]": str(answer["expires_in"]),
                "auth[scope]": self._scope,
                "auth[domain]": _domain(portal.base_url),
                "auth[server_endpoint]": answer["server_endpoint"],
                "auth[status]": self._status,
                "auth[client_endpoint]": answer["client_endpoint"],
                "auth[member_id]": portal.member_id,
                "auth[user_id]": str(portal.user_id),
                "auth[refresh_token]": answer["refresh_token"],
                "auth[application_token]": self._app_tokens[portal.member_id],
            }

    def _issue(self, member_id: str) -> dict[str, Any]:
        """A new pair for ``member_id`` (under the lock), as the token answer."""
        portal = self._portals[member_id]
        now = self._clock()
        access, refresh = secrets.token_hex(32), secrets.token_hex(32)
        self._access[access] = _Access(member_id, now + self._lifetime)
        self._grants[refresh] = _Grant(member_id, access, now)
        return {
            "access_token": access,
            "client_endpoint": portal.oauth_endpoint,
            "domain": _domain(self.base_url),
            "expires": int(now + self._lifetime),
            "expires_in": int(self._lifetime),
            "member_id": member_id,
            "refresh_token": refresh,
            "scope": self._scope,
            "server_endpoint": self.server_endpoint,
            "status": self._status,
            "user_id": portal.user_id,
        }

    # -- what the portals ask --------------------------------------------------------------------

    def check_token(self, token: str, member_id: str) -> TokenCheck:
        """What a portal with ``member_id`` makes of the Bearer ``token``.

        ``"valid"``; ``"expired"`` (past its lifetime, or ``expire_access_tokens``);
        ``"revoked"`` (a later refresh replaced it); ``"unknown"`` (never issued for that
        portal).
        """
        with self._lock:
            access = self._access.get(token)
            if access is None or access.member_id != member_id:
                return "unknown"
            if access.revoked:
                return "revoked"
            if access.expired or self._clock() >= access.expires:
                return "expired"
            return "valid"

    # -- test levers -----------------------------------------------------------------------------

    def expire_access_tokens(self, member_id: str | None = None) -> None:
        """Make every access token issued so far (for ``member_id``, or all) answer 401
        ``expired_token``; their refresh tokens still work."""
        with self._lock:
            for access in self._access.values():
                if member_id is None or access.member_id == member_id:
                    access.expired = True

    def refresh_calls(self, member_id: str | None = None) -> int:
        """Refresh requests that reached ``token_url``, successful or not.

        With ``member_id``, those whose refresh token was issued for that portal; without,
        all of them (also those with an unknown token or none).
        """
        with self._lock:
            if member_id is None:
                return sum(self._calls.values())
            return self._calls.get(member_id, 0)

    def fail_refresh(
        self, kind: RefreshFailure, member_id: str | None = None, times: int = 1
    ) -> None:
        """Make the next ``times`` refreshes (of ``member_id``'s tokens, or any) fail as ``kind``.

        - ``"invalid_grant"``: 400 ``{"error": "invalid_grant", ...}`` (a revoked token);
        - ``"PAYMENT_REQUIRED"``: 402 ``{"error": "PAYMENT_REQUIRED", "error_description":
          "Payment required"}`` (the trial or subscription ended; ``auto-renewal.md``);
        - ``"server_error"``: 500 with an HTML page;
        - ``"hang"``: no answer; the request is held ``hang_seconds`` (or until ``stop()``),
          then its connection is closed.

        A failed refresh spends nothing: the refresh token it carried still works afterwards.
        Failures queue in order, after any already queued.
        """
        if kind not in _FAILURES:
            raise ValueError(f"kind must be one of {', '.join(_FAILURES)}; got {kind!r}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be a positive int, got {times!r}")
        with self._lock:
            self._failures.append(_Failure(kind, member_id, times))

    def delay_refresh(self, seconds: float) -> None:
        """Hold every refresh ``seconds`` before it is processed (0 to stop), outside the lock,
        so concurrent refreshes overlap: a race window for tests."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
        with self._lock:
            self._delay = float(seconds)

    @property
    def requests(self) -> list[RecordedRequest]:
        """The recent requests, with ``client_secret``, ``refresh_token`` and tokens masked."""
        with self._lock:
            return list(self._requests)

    # -- request processing (called from server threads) ------------------------------------------

    def _receive(self, request: RecordedRequest) -> Fault | None:
        """Record ``request`` (redacted), count a refresh and take its queued failure."""
        params = _params(request)
        with self._lock:
            self._requests.append(self._redacted(request))
            if request.path not in _TOKEN_PATHS:
                return None
            grant = self._grants.get(params.get("refresh_token", ""))
            member_id = grant.member_id if grant is not None else None
            self._calls[member_id] = self._calls.get(member_id, 0) + 1
            failure = next((f for f in self._failures if f.member_id in (None, member_id)), None)
            if failure is None:
                return None
            failure.times -= 1
            if failure.times == 0:
                self._failures.remove(failure)
        if failure.kind == "hang":
            return Fault.hang(self._hang_seconds)
        if failure.kind == "server_error":
            return Fault.html(500)
        if failure.kind == "PAYMENT_REQUIRED":
            return Fault.response(402, _PAYMENT)
        return Fault.response(400, _INVALID_GRANT)

    def _answered(self) -> None:
        """Nothing to count: the HTTP layer calls it after each answer."""

    def _redact(self, path: str) -> str:
        return redact(path, (self._client_secret,))

    def _redacted(self, request: RecordedRequest) -> RecordedRequest:
        query = {
            key: MASK if key.lower() in _SECRET_FIELDS else value
            for key, value in request.query.items()
        }
        raw = redact(request.raw.decode("utf-8", "replace"), (self._client_secret,))
        headers = type(request.headers)(
            {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        )
        return attrs.evolve(
            request, query=query, headers=headers, body=None, raw=raw.encode("utf-8")
        )

    def _process(self, request: RecordedRequest) -> Reply:
        if request.path not in _TOKEN_PATHS:
            return Reply.of(404, classic_error("invalid_request", "Not found"))
        if request.method not in ("GET", "POST"):
            return Reply.of(
                405, classic_error("invalid_request", "GET or POST only"), ("Allow", "GET, POST")
            )
        with self._lock:
            delay = self._delay
        if delay and self._stopping.wait(delay):
            return Reply.of(503, classic_error("server_error", "The server is stopping"))
        params = _params(request)
        missing = [
            name
            for name in ("grant_type", "client_id", "client_secret", "refresh_token")
            if not params.get(name)
        ]
        if missing:
            return Reply.of(400, classic_error("invalid_request", f"Missing {', '.join(missing)}"))
        if params["grant_type"] != "refresh_token":
            return Reply.of(
                400, classic_error("invalid_request", "This server renews refresh tokens only")
            )
        if not (
            hmac.compare_digest(params["client_id"].encode(), self._client_id.encode())
            and hmac.compare_digest(params["client_secret"].encode(), self._client_secret.encode())
        ):
            return Reply.of(400, _INVALID_CLIENT)
        with self._lock:
            grant = self._grants.get(params["refresh_token"])
            if (
                grant is None
                or grant.spent
                or self._clock() >= grant.issued + self._refresh_lifetime
            ):
                return Reply.of(400, _INVALID_GRANT)
            grant.spent = True
            previous = self._access.get(grant.access_token)
            if previous is not None:
                previous.revoked = True
            return Reply.of(200, self._issue(grant.member_id))


_SECRET_FIELDS: Final = frozenset({"client_secret", "refresh_token", "access_token", "code"})


def _params(request: RecordedRequest) -> Mapping[str, str]:
    """The request's fields: the query string, and a form body over it."""
    params = dict(request.query)
    if request.raw and "json" not in request.headers.get("Content-Type", "").lower():
        params.update(parse_qsl(request.raw.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def _domain(base_url: str) -> str:
    """``HOST:PORT`` of ``http://HOST:PORT``, as Bitrix24 names a portal by its domain."""
    return base_url.split("://", 1)[1]


def check_member_id(member_id: object) -> str:
    """A given ``member_id``, checked, or a random 32-hex one as Bitrix24's look."""
    if member_id is None:
        return secrets.token_hex(16)
    if not isinstance(member_id, str) or not _MEMBER_ID.fullmatch(member_id):
        raise ValueError("member_id must be 1-64 letters, digits, '_' or '-'")
    return member_id
