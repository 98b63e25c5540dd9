"""The FakePortal's faults: the misbehaviours a test queues with ``FakePortal.inject``.

Each ``Fault`` says what happens to one upcoming request (a delay, a dropped connection, an HTML
page, a truncated or a canned answer) and whether the batch still executes. Plain data; the HTTP
layer applies them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from b24batch.testing.messages import JSON_TYPE, OPERATION_LIMIT, OVERLOAD, QUERY_LIMIT

__all__ = ["Fault", "FaultKind"]


FaultKind = Literal[
    "delay", "drop_before", "drop_after", "hang", "html", "truncated", "response", "rewrite"
]


@attrs.frozen
class Fault:
    """A misbehaviour the portal applies to one upcoming request; build it with a classmethod.

    Faults are queued by ``FakePortal.inject`` and applied first in, first out, one per request,
    to whatever request arrives next (any path, before authentication).
    """

    kind: FaultKind
    seconds: float = 0.0
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    edit: Callable[[Any], Any] | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def executes(self) -> bool:
        """Whether the request is still processed (and a valid batch committed)."""
        return self.kind in ("delay", "drop_after", "truncated", "rewrite")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` of real time, then process normally: the batch DOES execute.

        A client whose read timeout fires meanwhile cannot know the batch committed.
        """
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        return cls(kind="delay", seconds=seconds)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Hold the request ``seconds`` of real time (less if the server stops), then close the
        connection without a response; the request does NOT execute.

        A server that never answers: the client's read timeout is what ends the wait.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        return cls(kind="hang", seconds=float(seconds))

    @classmethod
    def drop_before(cls) -> Fault:
        """Close the connection without a response; the batch does NOT execute."""
        return cls(kind="drop_before")

    @classmethod
    def drop_after(cls) -> Fault:
        """Process (the batch DOES execute and commit), then close without a response."""
        return cls(kind="drop_after")

    @classmethod
    def html(cls, status: int = 502) -> Fault:
        """Answer an HTML error page that echoes the request path; the batch does NOT execute.

        The page carries the path, webhook secret included, as some proxies do, so a client's
        redaction can be tested.
        """
        _check_status(status)
        return cls(kind="html", status=status)

    @classmethod
    def truncated(cls) -> Fault:
        """Process (the batch DOES execute), then send the first half of the response body.

        Content-Length matches the bytes sent, so the client reads a complete, invalid JSON.
        """
        return cls(kind="truncated")

    @classmethod
    def rewrite(cls, edit: Callable[[Any], Any]) -> Fault:
        """Process (the batch DOES execute), then answer what ``edit`` makes of the JSON answer
        (same status): an answer that says less, or other, than what ran.

        Examples:
            >>> drop_results = Fault.rewrite(lambda answer: {**answer, "result": []})
        """
        if not callable(edit):
            raise TypeError("edit must be callable: it takes and returns the decoded answer")
        return cls(kind="rewrite", edit=edit)

    @classmethod
    def response(
        cls,
        status: int,
        body: Mapping[str, Any] | str,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer ``status`` with ``body`` (a mapping is sent as JSON, a str as given, as text
        unless ``headers`` set Content-Type); the batch does NOT execute.

        Content-Length is always computed from ``body``; one in ``headers`` is ignored.
        """
        _check_status(status)
        extra = {
            name: value
            for name, value in (headers or {}).items()
            if name.lower() not in ("content-length", "connection", "transfer-encoding")
        }
        if isinstance(body, str):
            payload = body.encode("utf-8")
            content_type = "text/plain; charset=utf-8"
        else:
            payload = json.dumps(body).encode("utf-8")
            content_type = JSON_TYPE
        if not any(name.lower() == "content-type" for name in extra):
            extra["Content-Type"] = content_type
        return cls(kind="response", status=status, body=payload, headers=tuple(extra.items()))

    @classmethod
    def overload(cls) -> Fault:
        """503 ``OVERLOAD_LIMIT`` (REST blocked by support); the batch does NOT execute."""
        return cls.response(503, OVERLOAD)

    @classmethod
    def rate_limited(cls) -> Fault:
        """503 ``QUERY_LIMIT_EXCEEDED`` without touching the leaky bucket; does NOT execute."""
        return cls.response(503, QUERY_LIMIT)

    @classmethod
    def operating_limited(cls) -> Fault:
        """429 ``OPERATION_TIME_LIMIT`` without touching the meter; does NOT execute."""
        return cls.response(429, OPERATION_LIMIT)


def _check_status(status: int) -> None:
    if not 100 <= status <= 599:
        raise ValueError(f"status must be an HTTP status code, got {status}")
