"""One measured client in one process: ``python tests/benchmarks/clients.py MODE CLIENT ...``.

Run by the harness with the interpreter of the client's own virtual environment (a peer's, or
the one b24batch is installed in), so every client is measured alone and nothing of the
harness or of another client is imported. Stdlib at the top; each client's library is imported
only when that client is built. The last line of stdout is ``BENCH-RESULT <json>``.

Modes:
    overhead: warm up, then time N sequential 50-command batches (``perf_counter_ns`` each).
    throughput: send C commands in 50-command batches under the client's own rate limiter.
    memory: b24batch's chunked iterator over C commands from a generator; peak RSS.
    profile: cProfile over N b24batch batches; the top functions by own time, as text.
    planning: plan (validate, group, encode) C commands for ``BatchByChunkV3.make``; no I/O.
    window: send C writes through a chunked call (b24batch with ``--in-flight``, or a peer's
        own parallel call) against a slow portal; wall time, retries seen, errors.
"""

# No ``from __future__ import annotations``: the typed model below is built inside a function,
# and cattrs must see its annotations as real objects.

import argparse
import asyncio
import gc
import importlib
import importlib.metadata
import json
import resource
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

SECRET = "benchSecret42"  # the server's (tests/benchmarks/server.py); not a credential
BATCH_SIZE = 50
TASK_SELECT = [
    "id", "title", "description", "creatorId", "responsibleId", "groupId", "status", "priority",
    "deadline", "created", "changed", "closed", "stageId", "timeEstimate", "allowChangeDeadline",
]  # fmt: skip

OneBatch = Callable[[], int]
"""Sends one batch and returns how many command results came back."""


def rest3_calls(start: int, count: int) -> list[tuple[str, dict[str, Any]]]:
    """``count`` REST 3.0 ``tasks.task.list`` commands, one task id each."""
    return [
        ("tasks.task.list", {"select": TASK_SELECT, "filter": [["id", "=", start + i]]})
        for i in range(count)
    ]


def classic_cmd(start: int, count: int) -> dict[str, str]:
    """The same commands as a classic ``cmd`` mapping of ``"method?query"`` strings."""
    select = "&".join(f"select[{i}]={quote(f)}" for i, f in enumerate(TASK_SELECT))
    return {f"t{i}": f"tasks.task.list?{select}&filter[ID]={start + i}" for i in range(count)}


def _typed_page() -> type:
    """attrs classes for one ``tasks.task.list`` entry, camelCase wire keys read via alias."""
    import attrs

    @attrs.frozen
    class Task:
        id: int
        title: str
        description: str
        creator_id: int = attrs.field(alias="creatorId")
        responsible_id: int = attrs.field(alias="responsibleId")
        group_id: int | None = attrs.field(alias="groupId")
        status: str
        priority: str
        deadline: str | None
        created: str
        changed: str
        closed: str | None
        stage_id: int = attrs.field(alias="stageId")
        time_estimate: int = attrs.field(alias="timeEstimate")
        allow_change_deadline: bool = attrs.field(alias="allowChangeDeadline")

    @attrs.frozen
    class TaskPage:
        items: list[Task]

    return TaskPage


def build(client: str, base: str, *, limited: bool, burst: int, per_second: float) -> OneBatch:
    """Make ``client`` bound to the server at ``base`` (``http://127.0.0.1:PORT/``).

    ``limited`` turns the client's own rate limiter on at ``burst`` / ``per_second`` (for
    the throughput figure) where it has one; otherwise it is off (or out of reach).
    """
    if client in ("requests", "requests-no-env"):
        requests = importlib.import_module("requests")
        session = requests.Session()
        # The reference row: requests without its per-request environment look-ups
        # (proxy variables, ~/.netrc, CA-bundle variables).
        session.trust_env = client == "requests"
        url = f"{base}rest/api/1/{SECRET}/batch"
        body = [{"method": m, "query": q, "parallel": False} for m, q in rest3_calls(1, BATCH_SIZE)]

        def floor() -> int:
            return len(session.post(url, json=body).json()["result"])

        return floor
    if client == "requests-form":
        # The classic floor: one form POST of the same commands, and .json().
        requests = importlib.import_module("requests")
        session = requests.Session()
        url = f"{base}rest/1/{SECRET}/batch"
        form = "&".join(
            ["halt=1"]
            + [f"cmd[{k}]={quote(v, safe='')}" for k, v in classic_cmd(1, BATCH_SIZE).items()]
        ).encode("ascii")
        headers = {"Content-Type": "application/x-www-form-urlencoded"}

        def form_floor() -> int:
            return len(session.post(url, data=form, headers=headers).json()["result"]["result"])

        return form_floor
    if client == "b24batch-v2":
        b24batch = importlib.import_module("b24batch")
        rate = b24batch.RateLimit(burst=burst, per_second=per_second) if limited else None
        hook = b24batch.B24Hook.from_webhook_url(
            f"{base}rest/1/{SECRET}/", rate_limit=rate, retry=b24batch.RetryPolicy()
        )
        classic = b24batch.BatchV2(hook)
        named = {
            f"t{i}": ("tasks.task.list", {"select": TASK_SELECT, "filter": {"ID": 1 + i}})
            for i in range(BATCH_SIZE)
        }

        def b24_v2() -> int:
            return len(classic.make(named).data)

        return b24_v2
    if client in ("b24batch", "b24batch-typed"):
        b24batch = importlib.import_module("b24batch")
        rate = b24batch.RateLimit(burst=burst, per_second=per_second) if limited else None
        hook = b24batch.B24Hook.from_webhook_url(
            f"{base}rest/1/{SECRET}/", rate_limit=rate, retry=b24batch.RetryPolicy()
        )
        batch = b24batch.BatchV3(hook)
        calls = rest3_calls(1, BATCH_SIZE)
        result_type = _typed_page() if client == "b24batch-typed" else None

        def b24() -> int:
            return len(batch.make(calls, result_type=result_type).data)

        return b24
    if client == "fast_bitrix24":
        fast = importlib.import_module("fast_bitrix24")
        # Its leaky bucket cannot be switched off; a pool it never fills takes it out of the
        # way. respect_velocity_policy stays on: off, it fails on answers that report
        # time.operating (a KeyError in add_throttler_records).
        bitrix = fast.Bitrix(
            f"{base}rest/1/{SECRET}/",
            verbose=False,
            request_pool_size=burst if limited else 10**9,
            requests_per_second=per_second if limited else 10.0**9,
        )
        params = {"halt": 0, "cmd": classic_cmd(1, BATCH_SIZE)}

        def fast_batch() -> int:
            return len(bitrix.call_batch(params))

        return fast_batch
    if client == "bitrix24-api-client":
        module = importlib.import_module("bitrix24_client")
        api = module.Bitrix24Client(base_url=base, access_token=SECRET, user_id=1)
        api.open_session()
        params = {"halt": 0, "cmd": classic_cmd(1, BATCH_SIZE)}

        def api_batch() -> int:
            return len(api.call_method("batch", params))

        return api_batch
    raise SystemExit(f"unknown client {client!r}")


DISTRIBUTIONS = {
    "requests": ("requests", "urllib3"),
    "requests-no-env": ("requests", "urllib3"),
    "requests-form": ("requests", "urllib3"),
    "b24batch-v2": ("b24batch", "requests", "urllib3", "attrs", "cattrs"),
    "b24batch": ("b24batch", "requests", "urllib3", "attrs", "cattrs"),
    "b24batch-typed": ("b24batch", "requests", "urllib3", "attrs", "cattrs"),
    "fast_bitrix24": ("fast_bitrix24", "aiohttp"),
    "bitrix24-api-client": ("bitrix24-api-client", "requests", "urllib3"),
}


def versions(client: str) -> dict[str, str]:
    """The installed versions of the distributions that make up ``client``."""
    found = {"python": sys.version.split()[0]}
    for name in DISTRIBUTIONS.get(client, ()):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "?"
    return found


def overhead(one: OneBatch, batches: int, warmup: int) -> dict[str, Any]:
    """Time ``batches`` sequential batches after ``warmup`` untimed ones."""
    for _ in range(warmup):
        _check(one())
    gc.collect()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(batches):
        started = clock()
        got = one()
        samples.append(clock() - started)
        _check(got)
    return {"samples_ns": samples}


def throughput(one: OneBatch, commands: int) -> dict[str, Any]:
    """Send ``commands`` in full batches back to back; wall time of the whole run."""
    batches = -(-commands // BATCH_SIZE)
    started = time.perf_counter_ns()
    for _ in range(batches):
        _check(one())
    return {"wall_s": (time.perf_counter_ns() - started) / 1e9, "batches": batches}


def memory(base: str, commands: int) -> dict[str, Any]:
    """Peak RSS while b24batch's chunked iterator runs ``commands`` commands from a generator."""
    b24batch = importlib.import_module("b24batch")
    chunked = getattr(b24batch, "BatchByChunkV3", None)
    if chunked is None:
        return {"skipped": "b24batch has no BatchByChunkV3 yet"}
    hook = b24batch.B24Hook.from_webhook_url(
        f"{base}rest/1/{SECRET}/", rate_limit=None, retry=b24batch.RetryPolicy()
    )

    def calls(count: int) -> Iterator[tuple[str, dict[str, Any]]]:
        for i in range(count):
            yield ("tasks.task.list", {"select": TASK_SELECT, "filter": [["id", "=", i + 1]]})

    for result in chunked(hook).iter(calls(BATCH_SIZE), chunk_size=BATCH_SIZE):  # warm-up
        _check(len(result.data))
    gc.collect()
    baseline = _max_rss_kb()
    done = 0
    started = time.perf_counter_ns()
    for result in chunked(hook).iter(calls(commands), chunk_size=BATCH_SIZE):
        done += len(result.data)
    wall = (time.perf_counter_ns() - started) / 1e9
    if done != commands:
        raise SystemExit(f"the iterator returned {done} results for {commands} commands")
    return {"baseline_kb": baseline, "peak_kb": _max_rss_kb(), "wall_s": wall}


def profile(one: OneBatch, batches: int, top: int) -> dict[str, Any]:
    """cProfile over ``batches`` batches; the ``top`` functions by own time, and by cumulative."""
    import cProfile
    import io
    import pstats

    for _ in range(20):
        _check(one())
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(batches):
        one()
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return {"report": text.getvalue()}


_WINDOW_MODULES = {
    "b24batch": "b24batch",
    "fast_bitrix24": "fast_bitrix24",
    "bitrix24-api-client": "bitrix24_client",
}


def window(
    client: str,
    base: str,
    *,
    commands: int,
    in_flight: str,
    burst: int,
    per_second: float,
    operating_limit: float | None,
    halt: bool = False,
) -> dict[str, Any]:
    """Send ``commands`` writes as fast as the client goes; its own limiters on (b24batch with
    ``halt_on_error=halt``).

    The wall times the call alone, as the list benchmark does: the client's library is imported
    and its client built before the clock starts, and the import is reported on its own
    (``import_s``), since a process pays it once, not once per job.
    """
    rows = [("tasks.task.add", {"fields": {"title": f"T{n}"}}) for n in range(commands)]
    if client not in _WINDOW_MODULES:
        raise SystemExit(f"no window mode for {client!r}")
    imported = time.perf_counter()
    library = importlib.import_module(_WINDOW_MODULES[client])
    import_s = time.perf_counter() - imported
    failure = None
    if client == "b24batch":
        b24batch = library
        options: dict[str, Any] = {"burst": burst, "per_second": per_second}
        if operating_limit is not None:
            # The margin and the reset's slack, compressed as the portal is (the server reports
            # its reset in tenths of a second: a real portal's whole seconds, ten times faster).
            options.update(
                operating_limit=operating_limit,
                operating_margin=operating_limit / 16,
                operating_reset_slack=0.1,
            )
        hook = b24batch.B24Hook.from_webhook_url(
            f"{base}rest/1/{SECRET}/",
            rate_limit=b24batch.RateLimit(**options),
            retry=b24batch.RetryPolicy(max_attempts=5, max_wait=600.0),
        )
        size: Any = in_flight if in_flight == "auto" else int(in_flight)
        started = time.perf_counter()
        try:
            result = b24batch.BatchByChunkV3(hook).make(
                rows, halt_on_error=halt, max_in_flight=size
            )
            got = len(result.data)
        except b24batch.B24Error as error:
            got, failure = -1, f"{type(error).__name__}: {error}"[:200]
    elif client == "fast_bitrix24":
        bitrix = library.Bitrix(
            f"{base}rest/1/{SECRET}/",
            verbose=False,
            request_pool_size=burst,
            requests_per_second=per_second,
        )
        started = time.perf_counter()
        try:
            got = len(bitrix.call("tasks.task.add", [params for _, params in rows]))
        except Exception as error:  # the peer's own failure, reported as such
            got, failure = -1, f"{type(error).__name__}: {error}"[:200]
    else:  # bitrix24-api-client
        started = time.perf_counter()
        got, failure = asyncio.run(_api_client_window(library, base, commands))
    wall = time.perf_counter() - started
    return {"wall_s": wall, "import_s": import_s, "results": got, "failure": failure}


async def _api_client_window(module: Any, base: str, commands: int) -> tuple[int, str | None]:
    """bitrix24-api-client's async form: every classic batch of 50 gathered at once, its own
    semaphore keeping 10 requests in flight (its default), 503s repeated by its own strategy;
    it has no request-rate or operating-time limiter."""
    cmds = [
        {f"c{n}": f"tasks.task.add?fields[TITLE]=T{n}" for n in range(start, start + 50)}
        for start in range(0, commands, 50)
    ]
    async with module.AsyncBitrix24Client(base_url=base, access_token=SECRET, user_id=1) as api:
        calls = [api.call_method("batch", {"halt": 0, "cmd": cmd}) for cmd in cmds]
        try:
            answers = await asyncio.gather(*calls)
        except Exception as error:  # the peer's own failure, reported as such
            return -1, f"{type(error).__name__}: {error}"[:200]
    return sum(len(answer) for answer in answers), None


def planning(commands: int) -> dict[str, Any]:
    """Seconds b24batch spends planning ``commands`` rows into chunks, as ``make()`` does."""
    options_module = importlib.import_module("b24batch._engine.call_options")
    planning_module = importlib.import_module("b24batch._engine.plan")
    v3 = importlib.import_module("b24batch._protocols.v3").V3
    options = options_module.CallOptions.checked(
        v3, chunk_size=50, halt_on_error=True, request_id="bench"
    )
    rows = [(n, ("tasks.task.get", {"id": n + 1})) for n in range(commands)]
    started = time.perf_counter()
    chunks = list(planning_module.plan(iter(rows), named=False, options=options, protocol=v3))
    return {"wall_s": time.perf_counter() - started, "chunks": len(chunks)}


def _max_rss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def _check(got: int) -> None:
    if got != BATCH_SIZE:
        raise SystemExit(f"a batch returned {got} results, expected {BATCH_SIZE}")


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run one mode, print ``BENCH-RESULT <json>``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "mode", choices=["overhead", "throughput", "memory", "profile", "window", "planning"]
    )
    parser.add_argument("client")
    parser.add_argument("--base", required=True, help="http://127.0.0.1:PORT/")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--per-second", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--in-flight", default="auto")
    parser.add_argument("--operating-limit", type=float)
    parser.add_argument("--halt", action="store_true", help="window: halt_on_error=True")
    args = parser.parse_args(argv)
    result: dict[str, Any]
    if args.mode == "planning":
        result = planning(args.commands)
    elif args.mode == "window":
        result = window(
            args.client,
            args.base,
            commands=args.commands,
            in_flight=args.in_flight,
            burst=args.burst,
            per_second=args.per_second,
            operating_limit=args.operating_limit,
            halt=args.halt,
        )
    elif args.mode == "memory":
        result = memory(args.base, args.commands)
    else:
        limited = args.mode == "throughput"
        one = build(
            args.client, args.base, limited=limited, burst=args.burst, per_second=args.per_second
        )
        if args.mode == "overhead":
            result = overhead(one, args.batches, args.warmup)
        elif args.mode == "throughput":
            result = throughput(one, args.commands)
        else:
            result = profile(one, args.batches, args.top)
    result["versions"] = versions(args.client)
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
