"""The install lines in the README and the docs work today, before b24batch is on the index."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
# `pip install b24batch`, `pip install 'b24batch[redis]'`: from the package index.
FROM_INDEX = re.compile(r"pip install\s+['\"]?b24batch\b")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_an_install_from_the_index_says_it_waits_for_the_release(page: Path) -> None:
    """A paragraph with `pip install b24batch...` says 'once released': the index has none yet."""
    paragraphs = [part for part in page.read_text().split("\n\n") if FROM_INDEX.search(part)]
    assert [part for part in paragraphs if "once released" not in part.lower()] == []


@pytest.mark.parametrize("name", ["index.md", "quickstart.md"])
def test_the_first_pages_install_from_a_checkout_or_a_built_wheel(name: str) -> None:
    """Home and Quick start give the commands that install b24batch today."""
    text = (ROOT / "docs" / name).read_text()
    assert "python -m pip install .\n" in text
    assert "python -m build" in text
    assert "python -m pip install dist/b24batch-*.whl" in text
