"""Every Python example on every documentation page runs, as written.

Each page's ``python`` blocks run in order in one namespace of their own, with nothing bound
beforehand but ``$B24_WEBHOOK_URL`` (the Quick start's portal: a FakePortal seeded as
``serve --seed`` seeds it), so an example that uses a name it does not define fails here. A
block written as a user's pytest file (``# test_….py`` on its first line) runs under pytest
with the plugin's fixtures. A block opts out only with ``<!-- not run: REASON -->`` on the line
before it, and there may be only a few.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from b24batch import B24Hook, B24OAuth
from b24batch.cli import SEED_DEALS, SEED_TASKS
from b24batch.testing import FakePortal

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
_BLOCK = re.compile(
    # ``` { .python } is the form ruff's formatter leaves alone (a snippet include, say).
    r"(?:^<!-- not run: (?P<reason>[^>]*?) -->\n)?^```(?:python|\s*\{\s*\.python\s*\})\n"
    r"(?P<code>.*?)^```",
    re.M | re.S,
)
MAX_OPT_OUTS = 5


def python_blocks(path: Path) -> list[tuple[str, str | None]]:
    """The page's python blocks, each with its opt-out reason (None: it runs)."""
    text = path.read_text(encoding="utf-8")
    return [(m["code"], m["reason"]) for m in _BLOCK.finditer(text)]


def _runnable(path: Path) -> list[str]:
    return [
        code for code, reason in python_blocks(path) if reason is None and not _is_test_file(code)
    ]


def _is_test_file(code: str) -> bool:
    return re.match(r"# test_\w+\.py", code) is not None


@pytest.fixture
def seeded_webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePortal]:
    """$B24_WEBHOOK_URL names a FakePortal seeded as ``serve --seed`` seeds one."""
    with FakePortal() as portal:
        for title, responsible, status in SEED_TASKS:
            portal.add_task(title=title, responsibleId=responsible, status=status)
        for title, amount in SEED_DEALS:
            portal.add_deal(TITLE=title, OPPORTUNITY=amount)
        monkeypatch.setenv("B24_WEBHOOK_URL", portal.webhook_url)
        yield portal


def test_every_page_is_checked() -> None:
    """The pages are found, and most of them carry runnable examples."""
    with_examples = {path.name for path in PAGES if _runnable(path)}
    assert {"quickstart.md", "calls.md", "errors.md", "chunks.md", "retries.md"} <= with_examples
    assert {"oauth.md", "testing.md", "notebooks.md", "js-sdk.md"} <= with_examples


@pytest.mark.parametrize("page", [p for p in PAGES if _runnable(p)], ids=lambda p: p.name)
def test_page_examples_run(
    page: Path, seeded_webhook: FakePortal, capsys: pytest.CaptureFixture[str]
) -> None:
    """The page's examples run in order, in one namespace, and print what they say."""
    namespace: dict[str, object] = {"__name__": f"docs.{page.stem}"}
    try:
        for number, code in enumerate(_runnable(page)):
            exec(compile(code, f"{page.name}[{number}]", "exec", dont_inherit=True), namespace)
    finally:
        for value in namespace.values():  # a failed example leaves no server or pool behind
            if isinstance(value, B24Hook | B24OAuth):
                value.close()
            elif isinstance(value, FakePortal):
                value.stop()
    if page.name == "quickstart.md":
        assert capsys.readouterr().out == "1 Write the spec\n2 Review it\n3 Ship\n"


def test_testing_page_pytest_example_passes(pytester: pytest.Pytester) -> None:
    """The Testing page's pytest file passes as a user's test file with the plugin's fixtures."""
    (example,) = [code for code, _ in python_blocks(DOCS / "testing.md") if _is_test_file(code)]
    pytester.makeconftest("pytest_plugins = ['b24batch.testing.pytest_plugin']")
    pytester.makepyfile(test_sync=example)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:b24batch")
    result.assert_outcomes(passed=3)


def test_only_a_few_blocks_opt_out_and_each_says_why() -> None:
    """At most a few blocks are not run, each with its reason."""
    opted = [
        (path.name, reason)
        for path in PAGES
        for code, reason in python_blocks(path)
        if reason is not None and not _tested_example(code)
    ]
    assert len(opted) <= MAX_OPT_OUTS, opted
    assert all(reason.strip() for _, reason in opted)


def _tested_example(code: str) -> bool:
    """A block that only includes a file of docs/examples which a test of tests/docs loads by
    its name runs there, as a whole program, rather than here."""
    include = re.fullmatch(r'--8<-- "(docs/examples/[\w.]+\.py)"\n', code)
    if include is None:
        return False
    name = Path(include[1]).name
    return (ROOT / include[1]).is_file() and any(
        f'"{name}"' in test.read_text(encoding="utf-8")
        for test in (ROOT / "tests" / "docs").glob("test_*.py")
    )


def test_the_readme_quick_start_is_the_sites() -> None:
    """The README's only Python example is the Quick start page's, character for character."""
    readme = python_blocks(ROOT / "README.md")
    quick = python_blocks(DOCS / "quickstart.md")
    assert [code for code, _ in readme] == [quick[0][0]]


def test_the_readme_which_class_table_is_the_quick_starts() -> None:
    """README's quick start opens with the quick start page's table, row for row."""
    table = re.compile(r"^\| your methods \|.*?\n(?=\n)", re.M | re.S)
    readme = table.search((ROOT / "README.md").read_text(encoding="utf-8"))
    quick = table.search((DOCS / "quickstart.md").read_text(encoding="utf-8"))
    assert readme is not None
    assert quick is not None
    assert readme.group(0) == quick.group(0)
    assert "| `CallV3` | `BatchV3` |" in quick.group(0)


def test_readme_links_point_at_pages_that_exist() -> None:
    """Every docs/ page the README links to is there."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = re.findall(r"\]\((docs/[^)#]+)", text)
    assert len(linked) >= 10
    assert [link for link in linked if not (ROOT / link).is_file()] == []
