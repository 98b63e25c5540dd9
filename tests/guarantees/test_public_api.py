"""The public surface: what ``from b24batch import ...`` offers, and nothing by accident."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import b24batch
import b24batch.testing

ISSUE_CONTRACT = {
    "B24Hook",
    "BatchV3",
    "BatchV2",
    "BatchByChunkV2",
    "Command",
    "BatchResult",
    "AjaxResult",
    "Time",
    "FieldError",
    "B24Error",
    "SdkError",
    "AjaxError",
    "AuthError",
    "TransportError",
    "DecodeError",
}


def test_all_is_sorted_and_unique() -> None:
    """__all__ is sorted and has no duplicates, so a diff shows every change to the surface."""
    names = b24batch.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_every_public_name_is_exported() -> None:
    """Every public class or function reachable from the package is in __all__, and exists."""
    for name in b24batch.__all__:  # the lazily imported ones are in vars() once read
        assert hasattr(b24batch, name)
    public = {
        name
        for name, value in vars(b24batch).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(b24batch.__all__) - {"__version__"}


def test_dir_lists_every_public_name() -> None:
    """dir(b24batch) lists every name in __all__, the lazily imported ones before first use too."""
    assert set(b24batch.__all__) <= set(dir(b24batch))
    assert dir(b24batch) == sorted(dir(b24batch))


def test_unknown_name_is_an_attribute_error() -> None:
    """A name the package does not have raises AttributeError naming it, as for any module."""
    with pytest.raises(AttributeError, match="module 'b24batch' has no attribute 'BatchV4'"):
        b24batch.BatchV4  # noqa: B018 - the attribute access is the test


def test_contract_names_are_exported() -> None:
    """The names other projects' tests import are all there."""
    assert set(b24batch.__all__) >= ISSUE_CONTRACT


def test_testing_all_is_sorted_and_complete() -> None:
    """b24batch.testing exports FakePortal and Fault, sorted."""
    names = b24batch.testing.__all__
    assert names == sorted(names)
    assert {"FakePortal", "Fault"} <= set(names)


def test_version_is_one_string_in_one_place() -> None:
    """__version__ is a PEP 440 release string, defined only in _version.py."""
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", b24batch.__version__)
    root = Path(b24batch.__file__).parent
    defining = [p.name for p in root.rglob("*.py") if "__version__ = " in p.read_text()]
    assert defining == ["_version.py"]


def test_package_ships_py_typed() -> None:
    """py.typed marks the package as typed for mypy and pyright."""
    assert (Path(b24batch.__file__).parent / "py.typed").is_file()


def test_misuse_errors_are_builtin_compatible() -> None:
    """SdkError is a ValueError; SdkTypeError is also a TypeError; all share B24Error."""
    assert issubclass(b24batch.SdkError, ValueError)
    assert issubclass(b24batch.SdkTypeError, TypeError)
    assert issubclass(b24batch.AuthError, b24batch.AjaxError)
    for name in ("SdkError", "AjaxError", "TransportError", "DecodeError"):
        assert issubclass(getattr(b24batch, name), b24batch.B24Error)


def test_every_public_name_has_a_docstring_with_an_example() -> None:
    """Each exported class and function documents itself with at least one example."""
    missing = [
        name
        for name in b24batch.__all__
        if callable(getattr(b24batch, name))
        and ">>>" not in (getattr(b24batch, name).__doc__ or "")
    ]
    assert missing == []
