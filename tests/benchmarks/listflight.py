"""Lists in flight: a whole list against the slow, time-compressed portal of ``windows.py``.

``python -m tests.benchmarks.listflight`` (``--quick``: one run each, ``--smoke``: seconds)
starts ``server.py`` serving a list (dense ids, or sparse: random up to 100 × the count) with
the windows scenarios' portal — ten times faster than a real one: 5 ms each way, 4 ms per
command, 0.4 ms per item returned, bucket 50 + 20/s, operating budget 48 s over ten 6-s
baskets — runs each client in a process of its own, and rewrites the list section of
``docs/benchmarks.md``. Every run checks that each item came back once; the table says whether
in id order. No timing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import attrs

from tests.benchmarks.peers import PEERS, ensure_venv
from tests.benchmarks.server import SECRET
from tests.benchmarks.windows import (
    BURST,
    DOC,
    LATENCY_MS,
    PER_SECOND,
    Scenario,
    _control,
    slow_server,
)

__all__ = ["LISTS", "ListScenario", "main"]

BEGIN, END = "<!-- listflight:begin -->", "<!-- listflight:end -->"
COMMAND_MS, ITEM_MS = 4.0, 0.4
OPERATING_LIMIT, BASKET_S = 48.0, 6.0
PAGE = 50


@attrs.frozen(kw_only=True)
class ListScenario:
    """One list: ``items`` ids, dense or sparse."""

    name: str
    items: int
    sparse: bool = False

    def minimum(self) -> float:
        """The bucket's bound for the fewest batches that carry every page (50 pages of 50),
        plus one such batch's execution and a round trip."""
        batches = math.ceil(self.items / (PAGE * 50))
        bucket = max(0, batches - BURST) / PER_SECOND
        one = 50 * COMMAND_MS / 1000 + 50 * PAGE * ITEM_MS / 1000 + 2 * LATENCY_MS / 1000
        return bucket + one


LISTS = (
    ListScenario(name="10 000 dense", items=10_000),
    ListScenario(name="10 000 sparse", items=10_000, sparse=True),
    ListScenario(name="100 000 dense", items=100_000),
)

# Run inside the client's process: stdlib and the client's own library only.
_B24BATCH = """
import json, sys, time
import b24batch
base, face, size = sys.argv[1], sys.argv[2], sys.argv[3]
hook = b24batch.B24Hook.from_webhook_url(
    f"{base}rest/1/%(secret)s/",
    rate_limit=b24batch.RateLimit(
        burst=%(burst)d, per_second=%(per_second)f, operating_limit=%(limit)f,
        operating_margin=%(limit)f / 16, operating_reset_slack=0.1,
    ),
    retry=b24batch.RetryPolicy(max_attempts=5, max_wait=600.0),
)
in_flight = size if size == "auto" else int(size)
started = time.perf_counter()
if face == "v3":
    items = b24batch.CallListV3(hook).make(
        "tasks.task.list", {"select": ["id", "title"]}, max_in_flight=in_flight)
    ids = [int(item["id"]) for item in items]
else:
    items = b24batch.CallListV2(hook).make(
        "crm.deal.list", {"select": ["ID", "TITLE"]}, max_in_flight=in_flight)
    ids = [int(item["ID"]) for item in items]
wall = time.perf_counter() - started
print(json.dumps({"wall_s": wall, "items": len(ids), "unique": len(set(ids)),
                  "ordered": ids == sorted(ids)}))
"""
_FAST = """
import json, sys, time
from fast_bitrix24 import Bitrix
bitrix = Bitrix(f"{sys.argv[1]}rest/1/%(secret)s/", verbose=False,
                request_pool_size=%(burst)d, requests_per_second=%(per_second)f)
started = time.perf_counter()
deals = bitrix.get_all("crm.deal.list", {"select": ["ID", "TITLE"]})
wall = time.perf_counter() - started
ids = [int(d["ID"]) for d in deals]
print(json.dumps({"wall_s": wall, "items": len(ids), "unique": len(set(ids)),
                  "ordered": ids == sorted(ids)}))
"""
_SETTINGS = {"secret": SECRET, "burst": BURST, "per_second": PER_SECOND, "limit": OPERATING_LIMIT}


def _run(python: str, script: str, base: str, *args: str) -> dict[str, Any]:
    _control(base, "_bench/reset", {"burst": BURST, "per_second": PER_SECOND})
    done = subprocess.run(
        [python, "-c", script % _SETTINGS, base, *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    stats = _control(base, "_bench/stats")
    if done.returncode != 0:
        lines = (done.stderr or done.stdout or "failed").strip().splitlines()
        return {"failure": lines[-1][:200], "stats": stats}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["stats"] = stats
    return result


def clients(peers: bool) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(label, python, script and its arguments)`` of every measured client."""
    ours: list[tuple[str, str, tuple[str, ...]]] = [
        ("b24batch `CallListV3` (auto)", sys.executable, (_B24BATCH, "v3", "auto")),
        ("b24batch `CallListV2` (auto)", sys.executable, (_B24BATCH, "v2", "auto")),
        ("b24batch `CallListV3` (`max_in_flight=1`)", sys.executable, (_B24BATCH, "v3", "1")),
    ]
    if peers:
        (fast,) = [peer for peer in PEERS if peer.name == "fast_bitrix24"]
        with contextlib.suppress(RuntimeError, OSError):  # not installable: not measured
            ours.append(("fast_bitrix24 `get_all`", str(ensure_venv(fast)), (_FAST,)))
    return ours


def table(
    lists: Sequence[ListScenario], results: dict[str, dict[str, list[dict[str, Any]]]], runs: int
) -> str:
    """The markdown section: one row per list and client."""
    lines = [
        BEGIN,
        "### A whole list, batches in flight",
        "",
        f"Written by `python -m tests.benchmarks.listflight` on {time.strftime('%Y-%m-%d')}. "
        f"The portal of the windows scenarios (bucket "
        f"{BURST} + {PER_SECOND:g}/s, {LATENCY_MS:g} ms each way, {COMMAND_MS:g} ms per "
        f"command, operating budget {OPERATING_LIMIT:g} s over ten {BASKET_S:g}-s baskets, "
        f"charged by the commands' time) serving a list, each item returned adding "
        f"{ITEM_MS:g} ms to its batch. {runs} run(s) each; × minimum: the median wall time "
        f"over the bucket's bound for the fewest batches that carry every page (50 pages of "
        f"50) plus one such batch and a round trip. A client that spreads the pages over more, "
        f"shorter batches can go below 1.",
        "",
        "| list | client | × minimum | requests | 503s | 429s | every item once | id order |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for scenario in lists:
        for label, outcome in results.get(scenario.name, {}).items():
            good = [r for r in outcome if "wall_s" in r]
            walls = [r["wall_s"] for r in good]
            ratio = f"{statistics.median(walls) / scenario.minimum():.2f}" if walls else "—"
            stats = [r["stats"] for r in outcome]
            once = all(r["items"] == r["unique"] == scenario.items for r in good) and good
            ordered = all(r["ordered"] for r in good) and good
            failures = [r["failure"] for r in outcome if "failure" in r]
            note = f" (failed: {failures[0]})".replace("|", "/") if failures else ""
            requests = "/".join(str(s["requests"]) for s in stats)
            lines.append(
                f"| {scenario.name} | {label} | {ratio} | {requests} | "
                f"{sum(s['refused'] for s in stats)} | {sum(s['blocked'] for s in stats)} | "
                f"{'yes' if once else 'no'}{note} | {'yes' if ordered else 'no'} |"
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
    """Run the lists and write the section; see ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.listflight")
    parser.add_argument("--quick", action="store_true", help="one run each")
    parser.add_argument("--smoke", action="store_true", help="a small list, b24batch only")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--only", help="run only the list with this name")
    parser.add_argument("--out", help="write the section here, not into the doc")
    args = parser.parse_args(argv)
    runs = 1 if args.quick or args.smoke else 3
    lists: Sequence[ListScenario] = LISTS
    if args.smoke:
        lists = tuple(attrs.evolve(s, items=600) for s in LISTS[:2])
    if args.only:
        lists = [s for s in lists if s.name == args.only]
    measured = clients(peers=not (args.no_peers or args.smoke))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    portal = Scenario(
        name="lists", commands=0, command_ms=COMMAND_MS, operating_limit=OPERATING_LIMIT,
        basket_s=BASKET_S,
    )  # fmt: skip
    for scenario in lists:
        extra = ["--list-items", str(scenario.items), "--item-ms", str(ITEM_MS)]
        if scenario.sparse:
            extra.append("--sparse")
        with slow_server(portal, extra) as base:
            for label, python, (script, *arguments) in measured:
                outcome = [_run(python, script, base, *arguments) for _ in range(runs)]
                results.setdefault(scenario.name, {})[label] = outcome
                walls = [r.get("wall_s") for r in outcome]
                print(f"{scenario.name}: {label}: {walls} (min {scenario.minimum():.3f})",
                      file=sys.stderr)  # fmt: skip
    section = table(lists, results, runs)
    if args.out is not None:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(section)
    elif not args.smoke:
        write_doc(section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
