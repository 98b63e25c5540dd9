"""The built API reference reads as a reference: links, code blocks, public names, every member.

The site is built once for this module (``mkdocs build --strict``, as CI builds it), into a
temporary directory, and the reference page's HTML is read as a browser would show it: its text,
and the addresses and tooltips of its links.
"""

from __future__ import annotations

import configparser
import functools
import inspect
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import b24batch
import b24batch.testing

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 600  # seconds; a build takes about 10 s on this machine

# What a docstring written for Sphinx leaves behind when mkdocstrings shows it as Markdown.
ROLES = (":class:", ":meth:", ":func:", ":attr:", ":data:", ":exc:", ":mod:", ":obj:")
# Names of the private wings and of the private classes behind the public ones.
PRIVATE = ("_Client", "_CallList", "_FetchList", "_Lister", "port.Client", "_engine", "_limits")
PRIVATE += ("_protocols",)
# A private name in the text: ``_Fallback``, ``_SharedDefault()`` (dunders are Python's own).
PRIVATE_NAME = re.compile(r"(?<![\w.])_[A-Za-z]\w*")
# A private segment in an address or tooltip: ``b24batch._limits...``, ``lists._CallList``.
PRIVATE_PATH = re.compile(r"(?:^|[.#])_[A-Za-z]")
PUBLIC = [("b24batch", name, getattr(b24batch, name)) for name in b24batch.__all__]
PUBLIC += [
    ("b24batch.testing", name, getattr(b24batch.testing, name)) for name in b24batch.testing.__all__
]
PUBLIC_CLASSES = {value for _, _, value in PUBLIC if inspect.isclass(value)}
# Members left out of the reference on purpose, each the engine's side of a public class: they
# take or give the engine's own types. ``Client`` is a type to annotate with, shown without
# its members for the same reason.
NOT_LISTED = {
    "b24batch.B24Hook": {"send"},
    "b24batch.B24OAuth": {"send"},
    "b24batch.LimitStore": {"fallback"},
    "b24batch.Client": {"backoff", "credential_version", "limiter", "origin", "renew", "retry"}
    | {"send", "timeout"},
}
_METHODS = (property, functools.cached_property, classmethod, staticmethod)


class _Page(HTMLParser):
    """The text a reader sees, the attribute values a reader meets (tooltips, addresses), ids."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.attributes: list[str] = []
        self.ids: set[str] = set()
        self.code: list[str] = []
        self._in_pre = 0
        self._in_article = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id":
                self.ids.add(value)
            elif name in ("title", "href"):
                self.attributes.append(value)
        if tag == "pre":
            self._in_pre += 1
            self.code.append("")
        if tag == "article":
            self._in_article += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._in_pre -= 1
        if tag == "article":
            self._in_article -= 1

    def handle_data(self, data: str) -> None:
        if self._in_article:  # the page's content, not the theme's navigation and scripts
            self.text.append(data)
        if self._in_pre:
            self.code[-1] += data


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> _Page:
    """The API reference page of a site built with ``mkdocs build --strict``."""
    site = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    page = _Page()
    page.feed((site / "api" / "index.html").read_text(encoding="utf-8"))
    return page


def test_no_sphinx_role_is_left_in_the_text(reference: _Page) -> None:
    """Cross-references are links, not ``:class:`X``` printed as it was written."""
    text = "".join(reference.text)
    assert [role for role in ROLES if role in text] == []


def test_no_docstring_section_is_left_as_text(reference: _Page) -> None:
    """A Google-style section is a table, not ``Args: client: ...`` run into a paragraph."""
    text = "".join(reference.text)
    assert "Args:" not in text


def test_no_doctest_directive_is_shown(reference: _Page) -> None:
    """An example shows code and output, not the ``# doctest: +SKIP`` that kept it from running."""
    text = "".join(reference.text)
    assert "doctest:" not in text
    assert "+SKIP" not in text


def test_no_private_name_is_shown_or_linked(reference: _Page) -> None:
    """Signatures, bases and links name public things only, also in tooltips and addresses."""
    text = "".join(reference.text)
    assert [name for name in PRIVATE if name in text] == []
    assert sorted(set(PRIVATE_NAME.findall(text))) == []
    leaks = sorted({value for value in reference.attributes for name in PRIVATE if name in value})
    assert leaks == []
    assert sorted({value for value in reference.attributes if PRIVATE_PATH.search(value)}) == []


@pytest.mark.parametrize("path", [f"{module}.{name}" for module, name, _ in PUBLIC])
def test_every_public_name_has_an_entry(reference: _Page, path: str) -> None:
    """Everything a user may import has its own heading (its id is the import path)."""
    assert path in reference.ids


def _members(cls: type) -> set[str]:
    """The public methods and properties of ``cls`` not documented under a public base."""
    documented_above = {
        name
        for base in cls.__mro__[1:]
        if base in PUBLIC_CLASSES or base.__module__ in ("builtins", "typing", "abc", "enum")
        for name in vars(base)
    }
    return {
        name
        for klass in cls.__mro__
        if klass not in PUBLIC_CLASSES - {cls}
        and klass.__module__ not in ("builtins", "typing", "abc", "enum")
        for name, value in vars(klass).items()
        if not name.startswith("_")
        and name not in documented_above
        and (inspect.isfunction(value) or isinstance(value, _METHODS))
    }


@pytest.mark.parametrize(
    ("path", "cls"),
    [(f"{module}.{name}", value) for module, name, value in PUBLIC if inspect.isclass(value)],
)
def test_every_public_member_has_an_entry(reference: _Page, path: str, cls: type) -> None:
    """Every method and property of a public class is listed under it, inherited ones too."""
    expected = _members(cls) - NOT_LISTED.get(path, set())
    assert sorted(name for name in expected if f"{path}.{name}" not in reference.ids) == []


@pytest.mark.parametrize(
    "path",
    [
        "b24batch.CallListV3.make",
        "b24batch.CallListV2.make",
        "b24batch.FetchListV3.iter",
        "b24batch.FetchListV3.make",
        "b24batch.FetchListV2.iter",
        "b24batch.FetchListV2.make",
        "b24batch.B24Hook.from_webhook_url",
        "b24batch.B24Hook.close",
        "b24batch.B24OAuth.close",
        "b24batch.BatchV3.make",
        "b24batch.BatchByChunkV2.make",
    ],
)
def test_inherited_methods_are_listed(reference: _Page, path: str) -> None:
    """A method a face inherits from a private base is listed under the face."""
    assert path in reference.ids


def test_examples_are_code_blocks(reference: _Page) -> None:
    """The examples are shown as code, one statement a line, not flowed into a paragraph."""
    blocks = "\n".join(reference.code)
    assert 'B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/abc123/")' in blocks
    assert 'FetchListV2(b24).iter("crm.deal.list"' in blocks
    assert "with B24Hook.from_webhook_url(" in blocks


def test_the_test_extra_installs_what_the_build_needs() -> None:
    """The README's test command installs ``.[test]`` only: it carries every docs package."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    extras = config["options.extras_require"]

    def requirements(extra: str) -> set[str]:
        lines = (line.split("#")[0].strip() for line in extras[extra].splitlines())
        return {line for line in lines if line}

    assert requirements("docs") <= requirements("test")


def _words(docstring: str | None) -> str:
    """A docstring's words, one space apart, as the reference flows them."""
    return " ".join((docstring or "").split())


def test_the_reference_gives_the_numbers_of_private_constants() -> None:
    """Where a public docstring states a private constant's value (the reference cannot link
    it), the value is the constant's."""
    from b24batch._limits import policy, shared

    rate_limit = _words(b24batch.RateLimit.__doc__)
    low, high = policy.PER_SECOND_RANGE
    assert f"1 to {policy.MAX_BURST:_}".replace("_", " ") in rate_limit
    assert f"from {low:g} to {high:_g} per second".replace("_", " ") in rate_limit
    assert f"at most {policy.MAX_OPERATING_LIMIT:g})" in rate_limit
    assert f"(default {policy.DEFAULT_RESET_SLACK:g} s)" in rate_limit
    assert f"(default {policy.DEFAULT_HEADROOM})" in rate_limit
    store = b24batch.LimitStore
    assert f"every {shared.HOLD_DOWN:g} s while" in _words(store.__doc__)
    assert f"within {shared.LIVE_WINDOW:g} s:" in _words(store.saw.__doc__)
    call = _words(store.call.__doc__)
    assert f"left alone for {shared.HOLD_DOWN:g} s" in call
    assert f"slower than {shared.SLOW_STORE:g} s on average" in call
