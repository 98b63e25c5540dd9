"""The FakePortal's REST 3.0 route: one authenticated request, start to answer.

A ``batch``, or one method called at its own URL (its params the body). Checks the
``Idempotency-Key`` and the JSON body, replays a stored answer for a repeated key, refuses a
batch over its operating limit, and runs the rows in order without rollback (the commands
themselves run in ``v3_store.py``). Mixed into FakePortal, which holds the state, the lock,
and the routing and authentication that come before.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, Final

import attrs

from b24batch.testing.limits import LeakyBucket, OperatingMeter
from b24batch.testing.messages import QUERY_LIMIT, RecordedRequest, Reply, classic_error
from b24batch.testing.v3_store import (
    CommandError,
    Handler,
    Row,
    TaskStore,
    execute_batch,
    parse_batch,
)

__all__ = ["IDEMPOTENCY_TTL", "StoredReply", "V3Route"]

logger = logging.getLogger("b24batch.testing")

IDEMPOTENCY_TTL: Final = 24 * 3600.0
"""How long a stored ``Idempotency-Key`` response is replayed, in wall-clock seconds."""
_INVALID_JSON: Final = "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION"
_INVALID_KEY: Final = "BITRIX_REST_V3_EXCEPTION_INVALIDIDEMPOTENCYKEYEXCEPTION"
_KEY_REUSED: Final = "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION"
_IDEMPOTENCY_KEY: Final = re.compile(r"[\x20-\x7e]{1,255}")


@attrs.frozen
class StoredReply:
    """A 200 answer kept for an ``Idempotency-Key``, and the fingerprint of its request body."""

    fingerprint: str
    reply: Reply
    expires: float


class V3Route:
    """``_run`` and ``_execute``: a REST 3.0 batch after authentication (mixed into FakePortal)."""

    _bucket: LeakyBucket | None
    _idempotent: dict[tuple[str, str], StoredReply]
    _wall_clock: Callable[[], float]
    _store: TaskStore
    _handlers: dict[str, Handler]
    _executed: int
    _meter: OperatingMeter
    _operating_block: Callable[[tuple[Row, ...]], Reply | None]
    _charged_to: Callable[[tuple[Row, ...]], set[str]]
    _time_block: Callable[[str, float], dict[str, Any]]
    _before: Callable[[str], None]

    def _run(self, request: RecordedRequest, credential: str, method: str | None = None) -> Reply:
        """Everything after authentication, under the portal lock: a batch, or with ``method``
        a single call of it (its params the body, its answer ``{"result", "time"}``)."""
        if self._bucket is not None and not self._bucket.admit():
            return Reply.of(503, QUERY_LIMIT)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
            return _command_error(
                CommandError(
                    "Idempotency-Key must be 1 to 255 printable ASCII characters",
                    code=_INVALID_KEY,
                )
            )
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type and not (
            content_type == "application/json" or content_type.endswith("+json")
        ):
            return _command_error(CommandError("Request body is not JSON", code=_INVALID_JSON))
        try:
            empty = method is not None and not request.raw.strip()
            body = {} if empty else json.loads(request.raw.decode("utf-8"))
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
            return _command_error(
                CommandError("Request body is not valid JSON", code=_INVALID_JSON)
            )
        try:
            rows = parse_batch(body) if method is None else (_single_row(method, body),)
        except CommandError as exc:
            return _command_error(exc)

        signed = body if method is None else [method.lower(), body]
        fingerprint = json.dumps(signed, sort_keys=True, separators=(",", ":"))
        wall_now = self._wall_clock()
        if key is not None:
            stored = self._idempotent.get((credential, key))
            if stored is not None and stored.expires <= wall_now:
                del self._idempotent[credential, key]
                stored = None
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    return _command_error(
                        CommandError(
                            "Idempotency-Key was already used with a different request",
                            code=_KEY_REUSED,
                            status=422,
                        )
                    )
                replay = stored.reply
                return attrs.evolve(
                    replay, headers=(*replay.headers, ("Idempotent-Replayed", "true"))
                )

        blocked = self._operating_block(rows)
        if blocked is not None:
            return blocked
        reply = self._execute(rows, wall_now, single=method is not None)
        if key is not None and reply.status == 200:
            self._idempotent[credential, key] = StoredReply(
                fingerprint=fingerprint, reply=reply, expires=wall_now + IDEMPOTENCY_TTL
            )
        return reply

    def _count_executed(self, method: str) -> None:
        self._executed += 1

    def _execute(self, rows: tuple[Row, ...], start: float, *, single: bool = False) -> Reply:
        # In order, without rollback: a failing row's error is the answer, and what the rows
        # before it wrote stays (and counts in executed_commands).
        try:
            results = execute_batch(
                rows,
                self._store,
                self._handlers,
                now=start,
                on_command=self._before,
                on_executed=self._count_executed,
            )
        except CommandError as exc:
            return _command_error(exc)
        except Exception:
            logger.exception("a registered handler failed; the rows before it stay executed")
            return Reply.of(500, classic_error("INTERNAL_SERVER_ERROR", "Internal server error"))
        charged = max(self._charged_to(rows), key=self._meter.total)
        result = results[0] if single else results
        return Reply.of(200, {"result": result, "time": self._time_block(charged, start)})


def _single_row(method: str, body: Any) -> Row:
    """A single call as the one row it runs as: its body is the method's params."""
    if body == []:  # PHP decodes `{}` and `[]` alike
        body = {}
    if not isinstance(body, dict):
        raise CommandError(
            "The body of a method call must be a JSON object of its parameters",
            code=_INVALID_JSON,
        )
    return Row(method=method, query=body)


def _command_error(exc: CommandError) -> Reply:
    return Reply.of(exc.status, exc.envelope())
