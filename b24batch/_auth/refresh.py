"""One refresh request to the authorization server, and its answer read into a record or an error.

``refresh_tokens`` GETs ``?grant_type=refresh_token`` with the client id, as the official docs
show; the client secret and the refresh token join the URL only inside requests
(``RefreshQuery``), so no frame of ours holds them, and log lines and errors mask them. Every
failure becomes an ``AuthError`` saying whether the tokens are now unusable (``reinstall``) or
the refresh may be tried again (``may_retry``). Coordinates nothing.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import requests
import requests.auth

from b24batch._auth.tokens import TokenRecord, parse_tokens
from b24batch.errors import AuthError, SdkError, TransportError
from b24batch.redaction import Secret, redact
from b24batch.transport import Transport

__all__ = ["RefreshQuery", "refresh_tokens", "store_failure"]

# What the authorization server's error codes mean for the portal's tokens
# (settings/oauth/error-codes.md): spent, revoked or expired tokens need a new installation.
_REINSTALL = frozenset({"invalid_grant", "expired_token", "invalid_token", "NO_AUTH_FOUND"})
_RETRY_LATER = frozenset({"PAYMENT_REQUIRED", "server_error", "temporarily_unavailable"})
_MEANING = {
    True: "the portal's tokens are unusable: the application must be installed (or opened by "
    "an administrator) again on this portal, then save_tokens() its new tokens",
    False: "the tokens are kept; the refresh may succeed later",
}
_CONFIG = (
    "check the application's client_id and client_secret (the tokens are kept; nothing will "
    "succeed until they are right)"
)


class RefreshQuery(requests.auth.AuthBase):
    """Appends ``client_secret`` and ``refresh_token`` to one request's query string, as requests
    prepares it, so no frame of ours holds them; no repr of either."""

    def __init__(self, client_secret: Secret[str], refresh_token: Secret[str]) -> None:
        self._secret = client_secret
        self._refresh = refresh_token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.url = (
            f"{request.url}&client_secret={quote(self._secret.value, safe='')}"
            f"&refresh_token={quote(self._refresh.value, safe='')}"
        )
        return request

    def __repr__(self) -> str:
        return "<refresh query ***>"


def refresh_tokens(
    transport: Transport,
    token_url: Secret[str],
    client_id: str,
    client_secret: Secret[str],
    record: TokenRecord,
    now: float,
) -> TokenRecord:
    """Ask the authorization server for a new pair for ``record``'s portal.

    Raises:
        AuthError: The server refused (``code`` is its error), answered something that is no
            token answer, or could not be reached within the transport's deadline.
    """
    where = f"the authorization server {redact(token_url.value)}"
    failure: AuthError | None = None
    try:
        answer = transport.post(
            token_url,
            f"?grant_type=refresh_token&client_id={quote(client_id, safe='')}",
            b"",
            method="GET",  # as settings/oauth/auto-renewal.md documents it
            headers={"Accept": "application/json"},
            auth=RefreshQuery(client_secret, record.refresh),
            where=where,
            # reads the secrets at use: no frame of ours holds them as plain text
            redact=lambda text: redact(
                text, (client_secret.value, record.access.value, record.refresh.value)
            ),
            request_id="",
        )
    except TransportError as exc:
        spent = (
            "; the server may have spent the refresh token, in which case the next refresh "
            "gets invalid_grant"
            if exc.outcome_unknown
            else ""
        )
        failure = _failed("TRANSPORT", 0, f"{exc}{spent}", reinstall=False)
    if failure is not None:
        raise failure
    status, data = answer.status, _json(answer.content)
    del answer  # holds the new tokens as bytes
    error = data.get("error") if isinstance(data, dict) else None
    if status == 200 and isinstance(data, dict) and error is None:
        fresh = parse_tokens(Secret(data), now)
        del data
        # A 200 spent the single-use refresh token; a pair that cannot be used or kept leaves
        # the portal with none that works.
        if isinstance(fresh, SdkError):
            raise _failed("BAD_ANSWER", 200, f"{where} answered 200 but {fresh}", reinstall=True)
        if fresh.member_id != record.member_id:
            raise _failed(
                "BAD_ANSWER",
                200,
                f"{where} answered tokens for another portal ({fresh.member_id!r})",
                reinstall=True,
            )
        return fresh
    if not isinstance(error, str):
        shown = "not JSON" if data is None else "JSON without an error code"
        raise _failed(
            f"HTTP_{status}",
            status,
            f"{where} answered HTTP {status}, {shown}",
            reinstall=False,
        )
    described = data.get("error_description") if isinstance(data, dict) else None
    text = redact(str(described))[:200] if isinstance(described, str) else ""
    code = redact(error)[:64]
    if code in _REINSTALL:
        raise _failed(code, status, f"{where} refused the refresh token {text}", True)
    failure = _failed(code, status, f"{where} refused the refresh {text}", reinstall=False)
    if code not in _RETRY_LATER and status < 500:
        failure.may_retry = False
        failure.message = f"{where} refused the refresh {text}; {_CONFIG}"
        failure.args = (failure.message,)
    raise failure


def store_failure(what: str, exc: BaseException, key: str) -> AuthError:
    """The error for a token store that failed ``what`` (its text may not name a token)."""
    error = AuthError(
        f"the token store failed to {what} {key!r} ({type(exc).__name__}: {redact(str(exc))[:200]}"
        f"); no token pair was used that the store does not hold",
        code="TOKEN_STORE",
        status=0,
    )
    error.may_retry = True
    return error


def _failed(code: str, status: int, message: str, reinstall: bool) -> AuthError:
    text = " ".join(message.split())
    error = AuthError(
        f"refreshing the access token failed: {text}; {_MEANING[reinstall]}",
        code=code,
        status=status,
    )
    error.reinstall = reinstall
    error.may_retry = not reinstall
    return error


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None
