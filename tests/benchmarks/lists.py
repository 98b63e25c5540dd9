"""Exporting a whole list: b24batch's ``CallListV2`` against fast_bitrix24's ``get_all``.

``python -m tests.benchmarks.lists`` starts a FakePortal (it executes filters, unlike the
overhead server) with 10 000 deals at sparse ids and a fixed latency per request, runs each
client in a process of its own (fast_bitrix24 in its pinned virtual environment), counts the
portal's requests, and rewrites the lists section of ``docs/benchmarks.md``. ``--smoke`` runs
b24batch alone over a few hundred deals. It asserts no timing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from b24batch.testing import FakePortal
from tests.benchmarks.peers import PEERS, ensure_venv

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- lists:begin -->", "<!-- lists:end -->"
SECRET = "benchListSecret"

# Run inside the client's process: stdlib and the client's own library only.
_B24BATCH = """
import json, sys, time
from b24batch import B24Hook, CallListV2, RateLimit
hook = B24Hook.from_webhook_url(sys.argv[1], rate_limit=RateLimit(burst=50, per_second=2.0))
started = time.perf_counter()
deals = CallListV2(hook).make("crm.deal.list", {"select": ["ID", "TITLE"]})
wall = time.perf_counter() - started
ids = [int(d["ID"]) for d in deals]
print(json.dumps({"wall_s": wall, "items": len(ids), "unique": len(set(ids)),
                  "ordered": ids == sorted(ids)}))
"""
_FAST = """
import json, sys, time
from fast_bitrix24 import Bitrix
bitrix = Bitrix(sys.argv[1], verbose=False, request_pool_size=50, requests_per_second=2.0)
started = time.perf_counter()
deals = bitrix.get_all("crm.deal.list", {"select": ["ID", "TITLE"]})
wall = time.perf_counter() - started
ids = [int(d["ID"]) for d in deals]
print(json.dumps({"wall_s": wall, "items": len(ids), "unique": len(set(ids)),
                  "ordered": ids == sorted(ids)}))
"""


def _run(python: str, script: str, portal: FakePortal) -> dict[str, Any]:
    before = len(portal.requests)
    done = subprocess.run(
        [python, "-c", script, portal.webhook_url],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["requests"] = len(portal.requests) - before
    return result


def measure(items: int, latency: float, peers: bool) -> dict[str, Any]:
    """Each client's wall time, items and requests for one export of ``items`` deals."""
    figures: dict[str, Any] = {}
    with FakePortal(
        secret=SECRET, latency=latency, rate_limit=(50, 2.0), max_recorded=100_000
    ) as portal:
        portal.add_deals(items, sparse=True, seed=16)
        figures["b24batch"] = _run(sys.executable, _B24BATCH, portal)
        if peers:
            (fast,) = [peer for peer in PEERS if peer.name == "fast_bitrix24"]
            try:
                figures["fast_bitrix24"] = _run(str(ensure_venv(fast)), _FAST, portal)
            except RuntimeError as error:
                figures["fast_bitrix24"] = {"error": str(error)}
    return figures


def table(figures: dict[str, Any], items: int, latency: float) -> str:
    """The markdown section for ``docs/benchmarks.md``."""
    lines = [
        f"### Exporting a list ({items:_} deals, {latency * 1000:.0f} ms per request)".replace(
            "_", " "
        ),
        "",
        f"Measured {time.strftime('%Y-%m-%d')} with `python -m tests.benchmarks.lists`.",
        "",
        "| client | call | seconds | items per second | requests | every item once | id order |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    calls = {
        "b24batch": '`CallListV2(b24).make("crm.deal.list", …)`',
        "fast_bitrix24": '`Bitrix(webhook).get_all("crm.deal.list", …)`',
    }
    for name, run in figures.items():
        if "error" in run:
            lines.append(f"| {name} | {calls[name]} | failed: {run['error']} | | | | |")
            continue
        once = run["items"] == items and run["unique"] == items
        rate = f"{run['items'] / run['wall_s']:_.0f}".replace("_", " ")
        lines.append(
            f"| {name} | {calls[name]} | {run['wall_s']:.2f} | {rate} | {run['requests']} | "
            f"{'yes' if once else 'no'} ({run['unique']} of {items}) | "
            f"{'yes' if run['ordered'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Measure and print the table; write it into docs/benchmarks.md unless told not to."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per request")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="b24batch alone, 300 deals")
    parser.add_argument("--out", type=Path, help="write the section here instead of the doc")
    args = parser.parse_args(argv)
    items, latency = (300, 0.0) if args.smoke else (args.items, args.latency)
    figures = measure(items, latency, peers=not (args.no_peers or args.smoke))
    section = table(figures, items, latency)
    sys.stdout.write(section)
    if args.out is not None:
        args.out.write_text(section, encoding="utf-8")
    elif not args.smoke:
        text = DOC.read_text(encoding="utf-8")
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        DOC.write_text(f"{head}{BEGIN}\n{section}{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
