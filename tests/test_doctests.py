"""The docstring examples run, so they cannot rot."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "b24batch.batch",
    "b24batch.batch_v2",
    "b24batch.chunks",
    "b24batch.client",
    "b24batch.commands",
    "b24batch.errors",
    "b24batch.kinds",
    "b24batch.results",
    "b24batch.redaction",
    "b24batch.retry",
    "b24batch._limits.policy",
    "b24batch._limits.shared",
    "b24batch._limits.sqlite",
    "b24batch._limits.redis",
    "b24batch.lists",
    "b24batch.form",
    "b24batch.wire_v2",
]


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
