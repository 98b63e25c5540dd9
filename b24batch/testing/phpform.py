"""PHP's form decoding and JSON shapes, as the classic portal applies them. Pure: no I/O.

``parse_str_bytes`` is PHP 8's ``parse_str`` (``php_default_treat_data`` and
``php_register_variable_ex``) byte for byte, checked against the real PHP by the tests;
``to_json`` turns its PHP arrays into what ``json_encode`` gives: a list for keys ``0..n-1``,
an object otherwise (``[]`` when empty).
"""

from __future__ import annotations

import re
from typing import Any, Final, TypeAlias

__all__ = [
    "MAX_NESTING",
    "PhpArray",
    "parse_str",
    "parse_str_bytes",
    "php_key",
    "php_text",
    "to_json",
    "url_decode",
]

MAX_NESTING: Final = 64
"""PHP's default ``max_input_nesting_level``: a variable nested deeper is dropped whole."""
_LONG_MAX: Final = 2**63 - 1
_LONG_MIN: Final = -(2**63)
_INTEGER: Final = re.compile(rb"-?(?:0|[1-9][0-9]*)")
_PERCENT: Final = re.compile(rb"%([0-9A-Fa-f]{2})")
_SPACES: Final = b" \t\n\v\f\r"

PhpKey: TypeAlias = "int | bytes"
PhpArray: TypeAlias = "dict[PhpKey, bytes | PhpArray]"
"""An ordered PHP array: int or byte-string keys, byte-string or array values."""


def url_decode(data: bytes) -> bytes:
    """PHP's ``urldecode``: ``+`` is a space, ``%XX`` a byte, any other ``%`` stays."""
    return _PERCENT.sub(lambda match: bytes([int(match.group(1), 16)]), data.replace(b"+", b" "))


def php_key(key: bytes) -> PhpKey:
    """An array key as PHP stores it: a canonical decimal integer string becomes an int."""
    if _INTEGER.fullmatch(key) and key != b"-0":
        number = int(key)
        if _LONG_MIN <= number <= _LONG_MAX:
            return number
    return key


def parse_str_bytes(data: bytes, *, max_nesting: int = MAX_NESTING) -> PhpArray:
    """Decode a query string as PHP's ``parse_str`` does, into a PHP array of bytes.

    Pairs split at ``&`` (empty ones skipped) and at the first ``=``; names and values
    URL-decoded; ``a[b][]`` nests and appends; in the top-level name leading spaces are dropped
    and ``.`` and `` `` become ``_``; an index of one whitespace character appends; an unclosed
    ``[`` is not nesting; text after a ``]`` that is not ``[`` is ignored; a name is cut at NUL;
    a variable nested past ``max_nesting`` is removed altogether.
    """
    result: PhpArray = {}
    for pair in data.split(b"\0", 1)[0].split(b"&"):
        if not pair:
            continue
        name, has_value, value = pair.partition(b"=")
        _register(result, url_decode(name), url_decode(value) if has_value else b"", max_nesting)
    return result


def _register(top: PhpArray, name: bytes, value: bytes, max_nesting: int) -> None:
    name = name.split(b"\0", 1)[0].lstrip(b" ")
    bracket = name.find(b"[")
    base = (name if bracket < 0 else name[:bracket]).replace(b" ", b"_").replace(b".", b"_")
    if not base:
        return
    table = top
    index: bytes | None = base
    position = bracket
    nesting = 0
    while position >= 0:
        nesting += 1
        if nesting > max_nesting:
            top.pop(php_key(base), None)
            return
        start = position + 1
        if name[start : start + 1] == b"]":
            key: bytes | None = None
            close = start
        else:
            close = name.find(b"]", start)
            if close < 0:
                if table is top and index == base:
                    # Not an index after all: the '[' and the rest become part of the name.
                    rest = name[start:]
                    for char in (b" ", b".", b"["):
                        rest = rest.replace(char, b"_")
                    index = base + b"_" + rest
                break
            key = name[start:close]
            if len(key) == 1 and key in _SPACES:
                key = None  # measured on PHP 8.2: a lone whitespace index appends, as [] does
        if index is None:
            child: PhpArray = {}
            slot = _next_index(table)
            if slot is None:
                return
            table[slot] = child
        else:
            existing = table.get(php_key(index))
            if isinstance(existing, dict):
                child = existing
            else:
                child = {}
                table[php_key(index)] = child
        table = child
        index = key
        position = close + 1 if name[close + 1 : close + 2] == b"[" else -1
    if index is None:
        slot = _next_index(table)
        if slot is not None:
            table[slot] = value
    else:
        table[php_key(index)] = value


def _next_index(table: PhpArray) -> int | None:
    """PHP's next free integer key: one past the highest (0 for none); None when full."""
    numbers = [key for key in table if isinstance(key, int)]
    if not numbers:
        return 0
    highest = max(numbers)
    return None if highest >= _LONG_MAX else highest + 1


def to_json(value: bytes | PhpArray) -> Any:
    """A PHP value as ``json_decode(json_encode(value))`` gives it (text decoded as UTF-8)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if list(value) == list(range(len(value))):
        return [to_json(item) for item in value.values()]
    return {
        (str(key) if isinstance(key, int) else key.decode("utf-8", "replace")): to_json(item)
        for key, item in value.items()
    }


def parse_str(query: str | bytes) -> dict[str, Any] | list[Any]:
    """``parse_str`` then ``to_json``: what a classic method receives, as JSON shapes."""
    data = query.encode("utf-8", "surrogateescape") if isinstance(query, str) else query
    result = to_json(parse_str_bytes(data))
    assert isinstance(result, dict | list)
    return result


def php_text(value: Any) -> str:
    """A value as PHP's string conversion writes it (``"Array"`` for an array)."""
    if isinstance(value, str):
        return value
    if value is True:
        return "1"
    if value is False or value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e15 else str(int(value))
    return "Array"
