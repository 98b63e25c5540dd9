"""The benchmark portal: a fast loopback HTTP server for REST 3.0 and classic ``batch`` calls.

Run on its own (``python tests/benchmarks/server.py``), in its own process, so the client being
measured shares no GIL with it. It prints ``PORT <n>`` once it listens. Stdlib only: peers'
virtual environments never import it. It answers from pre-encoded bytes, writes each response
in one ``send`` and sets TCP_NODELAY, so no client waits on Nagle or delayed ACKs. It does not
execute anything: every command answers the same page of task items.

Routes (``SECRET`` below is :data:`SECRET`, user 1):

- ``POST /rest/api/1/SECRET/batch``: REST 3.0, a bare JSON array of ``{method, query, ...}``
  rows (or an object keyed "0".."n-1"); answers ``{"result": [entry, ...], "time": {...}}``.
- ``POST /rest/1/SECRET/batch`` (``.json`` optional): classic, JSON ``{"halt", "cmd": {key:
  "method?query"}}`` or the same form-encoded; answers ``{"result": {"result": {key: entry},
  "result_error": [], "result_total", "result_next", "result_time"}, "time": {...}}``.
- ``POST /_bench/reset`` with ``{"burst": int | null, "per_second": float}``: zero the counters
  and install (or remove) the leaky bucket; ``GET /_bench/stats``: the counters.

With a bucket installed, a batch that finds the counter at ``burst`` or above is refused with
503 ``QUERY_LIMIT_EXCEEDED``; an admitted one raises it by one; it drains at ``per_second``.

A portal as slow as a real one, time-compressed (``--command-ms``, ``--latency-ms``,
``--operating-limit``, ``--basket-s``): each batch is answered after the latency each way plus
its commands' time, concurrent batches overlapping as on a real portal (no global lock), and
its time is charged to the method ``batch`` in ten baskets when it ends (as measured: batches in
flight do not see each other's time). Past the operating limit a batch is refused with 429
``OPERATION_TIME_LIMIT`` before running. ``operating_reset_at`` is floored to tenths of a
second, as the real portal floors it to whole seconds. ``/_bench/stats`` also gives the 429s,
the commands executed and the highest operating figure reached.

With ``--list-items N`` it also serves a list of N items (``--sparse``: N random ids up to
100 N, seeded) to list commands, filtered and ordered by id as a real portal does: REST 3.0
``tasks.task.list`` (``filter`` conditions on ``id``, ``order``, ``pagination``), classic
``crm.deal.list`` (``filter[>=ID]``…, ``order[ID]``, ``start``: an offset, or -1 for no count;
pages of 50, ``total`` and ``next``) in a batch or called on its own. Each item returned adds
``--item-ms`` to the batch's running time (the commands' own time alone is charged as
operating time, as before). ``/_bench/stats`` also gives the items returned.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import random
import socket
import sys
import time
from typing import Any, Final
from urllib.parse import parse_qsl

SECRET: Final = "benchSecret42"
USER_ID: Final = 1
FIELDS_PER_TASK: Final = 15

_REST3_PATH: Final = f"/rest/api/{USER_ID}/{SECRET}/batch"
_CLASSIC_PATHS: Final = frozenset(
    {f"/rest/{USER_ID}/{SECRET}/batch", f"/rest/{USER_ID}/{SECRET}/batch.json"}
)
_MAX_COMMANDS: Final = 50
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    411: "Length Required",
    503: "Service Unavailable",
}


def task_item(task_id: int) -> dict[str, Any]:
    """One REST 3.0 task as ``tasks.task.list`` returns it: 15 fields, camelCase keys."""
    return {
        "id": task_id,
        "title": f"Prepare the quarterly report for department {task_id % 17}",
        "description": "Collect the figures from every branch, check them against the ledger "
        "and send the summary to the board before the meeting.",
        "creatorId": 1,
        "responsibleId": 10 + task_id % 7,
        "groupId": 3 if task_id % 2 else None,
        "status": "pending",
        "priority": "average",
        "deadline": "2026-09-30T18:00:00+03:00",
        "created": "2026-08-20T11:52:22+03:00",
        "changed": "2026-08-21T09:15:03+03:00",
        "closed": None,
        "stageId": 0,
        "timeEstimate": 3600,
        "allowChangeDeadline": True,
    }


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Bucket:
    """The portal's request counter: +1 per admitted request, draining at ``per_second``."""

    def __init__(self, burst: int, per_second: float) -> None:
        self.burst = burst
        self.per_second = per_second
        self._level = 0.0
        self._updated = time.monotonic()

    def admit(self) -> bool:
        """Count one request in, or refuse it (the counter is at ``burst`` or above)."""
        now = time.monotonic()
        level = max(0.0, self._level - (now - self._updated) * self.per_second)
        self._updated = now
        if level >= self.burst:
            self._level = level
            return False
        self._level = level + 1.0
        return True


class Meter:
    """Operating time of the method ``batch`` in ten baskets of ``basket_s`` seconds."""

    def __init__(self, limit: float | None, basket_s: float) -> None:
        self.limit = limit
        self.basket_s = basket_s
        self._baskets: dict[int, float] = {}
        self.peak = 0.0

    def _live(self) -> dict[int, float]:
        current = int(time.monotonic() // self.basket_s)
        for index in [i for i in self._baskets if i <= current - 10]:
            del self._baskets[index]
        return self._baskets

    def total(self) -> float:
        return sum(self._live().values())

    def reset_at(self) -> float:
        baskets = self._live()
        now = time.monotonic()
        oldest = min(baskets) if baskets else int(now // self.basket_s)
        return time.time() + (oldest + 10) * self.basket_s - now

    def charge(self, seconds: float) -> None:
        index = int(time.monotonic() // self.basket_s)
        baskets = self._live()
        baskets[index] = baskets.get(index, 0.0) + seconds
        self.peak = max(self.peak, self.total())

    def blocked(self) -> bool:
        return self.limit is not None and self.total() >= self.limit


class Portal:
    """Routing, the counters and the pre-encoded answers; one instance per server."""

    def __init__(
        self,
        items_per_command: int,
        *,
        command_s: float = 0.0,
        latency_s: float = 0.0,
        operating_limit: float | None = None,
        basket_s: float = 60.0,
        list_items: int = 0,
        sparse: bool = False,
        item_s: float = 0.0,
    ) -> None:
        self.lists = Lists(list_items, sparse=sparse)
        self.item_s = item_s
        self.items = 0  # items returned by list commands
        self.executing_items = 0  # ... of the batch just admitted
        self.command_s = command_s
        self.latency_s = latency_s
        self.meter = Meter(operating_limit, basket_s)
        self.blocked = 0
        self.executing = 0  # commands of the batch just admitted
        items = [task_item(n + 1) for n in range(items_per_command)]
        self._rest3_entry = _dumps({"items": items})
        self._classic_entry = _dumps({"tasks": items})
        self._classic_total = str(items_per_command).encode()
        self._rest3_results: dict[int, bytes] = {}
        self._classic_results: dict[tuple[str, ...], tuple[bytes, bytes, bytes]] = {}
        self.bucket: Bucket | None = None
        self.requests = self.refused = self.commands = 0

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """Answer one request: ``(status, JSON body)``."""
        path = target.split("?", 1)[0]
        if path == _REST3_PATH and method == "POST":
            return self._rest3(body)
        if path in _CLASSIC_PATHS and method == "POST":
            return self._classic(body, headers.get("content-type", ""))
        if path == "/_bench/reset" and method == "POST":
            settings = json.loads(body or b"{}")
            burst = settings.get("burst")
            self.bucket = (
                None if burst is None else Bucket(int(burst), float(settings["per_second"]))
            )
            self.requests = self.refused = self.commands = self.blocked = self.items = 0
            self.meter = Meter(self.meter.limit, self.meter.basket_s)
            return 200, b'{"ok":true}'
        if path == "/_bench/stats":
            return 200, _dumps(
                {
                    "requests": self.requests,
                    "refused": self.refused,
                    "commands": self.commands,
                    "blocked": self.blocked,
                    "items": self.items,
                    "peak_operating": round(self.meter.peak, 3),
                }
            )
        single = _single_method(path)
        if single is not None and method == "POST" and self.lists.ids:
            return self._single_list(single, body, headers.get("content-type", ""))
        if path.startswith("/rest/"):
            return 401, b'{"error":"NO_AUTH_FOUND","error_description":"Wrong authorization data"}'
        return 404, b'{"error":"NOT_FOUND","error_description":"No such route"}'

    def _limited(self) -> bool:
        if self.bucket is not None and not self.bucket.admit():
            self.refused += 1
            return True
        self.requests += 1
        return False

    def delay(self, commands: int) -> float:
        """How long a batch of ``commands`` takes: the latency each way, the commands, and the
        list items it returns."""
        return 2 * self.latency_s + self.command_s * commands + self.item_s * self.executing_items

    def time_block(self, commands: int) -> bytes:
        """The answer's ``time``: the batch's running time as its ``duration`` (as a real
        portal reports it), and the operating figure as it stands when the batch ends."""
        if self.meter.limit is None:
            return _time_block()
        now = time.time()
        duration = self.command_s * commands
        return _dumps(
            {
                "start": now - duration,
                "finish": now,
                "duration": duration,
                # Floored to tenths of a second: the real portal's whole seconds, compressed.
                "operating_reset_at": math.floor(self.meter.reset_at() * 10) / 10,
                "operating": round(self.meter.total(), 6),
            }
        )

    def _rest3(self, body: bytes) -> tuple[int, bytes]:
        try:
            rows = json.loads(body)
        except ValueError:
            return 400, _error3("BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION", "Invalid JSON")
        if isinstance(rows, dict) and list(rows) == [str(i) for i in range(len(rows))]:
            rows = list(rows.values())
        if (
            not isinstance(rows, list)
            or not 0 < len(rows) <= _MAX_COMMANDS
            or not all(
                isinstance(r, dict)
                and isinstance(r.get("method"), str)
                and isinstance(r.get("query"), dict)
                for r in rows
            )
        ):
            return 400, _error3(
                "BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION", "Malformed batch"
            )
        if self._limited():
            return 503, _QUERY_LIMIT
        if self.meter.blocked():
            self.blocked += 1
            return 429, _OPERATION_LIMIT
        count = len(rows)
        self.commands += count
        self.executing = count
        self.executing_items = 0
        if self.lists.ids and any(str(r["method"]).endswith(".list") for r in rows):
            entries = [self._rest3_list(r) for r in rows]
            return 200, b'{"result":[' + b",".join(entries) + b'],"time":' + TIME_MARK + b"}"
        results = self._rest3_results.get(count)
        if results is None:
            results = self._rest3_results[count] = b",".join([self._rest3_entry] * count)
        return 200, b'{"result":[' + results + b'],"time":' + TIME_MARK + b"}"

    def _rest3_list(self, row: dict[str, Any]) -> bytes:
        query = row["query"]
        low, high = _bounds(
            (c[1], c[2]) for c in query.get("filter") or () if isinstance(c, list) and len(c) == 3
        )
        descending = str((query.get("order") or {}).get("id", "ASC")).upper() == "DESC"
        pagination = query.get("pagination") or {}
        limit = min(int(pagination.get("limit", 50)), 1000)
        ids = self.lists.page(low, high, descending, int(pagination.get("offset", 0)), limit)
        self._returned(len(ids))
        select = query.get("select")
        items = [task_item(n) for n in ids]
        if isinstance(select, list) and select:  # as a real portal: only the fields asked for
            items = [{key: item[key] for key in select if key in item} for item in items]
        return _dumps({"items": items})

    def _returned(self, items: int) -> None:
        self.items += items
        self.executing_items += items

    def _classic_page(self, method: str, params: list[tuple[str, str]]) -> tuple[Any, int, Any]:
        """``(items, total, next)`` of one classic list command (total -1: not counted)."""
        conditions = []
        descending = False
        start = 0
        for key, value in params:
            if key.startswith("filter[") and key.endswith("]"):
                field = key[7:-1]
                op = field.rstrip("ID").rstrip("_")
                if field.upper().endswith("ID"):
                    conditions.append((op or "=", int(value)))
            elif key.startswith("order["):
                descending = value.upper() == "DESC"
            elif key == "start":
                start = int(value)
        low, high = _bounds(conditions)
        offset = max(start, 0)
        ids = self.lists.page(low, high, descending, offset, 50)
        self._returned(len(ids))
        items = [{"ID": str(n), "TITLE": f"Deal {n}"} for n in ids]
        if start < 0:
            return items, -1, None
        total = self.lists.count(low, high)
        return items, total, (offset + 50 if offset + 50 < total else None)

    def _single_list(self, method: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        if self._limited():
            return 503, _QUERY_LIMIT
        self.executing, self.executing_items = 1, 0
        self.commands += 1
        params = _params(body, content_type)
        items, total, following = self._classic_page(method, params)
        answer: dict[str, Any] = {"result": items}
        if total >= 0:
            answer["total"] = total
        if following is not None:
            answer["next"] = following
        return 200, _dumps(answer)[:-1] + b',"time":' + TIME_MARK + b"}"

    def _classic_lists(self, cmd: list[tuple[str, str]]) -> tuple[int, bytes]:
        result, totals, nexts = {}, {}, {}
        for key, value in cmd:
            method, _, query = value.partition("?")
            items, total, following = self._classic_page(
                method, parse_qsl(query, keep_blank_values=True)
            )
            result[key] = items
            if total >= 0:
                totals[key] = total
            if following is not None:
                nexts[key] = following
        body = {
            "result": result,
            "result_error": [],
            "result_total": totals or [],
            "result_next": nexts or [],
            "result_time": [],
        }
        return 200, b'{"result":' + _dumps(body) + b',"time":' + TIME_MARK + b"}"

    def _classic(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        keys: list[str]
        cmd: list[tuple[str, str]] = []
        if "json" in content_type:
            try:
                payload = json.loads(body)
            except ValueError:
                return 400, b'{"error":"INVALID_REQUEST","error_description":"Invalid JSON"}'
            commands = payload.get("cmd") if isinstance(payload, dict) else None
            keys = [str(k) for k in commands] if isinstance(commands, dict) else []
            if isinstance(commands, dict):
                cmd = [(str(k), str(v)) for k, v in commands.items()]
        else:
            cmd = [
                (k[4:-1], v)
                for k, v in parse_qsl(body.decode("utf-8"))
                if k.startswith("cmd[") and k.endswith("]")
            ]
            keys = [k for k, _ in cmd]
        if not 0 < len(keys) <= _MAX_COMMANDS:
            return 400, b'{"error":"INVALID_REQUEST","error_description":"No or too many commands"}'
        if self._limited():
            return 503, _QUERY_LIMIT
        if self.meter.blocked():
            self.blocked += 1
            return 429, _OPERATION_LIMIT
        self.commands += len(keys)
        self.executing = len(keys)
        self.executing_items = 0
        if self.lists.ids and any(v.partition("?")[0].endswith(".list") for _, v in cmd):
            return self._classic_lists(cmd)
        key_tuple = tuple(keys)
        parts = self._classic_results.get(key_tuple)
        if parts is None:
            names = [_dumps(k) for k in keys]
            timing = _dumps(
                {
                    "start": 1787219542.0,
                    "finish": 1787219542.01,
                    "duration": 0.01,
                    "processing": 0.01,
                    "date_start": "2026-08-20T11:52:22+03:00",
                    "date_finish": "2026-08-20T11:52:22+03:00",
                    "operating": 0,
                }
            )
            parts = (
                b",".join(n + b":" + self._classic_entry for n in names),
                b",".join(n + b":" + self._classic_total for n in names),
                b",".join(n + b":" + timing for n in names),
            )
            if len(self._classic_results) < 64:
                self._classic_results[key_tuple] = parts
        result, totals, times = parts
        return 200, (
            b'{"result":{"result":{'
            + result
            + b'},"result_error":[],"result_total":{'
            + totals
            + b'},"result_next":[],"result_time":{'
            + times
            + b'}},"time":'
            + TIME_MARK
            + b"}"
        )


class Lists:
    """The ids of the served list, ascending: dense ``1..N`` or N seeded random ids."""

    def __init__(self, count: int, *, sparse: bool) -> None:
        if sparse:
            self.ids = sorted(random.Random(16).sample(range(1, 100 * count + 1), count))
        else:
            self.ids = list(range(1, count + 1))

    def _span(self, low: int | None, high: int | None) -> tuple[int, int]:
        start = 0 if low is None else bisect.bisect_left(self.ids, low)
        stop = len(self.ids) if high is None else bisect.bisect_left(self.ids, high)
        return start, max(start, stop)

    def page(
        self, low: int | None, high: int | None, descending: bool, offset: int, limit: int
    ) -> list[int]:
        """The ids in ``[low, high)``, ordered, from ``offset``, at most ``limit``."""
        start, stop = self._span(low, high)
        if descending:
            return self.ids[max(start, stop - offset - limit) : stop - offset][::-1]
        return self.ids[start + offset : min(stop, start + offset + limit)]

    def count(self, low: int | None, high: int | None) -> int:
        start, stop = self._span(low, high)
        return stop - start


def _bounds(conditions: Any) -> tuple[int | None, int | None]:
    """``[low, high)`` from ``(operator, value)`` conditions on the id."""
    low: int | None = None
    high: int | None = None
    for op, value in conditions:
        value = int(value)
        if op in (">=", ">"):
            value += op == ">"
            low = value if low is None else max(low, value)
        elif op in ("<", "<="):
            value += op == "<="
            high = value if high is None else min(high, value)
        elif op == "=":
            low, high = value, value + 1
    return low, high


def _single_method(path: str) -> str | None:
    """The method of ``/rest/1/SECRET/METHOD(.json)``, unless it is ``batch``."""
    prefix = f"/rest/{USER_ID}/{SECRET}/"
    if not path.startswith(prefix):
        return None
    method = path[len(prefix) :].removesuffix(".json")
    return None if method == "batch" or "/" in method else method


def _params(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """A single call's params as PHP-style ``(key, value)`` pairs."""
    if "json" not in content_type:
        return parse_qsl(body.decode("utf-8"))
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}[{key}]" if prefix else str(key), inner)
        elif isinstance(value, list):
            for n, inner in enumerate(value):
                walk(f"{prefix}[{n}]", inner)
        else:
            pairs.append((prefix, str(value)))

    walk("", json.loads(body or b"{}"))
    return pairs


TIME_MARK: Final = b"\x00time\x00"
"""Where an answer's ``time`` block goes once the batch has run (its operating time is known)."""
_QUERY_LIMIT: Final = b'{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}'
_OPERATION_LIMIT: Final = (
    b'{"error":"OPERATION_TIME_LIMIT","error_description":"Method is blocked due to operation '
    b'time limit."}'
)


def _error3(code: str, message: str) -> bytes:
    return _dumps({"error": {"code": code, "message": message}})


def _time_block() -> bytes:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))
    return (
        b'{"start":%.6f,"finish":%.6f,"duration":0.000100,"processing":0.0001,"date_start":"%s",'
        b'"date_finish":"%s","operating_reset_at":%d,"operating":0.0001}'
        % (now, now + 0.0001, stamp.encode(), stamp.encode(), int(now) + 600)
    )


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: parse, answer in one write, repeat."""

    def __init__(self, portal: Portal) -> None:
        self._portal = portal
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._waiting = False  # a batch of this connection is running: answer it first

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None and not self._waiting:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            method, target, version = [*lines[0].split(" ", 2), "", ""][:3]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._reply(411, b'{"error":"LENGTH_REQUIRED"}', close=True)
                return
            size = int(headers.get("content-length") or 0)
            if len(self._buffer) < end + 4 + size:
                return
            body = bytes(self._buffer[end + 4 : end + 4 + size])
            del self._buffer[: end + 4 + size]
            status, payload = self._portal.handle(method, target, headers, body)
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            if TIME_MARK not in payload:
                self._reply(status, payload, close=close)
                continue
            commands = self._portal.executing
            delay = self._portal.delay(commands)
            if delay <= 0:
                self._finish(status, payload, commands, close)
                continue
            # The batch runs for a while, as on a real portal; other connections go on.
            self._waiting = True
            asyncio.get_running_loop().call_later(
                delay, self._finish, status, payload, commands, close
            )
            return

    def _finish(self, status: int, payload: bytes, commands: int, close: bool) -> None:
        portal = self._portal
        portal.meter.charge(portal.command_s * commands)  # time is known when the batch ends
        self._waiting = False
        if self._transport is None:
            return
        self._reply(status, payload.replace(TIME_MARK, portal.time_block(commands)), close=close)
        if self._buffer and self._transport is not None:
            self.data_received(b"")

    def _reply(self, status: int, payload: bytes, *, close: bool) -> None:
        transport = self._transport
        assert transport is not None
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(payload)}\r\n"
            f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
        ).encode("latin-1")
        transport.write(head + payload)  # one buffer, one send
        if close:
            transport.close()
            self._transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def serve(port: int, items_per_command: int, **slow: Any) -> None:
    """Listen on 127.0.0.1:``port`` (0: any free port), print ``PORT <n>``, serve forever."""
    portal = Portal(items_per_command, **slow)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(portal), "127.0.0.1", port, backlog=128)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """``python tests/benchmarks/server.py [--port N] [--items N]``; stops on SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--items", type=int, default=1, help="task items per command's answer")
    parser.add_argument("--command-ms", type=float, default=0.0, help="ms each command runs")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="ms each way")
    parser.add_argument("--operating-limit", type=float, help="seconds of operating time")
    parser.add_argument("--basket-s", type=float, default=60.0, help="seconds per basket")
    parser.add_argument("--list-items", type=int, default=0, help="items of the served list")
    parser.add_argument("--sparse", action="store_true", help="random ids up to 100 x items")
    parser.add_argument("--item-ms", type=float, default=0.0, help="ms per list item returned")
    args = parser.parse_args(argv)
    slow = {
        "command_s": args.command_ms / 1000,
        "latency_s": args.latency_ms / 1000,
        "operating_limit": args.operating_limit,
        "basket_s": args.basket_s,
        "list_items": args.list_items,
        "sparse": args.sparse,
        "item_s": args.item_ms / 1000,
    }
    try:
        asyncio.run(serve(args.port, args.items, **slow))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
