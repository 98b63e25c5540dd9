"""The command line on Ctrl+C: what landed first, then one line, exit 130 (#21 item 5)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from b24batch._limits.bucket import shared_bucket
from b24batch.cli import EXIT_INTERRUPTED, main
from b24batch.testing import FakePortal, Fault
from tests.support.interrupts import interrupt, when


def _calls(tmp_path: Path, count: int) -> str:
    path = tmp_path / "calls.json"
    rows = [["tasks.task.add", {"fields": {"title": f"T{n}"}}] for n in range(count)]
    path.write_text(json.dumps(rows), encoding="utf-8")
    return str(path)


def test_ctrl_c_prints_what_landed_then_one_line(
    portal: FakePortal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run of 150 rows stopped while its second chunk is on the wire: that chunk is waited
    for, both chunks' results are printed, then one line on what was not sent; exit 130.

    The portal's bucket (this process's, as the CLI's client shares it) has room for two, so
    the window opens with two chunks and the third waits for them."""
    path = _calls(tmp_path, 150)
    bucket = shared_bucket(portal.base_url, time.monotonic)
    while bucket.available() >= 3:
        bucket.reserve()
    portal.inject(Fault.delay(0.0))
    portal.inject(Fault.delay(1.0))
    when(lambda: len(portal.requests) >= 2, interrupt)
    status = main(["run", "--no-halt", "--webhook", portal.webhook_url, path])
    captured = capsys.readouterr()
    assert status == EXIT_INTERRUPTED == 130
    assert captured.out.splitlines()[0] == (
        "failed: 0 errors, 100 results in 2 chunks, 50 not executed fetched before Ctrl+C"
    )
    # Both chunks printed (they ran side by side, so either may have made tasks 1 to 50).
    assert '     0  {"item": {"id": ' in captured.out
    assert '    99  {"item": {"id": ' in captured.out
    assert captured.err.splitlines() == [
        "b24batch: interrupted (Ctrl+C): 0 commands may have run, 50 commands not sent"
    ]
    assert len(portal.tasks) == 100  # the third chunk never left
