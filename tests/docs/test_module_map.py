"""CONTRIBUTING.md's module map: one line per module, quoting the first line of its docstring."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "b24batch"
CONTRIBUTING = ROOT / "CONTRIBUTING.md"

# ### `b24batch/_engine/` — the one engine
_HEADING = re.compile(r"^### `(?P<folder>b24batch/(?:[\w]+/)*)`")
# - `b24batch/_engine/send.py` — Sending one prepared batch ...   (a package: `b24batch/_engine/`)
_LINE = re.compile(r"^- `(?P<path>b24batch/[^`]*)` — (?P<first>.*)$")


def module_map() -> dict[str, tuple[str, str]]:
    """The map's lines: each path named, to (the folder heading it sits under, its text)."""
    text = CONTRIBUTING.read_text(encoding="utf-8")
    section = text.split("\n## Module map\n", 1)
    assert len(section) == 2, "CONTRIBUTING.md has no '## Module map' section"
    body = section[1].split("\n## ", 1)[0]
    lines: dict[str, tuple[str, str]] = {}
    folder = ""
    for line in body.splitlines():
        if heading := _HEADING.match(line):
            folder = heading["folder"]
        elif entry := _LINE.match(line):
            assert entry["path"] not in lines, f"the map names {entry['path']} twice"
            lines[entry["path"]] = (folder, entry["first"])
    return lines


def modules() -> dict[str, tuple[str, str | None]]:
    """Every module of the package by its map path, to (its folder, its docstring's first line).

    A package's ``__init__.py`` is named by the package's folder (``b24batch/_engine/``).
    """
    found: dict[str, tuple[str, str | None]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        folder = path.parent.relative_to(ROOT).as_posix() + "/"
        name = folder if path.name == "__init__.py" else path.relative_to(ROOT).as_posix()
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        found[name] = (folder, docstring.splitlines()[0] if docstring else None)
    return found


def test_every_module_is_in_the_map_with_its_docstring() -> None:
    """Each module has a line under its folder's heading quoting its docstring's first line."""
    mapped = module_map()
    problems = []
    for name, (folder, first) in modules().items():
        if first is None:
            problems.append(f"{name}: has no docstring to quote")
        elif name not in mapped:
            problems.append(f"{name}: missing from the map; add\n    - `{name}` — {first}")
        elif mapped[name][1] != first:
            problems.append(
                f"{name}: the map says\n    {mapped[name][1]}\n  its docstring says\n    {first}"
            )
        elif mapped[name][0] != folder:
            problems.append(f"{name}: listed under `{mapped[name][0]}`, not under `{folder}`")
    assert not problems, "CONTRIBUTING.md's module map is stale:\n" + "\n".join(problems)


def test_the_map_names_no_module_that_does_not_exist() -> None:
    """Every path in the map is a module or a package of b24batch today."""
    mapped = module_map()
    assert len(mapped) > 10, "the module map lists hardly any modules: is its format still read?"
    gone = sorted(set(mapped) - set(modules()))
    assert not gone, "CONTRIBUTING.md's module map names modules that do not exist: " + ", ".join(
        gone
    )
