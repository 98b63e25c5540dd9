"""The README's promises: its test command is the one CI runs.

Its examples, and every page's, run in tests/docs/test_docs.py; its Quick start against a real
``serve --seed`` in tests/docs/test_quickstart.py.
"""

from __future__ import annotations

import re
from pathlib import Path

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
