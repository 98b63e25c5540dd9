"""PHP's bracket form: a dict of params to the query string ``parse_str`` reads back. No I/O.

How the classic API's ``METHOD?QUERY`` commands carry their params (protocol §7): nested keys in
brackets, list items by index, every name and value percent-encoded as UTF-8, each scalar as
text. What a form cannot carry (booleans, empty arrays, dates, NaN, cycles) is refused with the
path and the fix, before any request. One pass writes each pair as it checks it
(``encode_queries``); what it does not take goes to the checked walk, which names the path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote as _quote

from b24batch.errors import SdkError, SdkTypeError

__all__ = [
    "MAX_DEPTH",
    "MAX_INPUT_VARS",
    "count_variables",
    "encode_queries",
    "encode_query",
    "quote_query",
]

MAX_DEPTH: Final = 32
"""The most levels of nesting below ``params``; PHP drops a variable nested past 64."""

MAX_INPUT_VARS: Final = 1000
"""PHP's default ``max_input_vars``: ``parse_str`` keeps this many variables of a query and
drops the rest (with only a warning in the portal's own log)."""

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BOOL_HINT: Final = (
    "a form has no booleans and PHP reads 'false' as true: "
    "send 'Y'/'N' or 1/0, as the method expects"
)
_TYPE_HINTS: Final = {
    "set": "use a list",
    "frozenset": "use a list",
    "bytes": "decode it to str (or base64 it)",
    "bytearray": "decode it to str (or base64 it)",
    "datetime": "send value.isoformat()",
    "date": "send value.isoformat()",
    "time": "send value.isoformat()",
    "Decimal": "send str(value)",
}


# Percent-encoding as urllib's quote(text, safe="") does, at C speed for ASCII text: quote()
# walks every byte in Python, and a classic batch quotes every name and value, then each
# command's whole query once more (about half the encoding time of a batch).
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
# Every ASCII character is in the table: one it lacks costs translate() a failed look-up.
_ASCII_QUOTED = {byte: chr(byte) if byte in _UNRESERVED else f"%{byte:02X}" for byte in range(128)}


def quote(text: str, safe: str = "") -> str:
    """``urllib.parse.quote(text, safe="")``, fast for ASCII text (``safe`` must be empty)."""
    assert safe == ""
    if text.isascii():
        return text.translate(_ASCII_QUOTED)
    return _quote(text, safe="")


def quote_query(query: str) -> str:
    """``quote(query)`` of a query :func:`encode_query` wrote, whose only characters are the
    unreserved ones and ``% [ ] = &``: five C-speed replaces instead of a look-up per
    character (the second encoding of a classic command's ``METHOD?QUERY``)."""
    return (
        query.replace("%", "%25")
        .replace("[", "%5B")
        .replace("]", "%5D")
        .replace("=", "%3D")
        .replace("&", "%26")
    )


def encode_query(params: Mapping[Any, Any] | None, where: str = "params") -> str:
    """Encode ``params`` as the query string PHP's ``parse_str`` decodes back into them.

    Keys in brackets, list items by index, every name and value percent-encoded (UTF-8), so
    that ``& = + % # ? : / [ ]`` and spaces arrive intact: ``{"filter": {">ID": 10}}`` gives
    ``filter[%3EID]=10``. What arrives is text: an int as ``str(n)``, a float as ``repr(x)``,
    None as an empty value (how the classic API clears a field).

    Args:
        params: A dict of str (or int) keys to str, int, float, None, lists, tuples and dicts.
        where: How error messages name ``params``, e.g. ``calls[2].params``.

    Raises:
        SdkTypeError: A boolean, or a value or key of a type a form cannot carry; the message
            names its path (``calls[2].params.fields.DONE``) and the fix.
        SdkError: An empty list or dict, a key with ``[`` or ``]``, an empty key, keys that
            collide as text, NaN or infinity, a cycle, nesting deeper than ``MAX_DEPTH``.

    Examples:
        >>> encode_query({"fields": {"TITLE": "A & B"}, "select": ["ID"], "filter": {">ID": 10}})
        'fields[TITLE]=A%20%26%20B&select[0]=ID&filter[%3EID]=10'
    """
    if params is None:
        return ""
    if not isinstance(params, Mapping):
        raise SdkTypeError(f"{where} is a {type(params).__name__}; params must be a dict")
    pairs: list[str] = []
    if type(params) is dict and _fast_items(params, "", pairs, {}, 0):
        return "&".join(pairs)
    return "&".join(_exact_pairs(params, where))


def _exact_pairs(params: Mapping[Any, Any], where: str) -> list[str]:
    """The pairs of ``params``, every value and key checked with its path for the message."""
    pairs: list[str] = []
    seen: dict[str, object] = {}
    for key, value in params.items():
        text = _key_text(key, where, seen, top=True)
        _encode_value(value, quote(text, safe=""), _child(where, key), pairs, set(), 0)
    return pairs


def count_variables(query: str) -> int:
    """How many variables ``parse_str`` creates from ``query``, one of ours: one per leaf.

    Every name and value :func:`encode_query` writes is percent-encoded, so each ``&`` in its
    output separates two variables.

    Examples:
        >>> count_variables(encode_query({"filter": {"@ID": [1, 2, 3]}, "select": ["ID"]}))
        4
    """
    return query.count("&") + 1 if query else 0


_Memo = dict[tuple[int, str], list[str]]


def encode_queries(params: Mapping[Any, Any] | None, memo: _Memo) -> str | None:
    """``encode_query(params)`` by the fast path, or None where only the exact one can say.

    One walk writes each pair as it checks it, without the paths messages would need; a
    container met again under the same name (a ``select`` list shared by every command of a
    batch) is written from ``memo`` (the caller keeps it for one batch, while the params
    cannot change). None for what the fast path does not take — a key other than a plain
    str, a bool, an empty or too deep container, a type a form cannot carry, a Mapping that
    is not a dict — whether or not it is an error: :func:`encode_query` then decides, and
    names the path.
    """
    if params is None:
        return ""
    pairs: list[str] = []
    if type(params) is dict and _fast_items(params, "", pairs, memo, 0):
        return "&".join(pairs)
    return None


def _fast_items(
    value: dict[Any, Any] | list[Any] | tuple[Any, ...],
    name: str,
    pairs: list[str],
    memo: _Memo,
    depth: int,
) -> bool:
    """Append the pairs of a non-empty container named ``name`` ("" for params); False where
    the exact path must decide (nothing appended then matters: the caller starts over)."""
    items: Any
    if type(value) is dict:
        named, items = True, value.items()
    else:
        named, items = False, enumerate(value)
    top = not name
    for key, item in items:
        if not named:
            child = f"{name}[{key}]"
        elif type(key) is str and key.isascii() and key and _key_ok(key, top):
            text = key.translate(_ASCII_QUOTED)
            child = text if top else f"{name}[{text}]"
        else:
            return False  # an int key may collide with a str one: the exact path checks
        kind = type(item)
        if kind is str:
            if item.isascii():
                pairs.append(f"{child}={item.translate(_ASCII_QUOTED)}")
            else:
                try:
                    pairs.append(f"{child}={_quote(item, safe='')}")
                except UnicodeEncodeError:
                    return False
        elif kind is int:
            pairs.append(f"{child}={int.__repr__(item)}")
        elif kind is dict or kind is list or kind is tuple:
            if not item or depth >= MAX_DEPTH:
                return False
            known = memo.get((id(item), child))
            if known is None:
                start = len(pairs)
                if not _fast_items(item, child, pairs, memo, depth + 1):
                    return False
                memo[id(item), child] = pairs[start:]
            else:
                pairs += known
        elif kind is float and math.isfinite(item):
            pairs.append(f"{child}={float.__repr__(item).translate(_ASCII_QUOTED)}")
        elif item is None:
            pairs.append(f"{child}=")
        else:
            return False
    return True


def _key_ok(text: str, top: bool) -> bool:
    """Whether an ASCII str key passes every check of :func:`_key_text` (no collision can
    arise among str keys of one dict)."""
    if "[" in text or "]" in text or "\0" in text:
        return False
    if top:
        return text[0] != " " and "." not in text and " " not in text
    return not (len(text) == 1 and text.isspace())


def _encode_value(
    value: object, name: str, path: str, pairs: list[str], active: set[int], depth: int
) -> None:
    if isinstance(value, str):
        try:
            pairs.append(f"{name}={quote(str.__str__(value), safe='')}")
        except UnicodeEncodeError:
            raise SdkError(
                f"{path} is text with a lone surrogate, which UTF-8 cannot carry"
            ) from None
    elif isinstance(value, bool):
        raise SdkTypeError(f"{path} is {value!r}; {_BOOL_HINT}")
    elif isinstance(value, int):
        pairs.append(f"{name}={int.__repr__(value)}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise SdkError(f"{path} is {value!r}; a form carries finite numbers only")
        pairs.append(f"{name}={quote(float.__repr__(value), safe='')}")
    elif value is None:
        pairs.append(f"{name}=")
    elif isinstance(value, Mapping | list | tuple):
        if not value:
            kind = "dict" if isinstance(value, Mapping) else "list"
            raise SdkError(
                f"{path} is an empty {kind}, which a form cannot carry (PHP's form syntax has "
                f"no empty array): leave it out"
            )
        if id(value) in active:
            raise SdkError(f"{path} contains itself (a reference cycle); a form cannot carry it")
        if depth >= MAX_DEPTH:
            raise SdkError(
                f"{path} is nested more than {MAX_DEPTH} levels deep; the portal drops "
                f"parameters nested that deep"
            )
        active.add(id(value))
        if isinstance(value, Mapping):
            seen: dict[str, object] = {}
            for key, item in value.items():
                text = _key_text(key, path, seen, top=False)
                child = f"{name}[{quote(text, safe='')}]"
                _encode_value(item, child, _child(path, key), pairs, active, depth + 1)
        else:
            for index, item in enumerate(value):
                child = f"{name}[{index}]"
                _encode_value(item, child, f"{path}[{index}]", pairs, active, depth + 1)
        active.discard(id(value))
    else:
        type_name = type(value).__name__
        hint = _TYPE_HINTS.get(type_name, "convert it to str, int, float, None, list or dict")
        raise SdkTypeError(f"{path} is a {type_name}, which a form cannot carry: {hint}")


def _key_text(key: object, where: str, seen: dict[str, object], *, top: bool) -> str:
    """The text of a dict key as PHP will see it, checked; records it in ``seen``."""
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise SdkTypeError(
            f"{where} has the key {key!r} of type {type(key).__name__}; "
            f"keys of a form are str or int"
        )
    text = int.__repr__(key) if isinstance(key, int) else str.__str__(key)
    if not text:
        raise SdkError(f"{where} has an empty key; PHP reads 'name[]' as 'append': name it")
    if "[" in text or "]" in text:
        raise SdkError(
            f"{where} has the key {text!r}; a key cannot contain '[' or ']', "
            f"which PHP's form syntax reserves for nesting"
        )
    if "\0" in text:
        raise SdkError(f"{where} has the key {text!r}; PHP cuts a key at a NUL character")
    if not top and len(text) == 1 and text.isspace() and text in " \t\n\v\f\r":
        raise SdkError(
            f"{where} has the key {text!r}; PHP reads a key of one whitespace character "
            f"as '[]', append: use another key"
        )
    if top and (text[0] == " " or "." in text or " " in text):
        raise SdkError(
            f"{where} has the key {text!r}; PHP turns '.' and ' ' in a parameter's name "
            f"into '_' (and drops leading spaces): use the name the method documents"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SdkError(
            f"{where} has a key with a lone surrogate, which UTF-8 cannot carry"
        ) from None
    if text in seen:
        raise SdkError(
            f"{where} has the keys {seen[text]!r} and {key!r}, which are the same key "
            f"{text!r} in a form: keep one"
        )
    seen[text] = key
    return text


def _child(path: str, key: object) -> str:
    if isinstance(key, str) and _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{key!r}]"
