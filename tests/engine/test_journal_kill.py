"""A journaled job killed at random moments, resumed until done: nothing runs twice, nothing lost.

The FakePortal runs in one process (``python -m b24batch serve``), the job in another, which is
killed with SIGKILL (or interrupted with SIGINT, as Ctrl+C) at moments drawn from a seeded
``random.Random``, several rounds, then resumed to the end. The portal's own records (its
tasks, listed through the API) say what ran; the final result must account for every command.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b24batch import B24Hook, CallListV3
from b24batch._engine.journal import summary

WAIT = 20.0  # seconds: every wait on a process is bounded by this
COMMANDS = 400
ROUNDS = 6

_JOB = """
import json, sys, time
from b24batch import B24Hook, BatchByChunkV3

url, journal, in_doubt, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = [("tasks.task.add", {"fields": {"title": f"K{n}"}}) for n in range(count)]
print("start", flush=True)
with B24Hook.from_webhook_url(url, retry=None, rate_limit=None, timeout=(2.0, 5.0)) as b24:
    result = BatchByChunkV3(b24).make(
        rows,
        journal=journal,
        in_doubt=in_doubt,
        chunk_size=10,
        max_in_flight=4,
        halt_on_error=False,
        progress=lambda done, total: time.sleep(0.02),  # a job slow enough to be cut
    )
print(json.dumps({
    "titles": [entry["item"]["title"] for entry in result.data],
    "errors": [list(error.keys) for error in result.errors],
    "maybe": list(result.maybe_executed),
    "not_executed": list(result.not_executed),
}), flush=True)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


@pytest.fixture
def url() -> Iterator[str]:
    """A FakePortal in a process of its own; its webhook URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "b24batch", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    printed: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(server.stdout, printed), daemon=True)
    reader.start()
    try:
        found = ""
        while not found:
            line = printed.get(timeout=WAIT)
            if line.startswith("webhook URL:"):
                found = line.split()[-1]
        yield found
    finally:
        server.kill()
        server.wait(timeout=WAIT)
        reader.join(timeout=WAIT)
        assert server.stdout is not None
        server.stdout.close()


def _job(url: str, journal: Path, in_doubt: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _JOB, url, str(journal), in_doubt, str(COMMANDS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _cut(url: str, journal: Path, rng: random.Random) -> None:
    """One round: start the job, and kill it (or Ctrl+C it) at a random moment."""
    job = _job(url, journal, "report")
    assert job.stdout is not None
    assert job.stdout.readline().strip() == "start"
    time.sleep(rng.uniform(0.05, 0.3))
    how = rng.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGINT])
    job.send_signal(how)
    _, err = job.communicate(timeout=WAIT)
    assert "Traceback" not in err or "KeyboardInterrupt" in err, err


def _finish(url: str, journal: Path, in_doubt: str) -> dict[str, Any]:
    job = _job(url, journal, in_doubt)
    out, err = job.communicate(timeout=WAIT)
    assert job.returncode == 0, err
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


def _ran(url: str) -> collections.Counter[str]:
    """How many times each title ran, by the portal's own list of its tasks."""
    with B24Hook.from_webhook_url(url) as b24:
        tasks = CallListV3(b24).make("tasks.task.list", {"select": ["title"]})
    return collections.Counter(task["title"] for task in tasks)


def test_killed_and_resumed_jobs_run_each_command_at_most_once(url: str, tmp_path: Path) -> None:
    """SIGKILL/SIGINT at random moments, several rounds, then to the end: every command ran at
    most once, and each is in the result's data, errors or maybe_executed."""
    journal = tmp_path / "kill.journal"
    rng = random.Random(21)
    cut_short = 0
    for _ in range(ROUNDS):
        _cut(url, journal, rng)
        if journal.exists() and summary(journal)["chunks"]["planned"]:
            cut_short += 1  # the kill landed before the job's end: the test tests something
    assert cut_short >= ROUNDS - 1
    final = _finish(url, journal, "report")
    ran = _ran(url)
    assert max(ran.values()) == 1  # nothing ran twice
    titles = [f"K{n}" for n in range(COMMANDS)]
    in_data = set(final["titles"])
    assert in_data <= set(ran)  # what the result says ran, ran
    in_errors = {f"K{key}" for keys in final["errors"] for key in keys}
    maybe = {f"K{key}" for key in final["maybe"]}
    assert maybe <= in_errors
    assert final["not_executed"] == []
    assert in_data | in_errors == set(titles)  # every command accounted for
    assert set(ran) - in_data <= maybe  # what ran without a result is listed as maybe run

    again = _finish(url, journal, "resend")  # the caller checked the portal: send the rest
    assert again["errors"] == []
    assert sorted(again["titles"]) == sorted(titles)
    ran = _ran(url)
    assert set(ran) == set(titles)  # every command ran at least once
    assert {title for title, times in ran.items() if times > 1} <= maybe
