"""b24batch's own cost per batch: ``BatchV3``/``BatchV2`` against a bare ``requests`` POST.

``python -m tests.benchmarks.owncost`` starts the instant loopback server (``server.py``, in a
process of its own on one core) and, in this process on the other core, times ``--pairs`` pairs
of 50-command batches: b24batch's ``make`` and the bare POST of the same commands, one after
the other, the order alternating, so a change in the machine's load falls on both halves of a
pair. The figure is the median over pairs of (b24batch / bare POST). Two measures that the load
does not move are given beside it: Python function calls per batch (``sys.setprofile``: calls
of Python functions and of C functions from Python), and, with ``--instructions`` (needs
``valgrind``), CPU instructions per batch in user space (cachegrind; the difference between
runs of 5 and 25 batches, so start-up and imports drop out). Rewrites the own-cost section of
``docs/benchmarks.md`` with ``--write``; nothing is asserted.

Rows: REST 3.0 (``BatchV3.make`` against ``session.post(json=rows)``, requests encoding the
JSON on every call) and classic (``BatchV2.make`` against ``session.post(data=form)``, the form
``urllib.parse.urlencode``-d on every call from each command's ``cmd[KEY]`` and its
``METHOD?QUERY``, written once before the timing as the REST 3.0 rows are; ``urlencode``
quotes byte by byte, a C call each, so the classic floor's calls are many and cheap: its
instructions are the measure), each with the overhead benchmark's ``tasks.task.list``
commands (one ``select`` list shared by every command, as code that builds calls from a
constant does) and with varied params (every command its own nested dicts, lists, strings
and numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from tests.benchmarks.clients import SECRET, TASK_SELECT, rest3_calls
from tests.benchmarks.run import DOC, machine, server

BEGIN, END = "<!-- owncost:begin -->", "<!-- owncost:end -->"
COMMAND = "python -m tests.benchmarks.owncost"
SIZE = 50
OneBatch = Callable[[], int]


def v3_rows(varied: bool) -> list[tuple[str, dict[str, Any]]]:
    """50 REST 3.0 commands: the overhead benchmark's, or each with params of its own."""
    if not varied:
        return rest3_calls(1, SIZE)
    return [
        (
            "tasks.task.add",
            {
                "fields": {
                    "title": f"Prepare the report for department {n}",
                    "description": "Collect the figures from every branch & check them: 100 %",
                    "responsibleId": 10 + n,
                    "priority": 2,
                    "deadline": "2026-09-30T18:00:00+03:00",
                    "accomplices": [1, 2, n + 3],
                    "tags": ["report", f"dept-{n}"],
                    "checklist": [{"title": "figures", "done": False}, {"title": "summary"}],
                    "estimate": 3600.5,
                },
                "select": ["id", "title", "deadline"],
            },
        )
        for n in range(SIZE)
    ]


def v2_rows(varied: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    """50 named classic commands: the overhead benchmark's, or each with params of its own."""
    if not varied:
        return {
            f"t{n}": ("tasks.task.list", {"select": TASK_SELECT, "filter": {"ID": 1 + n}})
            for n in range(SIZE)
        }
    return {
        f"d{n}": (
            "crm.deal.add",
            {
                "fields": {
                    "TITLE": f"Deal {n}: 5 × pumps & valves",
                    "STAGE_ID": "NEW",
                    "OPPORTUNITY": 1500.5 + n,
                    "ASSIGNED_BY_ID": 10 + n,
                    "CONTACT_IDS": [1, 2, n + 3],
                    "COMMENTS": "Call back before 18:00 (Mon–Fri)",
                    "UF_CRM_SOURCE": {"channel": "web", "campaign": f"c{n}"},
                },
                "params": {"REGISTER_SONET_EVENT": "N"},
            },
        )
        for n in range(SIZE)
    }


def php_form(value: Any, name: str) -> list[str]:
    """The bare POST's own PHP bracket form (the harness's, independent of b24batch's)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in php_form(v, f"{name}[{quote(str(k))}]")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in php_form(v, f"{name}[{i}]")]
    return [f"{name}={quote(str(value), safe='')}"]


def clients(base: str, protocol: str, varied: bool) -> tuple[OneBatch, OneBatch, OneBatch | None]:
    """(b24batch's batch, the bare POST of the same commands, and for classic the bare POST of
    a form encoded before the timing, the earlier floor) against the server at ``base``."""
    import requests

    import b24batch

    hook = b24batch.B24Hook.from_webhook_url(
        f"{base}rest/1/{SECRET}/", rate_limit=None, retry=b24batch.RetryPolicy()
    )
    session = requests.Session()
    if protocol == "v3":
        calls = v3_rows(varied)
        batch = b24batch.BatchV3(hook)
        url = f"{base}rest/api/1/{SECRET}/batch"
        body = [{"method": m, "query": q, "parallel": False} for m, q in calls]

        def ours() -> int:
            return len(batch.make(calls).data)

        def bare() -> int:
            return len(session.post(url, json=body).json()["result"])

        return ours, bare, None
    named = v2_rows(varied)
    classic = b24batch.BatchV2(hook)
    url = f"{base}rest/1/{SECRET}/batch"
    # Each command's METHOD?QUERY is written once, before the timing (as the REST 3.0 rows
    # are); the form of them is encoded on every call, as requests encodes the REST 3.0 JSON.
    fields = [("halt", "1")]
    for key, (method, params) in named.items():
        query = "&".join(p for k, v in params.items() for p in php_form(v, quote(k)))
        fields.append((f"cmd[{key}]", f"{method}?{query}"))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def ours_v2() -> int:
        return len(classic.make(named).data)

    def bare_v2() -> int:
        form = urlencode(fields).encode("ascii")
        return len(session.post(url, data=form, headers=headers).json()["result"]["result"])

    encoded = urlencode(fields).encode("ascii")

    def prebuilt_v2() -> int:
        return len(session.post(url, data=encoded, headers=headers).json()["result"]["result"])

    return ours_v2, bare_v2, prebuilt_v2


def pairs(ours: OneBatch, bare: OneBatch, count: int, warmup: int = 30) -> dict[str, float]:
    """Median µs of each, and the median over ``count`` interleaved pairs of their ratio."""
    for _ in range(warmup):
        _check(ours())
        _check(bare())
    gc.collect()
    clock = time.perf_counter_ns
    mine: list[int] = []
    theirs: list[int] = []
    for number in range(count):
        ours_first = number % 2 == 1
        started = clock()
        (ours if ours_first else bare)()
        middle = clock()
        (bare if ours_first else ours)()
        ended = clock()
        first, second = middle - started, ended - middle
        mine.append(first if ours_first else second)
        theirs.append(second if ours_first else first)
    return {
        "ours_us": statistics.median(mine) / 1000,
        "bare_us": statistics.median(theirs) / 1000,
        "ratio": statistics.median(a / b for a, b in zip(mine, theirs, strict=True)),
    }


def calls_per_batch(one: OneBatch, batches: int = 20) -> float:
    """Function calls per batch, as ``sys.setprofile`` sees them (Python, and C from Python)."""
    one()
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event == "call" or event == "c_call":
            count += 1

    sys.setprofile(profile)
    try:
        for _ in range(batches):
            one()
    finally:
        sys.setprofile(None)
    return count / batches


def instructions(base: str, protocol: str, varied: bool, side: str) -> float | None:
    """User-space CPU instructions per batch under cachegrind: runs of 25 less runs of 5."""
    if shutil.which("valgrind") is None:
        return None
    counts = []
    for batches in (5, 25):
        command = [
            "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
            sys.executable, "-m", "tests.benchmarks.owncost", "--child", side, "--base", base,
            "--protocol", protocol, "--batches", str(batches),
        ] + (["--varied"] if varied else [])  # fmt: skip
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        line = next(x for x in done.stderr.splitlines() if "I   refs:" in x or "I refs:" in x)
        counts.append(int(line.rsplit(":", 1)[1].replace(",", "").strip()))
    return (counts[1] - counts[0]) / 20


def measure(base: str, settings: argparse.Namespace) -> list[dict[str, Any]]:
    """Every row: protocol × params."""
    rows = []
    for protocol in ("v3", "v2"):
        for varied in (False, True):
            label = f"{protocol} {'varied' if varied else 'list'}"
            _progress(f"{label}: {settings.pairs} pairs")
            ours, bare, prebuilt = clients(base, protocol, varied)
            row: dict[str, Any] = {"protocol": protocol, "varied": varied}
            row.update(pairs(ours, bare, settings.pairs))
            row["ours_calls"] = calls_per_batch(ours)
            row["bare_calls"] = calls_per_batch(bare)
            if prebuilt is not None:
                row["prebuilt_calls"] = calls_per_batch(prebuilt)
            if settings.instructions:
                _progress(f"{label}: instructions under valgrind")
                row["ours_instr"] = instructions(base, protocol, varied, "ours")
                row["bare_instr"] = instructions(base, protocol, varied, "bare")
                if prebuilt is not None:
                    row["prebuilt_instr"] = instructions(base, protocol, varied, "prebuilt")
            rows.append(row)
    return rows


def report(rows: list[dict[str, Any]], settings: argparse.Namespace, command: str) -> str:
    """The own-cost section of docs/benchmarks.md, in Markdown."""
    box = machine()
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "### One 50-command batch against a bare POST",
        "",
        f"Measured {date} with `{command}` on {box['cpu']}, {box['cores']} cores, "
        f"{box['python']}; load average {box['load']} at the start; b24batch at "
        f"{box['revision']}. {settings.pairs} interleaved pairs per row; × bare POST: the "
        f"median over pairs of b24batch's time over the bare POST's in the same pair. Calls: "
        f"Python function calls (and C calls from Python) per batch; instructions: user-space "
        f"CPU instructions per batch (cachegrind), both untouched by the machine's load.",
        "",
        "| batch | params | b24batch µs | bare POST µs | × bare POST | calls | × calls "
        "| instructions | × instructions |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        batch = "REST 3.0 `BatchV3.make`" if row["protocol"] == "v3" else "classic `BatchV2.make`"
        params = "varied, nested" if row["varied"] else "`tasks.task.list`, shared `select`"
        instr = "–"
        instr_ratio = "–"
        if row.get("ours_instr") and row.get("bare_instr"):
            instr = f"{row['ours_instr'] / 1e6:.2f} M vs {row['bare_instr'] / 1e6:.2f} M"
            instr_ratio = f"{row['ours_instr'] / row['bare_instr']:.2f}"
        lines.append(
            f"| {batch} | {params} | {row['ours_us']:,.0f} | {row['bare_us']:,.0f} | "
            f"{row['ratio']:.2f} | {row['ours_calls']:,.0f} vs {row['bare_calls']:,.0f} | "
            f"{row['ours_calls'] / row['bare_calls']:.2f} | {instr} | {instr_ratio} |"
        )
    earlier = [row for row in rows if "prebuilt_calls" in row]
    if earlier:
        lines += [
            "",
            "The classic floor above encodes its form on every call, as the REST 3.0 floor "
            "encodes its JSON. Against the earlier floor, the same form encoded once before the "
            "timing (so the bare POST encodes nothing):",
            "",
        ]
        for row in earlier:
            params = "varied" if row["varied"] else "`tasks.task.list`"
            text = (
                f"- classic, {params}: calls {row['ours_calls']:,.0f} vs "
                f"{row['prebuilt_calls']:,.0f} ({row['ours_calls'] / row['prebuilt_calls']:.2f}×)"
            )
            if row.get("ours_instr") and row.get("prebuilt_instr"):
                text += (
                    f", instructions {row['ours_instr'] / 1e6:.2f} M vs "
                    f"{row['prebuilt_instr'] / 1e6:.2f} M "
                    f"({row['ours_instr'] / row['prebuilt_instr']:.2f}×)"
                )
            lines.append(text + ".")
    return "\n".join(lines) + "\n"


def _child(args: argparse.Namespace) -> None:
    """One side's batches, for ``instructions`` (run under valgrind)."""
    ours, bare, prebuilt = clients(args.base, args.protocol, args.varied)
    one = {"ours": ours, "bare": bare, "prebuilt": prebuilt}[args.child]
    assert one is not None, "only the classic rows have a prebuilt floor"
    for _ in range(args.batches):
        _check(one())


def _check(got: int) -> None:
    if got != SIZE:
        raise SystemExit(f"a batch returned {got} results, expected {SIZE}")


def _progress(message: str) -> None:
    print(f"[owncost] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    """Measure, print the table, and with ``--write`` put it in docs/benchmarks.md."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300, help="timed pairs per row (300)")
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions (valgrind; minutes)"
    )
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--out", type=Path, help="write the table to this file")
    parser.add_argument("--child", choices=["ours", "bare", "prebuilt"], help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--protocol", default="v3", help=argparse.SUPPRESS)
    parser.add_argument("--varied", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, default=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {1})  # the server takes core 0
    with server() as base:
        rows = measure(base, args)
    section = report(rows, args, command)
    print(section)
    if args.out is not None:
        args.out.write_text(section, encoding="utf-8")
    if args.write:
        write_doc_section(DOC, section)


def write_doc_section(path: Path, section: str) -> None:
    """Replace the own-cost section of ``path`` (between its markers) with ``section``."""
    text = path.read_text(encoding="utf-8")
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise RuntimeError(f"{path} has no {BEGIN} ... {END} section to replace")
    path.write_text(f"{head}{BEGIN}\n{section}{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
