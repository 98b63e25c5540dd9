"""Credentials: webhook-URL and endpoint rules, and how a token rides on a request.

Checks a webhook URL or an OAuth client endpoint and takes it apart without ever raising with
its secret among the locals (each check returns the error for the caller to raise); ``Bearer``
and ``BodyToken`` put an access token on one request, REST 3.0's way or the classic way.
Nothing here sends a request or keeps a credential.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import SplitResult, quote, urlsplit

import requests
import requests.auth

from b24batch.errors import SdkError, SdkTypeError
from b24batch.redaction import Secret, redact

__all__ = [
    "TOKEN_RULE",
    "Bearer",
    "BodyToken",
    "endpoint_origin",
    "is_loopback",
    "valid_token",
    "webhook_parts",
]

_WEBHOOK_PATH = re.compile(r"^/rest/(?:api/)?(?P<user>[0-9]{1,18})/(?P<secret>[^/]+)/?$")
_AFTER_SECRET = re.compile(r"^/rest/(?:api/)?[0-9]{1,18}/[^/]+/(?P<extra>[^?#]+?)/?$")
_WEBHOOK_SHAPE = "https://PORTAL/rest/USER_ID/SECRET/ (or https://PORTAL/rest/api/USER_ID/SECRET/)"
_ENDPOINT_PATH = re.compile(r"^(?:/rest(?:/api)?)?/?$")
_ENDPOINT_SHAPE = "https://PORTAL/rest/ (the client endpoint) or https://PORTAL"
_TOKEN = re.compile(r"[\x21-\x7e]+")
TOKEN_RULE = "a non-empty string of printable ASCII characters without spaces"  # noqa: S105 - a rule, not a token


class Bearer(requests.auth.AuthBase):
    """``Authorization: Bearer TOKEN`` on one request; repr without the token."""

    def __init__(self, token: Secret[str]) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token.value}"
        return request

    def __repr__(self) -> str:
        return "<Bearer ***>"


class BodyToken(requests.auth.AuthBase):
    """``&auth=TOKEN`` appended to one request's form body; repr without the token.

    The token joins the body only here, as requests prepares the request, so no frame of
    b24batch's own holds a body with the token in it.
    """

    def __init__(self, token: Secret[str]) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""  # a single call without params has an empty body
        assert isinstance(body, bytes)  # the classic body is always encoded bytes
        joint = b"&auth=" if body else b"auth="
        request.body = body + joint + quote(self._token.value, safe="").encode("ascii")
        request.prepare_content_length(request.body)
        return request

    def __repr__(self) -> str:
        return "<auth field ***>"


def webhook_parts(url: Secret[Any]) -> tuple[str, int, Secret[str]] | SdkError:
    """``(origin, user id, secret)`` of a webhook URL, or the error to raise (not raised here,
    where the URL's parts are locals)."""
    parts = split_url(url, "webhook URL", _WEBHOOK_SHAPE)
    if isinstance(parts, SdkError):
        return parts
    match = _WEBHOOK_PATH.match(parts.path)
    extra = _AFTER_SECRET.match(parts.path) if match is None else None
    if extra is not None:  # a method such as profile.json appended, as in a browser's address
        return SdkError(
            f"the webhook URL for {parts.hostname} ends in {redact(extra['extra'])[:80]!r} "
            f"after its secret: remove it, the batch names each method itself; expected "
            f"{_WEBHOOK_SHAPE}"
        )
    if match is None:
        return SdkError(
            f"the URL for {parts.hostname} is not a webhook URL (it needs a user id and a "
            f"secret after /rest/): expected {_WEBHOOK_SHAPE}"
        )
    return url_origin(parts), int(match["user"]), Secret(match["secret"])


def endpoint_origin(endpoint: Secret[Any]) -> str | SdkError:
    """The origin of an OAuth client endpoint, or the error to raise (never with the path of a
    webhook URL, which holds its secret)."""
    parts = split_url(endpoint, "client endpoint", _ENDPOINT_SHAPE)
    if isinstance(parts, SdkError):
        return parts
    if _WEBHOOK_PATH.match(parts.path):
        return SdkError(
            f"the endpoint for {parts.hostname} is a webhook URL (a user id and a secret after "
            f"/rest/), which B24Hook.from_webhook_url takes; expected {_ENDPOINT_SHAPE}"
        )
    if not _ENDPOINT_PATH.match(parts.path):
        return SdkError(
            f"the endpoint for {parts.hostname} has the path {redact(parts.path)[:80]!r}: "
            f"expected {_ENDPOINT_SHAPE}"
        )
    return url_origin(parts)


def split_url(url: Secret[Any], what: str, shape: str) -> SplitResult | SdkError:
    """Check scheme, host, userinfo, query and http-only-on-loopback; the parts, or the error."""
    if not isinstance(url.value, str):
        return SdkTypeError(f"the {what} is a {type(url.value).__name__}; pass a str")
    try:
        parts = urlsplit(url.value.strip())
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:  # a malformed port or IPv6 address
        return SdkError(f"this is not a {what}: expected {shape}")
    if parts.scheme.lower() not in ("https", "http") or not host:
        return SdkError(f"this is not a {what}: expected {shape}")
    if parts.username is not None or parts.password is not None:
        return SdkError(f"a {what} has no user:password@ part: expected {shape}")
    if parts.query or parts.fragment:
        return SdkError(f"a {what} has no query string or fragment: expected {shape}")
    if parts.scheme.lower() == "http" and not is_loopback(host):
        return SdkError(
            f"{host} is reached over plain http; Bitrix24 requires https (http is allowed "
            f"only for loopback hosts such as the FakePortal)"
        )
    return parts


def url_origin(parts: SplitResult) -> str:
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    port = parts.port
    return f"{parts.scheme.lower()}://{netloc}" + (f":{port}" if port is not None else "")


def valid_token(token: Secret[Any]) -> bool:
    """Whether a token can go in a header as it is: printable ASCII, no spaces."""
    return isinstance(token.value, str) and _TOKEN.fullmatch(token.value) is not None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
