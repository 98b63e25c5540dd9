"""The Classic batch page's examples run, in order, as a reader would run them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "classic.md"


def test_classic_page_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Every Python block of docs/classic.md runs, and prints what its comments say."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 2
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec", dont_inherit=True), namespace)
    assert capsys.readouterr().out == "command 'missing': Not found\n"
