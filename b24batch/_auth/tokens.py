"""``TokenRecord``: one portal's token pair as kept in a store, and every shape it arrives in.

Reads the authorization server's token answer, the install page's form fields and the
``ONAPPINSTALL`` event's ``auth[...]`` fields, and a record read back from a store, checking every
field; each reader returns the error to raise instead of raising it, so no frame holding the
tokens is ever in a traceback. Sends nothing, stores nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from b24batch.credentials import TOKEN_RULE, endpoint_origin, valid_token
from b24batch.errors import SdkError, SdkTypeError
from b24batch.redaction import Secret

__all__ = ["RECORD_FORMAT", "TokenRecord", "member_error", "parse_record", "parse_tokens"]

RECORD_FORMAT = 1
"""The ``format`` of the records this version writes; a record of another format is refused."""

_MEMBER = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_LONGEST_LIFETIME = 10**7  # seconds: an access token lives an hour; far more is not a lifetime
_TEXT_FIELDS = ("domain", "scope", "status")


@attrs.frozen(repr=False)
class TokenRecord:
    """One portal's tokens and what came with them; its repr shows no token."""

    access: Secret[str]
    refresh: Secret[str]
    expires: float
    """Unix seconds when the access token expires, as the authorization server said."""
    member_id: str
    client_endpoint: str
    domain: str = ""
    scope: str = ""
    status: str = ""

    def to_json(self) -> str:
        """The record as the store keeps it (the only place a token is written)."""
        return json.dumps(
            {
                "format": RECORD_FORMAT,
                "access_token": self.access.value,
                "refresh_token": self.refresh.value,
                "expires": self.expires,
                "member_id": self.member_id,
                "client_endpoint": self.client_endpoint,
                "domain": self.domain,
                "scope": self.scope,
                "status": self.status,
            },
            separators=(",", ":"),
        )

    def __repr__(self) -> str:
        return f"<TokenRecord member_id={self.member_id!r} {self.client_endpoint} ***>"


def member_error(member_id: Any) -> SdkError | None:
    """The error for a ``member_id`` that is not one, or None."""
    if not isinstance(member_id, str):
        return SdkTypeError(f"member_id is a {type(member_id).__name__}; pass the portal's str")
    if not _MEMBER.fullmatch(member_id):
        return SdkError(
            f"member_id={member_id[:80]!r} is not a portal's member_id (1-64 letters, digits, "
            f"'_', '.', '-', as Bitrix24 sends it)"
        )
    return None


def parse_tokens(given: Secret[Any], now: float) -> TokenRecord | SdkError:
    """The record in a token answer, an install form or an ``ONAPPINSTALL`` event, or the error.

    Shapes, from the official docs (bitrix24/b24restdocs): the refresh answer
    (``settings/oauth/auto-renewal.md``: ``access_token``, ``refresh_token``, ``expires_in``,
    ``expires``, ``member_id``, ``client_endpoint``, ``domain``, ``scope``, ``status``); the
    install page and widget POST (``settings/app-installation/local-apps/installation-master.md``
    and the widgets' "What the handler receives": ``AUTH_ID``, ``REFRESH_ID``, ``AUTH_EXPIRES``
    in seconds, ``member_id``, ``DOMAIN``, ``PROTOCOL`` 1 for https, ``APPLICATION_SCOPE``,
    ``status``); the event handler's ``auth`` (``_includes/auth-params-in-events.md``: the
    refresh answer's fields, posted as ``auth[access_token]`` and so on, or nested).
    """
    fields = _normalised(given.value)
    if isinstance(fields, SdkError):
        return fields
    return _record(fields, now, "the token answer")


def parse_record(text: Any, key: str) -> TokenRecord | SdkError:
    """The record a store kept under ``key``, or the error naming what is wrong with it."""
    where = f"the store's record {key!r}"
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:  # the message quotes the text, which holds the tokens
        data = None
    if not isinstance(data, dict):
        return SdkError(f"{where} is not a JSON object (cut short, or not written by b24batch)")
    if data.get("format") != RECORD_FORMAT:
        return SdkError(f"{where} has no format {RECORD_FORMAT} (not written by this b24batch)")
    expires = data.get("expires")
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        return SdkError(f"{where} has no number in its field 'expires'")
    fields = {k: v for k, v in data.items() if k != "expires"}
    record = _record({**fields, "expires": expires}, 0.0, where)
    if not isinstance(record, SdkError) and any(
        not isinstance(data.get(name, ""), str) for name in _TEXT_FIELDS
    ):
        return SdkError(f"{where} holds a field that is not text among {_TEXT_FIELDS}")
    return record


def _normalised(given: Any) -> dict[str, Any] | SdkError:
    """The token answer's fields, whichever of the three shapes ``given`` has."""
    if not isinstance(given, Mapping):
        return SdkTypeError(
            f"save_tokens() takes a mapping (the token answer, the install form's fields, or "
            f"the ONAPPINSTALL event's), not a {type(given).__name__}"
        )
    auth = given.get("auth")
    if isinstance(auth, Mapping):  # the event, decoded into nested dicts
        return {str(k): _one(v) for k, v in auth.items()}
    flat = {k[5:-1]: _one(v) for k, v in given.items() if isinstance(k, str) and _is_auth(k)}
    if flat:  # the event as its form fields: auth[access_token]=...
        return flat
    if "AUTH_ID" in given:  # the install page's (or a widget's) form
        domain = _one(given.get("DOMAIN"))
        if not isinstance(domain, str) or not domain or "/" in domain:
            return SdkError("the install form's field 'DOMAIN' is missing or not a host name")
        scheme = "http" if str(_one(given.get("PROTOCOL", "1"))) == "0" else "https"
        return {
            "access_token": _one(given.get("AUTH_ID")),
            "refresh_token": _one(given.get("REFRESH_ID")),
            "expires_in": _one(given.get("AUTH_EXPIRES")),
            "member_id": _one(given.get("member_id")),
            "client_endpoint": f"{scheme}://{domain}/rest/",
            "domain": domain,
            "scope": _one(given.get("APPLICATION_SCOPE", "")),
            "status": _one(given.get("status", "")),
        }
    return {str(k): _one(v) for k, v in given.items()}


def _is_auth(key: str) -> bool:
    return key.startswith("auth[") and key.endswith("]")


def _one(value: Any) -> Any:
    """A form field's value: frameworks give a list when the field came more than once."""
    if isinstance(value, list | tuple) and len(value) == 1:
        return value[0]
    return value


def _record(fields: Mapping[str, Any], now: float, where: str) -> TokenRecord | SdkError:
    for name in ("access_token", "refresh_token"):
        token = Secret(fields.get(name))
        if token.value is None:
            return SdkError(f"{where} has no field {name!r}")
        if not valid_token(token):
            return SdkError(f"{where}'s field {name!r} is not a token: a token is {TOKEN_RULE}")
    member = fields.get("member_id")
    problem = member_error(member)
    if problem is not None:
        return SdkError(f"{where}'s field 'member_id': {problem}")
    expires = _expires(fields, now)
    if isinstance(expires, str):
        return SdkError(f"{where}: {expires}")
    endpoint = fields.get("client_endpoint")
    origin = endpoint_origin(Secret(endpoint)) if isinstance(endpoint, str) else None
    if not isinstance(origin, str):
        return SdkError(
            f"{where}'s field 'client_endpoint' is missing or not the portal's REST endpoint "
            f"(https://PORTAL/rest/)"
        )
    texts = {}
    for name in _TEXT_FIELDS:
        value = fields.get(name) or ""
        if not isinstance(value, str) or len(value) > 1000 or not value.isprintable():
            return SdkError(f"{where}'s field {name!r} is not short printable text")
        texts[name] = value
    return TokenRecord(
        access=Secret(fields["access_token"]),
        refresh=Secret(fields["refresh_token"]),
        expires=expires,
        member_id=str(member),
        client_endpoint=f"{origin}/rest/",
        **texts,
    )


def _expires(fields: Mapping[str, Any], now: float) -> float | str:
    """Unix seconds the access token expires at (``expires``, else now + ``expires_in``), or
    what is wrong."""
    for name, base in (("expires", 0.0), ("expires_in", now)):
        value = fields.get(name)
        if value is None or value == "":
            continue
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        limit = 1e11 if name == "expires" else _LONGEST_LIFETIME
        if not (math.isfinite(number) and 0 < number <= limit):
            return f"its field {name!r} is not a number of seconds"
        return base + number
    return "it has neither 'expires' nor 'expires_in'"
