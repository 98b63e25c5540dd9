"""Many processes through one limit store: spawned clients against one portal's bucket.

``run_processes`` starts N spawned processes that each send B one-command batches through
their own client to one FakePortal, all sharing one store (or each keeping its limits in
process memory, the default), and counts what the portal answered. The tests assert the
counts; ``python -m tests.benchmarks.stores`` also prints the wall time against the bucket's
theoretical minimum for each store (a benchmark figure, never asserted).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from b24batch import (
    B24Error,
    B24Hook,
    BatchV3,
    LimitStore,
    RateLimit,
    RateLimitError,
    RedisStore,
    RetryPolicy,
    SQLiteStore,
)
from b24batch.testing import FakePortal

__all__ = ["Outage", "Run", "StoreSpec", "make_store", "run_outage", "run_processes"]

StoreSpec = tuple[str, str | None]
"""``("memory", None)``, ``("sqlite", path)`` or ``("redis", url)``: picklable, for a child."""

CALLS = [("tasks.task.list", {"select": ["id"]})]
JOIN_TIMEOUT = 120.0


@attrs.frozen
class Run:
    """What one run's processes saw: batches answered, refused with 503, failed otherwise."""

    ok: int
    refused: int
    other: int
    wall: float


def make_store(spec: StoreSpec) -> LimitStore | None:
    """The store a spec names (made in the process that uses it)."""
    kind, where = spec
    if kind == "memory":
        return None
    assert where is not None
    return SQLiteStore(where) if kind == "sqlite" else RedisStore(where)


def _child(
    url: str,
    spec: StoreSpec,
    batches: int,
    limit: tuple[int, float],
    barrier: Any,
    out: Any,
) -> None:
    store = make_store(spec)
    options: dict[str, Any] = {} if store is None else {"limit_store": store}
    hook = B24Hook.from_webhook_url(
        url,
        retry=None,  # a 503 raises, so each one is counted
        rate_limit=RateLimit(burst=limit[0], per_second=limit[1]),
        **options,
    )
    ok = refused = other = 0
    barrier.wait(timeout=JOIN_TIMEOUT)
    for _ in range(batches):
        try:
            BatchV3(hook).make(CALLS)
        except RateLimitError as error:
            refused += error.status == 503
            other += error.status != 503
        except B24Error:
            other += 1
        else:
            ok += 1
    hook.close()
    out.put((ok, refused, other, time.monotonic()))  # one clock for every process on Linux


def run_processes(
    url: str, spec: StoreSpec, *, processes: int = 4, batches: int = 50, limit: tuple[int, float]
) -> Run:
    """Spawn ``processes`` clients, start them together, and add up what they saw."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    out = context.Queue()
    children = [
        context.Process(target=_child, args=(url, spec, batches, limit, barrier, out))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    try:
        barrier.wait(timeout=JOIN_TIMEOUT)
        started = time.monotonic()
        results = [out.get(timeout=JOIN_TIMEOUT) for _ in children]
    finally:
        for child in children:
            child.join(timeout=JOIN_TIMEOUT)
            if child.is_alive():
                child.kill()
                child.join(timeout=5)
    return Run(
        ok=sum(r[0] for r in results),
        refused=sum(r[1] for r in results),
        other=sum(r[2] for r in results),
        wall=max(r[3] for r in results) - started,
    )


@attrs.frozen
class Outage:
    """What the processes of one outage run saw: batches answered, batches that raised, and
    the 503s the portal answered (each one retried, or raised)."""

    ok: int
    raised: int
    refused: int


def _outage_child(
    url: str,
    spec: StoreSpec,
    limit: tuple[int, float],
    barrier: Any,
    stop: Any,
    out: Any,
) -> None:
    store = make_store(spec)
    assert store is not None
    store.recheck, store.timeout = 0.3, 0.5  # an outage of seconds, not of minutes
    hook = B24Hook.from_webhook_url(
        url,
        retry=RetryPolicy(max_attempts=3, max_wait=5.0),  # the default's shape, a run's scale
        rate_limit=RateLimit(burst=limit[0], per_second=limit[1]),
        limit_store=store,
    )
    ok = raised = refused = 0
    barrier.wait(timeout=JOIN_TIMEOUT)
    while not stop.is_set():
        try:
            result = BatchV3(hook).make(CALLS)
        except B24Error as error:
            raised += 1
            refused += error.attempts if error.status == 503 else max(0, error.attempts - 1)
        else:
            ok += 1
            refused += result.attempts - 1  # the portal's only fault here: 503, retried
    hook.close()
    out.put((ok, raised, refused))


def run_outage(
    url: str,
    spec: StoreSpec,
    *,
    outage: Callable[[], None],
    comeback: Callable[[], None],
    processes: int = 4,
    limit: tuple[int, float],
    before: float = 1.0,
    during: float = 2.0,
    after: float = 1.5,
) -> Outage:
    """``processes`` spawned clients send batches through one store for ``before`` seconds,
    through ``outage()`` (the store goes away) for ``during``, and after ``comeback()`` for
    ``after``; then they stop and add up what they saw."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    stop = context.Event()
    out = context.Queue()
    children = [
        context.Process(target=_outage_child, args=(url, spec, limit, barrier, stop, out))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    try:
        barrier.wait(timeout=JOIN_TIMEOUT)
        time.sleep(before)
        outage()
        time.sleep(during)
        comeback()
        time.sleep(after)
        stop.set()
        results = [out.get(timeout=JOIN_TIMEOUT) for _ in children]
    finally:
        stop.set()
        for child in children:
            child.join(timeout=JOIN_TIMEOUT)
            if child.is_alive():
                child.kill()
                child.join(timeout=5)
    return Outage(
        ok=sum(r[0] for r in results),
        raised=sum(r[1] for r in results),
        refused=sum(r[2] for r in results),
    )


@contextmanager
def _stores(folder: Path) -> Iterator[dict[str, StoreSpec]]:
    from tests.support.redis_server import RedisServer

    server = RedisServer()
    server.start()
    try:
        yield {
            "in-process (default)": ("memory", None),
            "SQLiteStore": ("sqlite", str(folder / "limits.sqlite3")),
            "RedisStore": ("redis", server.url),
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Print the table row per store: N processes x B batches, x the minimum, 503s."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    burst, per_second = 50, 20.0
    total = args.processes * args.batches
    minimum = max(0, total - burst) / per_second
    print(
        f"{args.processes} processes x {args.batches} batches, portal bucket burst {burst} "
        f"draining {per_second:g}/s: least possible {minimum:.2f} s"
    )
    print("| store | processes × batches | wall (median) | × minimum | 503s (per run) |")
    print("| --- | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder, _stores(Path(folder)) as stores:
        for label, spec in stores.items():
            walls, refused = [], []
            for n in range(args.runs):
                if spec[0] == "sqlite":
                    spec = ("sqlite", str(Path(folder) / f"limits-{n}.sqlite3"))
                with FakePortal(rate_limit=(burst, per_second)) as portal:
                    run = run_processes(
                        portal.webhook_url,
                        spec,
                        processes=args.processes,
                        batches=args.batches,
                        limit=(burst, per_second),
                    )
                walls.append(run.wall)
                refused.append(run.refused)
                time.sleep(burst / per_second)  # let a shared Redis bucket drain between runs
            wall = statistics.median(walls)
            print(
                f"| {label} | {args.processes} × {args.batches} | {wall:.2f} s | "
                f"{wall / minimum:.3f}× | {', '.join(map(str, refused))} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
