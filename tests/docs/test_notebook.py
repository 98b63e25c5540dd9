"""docs/examples/quickstart.ipynb runs top to bottom and renders what its text promises.

Runs headlessly without Jupyter: each code cell is executed in one shared namespace, in order,
and a cell's last expression is evaluated and rendered as Jupyter would (``_repr_html_``).
"""

from __future__ import annotations

import ast
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b24batch import B24Hook, BatchV3
from b24batch.testing import FakePortal

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "examples" / "quickstart.ipynb"
TITLES = ["Write the report", "Call <ACME> & Co", "Book the room"]


def _source(cell: dict[str, Any]) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def _run_cell(source: str, name: str, namespace: dict[str, Any]) -> Any:
    """Execute ``source``; return the value of its last statement if that is an expression."""
    tree = ast.parse(source, filename=name)
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        tree.body.pop()
    exec(compile(tree, name, "exec"), namespace)
    if not isinstance(last, ast.Expr):
        return None
    return eval(compile(ast.Expression(last.value), name, "eval"), namespace)


@pytest.fixture(scope="module")
def notebook() -> dict[str, Any]:
    """The notebook's JSON."""
    data: dict[str, Any] = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def namespace() -> dict[str, Any]:
    """The globals the notebook's cells share, as in one kernel."""
    return {"__name__": "__main__"}


@pytest.fixture(scope="module")
def shown(
    notebook: dict[str, Any], namespace: dict[str, Any]
) -> Iterator[dict[str, tuple[Any, str | None]]]:
    """Cell id -> (last expression's value, its HTML or None), after running every cell."""
    values: dict[str, tuple[Any, str | None]] = {}
    try:
        for cell in notebook["cells"]:
            if cell["cell_type"] != "code":
                continue
            value = _run_cell(_source(cell), f"<cell {cell['id']}>", namespace)
            render = getattr(value, "_repr_html_", None)
            values[cell["id"]] = (value, render() if render is not None else None)
        yield values
    finally:
        portal = namespace.get("portal")
        if portal is not None:  # a cell failed before the last one stopped it
            portal.stop()


def test_notebook_is_valid_nbformat_4_without_outputs(notebook: dict[str, Any]) -> None:
    """nbformat 4.5 with unique cell ids, and no stored outputs or execution counts."""
    assert (notebook["nbformat"], notebook["nbformat_minor"]) == (4, 5)
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    ids = [cell["id"] for cell in notebook["cells"]]
    assert len(ids) == len(set(ids))
    assert notebook["cells"][0]["cell_type"] == "markdown"
    for cell in notebook["cells"]:
        assert cell["cell_type"] in ("markdown", "code")
        if cell["cell_type"] == "code":
            assert cell["outputs"] == []
            assert cell["execution_count"] is None


def test_batch_cell_renders_a_table_of_escaped_titles(
    shown: dict[str, tuple[Any, str | None]],
) -> None:
    """The BatchResult shows as an HTML table with each title, HTML-escaped."""
    result, page = shown["run-batch"]

    assert result.is_success
    assert [entry["item"]["title"] for entry in result.data] == TITLES
    assert page is not None
    assert "<table" in page
    for title in TITLES:
        assert html.escape(title) in page
    assert "<ACME>" not in page
    assert page.count("<tr>") == 1 + len(TITLES)  # the header row, then one per command


def test_records_cell_flattens_each_result(shown: dict[str, tuple[Any, str | None]]) -> None:
    """to_records() gives one flat dict per command, titles under ``item.title``."""
    records, page = shown["records"]

    assert page is None
    assert [record["item.title"] for record in records] == TITLES
    assert [record["method"] for record in records] == ["tasks.task.get"] * 3
    assert all(record["ok"] for record in records)


def test_failing_cell_renders_the_error_code(shown: dict[str, tuple[Any, str | None]]) -> None:
    """The failed batch shows as a table naming the error code; the update before it stays."""
    failed, page = shown["failing-batch"]

    assert not failed.is_success
    assert failed.errors[0].code == "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"
    assert page is not None
    assert "<table" in page
    assert "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION" in page
    assert "999999" in page
    assert "maybe_executed: 0" in page
    assert shown["not-rolled-back"] == (((0,), "Renamed"), None)


def test_failing_cell_marks_the_update_maybe_executed(
    shown: dict[str, tuple[Any, str | None]],
) -> None:
    """The update that ran before the failure is "maybe executed" in the table, not "failed"."""
    _, page = shown["failing-batch"]
    assert page is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", page)
    assert cells[:3] == ["0", "tasks.task.update", "maybe executed"]
    assert cells[4:7] == ["1", "tasks.task.get", "failed"]


def test_chunked_cell_renders_one_row_per_chunk(shown: dict[str, tuple[Any, str | None]]) -> None:
    """120 commands go out as chunks of 50, 50 and 20, shown one row per chunk."""
    chunked, page = shown["chunked"]

    assert chunked.is_success
    assert [len(chunk.data) for chunk in chunked.chunks] == [50, 50, 20]
    assert len(chunked.data) == 120
    assert chunked.data[-1]["item"]["title"] == "Imported 119"
    assert page is not None
    assert "<table" in page
    assert "120 results in 3 chunks" in page
    assert page.count("<tr>") == 1 + 3


def test_last_cell_stops_the_portal(
    shown: dict[str, tuple[Any, str | None]], namespace: dict[str, Any]
) -> None:
    """The notebook cleans up after itself: its last cell stops the FakePortal."""
    assert list(shown)[-1] == "stop-portal"
    assert shown["stop-portal"] == (None, None)
    assert shown["start-portal"][0] is namespace["b24"]
    assert not namespace["portal"].running


def test_notebooks_page_shows_the_real_repr(portal: FakePortal, client: B24Hook) -> None:
    """docs/notebooks.md's ``print(result)`` comment is the repr its three-command batch has."""
    page = (NOTEBOOK.parents[1] / "notebooks.md").read_text(encoding="utf-8")
    (comment,) = re.findall(r"print\(result\)  # (<BatchResult .*>)", page)
    ids = [portal.add_task(title=title) for title in ("Report", "Call ACME", "Book the room")]
    result = BatchV3(client).make(
        [("tasks.task.get", {"id": task_id, "select": ["id", "title"]}) for task_id in ids]
    )
    assert comment == repr(result).replace(repr(result.request_id), "'…'")
