"""The benchmark harness runs end to end and writes its tables (it asserts no timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "benchmarks.md"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """One ``--smoke`` run (b24batch and the floor, a handful of batches, no peers)."""
    where = tmp_path_factory.mktemp("bench")
    out, raw = where / "results.md", where / "raw.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks",
            "--smoke",
            "--out",
            str(out),
            "--json",
            str(raw),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out.read_text(encoding="utf-8"), json.loads(raw.read_text(encoding="utf-8"))


def test_overhead_table_has_the_floor_and_b24batch(smoke: tuple[str, dict[str, Any]]) -> None:
    """The overhead table has a row for the floor, the reference and both b24batch forms."""
    table, _ = smoke
    assert "| client | route | µs per batch | spread | IQR | × floor |" in table
    for label in (
        "| floor: `requests.Session().post(json=…)` + `.json()` | REST 3.0 |",
        "| reference: the floor with `session.trust_env = False` | REST 3.0 |",
        "| b24batch `BatchV3.make` (plain data) | REST 3.0 |",
        "| b24batch `make(result_type=…)` (attrs via cattrs) | REST 3.0 |",
    ):
        assert label in table


def test_every_timed_batch_is_recorded(smoke: tuple[str, dict[str, Any]]) -> None:
    """Each client's raw samples hold one positive duration per timed batch (5 in a smoke run)."""
    _, raw = smoke
    overhead = raw["overhead"]
    assert set(overhead["medians"]) == {
        "requests",
        "requests-no-env",
        "b24batch",
        "b24batch-typed",
        "requests-form",
        "b24batch-v2",
    }
    assert all(len(rounds) == 1 for rounds in overhead["medians"].values())
    assert overhead["versions"]["b24batch"]["b24batch"] != "?"


def test_throughput_and_memory_sections_are_written(smoke: tuple[str, dict[str, Any]]) -> None:
    """The smoke run also goes through the limiter and the chunked iterator."""
    table, raw = smoke
    assert "| b24batch | `RateLimit(burst, per_second)` |" in table
    (run,) = raw["throughput"]["runs"]["b24batch"]
    assert run["batches"] == 6
    assert run["requests"] == 6  # every batch admitted once by the server's bucket, in the end
    assert "### Memory" in table
    assert "| 300 |" in table or "Not measured" in table
    assert "### Planning `make()`'s chunks" in table
    assert "| 500 | 10 |" in table  # 500 commands planned into 10 chunks


def test_peers_are_listed_not_run_in_a_smoke_run(smoke: tuple[str, dict[str, Any]]) -> None:
    """Without peers the table still says which peers exist and why they were not measured."""
    table, _ = smoke
    assert "| fast_bitrix24 | 1.8.14 | not run (--smoke) |" in table
    assert "| b24pysdk | 1.3.2 | hard-codes https://" in table


def test_the_doc_names_the_command_and_holds_a_results_section() -> None:
    """docs/benchmarks.md says how to regenerate it and has the section the harness rewrites."""
    text = DOC.read_text(encoding="utf-8")
    assert "python -m tests.benchmarks" in text
    begin, end = text.index("<!-- results:begin -->"), text.index("<!-- results:end -->")
    assert "### Overhead" in text[begin:end]


def test_the_windows_scenarios_run_and_count_every_write(tmp_path: Any) -> None:
    """The batches-in-flight benchmark runs small: every row executed exactly its writes."""
    out = tmp_path / "windows.md"
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.windows", "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [
        line for line in out.read_text().splitlines() if line.startswith("| ") and "b24" in line
    ]
    assert len(rows) == 16  # four scenarios; windows 1, auto, 8, and auto under halt_on_error
    assert all("| 100 of 100 |" in row and "failed" not in row for row in rows)


def test_list_export_benchmark_runs_and_writes_its_row(tmp_path: Path) -> None:
    """The list benchmark's smoke run exports every deal once, in order, and writes its row."""
    out = tmp_path / "lists.md"
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.lists", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    row = next(line for line in out.read_text(encoding="utf-8").splitlines() if "b24batch" in line)
    assert row.endswith("| 2 | yes (300 of 300) | yes |")
    assert "<!-- lists:begin -->" in DOC.read_text(encoding="utf-8")


def test_journal_benchmark_runs_and_prints_its_figures() -> None:
    """The journal benchmark's smoke run completes both runs and reports cost and size."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.journal", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| with a journal |" in done.stdout
    assert "Size: 500 task adds (10 chunks)" in done.stdout
    assert "<!-- journal:begin -->" in DOC.read_text(encoding="utf-8")


def test_lists_in_flight_benchmark_runs_and_writes_its_rows(tmp_path: Path) -> None:
    """The lists-in-flight benchmark's smoke run gets every item once, in id order, from the
    slow portal with each b24batch face, and writes its rows."""
    out = tmp_path / "listflight.md"
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.listflight", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in out.read_text(encoding="utf-8").splitlines() if "b24batch" in line]
    assert len(rows) == 6  # two lists, three clients
    assert all(row.endswith("| 0 | 0 | yes | yes |") for row in rows)
    assert "<!-- listflight:begin -->" in DOC.read_text(encoding="utf-8")
