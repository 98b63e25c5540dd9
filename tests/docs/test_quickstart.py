"""The Quick start, done as a user does it: ``serve --seed`` in one process, the code in another."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

from tests.docs.test_docs import python_blocks

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0  # seconds: every wait on the two processes is bounded by this


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **extra}


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def test_quick_start_prints_real_results_against_serve_seed() -> None:
    """The Quick start's code, run against the URL ``serve --seed`` printed, prints the tasks."""
    code = python_blocks(ROOT / "docs" / "quickstart.md")[0][0]
    server = subprocess.Popen(
        [sys.executable, "-m", "b24batch", "serve", "--seed"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    printed: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(server.stdout, printed), daemon=True)
    reader.start()
    try:
        url = ""
        while not url:
            line = printed.get(timeout=WAIT)
            if line.startswith("webhook URL:"):
                url = line.split()[-1]
        user = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=_env(B24_WEBHOOK_URL=url),
            timeout=WAIT,
            check=False,
        )
    finally:
        server.kill()
        server.wait(timeout=WAIT)
        reader.join(timeout=WAIT)  # the killed server's stdout ends: the reader stops
        assert server.stdout is not None
        server.stdout.close()
    assert (user.returncode, user.stderr) == (0, "")
    assert user.stdout == "1 Write the spec\n2 Review it\n3 Ship\n"
