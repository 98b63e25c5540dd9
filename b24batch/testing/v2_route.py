"""The FakePortal's classic (v2) routes: ``batch`` and one classic method called on its own.

``batch`` on ``/rest/USER/SECRET/batch`` (webhook) or ``/rest/batch`` (OAuth, the token in the
body); a method on ``/rest/USER/SECRET/METHOD`` or ``/rest/METHOD`` likewise. Authenticates,
applies the rate and operating limits, and answers in the classic shapes; the commands run in
``v2_batch.py`` over ``v2_store.py`` (CRM) and ``v2_tasks.py`` (tasks). Mixed into FakePortal,
which holds the state and the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from b24batch.testing.command_error import CommandError
from b24batch.testing.limits import LeakyBucket
from b24batch.testing.messages import (
    OPERATION_LIMIT,
    QUERY_LIMIT,
    RecordedRequest,
    Reply,
    classic_error,
)
from b24batch.testing.phpform import parse_str_bytes
from b24batch.testing.v2_batch import classic_methods, execute_classic, parse_classic
from b24batch.testing.v2_store import CrmStore
from b24batch.testing.v3_store import Handler, TaskStore

__all__ = ["ClassicRoute"]


class ClassicRoute:
    """``_classic_batch`` and ``_classic_method`` (mixed into FakePortal)."""

    _lock: threading.RLock
    _bucket: LeakyBucket | None
    _handlers: dict[str, Handler]
    _crm: CrmStore
    _store: TaskStore
    _wall_clock: Callable[[], float]
    _executed: int
    _webhook_auth: Callable[[str, str], tuple[str, Reply | None]]
    _oauth_auth: Callable[[str], tuple[str, Reply | None]]
    _over_limit: Callable[[str], bool]
    _time_block: Callable[[str, float], dict[str, Any]]
    _before: Callable[[str], None]

    def _classic_batch(self, request: RecordedRequest, user: str | None, secret: str) -> Reply:
        """The classic ``batch`` (protocol §7): the commands run in ``v2_batch.py``."""
        if request.method != "POST":
            return Reply.of(
                405,
                classic_error("INVALID_REQUEST", "The batch method accepts POST only"),
                ("Allow", "POST"),
            )
        refusal = self._webhook_auth(user, secret)[1] if user is not None else None
        if refusal is not None:
            return refusal
        try:
            batch = parse_classic(
                request.headers.get("Content-Type", ""), request.raw, request.query
            )
        except CommandError as exc:
            return Reply.of(400, classic_error(exc.code, exc.message))
        if user is None:
            refusal = self._oauth_auth("Bearer " + (batch.auth or ""))[1]
            if refusal is not None:
                return refusal
        with self._lock:
            if self._bucket is not None and not self._bucket.admit():
                return Reply.of(503, QUERY_LIMIT)
            if self._over_limit("batch"):
                return Reply.of(429, OPERATION_LIMIT)
            start = self._wall_clock()
            result, ran = execute_classic(
                batch,
                classic_methods(self._handlers, self._crm, self._store, self._wall_clock),
                clock=self._wall_clock,
                time_block=self._time_block,
                on_command=self._before,
                blocked=lambda method: OPERATION_LIMIT if self._over_limit(method) else None,
            )
            self._executed += ran
            return Reply.of(200, {"result": result, "time": self._time_block("batch", start)})

    def _classic_method(
        self, request: RecordedRequest, user: str | None, secret: str | None, name: str
    ) -> Reply:
        """One classic method called on its own: ``{"result", "total"?, "next"?, "time"}``, or
        ``{"error", "error_description"}`` with 400 or 404. Webhook, or OAuth with the token
        as the ``auth`` parameter (of the body, or the URL)."""
        if user is not None:
            refusal = self._webhook_auth(user, secret or "")[1]
            if refusal is not None:
                return refusal
        if "json" in request.headers.get("Content-Type", "").lower():
            params = request.body if isinstance(request.body, dict) else {}
        else:
            raw = request.raw or "&".join(f"{k}={v}" for k, v in request.query.items()).encode()
            decoded = parse_str_bytes(raw)
            params = {
                (key.decode() if isinstance(key, bytes) else str(key)): value
                for key, value in decoded.items()
            }
        token = params.pop("auth", request.query.get("auth"))
        if user is None:
            text = token.decode("utf-8", "replace") if isinstance(token, bytes) else token
            refusal = self._oauth_auth(f"Bearer {text if isinstance(text, str) else ''}")[1]
            if refusal is not None:
                return refusal
        method = name.lower()
        with self._lock:
            if self._bucket is not None and not self._bucket.admit():
                return Reply.of(503, QUERY_LIMIT)
            if self._over_limit(method):
                return Reply.of(429, OPERATION_LIMIT)
            target = classic_methods(self._handlers, self._crm, self._store, self._wall_clock)(
                method
            )
            if target is None or method == "batch":
                return Reply.of(404, classic_error("ERROR_METHOD_NOT_FOUND", "Method not found!"))
            start = self._wall_clock()
            self._before(method)
            try:
                answer = target(_php_values(params))
            except CommandError as exc:
                return Reply.of(400, classic_error(exc.code, exc.message))
            self._executed += 1
            body: dict[str, Any] = {"result": answer.result}
            if answer.total is not None:
                body["total"] = answer.total
            if answer.next is not None:
                body["next"] = answer.next
            body["time"] = self._time_block(method, start)
            return Reply.of(200, body)


def _php_values(value: Any) -> Any:
    """JSON params as PHP sees them: bytes decoded, numbers and booleans kept (the store
    compares them as text)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {
            str(k.decode() if isinstance(k, bytes) else k): _php_values(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_php_values(item) for item in value]
    return value
