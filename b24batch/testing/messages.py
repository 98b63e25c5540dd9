"""The FakePortal's messages: requests as they arrived, answers as they will go, error envelopes.

The error envelopes are in the classic ``{"error", "error_description"}`` shape. Plain data
shared by the HTTP layer, the faults and the routes: no I/O, no portal state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import attrs
from requests.structures import CaseInsensitiveDict

from b24batch.redaction import redact

__all__ = [
    "EXPIRED",
    "INVALID_TOKEN",
    "JSON_TYPE",
    "MALFORMED",
    "NO_AUTH",
    "OPERATION_LIMIT",
    "OVERLOAD",
    "QUERY_LIMIT",
    "RecordedRequest",
    "Reply",
    "classic_error",
]

JSON_TYPE: Final = "application/json; charset=utf-8"


def classic_error(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description}


NO_AUTH: Final = classic_error("NO_AUTH_FOUND", "Wrong authorization data")
EXPIRED: Final = classic_error("expired_token", "The access token provided has expired.")
INVALID_TOKEN: Final = classic_error("invalid_token", "The access token provided is invalid.")
QUERY_LIMIT: Final = classic_error("QUERY_LIMIT_EXCEEDED", "Too many requests")
OPERATION_LIMIT: Final = classic_error(
    "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."
)
OVERLOAD: Final = classic_error("OVERLOAD_LIMIT", "REST API is blocked due to overload.")
MALFORMED: Final = classic_error("INVALID_REQUEST", "Malformed request body")


@attrs.frozen
class RecordedRequest:
    """One HTTP request as the portal received it, recorded before any processing.

    Attributes:
        method: The HTTP method, e.g. ``"POST"``.
        path: The URL path without the query string (it holds the webhook secret).
        query: Query-string parameters (the last value wins for a repeated name).
        headers: Request headers; lookups are case-insensitive.
        body: The body decoded as JSON, or None when it is not JSON.
        raw: The body bytes exactly as received.
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: CaseInsensitiveDict[str]
    body: Any
    raw: bytes

    def __repr__(self) -> str:
        # The path holds the webhook secret, the headers a Bearer token and a classic body
        # its auth field: a recorded request shows in a test's failure output, so none of them.
        return f"<RecordedRequest {self.method} {redact(self.path)} {len(self.raw)} bytes>"


@attrs.frozen
class Reply:
    """An answer the portal will send: status, body bytes and headers (Content-Length aside)."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("Content-Type", JSON_TYPE),)

    @classmethod
    def of(cls, status: int, data: Any, *extra: tuple[str, str]) -> Reply:
        return cls(status, json.dumps(data).encode("utf-8"), (("Content-Type", JSON_TYPE), *extra))
