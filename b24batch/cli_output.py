"""What the command line prints: results as previews or JSON, and every line made inert.

Text that came from a portal is printed escaped (controls, ANSI sequences, newlines, lone
surrogates), so a hostile answer can neither break a line, forge one, nor drive the terminal.
Formatting only, no printing: ``cli.py`` decides what to print and where.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import attrs

from b24batch import B24Error, BatchResult, ChunkedResult
from b24batch.redaction import redact

__all__ = [
    "CleanFormatter",
    "clean",
    "error_json",
    "error_lines",
    "json_text",
    "plural",
    "render",
    "result_json",
    "summary",
]

_PREVIEW = 70
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

Shown = BatchResult[Any] | ChunkedResult[Any]


def clean(text: str) -> str:
    """``text`` as one inert line: every character a terminal could act on is escaped.

    Control characters (ANSI escape sequences start with one), newlines, bidirectional and other
    format characters, and lone surrogates (which cannot even be written as UTF-8) become
    ``\\x1b``-style escapes; printable text, non-Latin scripts included, stays as it is.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def json_text(data: Any) -> str:
    """Indented JSON whose strings carry their controls, format characters and lone
    surrogates as ``\\u`` escapes: the same JSON value, safe to print and always encodable."""
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if text.isprintable():
        return text
    # json already escaped C0 controls inside strings: a raw newline here is the indentation's.
    return "".join(ch if ch.isprintable() or ch == "\n" else json.dumps(ch)[1:-1] for ch in text)


class CleanFormatter(logging.Formatter):
    """One line per record, secrets masked, portal text escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return clean(redact(super().format(record)))


def plural(count: int, noun: str) -> str:
    """``1 result``, ``2 results``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _succeeded(result: Shown) -> int:
    """How many commands have a result: a list with ``isolate_errors`` holds None for failures."""
    if isinstance(result, BatchResult) and isinstance(result.data, list):
        return len(result.data) - len(result.errors_by_key) - len(result.not_executed)
    return len(result.data)


def summary(result: Shown) -> str:
    """One line: ``1 result``, ``2 results in 1 chunk``, ``failed: 1 error, 2 results``."""
    counted = plural(_succeeded(result), "result")
    if isinstance(result, ChunkedResult):
        counted += f" in {plural(len(result.chunks), 'chunk')}"
        if result.not_executed:
            counted += f", {len(result.not_executed)} not executed"
    if result.is_success:
        return counted
    return f"failed: {plural(len(result.errors), 'error')}, {counted}"


def error_lines(result: Shown, *, besides: B24Error | None = None) -> list[str]:
    """One ``error: ...`` line per error of ``result``, escaped; ``besides``, an error the
    caller reports on its own line (the one a chunked call raised), is left out."""
    errors = [error for error in result.errors if getattr(error, "error", error) is not besides]
    return [f"error: {clean(str(error))}" for error in errors]


def render(title: str, result: Shown, *, errors: bool = True) -> str:
    """``title``, the result's status line, its errors (unless ``errors=False``: the caller
    prints them elsewhere), what may have run and what did not, and one line per result."""
    lines = [title]
    if isinstance(result, BatchResult):
        lines.append(f"   is_success={result.is_success}  request_id={clean(result.request_id)}")
    else:
        lines.append(f"   is_success={result.is_success}  chunks={len(result.chunks)}")
    if errors:
        lines.extend(f"   {line}" for line in error_lines(result))
    if result.maybe_executed:
        lines.append(f"   maybe_executed={clean(repr(result.maybe_executed))}")
    if result.not_executed:
        lines.append(f"   not_executed={clean(_listed(result.not_executed))}")
    data = result.data
    items: list[tuple[Any, Any]] = (
        list(data.items()) if isinstance(data, dict) else list(enumerate(data))
    )
    lines.extend(f"   {clean(str(key)):>6}  {_preview(value)}" for key, value in items)
    return "\n".join(lines) + "\n"


def _listed(keys: tuple[Any, ...], shown: int = 10) -> str:
    """``keys`` as a tuple's repr, cut after ``shown`` of them: a halted chunked run may have
    thousands."""
    if len(keys) <= shown:
        return repr(keys)
    return f"{repr(keys[:shown])[:-1]}, ... and {len(keys) - shown} more)"


def _preview(value: Any) -> str:
    text = clean(repr(value) if attrs.has(type(value)) else json.dumps(value, ensure_ascii=False))
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + "…"


def result_json(result: Shown) -> dict[str, Any]:
    """The whole result as JSON-ready data, for ``run --json``."""
    if isinstance(result, ChunkedResult):
        return {
            "is_success": result.is_success,
            "chunks": [
                {
                    "request_id": chunk.request_id,
                    "status": chunk.status,
                    "positions": list(chunk.positions or ()),
                    "attempts": chunk.attempts,
                }
                for chunk in result.chunks
            ],
            "data": result.data,  # run sends no result_type: the results are the portal's JSON
            "errors": [
                {"chunk": error.chunk, "keys": list(error.keys), **error_json(error.error)}
                for error in result.errors
            ],
            "not_executed": list(result.not_executed),
            "maybe_executed": list(result.maybe_executed),
        }
    return _batch_json(result)


def _batch_json(result: BatchResult[Any]) -> dict[str, Any]:
    return {
        "is_success": result.is_success,
        "status": result.status,
        "request_id": result.request_id,
        "time": attrs.asdict(result.time) if result.time else None,
        "data": result.data,
        "errors": [error_json(error) for error in result.errors],
        "not_executed": list(result.not_executed),
        "maybe_executed": list(result.maybe_executed),
    }


def error_json(error: B24Error) -> dict[str, Any]:
    """An error as JSON: its kind and message, and the portal's code, status and validation."""
    return {
        "key": getattr(error, "key", None),
        "kind": error.kind.value,
        "code": getattr(error, "code", None),
        "message": error.message,
        "status": getattr(error, "status", None),
        "validation": [attrs.asdict(row) for row in getattr(error, "validation", ())],
    }
