"""The README's promises: its test command is the one CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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


pytest_plugins = ["pytester"]


def test_readme_testing_example_passes(pytester: pytest.Pytester) -> None:
    """The README's pytest example, run as a user's test file with the plugin's fixtures."""
    text = (ROOT / "README.md").read_text()
    (example,) = re.findall(r"```python\n(# test_sync\.py.*?)```", text, flags=re.S)
    pytester.makeconftest("pytest_plugins = ['b24batch.testing.pytest_plugin']")
    pytester.makepyfile(test_sync=example)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:b24batch")
    result.assert_outcomes(passed=3)


def test_readme_python_examples_run_against_a_fake_portal() -> None:
    """Every Python example in the README runs, in order, against a FakePortal.

    The examples' placeholders (the portal URLs, ``ids``, ``calls``, ``save`` …) are bound to
    the FakePortal here; nothing else in the examples is changed.
    """
    from b24batch import B24Hook, BatchV3
    from b24batch.testing import FakePortal

    text = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S)]
    blocks = [b for b in blocks if not b.startswith("# test_sync.py")]
    assert len(blocks) >= 6
    saved: list[object] = []
    with FakePortal() as portal:
        ids = [portal.add_task(title=f"Task {n}", responsibleId=n + 1) for n in range(3)]
        client = B24Hook.from_webhook_url(portal.webhook_url)

        class OAuthApp:
            def refresh_access_token(self) -> str:
                return portal.refresh_token()

        namespace: dict[str, object] = {
            "url": portal.webhook_url,
            "batch": BatchV3(client),
            "ids": ids,
            "all_ids": lambda: iter(ids),
            "save": lambda *args: saved.append(args),
            "calls": [("tasks.task.get", {"id": ids[0]})],
            "access_token": portal.access_token,
            "my_oauth": OAuthApp(),
            "store_token": lambda token: None,
        }
        for block in blocks:
            code = block.replace(
                "https://example.bitrix24.com/rest/1/abc123secret/", portal.webhook_url
            ).replace("https://example.bitrix24.com/rest/", portal.oauth_endpoint)
            exec(compile(code, "README.md", "exec", dont_inherit=True), namespace)
        client.close()
    first = namespace["first"]["item"]  # type: ignore[index]
    assert (first["id"], first["title"]) == (ids[0], "Task 0")
    assert namespace["result"].is_success  # type: ignore[attr-defined]
    assert [len(args[0]) for args in saved] == [3]
    assert {task["status"] for task in portal.tasks.values() if task["id"] in ids} == {"completed"}
