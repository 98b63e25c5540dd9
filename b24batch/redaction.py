"""Redaction of webhook secrets and tokens from text. Pure functions plus one logging filter.

Every repr, error message and log line that could carry a URL or a server's echo of it goes
through `redact`. It masks by shape (the secret segment of any ``/rest/USER/SECRET`` path,
``Bearer`` credentials) and by value (the secrets a client knows), so a secret is caught even
where it does not sit in a URL, and a URL is caught even when the client does not know it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

__all__ = [
    "MASK",
    "SENSITIVE_KEYS",
    "Secret",
    "UrlRedactingFilter",
    "install_log_filter",
    "redact",
    "redact_data",
]

MASK = "***"

# /rest/1/SECRET and /rest/api/1/SECRET, also percent-encoded slashes are not expected here.
_WEBHOOK_PATH = re.compile(r"(/rest/(?:api/)?\d+/)([^/\s?#\"'<>]+)")
_BEARER = re.compile(r"(?i)(bearer\s+)([^\s\"',;]+)")
_TOKEN_PARAM = re.compile(
    r"(?i)((?:access_token|refresh_token|client_secret|auth|password)[\"']?\s*[=:]\s*[\"']?)"
    r"([^\s\"'&,;}]+)"
)


_T = TypeVar("_T")


class Secret(Generic[_T]):
    """A secret (webhook secret, token, a URL that holds one) whose ``repr`` and ``str`` are masked.

    Tracebacks shown with their frames' locals (Django's technical 500 page, Sentry,
    ``traceback.TracebackException(capture_locals=True)``) print every local variable; a secret
    kept in one of these is printed as ``***``. Unwrap ``value`` only in the expression that
    hands it on (to requests, to ``on_token``), never into a local variable.

    Examples:
        >>> Secret("s3cr3t"), str(Secret("s3cr3t")), Secret("s3cr3t").value
        (Secret(***), '***', 's3cr3t')
    """

    __slots__ = ("value",)

    def __init__(self, value: _T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __str__(self) -> str:
        return MASK

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with every webhook secret and token masked as ``***``.

    Args:
        text: Any text: a URL, an exception message, a server's error page.
        secrets: Literal values to mask wherever they occur (a client's own secret or token).

    Examples:
        >>> redact("POST https://p.bitrix24.com/rest/api/1/s3cr3t/batch")
        'POST https://p.bitrix24.com/rest/api/1/***/batch'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    if "/rest/" in text:
        text = _WEBHOOK_PATH.sub(rf"\g<1>{MASK}", text)
    if "bearer" in text.lower():  # any case: "BeArEr" is a Bearer credential too
        text = _BEARER.sub(rf"\g<1>{MASK}", text)
    return _TOKEN_PARAM.sub(rf"\g<1>{MASK}", text)


SENSITIVE_KEYS = frozenset(
    {"auth", "access_token", "refresh_token", "client_secret", "password", "authorization"}
)
"""Keys whose values are masked at any depth of params, bodies and results shown to people."""


def redact_data(value: Any) -> Any:
    """A copy of JSON-like ``value`` with the values of `SENSITIVE_KEYS` masked.

    Works at any depth, in dicts and in lists (a batch body is a list). Other values are kept
    as they are (the same objects, not copies).

    Examples:
        >>> redact_data([{"method": "x", "query": {"auth": "t0ken", "id": 1}}])
        [{'method': 'x', 'query': {'auth': '***', 'id': 1}}]
    """
    if isinstance(value, dict):
        return {
            key: MASK
            if isinstance(key, str) and key.lower() in SENSITIVE_KEYS
            else redact_data(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_data(item) for item in value]
    return value


class UrlRedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message in place.

    urllib3 logs every request URL at DEBUG and every retry at WARNING; a webhook URL holds the
    secret, so b24batch puts this filter on urllib3's loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


_FILTER = UrlRedactingFilter()
_URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection")


def install_log_filter(names: Iterable[str] = _URLLIB3_LOGGERS) -> None:
    """Put the redacting filter on the named loggers (urllib3's by default); idempotent."""
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
