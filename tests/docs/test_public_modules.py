"""Users, docs and examples name only ``b24batch`` and ``b24batch.testing``, never a submodule.

The package's layout below those two may change (the wings ``_protocols``, ``_engine`` and
``_limits`` are private by name), so README.md, every documentation page, every example and
mkdocs.yml cite public names only: ``b24batch.<name in __all__>`` or
``b24batch.testing[.<name in b24batch.testing.__all__>]``, each possibly followed by attributes.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import b24batch
import b24batch.testing

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# A dotted name starting at the package: ``b24batch.errors``, ``b24batch.kinds.CODE_KINDS``.
_DOTTED = re.compile(r"(?<![\w.\-/])b24batch(?:\.[A-Za-z_]\w*)+")
# A module's file: ``b24batch/testing/portal.py``.
_FILE = re.compile(r"(?<![\w.\-/])b24batch(?:/\w+)+\.py\b")
# ``from b24batch import errors`` imports a submodule without naming it in dotted form.
_FROM = re.compile(r"\bfrom\s+(b24batch(?:\.testing)?)\s+import\s+(\([^)]*\)|[^\n]*)")


def user_facing_files() -> list[Path]:
    """README.md, every documentation page, every example and mkdocs.yml."""
    examples = [p for p in (DOCS / "examples").rglob("*") if p.is_file()]
    return [ROOT / "README.md", ROOT / "mkdocs.yml", *sorted(DOCS.rglob("*.md")), *examples]


def readable(path: Path) -> str:
    """A file's text, a notebook's JSON strings decoded in place so its lines keep their numbers."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".ipynb":
        return text
    lines = []
    for line in text.splitlines():
        string = re.fullmatch(r'\s*("(?:[^"\\]|\\.)*"),?', line)
        lines.append(json.loads(string.group(1)).rstrip("\n") if string else line)
    return "\n".join(lines)


def is_public(dotted: str) -> bool:
    """Whether a dotted name starting at ``b24batch`` names public things only."""
    parts = dotted.split(".")[1:]
    if parts[0] == "testing":
        return len(parts) == 1 or parts[1] in b24batch.testing.__all__
    return parts[0] in b24batch.__all__


def _imported(names: str) -> list[str]:
    """The names of a ``from ... import`` clause, without aliases, parentheses or comments."""
    names = re.sub(r"#[^\n]*", "", names).strip("() \n")
    return [name.split()[0] for name in names.replace("\n", " ").split(",") if name.strip()]


def offences(text: str) -> list[tuple[int, str]]:
    """Each (line, name) where ``text`` cites or imports a module other than the two public."""
    found: list[tuple[int, str]] = []

    def line_of(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    for match in _DOTTED.finditer(text):
        if not is_public(match.group()):
            found.append((line_of(match.start()), match.group()))
    for match in _FILE.finditer(text):
        found.append((line_of(match.start()), match.group()))
    for match in _FROM.finditer(text):
        module = match.group(1)
        exported = b24batch.testing.__all__ if module.endswith("testing") else b24batch.__all__
        for name in _imported(match.group(2)):
            if name not in exported and not (module == "b24batch" and name == "testing"):
                found.append((line_of(match.start()), f"from {module} import {name}"))
    return sorted(set(found))


def test_docs_name_only_public_modules() -> None:
    """README, docs pages, examples and mkdocs.yml cite or import no submodule of b24batch."""
    files = user_facing_files()
    assert any(p.suffix == ".ipynb" for p in files)
    assert any(p.suffix == ".py" for p in files)
    report = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in files
        for line, name in offences(readable(path))
    ]
    assert not report, "cites a module other than b24batch and b24batch.testing:\n" + "\n".join(
        report
    )


def test_the_check_catches_submodules() -> None:
    """A submodule, cited or imported in any form, is reported with its line; public names pass."""
    text = "\n".join(
        [
            "from b24batch import BatchV3, B24Hook",
            "from b24batch.errors import AjaxError",
            "::: b24batch.kinds.kind_of_code",
            "see `b24batch/testing/portal.py`",
            "from b24batch import (\n    AjaxError,\n    errors,  # the module\n)",
            "b24batch.testing.FakePortal.add_task and b24batch.AjaxError.code",
            "import b24batch._engine.send",
            "-p b24batch.testing.pytest_plugin",
        ]
    )
    assert offences(text) == [
        (2, "b24batch.errors"),
        (3, "b24batch.kinds.kind_of_code"),
        (4, "b24batch/testing/portal.py"),
        (5, "from b24batch import errors"),
        (10, "b24batch._engine.send"),
        (11, "b24batch.testing.pytest_plugin"),
    ]


def test_api_page_draws_the_exception_tree_of_errors_py() -> None:
    """The API page's exception tree (it cannot cite the module) is errors.py's, kept in step."""
    docstring = ast.get_docstring(ast.parse((ROOT / "b24batch" / "errors.py").read_text()))
    assert docstring is not None
    tree = docstring.split("```text\n", 1)[1].split("\n```", 1)[0]
    page = (DOCS / "api.md").read_text(encoding="utf-8")
    assert "```text\n" + tree + "\n```" in page
