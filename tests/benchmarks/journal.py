"""What a journal costs: wall time against the same job without one, and its size on disk.

``python -m tests.benchmarks.journal`` runs a job of 50-command chunks against a FakePortal (in a
process of its own, so its work is not the client's) that waits ``--latency`` (200 ms) before
every batch, with a window of 16, with and without a
journal (alternating, ``--rounds`` each), and times the journal's own work per chunk (its
``stored``/``sending``/``answered`` steps, each a transaction with ``synchronous=FULL``). Then it
runs ``--size`` commands (100 000) with no latency and reports the journal file's size. Rewrites
the journal section of ``docs/benchmarks.md``; ``--smoke`` is a few seconds and writes nothing.
Nothing is asserted: it measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from b24batch import B24Hook, BatchByChunkV3
from b24batch._engine.journal import Journal

HERE = Path(__file__).resolve().parent
DOC = HERE.parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- journal:begin -->", "<!-- journal:end -->"
STEPS = ("stored", "sending", "answered")


def _rows(count: int) -> list[Any]:
    return [("tasks.task.add", {"fields": {"title": f"Imported task {n}"}}) for n in range(count)]


@contextmanager
def _portal(latency: float) -> Iterator[str]:
    """A FakePortal in a process of its own; its webhook URL."""
    code = (
        "import sys, threading\n"
        "from b24batch.testing import FakePortal\n"
        f"portal = FakePortal(latency={latency!r}).start()\n"
        "print(portal.webhook_url, flush=True)\n"
        "sys.stdin.readline()\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        server.communicate("\n", timeout=30)


@contextmanager
def _timed_steps() -> Iterator[dict[str, list[float]]]:
    """Time every journal step, from whichever thread takes it."""
    spent: dict[str, list[float]] = {step: [] for step in STEPS}
    lock = threading.Lock()
    originals = {step: getattr(Journal, step) for step in STEPS}

    def timing(step: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(self: Journal, *args: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(self, *args)
            finally:
                with lock:
                    spent[step].append(time.perf_counter() - start)

        return timed

    for step, method in originals.items():
        setattr(Journal, step, timing(step, method))
    try:
        yield spent
    finally:
        for step, method in originals.items():
            setattr(Journal, step, method)


def _run(url: str, rows: list[Any], journal: Path | None) -> float:
    with B24Hook.from_webhook_url(url, rate_limit=None, retry=None) as b24:
        start = time.perf_counter()
        result = BatchByChunkV3(b24).make(
            rows, journal=journal, max_in_flight=16, halt_on_error=False
        )
        wall = time.perf_counter() - start
    if not result.is_success or len(result.data) != len(rows):
        raise RuntimeError(f"the run lost commands: {result!r}")
    return wall


def cost(chunks: int, latency: float, rounds: int) -> dict[str, Any]:
    """Median wall time with and without a journal, and the journal's steps per chunk."""
    rows = _rows(chunks * 50)
    walls: dict[str, list[float]] = {"without": [], "with": []}
    per_chunk: list[float] = []
    steps: dict[str, list[float]] = {step: [] for step in STEPS}
    with _portal(latency) as url, tempfile.TemporaryDirectory() as folder:
        _run(url, rows[:800], None)  # warm: imports, connections
        for number in range(rounds):
            walls["without"].append(_run(url, rows, None))
            with _timed_steps() as spent:
                walls["with"].append(_run(url, rows, Path(folder) / f"{number}"))
            per_chunk.append(sum(sum(times) for times in spent.values()) / chunks)
            for step, times in spent.items():
                steps[step].extend(times)
    without, with_ = statistics.median(walls["without"]), statistics.median(walls["with"])
    return {
        "chunks": chunks,
        "latency": latency,
        "without": without,
        "with": with_,
        "overhead": (with_ - without) / without,
        "per_chunk_ms": statistics.median(per_chunk) * 1000,
        "walls": walls,
        "steps_ms": {step: statistics.median(times) * 1000 for step, times in steps.items()},
    }


def size(commands: int) -> dict[str, Any]:
    """The journal of a job of ``commands`` task adds, on disk after the job."""
    rows = _rows(commands)
    with _portal(0.0) as url, tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "size.journal"
        start = time.perf_counter()
        _run(url, rows, path)
        wall = time.perf_counter() - start
        files = {p.name: p.stat().st_size for p in Path(folder).iterdir()}
    total = sum(files.values())
    return {"commands": commands, "bytes": total, "per_command": total / commands, "wall": wall}


def table(spent: dict[str, Any], disk: dict[str, Any]) -> str:
    day = dt.date.today().isoformat()
    lines = [
        f"### The journal ({spent['chunks']} chunks of 50, "
        f"{spent['latency'] * 1000:.0f} ms per batch, window of 16)",
        "",
        f"Measured {day} with `python -m tests.benchmarks.journal`.",
        "",
        "| run | wall (median) | journal steps per chunk |",
        "| --- | ---: | ---: |",
        f"| without a journal | {spent['without']:.2f} s | — |",
        f"| with a journal | {spent['with']:.2f} s | {spent['per_chunk_ms']:.2f} ms |",
        "",
        "Median time of each step, waits for the other threads included: "
        + ", ".join(f"`{step}` {ms:.2f} ms" for step, ms in spent["steps_ms"].items())
        + ". Only `sending` delays a request: the rest overlaps the portal's wait.",
        "",
        f"Wall-time overhead: {spent['overhead'] * 100:+.1f} % (target: under 2 %; runs "
        f"without: {_seconds(spent['walls']['without'])}, with: "
        f"{_seconds(spent['walls']['with'])}). A chunk's steps are reading its state, "
        "`sending` (on the disk before the request leaves: `synchronous=FULL`, one commit for "
        "the chunks leaving together) and `answered` (not waiting for the disk); the time per "
        "chunk includes waiting for the other threads' steps, and overlaps the portal's 200 ms.",
        "",
        f"Size: {disk['commands']:,} task adds ({disk['commands'] // 50:,} chunks) leave a "
        f"journal of {disk['bytes'] / 1e6:.1f} MB, {disk['per_command']:.0f} bytes per "
        "command (the portal's answer to each command is kept: here a whole task).",
        "",
    ]
    return "\n".join(lines)


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def main(argv: list[str] | None = None) -> None:
    """Measure, print, and write the section into docs/benchmarks.md (not with ``--smoke``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.chunks, args.latency, args.rounds, args.size = 8, 0.01, 1, 500
    section = table(cost(args.chunks, args.latency, args.rounds), size(args.size))
    sys.stdout.write(section)
    if not args.smoke:
        text = DOC.read_text(encoding="utf-8")
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        DOC.write_text(f"{head}{BEGIN}\n{section}{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
