"""The README's promises: its test command is the one CI runs.

Its examples, and every page's, run in tests/docs/test_docs.py; its Quick start against a real
``serve --seed`` in tests/docs/test_quickstart.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _shell_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S)]


def test_readme_opens_with_the_two_fresh_machine_commands() -> None:
    """The first two shell blocks install+demo and install+test."""
    blocks = _shell_blocks((ROOT / "README.md").read_text())
    assert blocks[0] == "python -m pip install . && python -m b24batch demo"
    assert blocks[1] == 'python -m pip install -e ".[test]" && python -m pytest'


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """.ci/run's last command is the README's test command, verbatim."""
    test_command = _shell_blocks((ROOT / "README.md").read_text())[1]
    ci_lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci_lines[-1] == test_command


INSTALL = "sudo apt-get install php-cli redis-server"


def test_readme_names_what_the_tests_need_next_to_the_command() -> None:
    """Right after the test command the README names php-cli and redis-server and the apt line."""
    text = (ROOT / "README.md").read_text()
    after = text.split('python -m pip install -e ".[test]" && python -m pytest\n```', 1)[1]
    note = after.split("\n\n", 2)[1]
    assert "`php-cli`" in note
    assert "`redis-server`" in note
    assert INSTALL in note


def test_contributing_names_what_the_tests_need() -> None:
    """CONTRIBUTING.md says the tests need php-cli and redis-server, with the apt line."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert INSTALL in text


@pytest.mark.parametrize(
    ("test_file", "missing"),
    [
        pytest.param("tests/protocols/test_v2_wire.py", "php (Debian's php-cli)", id="php"),
        pytest.param("tests/limits/test_redis.py", "redis-server", id="redis"),
    ],
)
def test_a_missing_program_stops_the_run_with_one_message(
    tmp_path: Path, test_file: str, missing: str
) -> None:
    """Without php or redis-server on PATH the run stops before any test, naming it and the fix."""
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty folder: no php, no redis-server
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == pytest.ExitCode.USAGE_ERROR, completed.stdout
    errors = [line for line in completed.stderr.splitlines() if line.startswith("ERROR:")]
    assert errors == [
        f"ERROR: the tests collected need {missing}, which is not installed; they run against "
        f"the real program and are never skipped. Install both with: {INSTALL}"
    ]
    assert " passed" not in completed.stdout
    assert " failed" not in completed.stdout
