"""The benchmark harness: start the loopback server, run every client in its own process, report.

``python -m tests.benchmarks`` runs the whole set (about 2 minutes, plus the peers' one-time
installs) and rewrites the results section of ``docs/benchmarks.md``; ``--quick`` runs fewer
rounds, ``--no-peers`` measures b24batch and the floor alone, ``--smoke`` is the few-second run
the test suite makes, ``--profile`` prints cProfile's view of b24batch's hot path. Nothing here
asserts a timing: it measures and writes tables.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from tests.benchmarks.peers import PEERS, Peer, cache_dir, ensure_venv

__all__ = ["Settings", "main"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
COMMAND = "python -m tests.benchmarks"
FLOOR = "requests"
REFERENCE = "requests-no-env"
OURS = ("b24batch", "b24batch-typed")
FLOOR_V2 = "requests-form"
OURS_V2 = ("b24batch-v2",)
BATCH = 50
MEMORY_TARGET_MIB = 10.0
LABELS = {
    FLOOR: "floor: `requests.Session().post(json=…)` + `.json()`",
    REFERENCE: "reference: the floor with `session.trust_env = False`",
    "b24batch": "b24batch `BatchV3.make` (plain data)",
    "b24batch-typed": "b24batch `make(result_type=…)` (attrs via cattrs)",
    FLOOR_V2: "classic floor: `requests.Session().post(data=form)` + `.json()`",
    "b24batch-v2": "b24batch `BatchV2.make` (classic, plain data)",
}
LIMITERS = {
    "b24batch": "`RateLimit(burst, per_second)`",
    "fast_bitrix24": "`request_pool_size`, `requests_per_second`",
    "bitrix24-api-client": "none; sleeps 2.5 s, 5 s, … after a 503",
}


@attrs.frozen(kw_only=True)
class Settings:
    """How much to run.

    Attributes:
        runs: Rounds of the overhead figure (each client once per round, order rotated).
        batches: Timed batches per client per round.
        warmup: Untimed batches first, in the same process.
        throughput_runs: Runs of the throughput figure per client.
        commands: Commands in one throughput run.
        burst: The server's (and the limiters') bucket size.
        per_second: Its drain rate.
        memory_sizes: Command counts for the memory figure.
        memory_runs: Runs per size.
        planning_sizes: Command counts for the planning figure (SDK time, no I/O).
        peers: Whether to measure the peers.
        items: Task items in each command's answer (1: 50 per batch, as in the issue).
        label: How the run is named in the doc.
    """

    runs: int = 7
    batches: int = 300
    warmup: int = 30
    throughput_runs: int = 3
    commands: int = 10_000
    burst: int = 50
    per_second: float = 20.0
    memory_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    memory_runs: int = 3
    planning_sizes: tuple[int, ...] = (20_000, 200_000)
    peers: bool = True
    items: int = 1
    label: str = "full"


QUICK = Settings(
    runs=3, batches=150, warmup=20, throughput_runs=1, commands=5_000, memory_runs=1, label="quick"
)
SMOKE = Settings(
    runs=1, batches=5, warmup=2, throughput_runs=1, commands=300, burst=2, per_second=100.0,
    memory_sizes=(100, 300), memory_runs=1, planning_sizes=(500,), peers=False, label="smoke",
)  # fmt: skip


@attrs.frozen
class Client:
    """A client to measure: its name in ``clients.py`` and the interpreter it runs with."""

    name: str
    python: str
    peer: Peer | None = None


# --- processes -------------------------------------------------------------------------------


@contextlib.contextmanager
def server(items: int = 1) -> Iterator[str]:
    """Run ``server.py`` in its own process; yield its base URL; stop it afterwards."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), "--items", str(items)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        _pin(process.pid, 0)
        yield f"http://127.0.0.1:{int(line.split()[1])}/"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def run_client(client: Client, mode: str, base: str, *options: str) -> dict[str, Any]:
    """Run ``clients.py MODE CLIENT`` in its own process; return its result dict."""
    command = [client.python, str(HERE / "clients.py"), mode, client.name, "--base", base, *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _pin(process.pid, 1)
    out, err = process.communicate(timeout=600)
    for line in reversed(out.splitlines()):
        if line.startswith("BENCH-RESULT "):
            result: dict[str, Any] = json.loads(line.split(" ", 1)[1])
            return result
    tail = "\n".join((err or out).strip().splitlines()[-5:])
    raise RuntimeError(f"{client.name} {mode} failed (exit {process.returncode}):\n{tail}")


def _pin(pid: int, cpu: int) -> None:
    """Put the server and the client on different cores when there are two or more."""
    cores = os.cpu_count() or 1
    if cores >= 2 and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {cpu % cores})


def _control(base: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call the server's ``/_bench/`` control routes (stdlib only, its own connection)."""
    import urllib.request

    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        base + path.lstrip("/"), data=data, method="POST" if data else "GET"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # loopback only
        result: dict[str, Any] = json.loads(answer.read())
        return result


# --- the three figures -----------------------------------------------------------------------


def overhead(clients: Sequence[Client], base: str, settings: Settings) -> dict[str, Any]:
    """Each client, ``runs`` rounds in rotated order: per-round medians of µs per batch."""
    medians: dict[str, list[float]] = {c.name: [] for c in clients}
    quartiles: dict[str, list[tuple[float, float]]] = {c.name: [] for c in clients}
    versions: dict[str, dict[str, str]] = {}
    for round_ in range(settings.runs):
        shift = round_ % len(clients)
        for client in [*clients[shift:], *clients[:shift]]:
            _progress(f"overhead round {round_ + 1}/{settings.runs}: {client.name}")
            result = run_client(
                client, "overhead", base,
                "--batches", str(settings.batches), "--warmup", str(settings.warmup),
            )  # fmt: skip
            samples = [ns / 1000 for ns in result["samples_ns"]]
            medians[client.name].append(statistics.median(samples))
            q1, _, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else (samples * 3)
            quartiles[client.name].append((q1, q3))
            versions[client.name] = result["versions"]
    return {"medians": medians, "quartiles": quartiles, "versions": versions}


def throughput(clients: Sequence[Client], base: str, settings: Settings) -> dict[str, Any]:
    """Each client sends ``commands`` under the server's bucket, ``throughput_runs`` times."""
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in clients}
    for number in range(settings.throughput_runs):
        for client in clients:
            _progress(f"throughput run {number + 1}/{settings.throughput_runs}: {client.name}")
            _control(
                base, "_bench/reset", {"burst": settings.burst, "per_second": settings.per_second}
            )
            result = run_client(
                client, "throughput", base,
                "--commands", str(settings.commands),
                "--burst", str(settings.burst), "--per-second", str(settings.per_second),
            )  # fmt: skip
            stats = _control(base, "_bench/stats")
            runs[client.name].append({**result, **stats})
    _control(base, "_bench/reset", {"burst": None})
    return {"runs": runs}


def memory(client: Client, base: str, settings: Settings) -> dict[str, Any]:
    """Peak RSS of a fresh process running the chunked iterator over each size."""
    sizes: dict[int, list[dict[str, Any]]] = {n: [] for n in settings.memory_sizes}
    for number in range(settings.memory_runs):
        for size in settings.memory_sizes:
            _progress(f"memory run {number + 1}/{settings.memory_runs}: {size} commands")
            result = run_client(client, "memory", base, "--commands", str(size))
            if "skipped" in result:
                return {"skipped": result["skipped"]}
            sizes[size].append(result)
    return {"sizes": sizes}


# --- the report ------------------------------------------------------------------------------


def planning(client: Client, base: str, settings: Settings) -> dict[str, Any]:
    """SDK time to plan ``make()``'s chunks for each size (linear, not quadratic, in chunks)."""
    runs: dict[int, list[float]] = {}
    for size in settings.planning_sizes:
        _progress(f"planning {size} commands")
        runs[size] = [
            run_client(client, "planning", base, "--commands", str(size))["wall_s"]
            for _ in range(settings.memory_runs)
        ]
    return {"sizes": runs}


def _planning_table(figure: dict[str, Any]) -> list[str]:
    sizes: dict[int, list[float]] = figure.get("sizes", {})
    if not sizes:
        return []
    lines = [
        "### Planning `make()`'s chunks",
        "",
        "Seconds b24batch spends validating, grouping and encoding the rows of a "
        "`BatchByChunkV3.make()` call before the first request (median of runs); µs per command "
        "stays flat when planning is linear in the number of chunks (it was quadratic: 13–17 s "
        "for 200 000 commands).",
        "",
        "| commands | chunks | seconds | µs per command |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for size, walls in sorted(sizes.items(), key=lambda item: int(item[0])):
        wall = statistics.median(walls)
        count = int(size)
        lines.append(
            f"| {count:,} | {-(-count // BATCH):,} | {wall:.2f} | {wall / count * 1e6:.1f} |"
        )
    return [*lines, ""]


def machine() -> dict[str, str]:
    """CPU model, cores, OS, Python."""
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "revision": _revision(),
    }


def _revision() -> str:
    """The b24batch commit measured, marked when b24batch/ has uncommitted changes."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "b24batch"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:  # no git
        return "an unknown commit"
    if head.returncode != 0:
        return "an unknown commit"
    return head.stdout.strip() + (" with uncommitted changes in b24batch/" if dirty else "")


def report(
    settings: Settings,
    results: dict[str, Any],
    skipped: dict[str, str],
    peers: Sequence[Peer],
) -> str:
    """The results section of ``docs/benchmarks.md``, in Markdown."""
    box = results["machine"]
    lines = [
        f"Run {results['date']} ({settings.label}: `{results['command']}`), on {box['cpu']}, "
        f"{box['cores']} cores, {box['os']}, {box['python']}; load average {box['load']} at the "
        f"start. Server and client each pinned to a core of their own. b24batch at "
        f"{box['revision']}.",
        "",
    ]
    lines += _overhead_table(settings, results["overhead"], peers)
    lines += _targets_table(settings, results)
    lines += _throughput_table(settings, results["throughput"], peers)
    lines += _memory_table(results["memory"])
    lines += _planning_table(results.get("planning", {}))
    if skipped:
        lines += ["### Peers not measured", "", "| client | version | why |", "| --- | --- | --- |"]
        for peer in peers:
            if peer.name in skipped:
                lines.append(f"| {peer.name} | {peer.version} | {skipped[peer.name]} |")
        lines.append("")
    lines += _versions_table(results)
    return "\n".join(lines).rstrip() + "\n"


def _overhead_table(settings: Settings, figure: dict[str, Any], peers: Sequence[Peer]) -> list[str]:
    medians: dict[str, list[float]] = figure["medians"]
    quartiles: dict[str, list[tuple[float, float]]] = figure["quartiles"]
    floor = medians[FLOOR]
    calls = {p.name: p.batch_call for p in peers}
    lines = [
        "### Overhead: one 50-command batch, sequential",
        "",
        f"{settings.runs} rounds × {settings.batches} timed batches per client (after "
        f"{settings.warmup} warm-up batches in the same process); each answer carries "
        f"{BATCH * settings.items:,} task items of 15 fields. µs per batch: the median of the "
        f"rounds' medians; spread: the lowest and highest round median; IQR: the middle round's "
        f"quartiles. × floor: the median over rounds of (client median / floor median in that "
        f"round).",
        "",
        "| client | route | µs per batch | spread | IQR | × floor |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, values in sorted(medians.items(), key=lambda item: statistics.median(item[1])):
        ratios = [value / base for value, base in zip(values, floor, strict=True)]
        middle = sorted(range(len(values)), key=values.__getitem__)[len(values) // 2]
        q1, q3 = quartiles[name][middle]
        label = LABELS.get(name, f"{name}: `{calls.get(name, '')}`")
        route = "REST 3.0" if name in (FLOOR, REFERENCE, *OURS) else "classic"
        lines.append(
            f"| {label} | {route} | {statistics.median(values):,.0f} | "
            f"{min(values):,.0f}–{max(values):,.0f} | {q1:,.0f}–{q3:,.0f} | "
            f"{statistics.median(ratios):.2f} |"
        )
    return [*lines, ""]


def _ratio(figure: dict[str, Any], name: str, floor: str = FLOOR) -> float | None:
    medians: dict[str, list[float]] = figure["medians"]
    if name not in medians or floor not in medians:
        return None
    pairs = zip(medians[name], medians[floor], strict=True)
    return statistics.median(value / base for value, base in pairs)


def _targets_table(settings: Settings, results: dict[str, Any]) -> list[str]:
    figure = results["overhead"]
    rows: list[tuple[str, str, bool | None]] = []
    plain, typed = _ratio(figure, "b24batch"), _ratio(figure, "b24batch-typed")
    if plain is not None:
        rows.append(
            ("plain-data overhead within 10 % of the floor", f"× {plain:.2f}", plain <= 1.10)
        )
    if typed is not None:
        rows.append(("typed decoding within 25 % of the floor", f"× {typed:.2f}", typed <= 1.25))
    classic = _ratio(figure, "b24batch-v2", FLOOR_V2)
    if classic is not None:
        rows.append((
            "classic batch within 10 % of the classic floor (a bare form POST)",
            f"× {classic:.2f}",
            classic <= 1.10,
        ))  # fmt: skip
    medians: dict[str, list[float]] = figure["medians"]
    peers = [n for n in medians if n not in (FLOOR, REFERENCE, *OURS, FLOOR_V2, *OURS_V2)]
    if peers and "b24batch" in medians:
        ours = statistics.median(medians["b24batch"])
        fastest = min(peers, key=lambda n: statistics.median(medians[n]))
        theirs = statistics.median(medians[fastest])
        rows.append((
            "faster than every peer measured (plain data)",
            f"{ours:,.0f} µs vs {fastest} {theirs:,.0f} µs",
            ours < theirs,
        ))  # fmt: skip
    runs = results["throughput"]["runs"].get("b24batch", [])
    if runs:
        minimum = _theoretical_minimum(settings)
        wall = statistics.median(r["wall_s"] for r in runs)
        refused = sum(r["refused"] for r in runs)
        text = f"{wall:.2f} s vs {minimum:.2f} s (× {wall / minimum:.3f}), {refused} × 503"
        rows.append(("throughput within 5 % of the bucket's minimum, zero 503", text,
                     wall <= minimum * 1.05 and refused == 0))  # fmt: skip
    sizes = results["memory"].get("sizes")
    if sizes and len(sizes) >= 2:
        small, large = min(sizes), max(sizes)
        growth = _peak_mib(sizes[large]) - _peak_mib(sizes[small])
        rows.append((
            f"memory for {large:,} commands within {MEMORY_TARGET_MIB:.0f} MB of {small:,}",
            f"{growth:+.1f} MiB", growth <= MEMORY_TARGET_MIB,
        ))  # fmt: skip
    lines = ["### Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
    lines += [f"| {what} | {value} | {'yes' if ok else '**no**'} |" for what, value, ok in rows]
    return [*lines, ""]


def _theoretical_minimum(settings: Settings) -> float:
    """Seconds the bucket needs: every request past the burst waits one drain interval."""
    requests = -(-settings.commands // BATCH)
    return max(0, requests - settings.burst) / settings.per_second


def _throughput_table(
    settings: Settings, figure: dict[str, Any], peers: Sequence[Peer]
) -> list[str]:
    minimum = _theoretical_minimum(settings)
    limited = {p.name: p.throttles for p in peers}
    requests = -(-settings.commands // BATCH)
    lines = [
        "### Throughput under the portal's limit",
        "",
        f"{settings.commands:,} commands = {requests} batches against a server bucket of burst "
        f"{settings.burst}, draining {settings.per_second:g}/s (the portal's 50 and 2/s, time "
        f"compressed); theoretical minimum {minimum:.2f} s. Clients with a limiter run it at the "
        f"same burst and rate. {settings.throughput_runs} run(s) each; wall: median "
        f"(min–max); 503s: total over all runs.",
        "",
        "| client | client-side limiter | wall s | × minimum | 503 answers |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, runs in figure["runs"].items():
        walls = [r["wall_s"] for r in runs]
        limiter = LIMITERS.get(name, "yes" if limited.get(name) else "none")
        ratio = f"{statistics.median(walls) / minimum:.3f}" if minimum else "–"
        lines.append(
            f"| {name} | {limiter} | "
            f"{statistics.median(walls):.2f} ({min(walls):.2f}–{max(walls):.2f}) | {ratio} | "
            f"{sum(r['refused'] for r in runs)} |"
        )
    return [*lines, ""]


def _peak_mib(runs: list[dict[str, Any]]) -> float:
    return statistics.median(float(r["peak_kb"]) for r in runs) / 1024


def _memory_table(figure: dict[str, Any]) -> list[str]:
    lines = ["### Memory: `BatchByChunkV3(client).iter(generator, chunk_size=50)`", ""]
    if "skipped" in figure:
        return [*lines, f"Not measured: {figure['skipped']}.", ""]
    sizes: dict[int, list[dict[str, Any]]] = figure["sizes"]
    smallest = min(sizes)
    lines += [
        "Peak RSS (`ru_maxrss`) of a fresh process that warms up with one chunk, then iterates "
        "over a generator of commands, keeping nothing. Median over runs (min–max); growth: "
        "peak minus the peak after warm-up.",
        "",
        "| commands | peak RSS MiB | growth in the run MiB | vs smallest MiB | wall s |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for size, runs in sorted(sizes.items()):
        peaks = [r["peak_kb"] / 1024 for r in runs]
        growth = statistics.median((r["peak_kb"] - r["baseline_kb"]) / 1024 for r in runs)
        lines.append(
            f"| {size:,} | {statistics.median(peaks):.1f} ({min(peaks):.1f}–{max(peaks):.1f}) | "
            f"{growth:.1f} | {_peak_mib(runs) - _peak_mib(sizes[smallest]):+.1f} | "
            f"{statistics.median(r['wall_s'] for r in runs):.2f} |"
        )
    return [*lines, ""]


def _versions_table(results: dict[str, Any]) -> list[str]:
    lines = ["### Versions", "", "| client | packages |", "| --- | --- |"]
    for name, found in results["overhead"]["versions"].items():
        packages = ", ".join(f"{k} {v}" for k, v in found.items())
        lines.append(f"| {name} | {packages} |")
    return [*lines, ""]


def write_doc(path: Path, section: str) -> None:
    """Replace the text between the results markers of ``path`` with ``section``."""
    text = path.read_text(encoding="utf-8")
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise RuntimeError(f"{path} has no {BEGIN} ... {END} section to replace")
    path.write_text(f"{head}{BEGIN}\n{section}{END}{tail}", encoding="utf-8")


def profile(batches: int = 2000) -> int:
    """Print cProfile's view of ``batches`` plain and typed b24batch batches."""
    with server() as base:
        for name in OURS:
            result = run_client(
                Client(name, sys.executable), "profile", base, "--batches", str(batches)
            )
            print(f"## {name}: {batches} batches under cProfile\n\n{result['report']}")
    return 0


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- entry point -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and write the report; see ``--help``."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer rounds (under a minute)")
    mode.add_argument("--smoke", action="store_true", help="a few batches, no peers (seconds)")
    mode.add_argument(
        "--profile", action="store_true", help="cProfile b24batch's hot path; print, write nothing"
    )
    parser.add_argument("--no-peers", action="store_true", help="b24batch and the floor only")
    parser.add_argument("--out", type=Path, help="write the results section to this file "
                        "instead of updating docs/benchmarks.md")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the raw figures as JSON here")
    parser.add_argument(
        "--items", type=int, default=1, help="task items per command's answer (default 1)"
    )
    args = parser.parse_args(argv)
    if args.profile:
        return profile()
    settings = SMOKE if args.smoke else QUICK if args.quick else Settings()
    if args.no_peers:
        settings = attrs.evolve(settings, peers=False)
    if args.items != 1:
        settings = attrs.evolve(settings, items=args.items, label=f"{settings.label}, heavy")
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])

    ours = [Client(n, sys.executable) for n in (FLOOR, REFERENCE, *OURS, FLOOR_V2, *OURS_V2)]
    peers: list[Client] = []
    skipped: dict[str, str] = {}
    for peer in PEERS:
        if peer.unmeasured is not None:
            skipped[peer.name] = peer.unmeasured
        elif settings.peers:
            try:
                peers.append(Client(peer.name, str(ensure_venv(peer)), peer))
            except (RuntimeError, OSError) as exc:
                skipped[peer.name] = f"could not be installed ({exc})"
        else:
            skipped[peer.name] = f"not run ({'--smoke' if args.smoke else '--no-peers'})"
    if settings.peers:
        _progress(f"peer environments under {cache_dir()}")

    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command.strip(),
        "machine": machine(),
    }
    with server(settings.items) as base:
        results["overhead"] = overhead([*ours, *peers], base, settings)
        b24batch = next(c for c in ours if c.name == "b24batch")
        results["throughput"] = throughput([b24batch, *peers], base, settings)
        results["memory"] = memory(b24batch, base, settings)
        results["planning"] = planning(b24batch, base, settings)
    section = report(settings, results, skipped, PEERS)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    if args.out is not None:
        args.out.write_text(section, encoding="utf-8")
    else:
        write_doc(DOC, section)
    print(section)
    return 0
