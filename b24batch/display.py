"""How results look to a person: short reprs, notebook HTML tables, flat records for pandas.

Pure functions over the result models (duck-typed: it imports them for type checking only). Every
preview is redacted (webhook secrets, tokens, and ``auth``/``password``-like keys at any depth)
and truncated, and all HTML is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from b24batch.redaction import MASK, SENSITIVE_KEYS, redact

if TYPE_CHECKING:
    from b24batch.results import AjaxResult, BatchResult, ChunkedResult

__all__ = [
    "PREVIEW_CHARS",
    "ROWS_SHOWN",
    "ajax_html",
    "ajax_repr",
    "batch_html",
    "batch_records",
    "batch_repr",
    "chunked_html",
    "chunked_repr",
    "preview",
]

PREVIEW_CHARS = 80
"""The longest preview of one result, in characters."""
ROWS_SHOWN = 50
"""The most table rows an HTML view shows before it says how many more there are."""

_STYLE = "border-collapse:collapse;font-size:90%"
_CELL = "text-align:left;vertical-align:top;padding:2px 8px"


_CUT = "…"
_MAX_DEPTH = 100
"""The deepest a preview looks into a value; JSON can nest deeper than Python's stack."""
_FLAT_DEPTH = 32
"""The deepest ``to_records`` flattens a mapping into dotted columns; deeper stays whole."""


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A one-line, redacted, truncated text of ``value`` (JSON, or repr for other objects).

    Bounded in depth and size whatever ``value`` holds (a result can nest deeper than Python's
    stack): it looks ``limit`` levels deep at most (and never past 100) and at ``limit`` items;
    what lies beyond is shown as ``…``. Every level and item writes at least one character, so
    the first ``limit`` characters are what the whole value would show.
    """
    if attrs.has(type(value)):
        try:
            text = repr(value)
        except RecursionError:
            text = f"{type(value).__name__}({_CUT})"
    else:
        bounded = _bounded(value, min(limit, _MAX_DEPTH), [limit])
        try:
            text = json.dumps(bounded, ensure_ascii=False, default=_short_repr)
        except (ValueError, RecursionError):  # a caller's own object, deep or cyclic
            text = _short_repr(value)
    text = redact(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + _CUT


def _bounded(value: Any, depth: int, budget: list[int]) -> Any:
    """A redacted copy of JSON-like ``value`` at most ``depth`` levels deep and ``budget[0]``
    items in all; what is cut becomes ``…``. (``redact_data`` without its unbounded depth.)"""
    budget[0] -= 1
    if not isinstance(value, dict | list | tuple):
        return value
    if depth <= 0 or budget[0] < 0:
        return _CUT
    if isinstance(value, dict):
        copy: dict[Any, Any] = {}
        for key, item in value.items():
            if budget[0] < 0:
                copy[_CUT] = _CUT
                break
            sensitive = isinstance(key, str) and key.lower() in SENSITIVE_KEYS
            copy[key] = MASK if sensitive else _bounded(item, depth - 1, budget)
        return copy
    items = []
    for item in value:
        if budget[0] < 0:
            items.append(_CUT)
            break
        items.append(_bounded(item, depth - 1, budget))
    return items


def _short_repr(value: Any) -> str:
    """``repr(value)``, or its type and ``…`` when it is too deep to write."""
    try:
        return repr(value)
    except RecursionError:
        return f"<{type(value).__name__} {_CUT}>"


def batch_repr(result: BatchResult[Any]) -> str:
    """``<BatchResult ok: 3 commands, HTTP 200, request_id='…'>``."""
    return f"<BatchResult {_summary(result)}, request_id={result.request_id!r}>"


def ajax_repr(result: AjaxResult) -> str:
    """``<AjaxResult 0 tasks.task.get ok: {"item": …}>``."""
    state = "ok" if result.error is None else f"failed: {result.error.code or 'error'}"
    return f"<AjaxResult {result.key!r} {result.method} {state}: {preview(result.result, 60)}>"


def chunked_repr(result: ChunkedResult[Any]) -> str:
    """``<ChunkedResult ok: 120 results in 3 chunks>``."""
    return f"<ChunkedResult {_chunked_summary(result)}>"


def batch_html(result: BatchResult[Any]) -> str:
    """A compact table: one row per command with key, method, status and a result preview."""
    if result.errors and not result.errors_by_key and not result.not_executed:  # as a whole
        # A REST 3.0 batch has no rollback: the writes before the failing command ran.
        doubtful = set(result.maybe_executed)
        rows = [
            (key, method, _MAYBE if key in doubtful else "failed", "")
            for key, method in zip(result.keys, result.methods, strict=False)
        ]
        notes = [f"error: {message}" for message in result.error_messages]
    else:
        rows = [
            (key, method, error, "")
            if error is _NOT_RUN or error is _UNANSWERED
            else (key, method, "ok", preview(value))
            if error is None
            else (key, method, "failed", error)
            for key, method, value, error in _commands(result)
        ]
        notes = []
    caption = f"BatchResult {_summary(result)}, request_id {result.request_id}"
    return _table(caption, ("key", "method", "status", "result"), rows, notes)


def ajax_html(result: AjaxResult) -> str:
    """One command's answer as a one-row table."""
    status = "ok" if result.error is None else "failed"
    shown = preview(result.result) if result.error is None else str(result.error)
    row = (result.key, result.method, status, shown)
    return _table("AjaxResult", ("key", "method", "status", "result"), [row], [])


def chunked_html(result: ChunkedResult[Any]) -> str:
    """One row per chunk: its commands, its status, and the first result or the error."""
    failed = {error.chunk: error for error in result.errors}
    rows = []
    for number, chunk in enumerate(result.chunks):
        keys = chunk.keys
        span = f"{keys[0]!r} to {keys[-1]!r}" if len(keys) > 1 else repr(keys[0]) if keys else ""
        if number in failed:
            rows.append((number, span, "failed", str(failed[number].error)))
        else:
            first = next(iter(_values(chunk.data)), None)
            rows.append((number, span, "ok", f"{len(chunk.data)} results; first: {preview(first)}"))
    for error in result.errors:  # a chunk that raised has no BatchResult of its own
        if error.chunk >= len(result.chunks):
            rows.append(
                (
                    error.chunk,
                    f"{error.keys[0]!r} to {error.keys[-1]!r}",
                    "raised",
                    str(error.error),
                )
            )
    notes = [f"{len(result.not_executed)} commands not executed"] if result.not_executed else []
    caption = f"ChunkedResult {_chunked_summary(result)}"
    return _table(caption, ("chunk", "commands", "status", "detail"), rows, notes)


def batch_records(result: BatchResult[Any]) -> list[dict[str, Any]]:
    """One flat dict per command: ``key``, ``method``, ``ok``, then the result's fields.

    Nested objects are flattened with dotted column names (``item.id``, ``item.title``); lists
    stay whole. A failed batch gives one record per command with ``ok=False`` and ``error``;
    one that failed as a whole adds ``maybe_executed``, True for the writes that may have run.
    """
    if result.errors and not result.errors_by_key:  # failed as a whole, naming no command
        message = result.error_messages[0]
        doubtful = set(result.maybe_executed)
        return [
            {
                "key": key,
                "method": method,
                "ok": False,
                "error": message,
                "maybe_executed": key in doubtful,
            }
            for key, method in zip(result.keys, result.methods, strict=False)
        ]
    records = []
    for key, method, value, error in _commands(result):
        if error is not None:
            records.append({"key": key, "method": method, "ok": False, "error": str(error)})
            continue
        record: dict[str, Any] = {"key": key, "method": method, "ok": True}
        if hasattr(value, "result") and hasattr(value, "is_success"):  # an AjaxResult
            value = value.result
        if attrs.has(type(value)):
            value = attrs.asdict(value)
        if isinstance(value, Mapping):
            _flatten(value, "", record)
        else:
            record["result"] = value
        records.append(record)
    return records


def _flatten(value: Mapping[str, Any], prefix: str, into: dict[str, Any], depth: int = 0) -> None:
    for name, item in value.items():
        column = f"{prefix}{name}"
        if isinstance(item, Mapping) and item and depth < _FLAT_DEPTH:
            _flatten(item, f"{column}.", into, depth + 1)
        else:  # a leaf, or a mapping too deep to flatten: kept whole
            into[column] = item


_NOT_RUN = "not executed"
_MAYBE = "maybe executed"
_UNANSWERED = "not in the answer: may have run"


def _commands(result: BatchResult[Any]) -> Iterator[tuple[Any, str, Any, Any]]:
    """``(key, method, value, error)`` per command of a result that names its failures; the
    error is ``_NOT_RUN`` for a command that did not run, ``_UNANSWERED`` for one the answer
    says nothing about."""
    errors = result.errors_by_key
    skipped = set(result.not_executed)
    unanswered = set(result.unanswered)
    data = result.data
    for position, (key, method) in enumerate(zip(result.keys, result.methods, strict=False)):
        if key in skipped:
            yield key, method, None, _NOT_RUN
            continue
        if key in unanswered:
            yield key, method, None, _UNANSWERED
            continue
        value = data.get(key) if isinstance(data, Mapping) else data[position]
        yield key, method, value, errors.get(key)


def _values(data: Any) -> Iterable[Any]:
    return data.values() if isinstance(data, Mapping) else data


def _summary(result: BatchResult[Any]) -> str:
    count = len(result.keys)
    noun = "command" if count == 1 else "commands"
    if result.errors_by_key or result.not_executed or result.unanswered:
        first = result.errors[0].code or result.errors[0].message if result.errors else ""
        left = f", {len(result.not_executed)} not executed" if result.not_executed else ""
        if result.unanswered:
            left += f", {len(result.unanswered)} unanswered (may have run)"
        return f"failed: {len(result.errors)} of {count} {noun}{left}, {first}"
    if result.errors:
        return f"failed: {count} {noun}, {result.errors[0].code} (HTTP {result.status})"
    extra = f", {result.attempts} attempts" if result.attempts > 1 else ""
    return f"ok: {count} {noun}, HTTP {result.status}{extra}"


def _chunked_summary(result: ChunkedResult[Any]) -> str:
    chunks = len(result.chunks)
    if result.is_success:
        return f"ok: {len(result.data)} results in {chunks} chunks"
    left = f", {len(result.not_executed)} not executed" if result.not_executed else ""
    return f"failed: {len(result.errors)} of {chunks} chunks failed{left}"


def _table(
    caption: str, head: tuple[str, ...], rows: list[tuple[Any, ...]], notes: list[str]
) -> str:
    # Imported here, not at the top: ``html`` loads its table of 2 000 entities, which only a
    # notebook's rich display needs; ``import b24batch`` need not pay for it.
    import html

    def cell(tag: str, value: Any) -> str:
        return f'<{tag} style="{_CELL}">{html.escape(redact(str(value)))}</{tag}>'

    shown = rows[:ROWS_SHOWN]
    parts = [f'<table class="b24batch" style="{_STYLE}">']
    parts.append(f'<caption style="text-align:left">{html.escape(redact(caption))}</caption>')
    parts.append("<thead><tr>" + "".join(cell("th", name) for name in head) + "</tr></thead>")
    parts.append("<tbody>")
    parts.extend("<tr>" + "".join(cell("td", value) for value in row) + "</tr>" for row in shown)
    if len(rows) > len(shown):
        notes = [f"… {len(rows) - len(shown)} more rows", *notes]
    parts.extend(
        f'<tr><td colspan="{len(head)}" style="{_CELL}">{html.escape(redact(note))}</td></tr>'
        for note in notes
    )
    parts.append("</tbody></table>")
    return "".join(parts)
