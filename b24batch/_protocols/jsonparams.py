"""What JSON can carry of a command's params, checked before any I/O.

``check_json_keys`` runs on every batch (a look at the types, at C speed: only a dict with a key
that is not a str can collide); ``explain_unencodable`` runs only after the C encoder refused a
body, to name the row and path of what it could not write. Nothing here encodes a body or sends
one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from itertools import chain, compress, repeat
from typing import Any

from b24batch.commands import Commands, is_utf8
from b24batch.errors import SdkError, SdkTypeError
from b24batch.results import Key

__all__ = ["MAX_PARAMS_DEPTH", "check_json_keys", "explain_unencodable"]

MAX_PARAMS_DEPTH = 500
"""The deepest nesting of dicts and lists in params that b24batch explains rather than encodes:
the portal's JSON decoder stops at 512 levels, and the body wraps params in two more."""

_EMPTY: Mapping[str, Any] = {}


def _row(key: Key, single: bool) -> str:
    """How a message names a command's row: ``calls[KEY] `` in a batch, nothing for a single
    call, whose ``params`` is the argument itself."""
    return "" if single else f"calls[{key!r}] "


def explain_unencodable(commands: Commands, *, single: bool = False) -> SdkError:
    """Find the first parameter value that JSON cannot carry and describe it.

    Called only after the encoder refused the body, so the fast path never walks params.
    ``single``: the commands are one single call's, named by its ``params`` alone.

    Returns:
        The :class:`SdkError` (or :class:`SdkTypeError`) to raise, naming row and path.
    """
    for key, command in zip(commands.keys, commands.items, strict=True):
        try:
            problem = _find_unencodable(command.params or _EMPTY, "params", set(), 1)
        except RecursionError:  # the caller's own stack was already deep
            return SdkError(
                f"{_row(key, single)}params are nested too deeply to be encoded as JSON from this "
                f"point of the program; flatten them (the portal reads at most "
                f"{MAX_PARAMS_DEPTH} levels)"
            )
        if problem is not None:
            path, message, is_type = problem
            error_type = SdkTypeError if is_type else SdkError
            return error_type(f"{_row(key, single)}{path} {message}")
    return SdkError("the batch cannot be encoded as JSON")


def check_json_keys(commands: Commands, *, single: bool = False) -> None:
    """Refuse params with two keys that JSON writes alike, such as ``1`` and ``"1"``.

    JSON object keys are strings: ``json`` writes ``1`` as ``"1"``, ``True`` as ``"true"``,
    ``None`` as ``"null"`` and ``1.5`` as ``"1.5"``, so ``{1: "a", "1": "b"}`` would go out
    with a duplicate key, of which the portal silently keeps one. Only a dict with a key that is
    not a str can collide, so a cheap look at the types proves nearly every batch clean, and
    only a batch with such a key is walked to find the collision. Run after the encoder has
    accepted the params (no cycle, nesting within bounds).

    Raises:
        SdkError: Two keys of one dict collide; the message names the row, path and keys.
    """
    if not _str_keys_only([command.params for command in commands.items if command.params]):
        _explain_collision(commands, single)


def _str_keys_only(level: list[Any]) -> bool:
    """Whether every dict inside ``level`` (at any depth) has only ``str`` keys.

    Goes one level of nesting at a time over every command at once, so the per-item work is
    C's (``map``, ``compress``, set look-ups) rather than a Python step per value; a container
    shared by several commands (a ``select`` list, say) is looked at once. False for anything
    it does not prove clean: a key of another type, a subclass of dict, list or tuple.
    """
    while level:
        dicts: list[dict[Any, Any]] = []
        sequences: list[list[Any] | tuple[Any, ...]] = []
        for item in {id(item): item for item in level}.values():
            kind = type(item)
            if kind is dict:
                dicts.append(item)
            elif kind is list or kind is tuple:
                sequences.append(item)
            elif isinstance(item, dict | list | tuple):
                return False  # a subclass: its keys and items are the exact walk's to judge
        if dicts and not _STR_ONLY.issuperset(map(type, chain.from_iterable(dicts))):
            return False
        values = [*chain.from_iterable(map(dict.values, dicts)), *chain.from_iterable(sequences)]
        level = list(compress(values, map(_NESTED.get, map(type, values), repeat(True))))
    return True


_STR_ONLY = frozenset({str})
# Value types that hold no dict: False. Any other type (a container, a subclass) maps to True.
_NESTED = {str: False, int: False, float: False, bool: False, type(None): False}


def _explain_collision(commands: Commands, single: bool) -> None:
    """Find the first dict whose keys collide as JSON and raise naming it (the slow path)."""
    for key, command in zip(commands.keys, commands.items, strict=True):
        stack: list[tuple[object, str]] = [(command.params or _EMPTY, "params")]
        while stack:
            item, path = stack.pop()
            if isinstance(item, dict):
                written: dict[str, object] = {}
                for name, value in item.items():
                    text = _json_key(name)
                    if text in written:
                        raise SdkError(
                            f"{_row(key, single)}{path} has the keys {written[text]!r} and "
                            f"{name!r}, which JSON writes alike, as {json.dumps(text)}; the "
                            f"portal would keep only one of them: use one key"
                        )
                    written[text] = name
                    stack.append((value, f"{path}[{name!r}]"))
            elif isinstance(item, list | tuple):
                stack.extend((value, f"{path}[{i}]") for i, value in enumerate(item))


def _json_key(name: object) -> str:
    """A dict key as ``json`` writes it (the encoder has accepted every key by now)."""
    if isinstance(name, str):
        return str.__str__(name)  # what json writes for a str subclass (an enum's __str__ aside)
    if name is True or name is False or name is None:
        return json.dumps(name)
    if isinstance(name, float):
        return float.__repr__(name)
    return int.__repr__(name)


_SCALARS = (str, int, bool, type(None))


def _find_unencodable(
    value: object, path: str, active: set[int], depth: int
) -> tuple[str, str, bool] | None:
    """Return (path, message, is_type_error) for the first value JSON cannot carry."""
    if depth > MAX_PARAMS_DEPTH and isinstance(value, dict | list | tuple):
        return (
            _shortened(path),
            f"is nested {depth} levels deep, beyond the {MAX_PARAMS_DEPTH} the portal reads "
            f"(and deeper than Python's JSON encoder goes): flatten the structure",
            False,
        )
    if isinstance(value, str) and not is_utf8(value):
        return path, "is text with a lone surrogate, which UTF-8 cannot carry", False
    if isinstance(value, _SCALARS):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return path, f"is {value!r}; JSON has no NaN or Infinity: send null or a number", False
    if isinstance(value, dict | list | tuple):
        if id(value) in active:
            return path, "contains itself (a reference cycle); JSON cannot encode it", False
        active.add(id(value))
        try:
            if isinstance(value, dict):
                for k, v in value.items():
                    if not isinstance(k, str | int | float | bool) and k is not None:
                        return (
                            path,
                            f"has a key of type {type(k).__name__}; JSON keys are strings",
                            True,
                        )
                    if isinstance(k, float) and not math.isfinite(k):
                        return (
                            path,
                            f"has the key {k!r}; JSON has no NaN or Infinity: use a finite "
                            f"number or a str",
                            False,
                        )
                    found = _find_unencodable(v, f"{path}[{k!r}]", active, depth + 1)
                    if found:
                        return found
            else:
                for i, v in enumerate(value):
                    found = _find_unencodable(v, f"{path}[{i}]", active, depth + 1)
                    if found:
                        return found
        finally:
            active.discard(id(value))
        return None
    hints = {
        "set": "use a list",
        "frozenset": "use a list",
        "bytes": "decode it to str (or base64 it)",
        "bytearray": "decode it to str (or base64 it)",
        "datetime": "send value.isoformat()",
        "date": "send value.isoformat()",
        "Decimal": "send str(value) or float(value)",
    }
    name = type(value).__name__
    hint = hints.get(name, "convert it to str, number, bool, None, list or dict")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return path, f"is a {name}, which JSON cannot encode: {hint}", True
    return None


def _shortened(path: str, room: int = 80) -> str:
    """A path to a deeply nested value, its middle cut out so a message stays one line."""
    if len(path) <= room:
        return path
    return f"{path[: room // 2]}…{path[-room // 2 :]}"
