"""Throughput at the portal's limits: batches in flight against a slow, time-compressed portal.

``python -m tests.benchmarks.windows`` (``--quick``: one run each, ``--smoke``: seconds) runs
the scenarios below against ``server.py`` with per-command execution time, latency, the request
bucket and the operating-time limit in the portal's own terms, everything ten times faster than
a real portal, and rewrites the windows section of ``docs/benchmarks.md``. Every run checks that
exactly N commands were executed: a lost or repeated write fails the run. No timing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from tests.benchmarks.peers import PEERS, ensure_venv

__all__ = ["SCENARIOS", "Scenario", "main"]

HERE = Path(__file__).resolve().parent
DOC = HERE.parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- windows:begin -->", "<!-- windows:end -->"
BURST, PER_SECOND = 50, 20.0  # the common plan's 50 and 2/s, ten times faster
LATENCY_MS = 5.0  # each way


@attrs.frozen(kw_only=True)
class Scenario:
    """One workload: ``commands`` writes, each running ``command_ms`` on the portal."""

    name: str
    commands: int
    command_ms: float
    operating_limit: float | None = None  # seconds of operating time per ten baskets
    basket_s: float = 6.0  # ten baskets: a minute of a real portal's ten, compressed

    def minimum(self) -> float:
        """Seconds no client can beat: the bucket's drain, or the operating budget's, plus the
        last batch's own time; inside the burst, every batch at once.

        Spent operating time comes back only when its basket drops out, ten baskets later, so
        past the limit the best is to spend a whole budget at once and wait a whole window for
        each further budget's worth.
        """
        batches = math.ceil(self.commands / 50)
        one = 2 * LATENCY_MS / 1000 + 50 * self.command_ms / 1000
        bucket = max(0.0, batches - BURST) / PER_SECOND
        operating = 0.0
        if self.operating_limit is not None:
            total = self.commands * self.command_ms / 1000
            budgets = math.ceil(total / self.operating_limit)
            operating = max(0, budgets - 1) * 10 * self.basket_s
        return max(bucket, operating) + one


SCENARIOS = (
    Scenario(name="200-ms batches", commands=10_000, command_ms=4.0, operating_limit=48.0),
    Scenario(
        name="500-ms batches (operating time binds)",
        commands=10_000,
        command_ms=10.0,
        operating_limit=48.0,
    ),
    Scenario(name="50-ms batches", commands=10_000, command_ms=1.0, operating_limit=48.0),
    Scenario(name="2 000 writes (inside the burst)", commands=2_000, command_ms=4.0),
)
OURS = (
    ("b24batch", "1", False),
    ("b24batch", "auto", False),
    ("b24batch", "8", False),
    ("b24batch", "auto", True),
)
"""b24batch's runs: ``(client, max_in_flight, halt_on_error)``; the last is the default call."""


def our_label(size: str, halt: bool) -> str:
    """The table's name for one of b24batch's runs."""
    if halt:
        return f"b24batch `max_in_flight={size}`, `halt_on_error=True` (the default)"
    return f"b24batch `max_in_flight={size}`"


@contextlib.contextmanager
def slow_server(scenario: Scenario, extra: Sequence[str] = ()) -> Iterator[str]:
    """``server.py`` as slow as ``scenario`` says (and ``extra`` options); its base URL."""
    command = [
        sys.executable, str(HERE / "server.py"),
        "--command-ms", str(scenario.command_ms), "--latency-ms", str(LATENCY_MS),
        "--basket-s", str(scenario.basket_s), *extra,
    ]  # fmt: skip
    if scenario.operating_limit is not None:
        command += ["--operating-limit", str(scenario.operating_limit)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def _control(base: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(base + path, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=10) as answer:  # loopback only
        result: dict[str, Any] = json.loads(answer.read())
        return result


def run_one(
    python: str, client: str, in_flight: str, base: str, scenario: Scenario, halt: bool = False
) -> dict[str, Any]:
    """One run of one client: the client's figures and the server's counters."""
    _control(base, "_bench/reset", {"burst": BURST, "per_second": PER_SECOND})
    command = [
        python, str(HERE / "clients.py"), "window", client, "--base", base,
        "--commands", str(scenario.commands), "--in-flight", in_flight,
        "--burst", str(BURST), "--per-second", str(PER_SECOND),
    ]  # fmt: skip
    if scenario.operating_limit is not None:
        command += ["--operating-limit", str(scenario.operating_limit)]
    if halt:
        command.append("--halt")
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if done.returncode != 0 or not lines:
        return {
            "failure": (done.stderr or done.stdout)[-300:],
            "stats": _control(base, "_bench/stats"),
        }
    result: dict[str, Any] = json.loads(lines[-1].split(" ", 1)[1])
    result["stats"] = _control(base, "_bench/stats")
    return result


def table(
    scenarios: Sequence[Scenario], results: dict[str, dict[str, list[dict[str, Any]]]], runs: int
) -> str:
    """The markdown section: one row per scenario and client."""
    lines = [
        BEGIN,
        "### Throughput at the portal's limits (batches in flight)",
        "",
        f"Written by `python -m tests.benchmarks.windows`. A portal ten times faster than a real "
        f"one: bucket burst {BURST} draining {PER_SECOND:g}/s, {LATENCY_MS:g} ms each way, each "
        f"command running for the time the scenario says, batches running concurrently, the "
        f"operating time charged to `batch` when a batch ends. {runs} run(s) each; × minimum: "
        f"the median wall time over the theoretical minimum (the bucket's drain, or a whole "
        f"operating window for each budget past the first, plus one batch; inside the burst, "
        f"one batch). The wall times the call alone, from `make()` to its result, as the list "
        f"benchmark does; importing the client's library is its own column (a process pays it "
        f"once). Executed must equal the writes sent: anything else is a lost or repeated write.",
        "",
        "| scenario | client | × minimum | import (s) | 503s | 429s | executed | peak operating "
        "| note |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for scenario in scenarios:
        for label, outcome in results.get(scenario.name, {}).items():
            walls = [r["wall_s"] for r in outcome if "wall_s" in r and not r.get("failure")]
            stats = [r["stats"] for r in outcome]
            executed = {s["commands"] for s in stats}
            failures = [r["failure"] for r in outcome if r.get("failure")]
            ratio = f"{statistics.median(walls) / scenario.minimum():.2f}" if walls else "—"
            imports = [r["import_s"] for r in outcome if "import_s" in r]
            imported = f"{statistics.median(imports):.2f}" if imports else "—"
            wrong = "" if executed == {scenario.commands} else " **wrong**"
            peak = max(s["peak_operating"] for s in stats)
            note = f"failed: {failures[0]}" if failures else ""
            lines.append(
                f"| {scenario.name} | {label} | {ratio} | {imported} | "
                f"{sum(s['refused'] for s in stats)} | "
                f"{sum(s['blocked'] for s in stats)} | "
                f"{'/'.join(str(e) for e in sorted(executed))} of {scenario.commands}{wrong} | "
                f"{peak:g} s"
                f"{'' if scenario.operating_limit is None else f' of {scenario.operating_limit:g}'}"
                f" | {note.replace('|', '/')} |"
            )
    return "\n".join([*lines, "", END]) + "\n"


def write_doc(section: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenarios and write the section; see ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.windows")
    parser.add_argument("--quick", action="store_true", help="one run each")
    parser.add_argument("--smoke", action="store_true", help="tiny workloads, b24batch only")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--out", type=Path, help="write the section here, not into the doc")
    parser.add_argument(
        "--only", action="append", default=[], help="run the clients whose label has this text"
    )
    parser.add_argument(
        "--scenario", action="append", default=[], help="run the scenarios whose name has this"
    )
    args = parser.parse_args(argv)
    runs = 1 if args.quick or args.smoke else 3
    scenarios = tuple(
        s for s in SCENARIOS if not args.scenario or any(text in s.name for text in args.scenario)
    )
    if args.smoke:
        scenarios = tuple(attrs.evolve(s, commands=100) for s in scenarios)
    clients = [
        (sys.executable, name, size, halt, our_label(size, halt)) for name, size, halt in OURS
    ]
    if not (args.no_peers or args.smoke):
        labels = {
            "fast_bitrix24": "fast_bitrix24 `call()`",
            "bitrix24-api-client": "bitrix24-api-client `AsyncBitrix24Client` (10 in flight)",
        }
        for peer in PEERS:
            if peer.name in labels:
                with contextlib.suppress(RuntimeError, OSError):
                    python = str(ensure_venv(peer))
                    clients.append((python, peer.name, "-", False, labels[peer.name]))
    if args.only:
        clients = [c for c in clients if any(text in c[-1] for text in args.only)]
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for scenario in scenarios:
        with slow_server(scenario) as base:
            for python, name, size, halt, label in clients:
                outcome = [run_one(python, name, size, base, scenario, halt) for _ in range(runs)]
                results.setdefault(scenario.name, {})[label] = outcome
                print(
                    f"{scenario.name}: {label}: {[r.get('wall_s') for r in outcome]}",
                    file=sys.stderr,
                )
    section = table(scenarios, results, runs)
    if args.out is not None:
        args.out.write_text(section, encoding="utf-8")
    elif not args.smoke:
        write_doc(section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
