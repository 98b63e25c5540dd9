"""What results look like: short reprs, notebook HTML, flat records (b24batch.display)."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

import attrs
import pytest

from b24batch import AjaxResult, B24Hook, BatchByChunkV3, BatchResult, BatchV2, BatchV3
from b24batch.display import PREVIEW_CHARS, ROWS_SHOWN, preview
from b24batch.testing import FakePortal, Fault
from tests.conftest import SECRET


def _cells(html: str) -> list[str]:
    return re.findall(r"<td[^>]*>(.*?)</td>", html)


def test_batch_html_has_one_row_per_command(portal: FakePortal, client: B24Hook) -> None:
    """Each command is a row with key, method, status and an escaped preview."""
    portal.add_task(title="<script>alert(1)</script> & more")
    result = BatchV3(client).make(
        {"first": ("tasks.task.get", {"id": 1, "select": ["title"]}), "all": ("tasks.task.list",)}
    )
    html = result._repr_html_()
    assert html.startswith('<table class="b24batch"')
    cells = _cells(html)
    assert cells[:3] == ["first", "tasks.task.get", "ok"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in cells[3]
    assert "<script>" not in html
    assert cells[4:7] == ["all", "tasks.task.list", "ok"]
    assert "ok: 2 commands, HTTP 200" in html


def test_long_results_are_truncated(portal: FakePortal, client: B24Hook) -> None:
    """A long result is cut to PREVIEW_CHARS characters with an ellipsis."""
    portal.add_task(title="x" * 500)
    html = BatchV3(client).make([("tasks.task.get", {"id": 1})])._repr_html_()
    shown = unescape(_cells(html)[3])
    assert len(shown) == PREVIEW_CHARS
    assert shown.endswith("…")


def test_failed_batch_rows_and_error(portal: FakePortal, client: B24Hook) -> None:
    """A failed batch shows every command as failed and the portal's error once."""
    result = BatchV3(client).make([("tasks.task.get", {"id": 1}), ("tasks.task.get", {"id": 2})])
    html = result._repr_html_()
    cells = _cells(html)
    assert cells[2] == "failed"
    assert cells[6] == "failed"
    assert "error: BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION (HTTP 400)" in html
    assert repr(result).startswith(
        "<BatchResult failed: 2 commands, BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"
    )


def test_reprs_are_short(portal: FakePortal, client: B24Hook) -> None:
    """repr() is one short line, whatever the size of the results."""
    for n in range(30):
        portal.add_task(title=f"Task {n} " + "y" * 100)
    result = BatchV3(client).make(
        [("tasks.task.get", {"id": n}) for n in range(1, 31)],
        request_id="r-1",
        return_ajax_result=True,
    )
    assert repr(result) == "<BatchResult ok: 30 commands, HTTP 200, request_id='r-1'>"
    item = result.data[0]
    assert isinstance(item, AjaxResult)
    assert repr(item).startswith("<AjaxResult 0 tasks.task.get ok: {")
    assert len(repr(item)) < 120
    assert "<table" in item._repr_html_()


def test_secrets_never_reach_previews(portal: FakePortal, client: B24Hook) -> None:
    """Webhook URLs and auth-like keys in results are masked in repr, HTML and previews."""
    portal.register(
        "custom.leaky",
        lambda q: {"hook": f"https://p.example/rest/1/{SECRET}/", "auth": "tok123", "x": 1},
    )
    result = BatchV3(client).make([("custom.leaky",)], return_ajax_result=True)
    shown = [result._repr_html_(), repr(result), repr(result.data[0]), result.data[0]._repr_html_()]
    assert not [text for text in shown if SECRET in text or "tok123" in text]
    assert result.data[0].result["auth"] == "tok123"  # the data itself is untouched


def test_many_rows_are_cut_with_a_note(portal: FakePortal, client: B24Hook) -> None:
    """Past ROWS_SHOWN rows the table says how many more there are."""
    portal.register("test.echo", lambda q: q)
    result = BatchByChunkV3(client).make([("test.echo", {"n": n}) for n in range(60)], chunk_size=1)
    html = result._repr_html_()
    assert html.count("<tr>") == 1 + ROWS_SHOWN + 1  # head, rows, note
    assert f"… {60 - ROWS_SHOWN} more rows" in html
    assert repr(result) == "<ChunkedResult ok: 60 results in 60 chunks>"


def test_chunked_html_names_failed_chunks(portal: FakePortal, client: B24Hook) -> None:
    """A chunked result shows one row per chunk, with the failed chunk's error."""

    def fail(query: dict[str, Any]) -> Any:
        raise FakePortal.CommandError("boom", code="TEST_FAILURE", status=400)

    portal.register("test.echo", lambda q: q)
    portal.register("test.fail", fail)
    calls: list[Any] = [("test.echo", {"n": n}) for n in range(120)]
    calls[60] = ("test.fail",)
    result = BatchByChunkV3(client).make(calls)
    cells = _cells(result._repr_html_())
    assert cells[:3] == ["0", "0 to 49", "ok"]
    assert cells[4:7] == ["1", "50 to 99", "failed"]
    assert "TEST_FAILURE" in cells[7]
    assert "20 commands not executed" in result._repr_html_()
    assert repr(result) == "<ChunkedResult failed: 1 of 2 chunks failed, 20 not executed>"


@attrs.frozen
class Task:
    id: int
    title: str


@attrs.frozen
class TaskItem:
    item: Task


def test_to_records_flattens_results(portal: FakePortal, client: B24Hook) -> None:
    """Records are flat dicts with dotted columns, ready for pandas.DataFrame."""
    portal.add_task(title="One")
    portal.add_task(title="Two")
    result = BatchV3(client).make(
        [("tasks.task.get", {"id": n, "select": ["id", "title"]}) for n in (1, 2)]
    )
    assert result.to_records() == [
        {"key": 0, "method": "tasks.task.get", "ok": True, "item.id": 1, "item.title": "One"},
        {"key": 1, "method": "tasks.task.get", "ok": True, "item.id": 2, "item.title": "Two"},
    ]
    typed = BatchV3(client).make([("tasks.task.get", {"id": 2})], result_type=TaskItem)
    assert typed.to_records() == [
        {"key": 0, "method": "tasks.task.get", "ok": True, "item.id": 2, "item.title": "Two"}
    ]
    listed = BatchV3(client).make({"all": ("tasks.task.list",)})
    assert listed.to_records() == [
        {"key": "all", "method": "tasks.task.list", "ok": True, "items": [{"id": 1}, {"id": 2}]}
    ]


def test_writes_before_a_rest3_failure_are_maybe_executed(
    portal: FakePortal, client: B24Hook
) -> None:
    """A REST 3.0 batch failed as a whole: its writes in maybe_executed show "maybe executed"."""
    result = BatchV3(client).make(
        [("tasks.task.add", {"fields": {"title": "ran"}}), ("tasks.task.get", {"id": 999})]
    )
    assert result.maybe_executed == (0,)
    assert portal.tasks[1]["title"] == "ran"  # it did run
    cells = _cells(result._repr_html_())
    assert cells[:3] == ["0", "tasks.task.add", "maybe executed"]
    assert cells[4:7] == ["1", "tasks.task.get", "failed"]
    records = result.to_records()
    assert [(r["key"], r["ok"], r["maybe_executed"]) for r in records] == [
        (0, False, True),
        (1, False, False),
    ]


def test_to_records_of_a_failure(portal: FakePortal, client: B24Hook) -> None:
    """A failed batch gives one record per command, with the error."""
    result = BatchV3(client).make([("tasks.task.get", {"id": 9})])
    (record,) = result.to_records()
    assert record["ok"] is False
    assert record["key"] == 0
    assert "ENTITYNOTFOUND" in record["error"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": 1}, '{"a": 1}'),
        (None, "null"),
        ({"password": "p", "n": {"Auth": "t"}}, '{"password": "***", "n": {"Auth": "***"}}'),
        ("line\nbreak", '"line\\nbreak"'),
    ],
)
def test_preview(value: Any, expected: str) -> None:
    """Previews are one-line JSON with sensitive keys masked."""
    assert preview(value) == expected


def test_isolated_failures_show_per_command(portal: FakePortal, client: B24Hook) -> None:
    """A partial result shows each command as ok with its preview or failed with its error."""
    portal.add_task(title="Here")
    calls = {
        "here": ("tasks.task.get", {"id": 1, "select": ["title"]}),
        "gone": ("tasks.task.get", {"id": 99}),
    }
    result = BatchV3(client).make(calls, isolate_errors=True)
    cells = [unescape(cell) for cell in _cells(result._repr_html_())]
    assert cells[:3] == ["here", "tasks.task.get", "ok"]
    assert cells[3] == '{"item": {"title": "Here"}}'
    assert cells[4:6] == ["gone", "tasks.task.get"]
    assert cells[6] == "failed"
    assert cells[7].startswith("command 'gone': BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION")
    assert repr(result).startswith(
        "<BatchResult failed: 1 of 2 commands, BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION,"
    )
    records = result.to_records()
    assert records[0] == {
        "key": "here",
        "method": "tasks.task.get",
        "ok": True,
        "item.title": "Here",
    }
    assert (records[1]["key"], records[1]["ok"]) == ("gone", False)
    assert "Record with ID = `99` not found" in records[1]["error"]


def test_classic_failures_and_skipped_commands_show_per_command(
    portal: FakePortal, client: B24Hook
) -> None:
    """A classic batch shows each command as ok, failed with its error, or not executed."""
    from b24batch import BatchV2

    deal = portal.add_deal(TITLE="Here")
    calls = [
        ("crm.deal.get", {"id": deal}),
        ("crm.deal.get", {"id": 999}),
        ("crm.deal.add", {"fields": {"TITLE": "never"}}),
    ]
    result = BatchV2(client).make(calls)
    cells = [unescape(cell) for cell in _cells(result._repr_html_())]
    assert cells[2] == "ok"
    assert cells[4:8] == ["1", "crm.deal.get", "failed", "command 1: Not found"]
    assert cells[8:12] == ["2", "crm.deal.add", "not executed", ""]
    assert repr(result).startswith(
        "<BatchResult failed: 1 of 3 commands, 1 not executed, Not found"
    )
    records = result.to_records()
    assert [record["ok"] for record in records] == [True, False, False]
    assert records[2]["error"] == "not executed"


def _nested_json(depth: int) -> str:
    """JSON text nested ``depth`` levels deep, built without recursion: [{"x": [{"x": …}]}]."""
    opens = "".join('{"x": ' if level % 2 else "[" for level in reversed(range(depth)))
    closes = "".join("}" if level % 2 else "]" for level in range(depth))
    return f'{opens}"bottom"{closes}'


@pytest.mark.parametrize("depth", [600, 900])
def test_deeply_nested_results_display_bounded(
    portal: FakePortal, client: B24Hook, depth: int
) -> None:
    """A result nested 600 or 900 deep (valid JSON the batch returns) shows, cut with '…'."""
    answer = (
        f'{{"result": {{"result": {{"deep": {_nested_json(depth)}}}, "result_error": [], '
        f'"result_total": [], "result_next": [], "result_time": []}}, "time": {{}}}}'
    )
    portal.inject(Fault.response(200, answer, {"Content-Type": "application/json"}))
    result = BatchV2(client).make({"deep": ("test.deep",)}, return_ajax_result=True)
    ajax = result.data["deep"]
    level, depth_seen = ajax.result, 0
    while not isinstance(level, str):
        level, depth_seen = level[0] if isinstance(level, list) else level["x"], depth_seen + 1
    assert (level, depth_seen) == ("bottom", depth)
    shown = repr(ajax)
    assert shown.startswith('<AjaxResult \'deep\' test.deep ok: {"x": [{"x": [')
    assert "…" in shown
    assert len(shown) < 200
    assert "…" in unescape(_cells(ajax._repr_html_())[3])
    assert _cells(result._repr_html_())[:3] == ["deep", "test.deep", "ok"]
    assert "…" in unescape(_cells(result._repr_html_())[3])
    assert repr(result).startswith("<BatchResult ok: 1 command, HTTP 200")
    (record,) = result.to_records()
    assert (sorted(record), record["ok"]) == (["key", "method", "ok", "x"], True)


def test_records_of_a_deep_mapping_flatten_33_levels_then_keep_it_whole() -> None:
    """to_records() of dicts nested 900 deep: dotted columns 33 levels down, the rest whole."""
    deep: Any = {"leaf": 1}
    for _ in range(900):
        deep = {"a": deep}
    result = BatchResult(data=[deep], request_id="r", status=200, keys=(0,), methods=("m",))
    (record,) = result.to_records()
    (column,) = (name for name in record if name.startswith("a."))
    assert column == ".".join(["a"] * 33)
    assert isinstance(record[column], dict)


def test_a_deep_preview_shows_its_top_levels() -> None:
    """preview() of a value nested past its depth bound keeps its top 100 levels, then '…'."""
    text = preview(json.loads(_nested_json(900)), limit=10_000)
    assert text.startswith('{"x": [{"x": [')
    assert text.count("[") + text.count("{") == 100  # looks 100 levels deep, no further
    assert '["…"]' in text
    assert len(text) < 1_000
