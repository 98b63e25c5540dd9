"""The REST 3.0 batch's references, ``$ref`` and ``$refArray``, replaced by earlier rows' answers.

``{"$ref": "NAME.PATH"}`` and ``{"$refArray": "NAME.PATH"}`` at any depth of a row's query take
what an earlier row answered (its ``item`` or ``items`` part, by alias or position). Pure; an
unresolvable one is ``INVALIDSELECTEXCEPTION``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from b24batch.testing.command_error import CommandError, bad_batch

__all__ = ["Context", "substitute"]


class Context:
    """Outputs of the commands run so far; only their ``item``/``items`` parts are addressable."""

    def __init__(self) -> None:
        self._by_alias: dict[str, dict[str, Any]] = {}
        self._by_position: dict[str, dict[str, Any]] = {}

    def add(self, position: int, alias: str | None, output: Any) -> None:
        parts: dict[str, Any] = {}
        if isinstance(output, dict):
            parts = {key: output[key] for key in ("item", "items") if key in output}
        self._by_position[str(position)] = parts
        if alias is not None:
            self._by_alias[alias] = parts

    def lookup(self, name: str) -> dict[str, Any] | None:
        # An alias wins over a position, so `"as": "1"` is reachable by its own name.
        found = self._by_alias.get(name)
        return found if found is not None else self._by_position.get(name)


def _unresolved(kind: str, path: Any) -> CommandError:
    return bad_batch(f"Unable to resolve `{kind}` path `{path}`")


def _walk(node: Any, segments: Sequence[str], kind: str, path: str) -> Any:
    for segment in segments:
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            raise _unresolved(kind, path)
    return node


def _resolve(marker: dict[str, Any], context: Context) -> Any:
    if len(marker) != 1:
        raise bad_batch("A reference must be an object with the single key `$ref` or `$refArray`")
    ((kind, path),) = marker.items()
    if not isinstance(path, str) or "." not in path:
        raise _unresolved(kind, path)
    name, *segments = path.split(".")
    source = context.lookup(name)
    if source is None:
        raise _unresolved(kind, path)
    if kind == "$ref":
        return copy.deepcopy(_walk(source, segments, kind, path))
    items = source.get("items")
    if not isinstance(items, list):
        raise _unresolved(kind, path)
    return [copy.deepcopy(_walk(item, segments, kind, path)) for item in items]


def substitute(value: Any, context: Context) -> Any:
    """Return ``value`` with every reference marker, at any depth, replaced by its target."""
    if isinstance(value, dict):
        if "$ref" in value or "$refArray" in value:
            return _resolve(value, context)
        return {key: substitute(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, context) for item in value]
    return value
