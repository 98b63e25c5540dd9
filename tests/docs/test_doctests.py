"""The docstring examples run, so they cannot rot."""

from __future__ import annotations

import doctest
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _runs_examples(path: pathlib.Path) -> bool:
    lines = path.read_text(encoding="utf-8").splitlines()
    return any(">>>" in line and "+SKIP" not in line for line in lines)


# Every module of the package whose docstrings hold an example that runs, found rather than
# listed, so a moved or new module cannot drop out of the run.
MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for path in (ROOT / "b24batch").rglob("*.py")
    if "testing" not in path.parts and _runs_examples(path)
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    """Every example in the module's docstrings gives the output it shows."""
    module = importlib.import_module(name)
    package = importlib.import_module("b24batch")
    globs = {name: getattr(package, name) for name in package.__all__}
    globs.update(vars(module))
    result = doctest.testmod(module, globs=globs, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0
