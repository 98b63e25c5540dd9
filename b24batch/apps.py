"""``OAuthApp``: an OAuth application's credentials and the token pairs of the portals it serves.

The face of the ``_auth`` wing: ``save_tokens()`` checks and stores what an installation hands
the application, ``client(member_id)`` gives a ``B24OAuth`` whose refresh goes through the
store (one refresh per expiry across every process), ``portals()`` lists them without tokens.
No batch logic; the tokens and the client secret never leave their ``Secret`` holders.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from b24batch._auth.coordinate import LEASE_MARGIN, Coordinator
from b24batch._auth.refresh import refresh_tokens, store_failure
from b24batch._auth.tokens import TokenRecord, member_error, parse_tokens
from b24batch._limits.shared import LimitStore
from b24batch.client import USER_AGENT, B24OAuth
from b24batch.credentials import split_url, url_origin
from b24batch.errors import AuthError, SdkError, SdkTypeError
from b24batch.redaction import Secret
from b24batch.retry import RetryPolicy
from b24batch.transport import Transport, new_session

__all__ = ["DEFAULT_APP_REFRESH_TIMEOUT", "DEFAULT_TOKEN_URL", "InstalledPortal", "OAuthApp"]

DEFAULT_TOKEN_URL = "https://oauth.bitrix.info/oauth/token/"  # noqa: S105 - a URL
"""Bitrix24's authorization server, which issues and renews every application's tokens."""
DEFAULT_APP_REFRESH_TIMEOUT = 10.0
"""Seconds one refresh request to the authorization server may take in all."""
_TOKEN_ANSWER_BYTES = 1 << 20  # a token answer is a few hundred bytes
_TOKEN_URL_SHAPE = DEFAULT_TOKEN_URL


@attrs.frozen
class InstalledPortal:
    """One portal whose tokens the store holds, as `OAuthApp.portals()` lists it: no token.

    See [`OAuthApp.portals`][b24batch.OAuthApp.portals].

    Attributes:
        member_id: The portal's id, as Bitrix24 sends it.
        domain: The portal's host (``example.bitrix24.com``).
        expires: Unix seconds when the stored access token expires.
        version: How many times the record was written (installs and refreshes).

    Example:
        >>> portal = InstalledPortal("da45a03b", "example.bitrix24.com", 1767225600.0, 3)
        >>> portal.member_id, portal.domain, portal.version
        ('da45a03b', 'example.bitrix24.com', 3)
    """

    member_id: str
    domain: str
    expires: float
    version: int


class OAuthApp:
    """An OAuth application (local or marketplace) and the portals it is installed on.

    One object per application and process; its clients, for any number of portals, share
    the ``store``, which holds each portal's token pair — the only secrets it holds — under
    the key prefix ``oauth:CLIENT_ID:``, and, unless a client is given another one, the
    request-rate buckets and operating-time meters of every portal. A refresh happens once
    per expiry across every process sharing the store: see ``docs/apps.md``.

    Args:
        client_id: The application's client id (``local.…`` or the marketplace code).
        client_secret: The application's client secret; never shown.
        store: A [`SQLiteStore`][b24batch.SQLiteStore] (one host) or
            [`RedisStore`][b24batch.RedisStore] (many hosts).
        token_url: The authorization server's token endpoint (default
            ``https://oauth.bitrix.info/oauth/token/``; the FakeAuthServer gives its own for
            tests).
        refresh_timeout: Seconds one refresh request may take in all; the store's refresh
            lease lasts that plus 5 seconds.
        wall_clock: Unix seconds, to judge a stored token's expiry (injectable for tests).

    Raises:
        SdkError: An argument of the wrong value (SdkTypeError for the wrong type).

    Example:
        >>> store = SQLiteStore("/var/lib/myapp/b24.sqlite3")  # opened on first use
        >>> OAuthApp(client_id="local.abc", client_secret="s3cret", store=store)
        <OAuthApp local.abc https://oauth.bitrix.info/oauth/token/ store=<SQLiteStore ...>>
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        store: LimitStore,
        token_url: str = DEFAULT_TOKEN_URL,
        refresh_timeout: float = DEFAULT_APP_REFRESH_TIMEOUT,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        secret = Secret(client_secret)
        del client_secret  # a traceback's frames show their locals
        if not isinstance(client_id, str) or not 0 < len(client_id) <= 128:
            raise SdkTypeError("client_id: pass the application's client id, a non-empty str")
        if not client_id.isprintable() or any(c.isspace() or c in ":*?[]" for c in client_id):
            raise SdkError(f"client_id={client_id[:80]!r} has a space or one of : * ? [ ]")
        if not isinstance(secret.value, str) or not secret.value or not secret.value.isprintable():
            raise SdkTypeError("client_secret: pass the application's client secret, a str")
        if not isinstance(store, LimitStore):
            raise SdkTypeError(
                f"store={store!r}: pass a SQLiteStore or a RedisStore (tokens must outlive the "
                f"process and be shared by all of them)"
            )
        parts = split_url(Secret(token_url), "token URL", _TOKEN_URL_SHAPE)
        if isinstance(parts, SdkError):
            raise parts
        if (
            isinstance(refresh_timeout, bool)
            or not isinstance(refresh_timeout, int | float)
            or not 0 < refresh_timeout <= 600
        ):
            raise SdkError(
                f"refresh_timeout={refresh_timeout!r}: pass seconds above 0, at most 600"
            )
        if not callable(wall_clock):
            raise SdkTypeError("wall_clock: pass a callable returning Unix seconds")
        self.client_id = client_id
        self.store = store
        self.token_url = f"{url_origin(parts)}{parts.path}"
        self.refresh_timeout = float(refresh_timeout)
        self._secret = secret
        self._wall_clock = wall_clock
        self._transport: tuple[int, Transport] | None = None

    def __repr__(self) -> str:
        if "_secret" not in vars(self):  # half-built: an error page shows its locals
            return "<OAuthApp (not set up)>"
        return f"<OAuthApp {self.client_id} {self.token_url} store={self.store!r}>"

    __str__ = __repr__

    @property
    def prefix(self) -> str:
        """What the keys of this application's token records start with in the store."""
        return f"oauth:{self.client_id}:"

    def save_tokens(self, answer: Mapping[str, Any]) -> str:
        """Check and store a portal's tokens; returns its ``member_id``.

        Takes any of the shapes an application is handed (the official docs,
        bitrix24/b24restdocs): the authorization server's token answer
        (``settings/oauth/auto-renewal.md``); the install page's or a widget's form fields
        ``AUTH_ID``, ``REFRESH_ID``, ``AUTH_EXPIRES``, ``member_id``, ``DOMAIN``, ``PROTOCOL``
        (``settings/app-installation/local-apps/installation-master.md``); the
        ``ONAPPINSTALL`` event's ``auth[...]`` fields, flat or nested
        (``auth-params-in-events.md`` of bitrix-tools/b24-rest-docs). Every field is checked
        before anything is stored; the record replaces the portal's previous one (a
        reinstall).

        Raises:
            SdkError: A field is missing or wrong (the message names it, never its value).
            AuthError: The store could not be written (``code`` ``TOKEN_STORE``).
        """
        hidden = Secret(answer)
        del answer  # holds the tokens
        record = parse_tokens(hidden, self._wall_clock())
        if isinstance(record, SdkError):
            raise record
        self._write(record, None)
        return record.member_id

    def client(self, member_id: str, **options: Any) -> B24OAuth:
        """A client for one portal, whose refresh goes through the store.

        When the stored access token's own expiry has passed, it is refreshed first (once,
        across every process); otherwise only when the portal answers ``expired_token``.

        Args:
            member_id: The portal's member id, as saved by
                [`save_tokens`][b24batch.OAuthApp.save_tokens].
            **options: The keyword arguments of [`B24OAuth`][b24batch.B24OAuth] (``timeout``,
                ``retry``, ``rate_limit``, ``on_token``, ...). ``limit_store`` defaults to the app's
                store (unless ``rate_limit=None``).

        Raises:
            SdkError: A wrong ``member_id`` or option.
            AuthError: The store holds no tokens for the portal (``NO_TOKENS``), holds
                something else (``TOKEN_STORE``), or a refresh failed.
        """
        problem = member_error(member_id)
        if problem is not None:
            raise problem
        for name in ("refresh", "client_id", "refresh_timeout"):
            if name in options:
                raise SdkTypeError(f"{name}= is set by OAuthApp.client(); leave it out")
        coordinator = self._coordinator(member_id)
        version, record = coordinator.load()
        if record.expires <= self._wall_clock():
            version, record = coordinator.renew(version)
        if options.get("rate_limit", ...) is not None:  # no limits: nothing for a store to keep
            options.setdefault("limit_store", self.store)
        return B24OAuth(
            record.client_endpoint,
            record.access.value,
            refresh=_StoredRefresh(coordinator, version),
            refresh_timeout=2 * (coordinator.lease + 2 * LEASE_MARGIN) + self.refresh_timeout,
            client_id=self.client_id,
            **options,
        )

    def portals(self) -> list[InstalledPortal]:
        """The portals whose tokens the store holds, by member id; no token is shown.

        Raises:
            AuthError: The store failed, or holds a record that is not one (named).
        """
        try:
            keys = self.store.token_keys(self.prefix)
        except Exception as exc:
            raise store_failure("list", exc, self.prefix) from None
        found = []
        for key in keys:
            member_id = key[len(self.prefix) :]
            if member_error(member_id) is not None:
                continue
            version, record = self._coordinator(member_id).load()
            found.append(InstalledPortal(member_id, record.domain, record.expires, version))
        return found

    def _coordinator(self, member_id: str) -> Coordinator:
        return Coordinator(
            self.store,
            self.prefix + member_id,
            self._refresh,
            lease=self.refresh_timeout + LEASE_MARGIN,
        )

    def _refresh(self, record: TokenRecord) -> TokenRecord:
        return refresh_tokens(
            self._session(),
            Secret(self.token_url),
            self.client_id,
            self._secret,
            record,
            self._wall_clock(),
        )

    def _session(self) -> Transport:
        """This process's transport to the authorization server (a forked child makes its own:
        a connection must not be shared across processes)."""
        held = self._transport
        if held is None or held[0] != os.getpid():
            url = Secret(self.token_url)
            session = new_session(RetryPolicy(max_attempts=1), url, USER_AGENT)
            timeout = (min(5.0, self.refresh_timeout), self.refresh_timeout)
            transport = Transport(
                session,
                timeout=timeout,
                max_response_bytes=_TOKEN_ANSWER_BYTES,
                attempt_deadline=self.refresh_timeout,
            )
            held = self._transport = (os.getpid(), transport)
        return held[1]

    def _write(self, record: TokenRecord, expect: int | None) -> int:
        key = self.prefix + record.member_id
        failure: AuthError | None = None
        try:
            written = self.store.token_write(key, Secret(record.to_json()), expect)
        except Exception as exc:
            failure = store_failure("write", exc, key)
        if failure is not None:
            raise failure
        assert written is not None  # unconditional writes always land
        return written


class _StoredRefresh:
    """``B24OAuth``'s ``refresh`` for one client of an ``OAuthApp``: the coordinator's record
    newer than the one the client uses. Repr without tokens."""

    def __init__(self, coordinator: Coordinator, version: int) -> None:
        self._coordinator = coordinator
        self._version = version

    def __call__(self) -> str:
        version, record = self._coordinator.renew(self._version)
        self._version = version
        return record.access.value

    def __repr__(self) -> str:
        return f"<refresh of {self._coordinator.key!r}>"
