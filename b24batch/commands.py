"""Commands, and the normalisation of every accepted form of ``calls`` into them.

Checks each row's shape, method, alias and flags before any I/O: a bad row raises ``SdkError``
or ``SdkTypeError`` naming it and the fix. What a protocol can carry of the params is the
protocol's check (``_protocols``), the call's options ``_engine/call_options.py``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from b24batch.errors import SdkError, SdkTypeError
from b24batch.results import Key

__all__ = [
    "MAX_COMMANDS",
    "Command",
    "Commands",
    "check_name",
    "command_alias",
    "name_text",
    "normalize",
    "ref",
    "ref_array",
    "refuse_js_object",
    "refuse_single_row",
]

MAX_COMMANDS = 50
"""The most commands one batch carries, REST 3.0 or classic (the portal refuses the rest)."""

_ROW_KEYS = frozenset({"method", "params", "as", "parallel", "read_only"})


@attrs.frozen
class Command:
    """One REST call in a batch.

    Accepted wherever a row of ``calls`` is, and the only form that can set a per-command
    ``result_type``. Constructed as ``Command(method, params, *, as_, parallel, result_type,
    read_only)``.

    Attributes:
        method: The REST 3.0 method, e.g. ``"tasks.task.get"``.
        params: Its parameters, exactly as in a single call (sent as ``query``); None for none.
        as_: An alias: the command's output enters the batch context under this name, for
            ``{"$ref": "alias.item.id"}`` in later commands.
        parallel: The row's ``parallel`` flag; None takes ``not halt_on_error`` from ``make``.
        result_type: What to structure this command's result into; None takes ``make``'s.
        read_only: Whether the method only reads, which makes a batch safe to repeat after a
            failure that may have executed it; None applies the name rule
            (`retry.is_read_only`: ``*.get``, ``*.list``, ...).

    Examples:
        >>> Command("tasks.task.get", {"id": 1}, as_="task").as_
        'task'
    """

    method: str
    params: Mapping[str, Any] | None = None
    as_: str | None = attrs.field(default=None, kw_only=True)
    parallel: bool | None = attrs.field(default=None, kw_only=True)
    result_type: Any = attrs.field(default=None, kw_only=True)
    read_only: bool | None = attrs.field(default=None, kw_only=True)

    @classmethod
    def from_row(cls, row: object, where: str = "row") -> Command:
        """Build a validated ``Command`` from one row of ``calls``.

        Args:
            row: ``(method,)``, ``(method, params)``, a dict with ``method`` and optional
                ``params``, ``as`` and ``parallel``, or a ``Command``.
            where: How error messages name the row, e.g. ``calls[3]``.

        Raises:
            SdkError: The row's content is wrong; the message names ``where`` and the fix.
            SdkTypeError: The row or one of its parts has the wrong type.
        """
        if isinstance(row, Command):
            command = row
        elif isinstance(row, Mapping):
            command = _from_mapping(row, where)
        elif isinstance(row, tuple | list):
            command = _from_sequence(row, where)
        else:
            raise SdkTypeError(
                f"{where} is a {type(row).__name__}; a row is a (method, params) tuple, "
                f"a dict with 'method' and 'params', or a Command"
            )
        return _checked(command, where)


@attrs.frozen
class Commands:
    """A validated batch: the commands, their keys, and the alias each sends as ``as``.

    Attributes:
        items: The commands in call order.
        keys: Their positions (list calls) or names (dict calls), in the same order.
        aliases: The ``as`` each row sends, or None; a named call's name unless its row sets one.
        named: True when the calls came as a dict of names.
    """

    items: tuple[Command, ...]
    keys: tuple[Key, ...]
    aliases: tuple[str | None, ...]
    named: bool

    def __len__(self) -> int:
        return len(self.items)

    def part(self, positions: Sequence[int]) -> Commands:
        """The commands at ``positions`` as a batch of their own, keeping keys and aliases."""
        if isinstance(positions, range) and positions.step == 1:
            cut = slice(positions.start, positions.stop)
            return Commands(
                items=self.items[cut],
                keys=self.keys[cut],
                aliases=self.aliases[cut],
                named=self.named,
            )
        return Commands(
            items=tuple(self.items[p] for p in positions),
            keys=tuple(self.keys[p] for p in positions),
            aliases=tuple(self.aliases[p] for p in positions),
            named=self.named,
        )


def normalize(calls: object, *, limit: int = MAX_COMMANDS, what: str = "REST 3.0") -> Commands:
    """Validate ``calls`` in any accepted form and return them as `Commands`.

    Args:
        calls: A list (or any iterable) of rows, or a dict mapping names to rows. A row is a
            ``(method,)`` / ``(method, params)`` tuple, a dict with ``method`` and optional
            ``params``, ``as``, ``parallel``, or a [`Command`][b24batch.Command]; a list may mix
            them.
        limit: The most commands allowed.
        what: The protocol's name, for messages (``"REST 3.0"`` or ``"classic"``).

    Raises:
        SdkError: Too few or too many commands, a bad row, a duplicate alias.
        SdkTypeError: ``calls`` or a row has the wrong type.

    Examples:
        >>> normalize([("tasks.task.get", {"id": 1})]).keys
        (0,)
    """
    if isinstance(calls, Mapping):
        refuse_js_object(calls)
        named = True
        pairs: list[tuple[Key, object]] = []
        for name, row in calls.items():
            check_name(name)
            pairs.append((name, row))
            if len(pairs) > limit:
                break
    elif isinstance(calls, str | bytes) or not isinstance(calls, Iterable):
        raise SdkTypeError(
            f"calls is a {type(calls).__name__}; pass a list of rows or a dict of named rows"
        )
    else:
        refuse_single_row(calls)
        named = False
        pairs = []
        for position, row in enumerate(calls):
            pairs.append((position, row))
            if len(pairs) > limit:
                break  # enough to say it is too many, without reading a generator to its end
    if not pairs:
        raise SdkError(f"calls is empty: a batch takes 1 to {limit} commands")
    if len(pairs) > limit:
        raise SdkError(
            f"calls has more than {limit} commands; one {what} batch takes at most {limit}: "
            f"split them into several batches, or let BatchByChunkV3 (BatchByChunkV2 for "
            f"classic) send them in chunks"
        )

    items = []
    aliases: list[str | None] = []
    seen: dict[str, str] = {}
    for key, row in pairs:
        if _plain(row):
            # The common row, (method, params-dict), passes every check of from_row: build it
            # directly (a named one still has its name checked as the alias it is sent as).
            command = Command(*row)  # type: ignore[misc]
            items.append(command)
            if named:
                where = f"calls[{key!r}]"
                aliases.append(command_alias(command, name_text(key), where, seen))
            else:
                aliases.append(None)
            continue
        where = f"calls[{key!r}]"
        command = Command.from_row(row, where)
        alias = command_alias(command, name_text(key) if named else None, where, seen)
        items.append(command)
        aliases.append(alias)
    return Commands(
        items=tuple(items),
        keys=tuple(key for key, _ in pairs),
        aliases=tuple(aliases),
        named=named,
    )


def refuse_single_row(calls: object) -> None:
    """Raise when ``calls`` is one row, ``(method,)`` or ``(method, params)``, not a list of rows.

    No row is a str, so without this the message would be "calls[0] is a str", which names
    neither the mistake nor the fix.

    Raises:
        SdkTypeError: ``calls`` has the shape of one row.
    """
    if not (
        isinstance(calls, tuple | list)
        and 1 <= len(calls) <= 2
        and isinstance(calls[0], str)
        and (len(calls) == 1 or calls[1] is None or isinstance(calls[1], Mapping))
    ):
        return
    method = repr(calls[0])
    if len(method) > 60:
        method = method[:57] + "..."
    raise SdkTypeError(
        f"calls is a single row, ({method}, ...), not a list of rows; put it in a list: "
        f"[({method}, {{...}})]"
    )


def refuse_js_object(calls: Mapping[Any, Any]) -> None:
    """Refuse the JS SDK's ``{calls, options}`` object passed as ``calls`` (JS SDK mistake 5:
    options in the wrong place were ignored); a command may still be *named* "calls".

    Raises:
        SdkTypeError: ``calls`` has both a ``calls`` and an ``options`` key.
    """
    if "calls" in calls and "options" in calls:
        raise SdkTypeError(
            "calls looks like the JS SDK's {calls, options} object: pass the commands as "
            "the first argument and the options as keyword arguments, "
            "make(calls, halt_on_error=..., request_id=...)"
        )


def check_name(key: object) -> None:
    """Check the type of a command's name in a dict of calls: a non-empty str, or an int.

    Which names a protocol takes beyond that is the protocol's rule: REST 3.0 takes no int,
    no number and no dot (its ``prepare`` says so); the classic batch takes record ids.

    Raises:
        SdkTypeError: The name is neither a non-empty str nor an int.
    """
    if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
        raise SdkTypeError(
            f"calls has the key {key!r}; names of commands must be non-empty strings "
            f"(the classic batch also takes ints, such as record ids)"
        )


def name_text(key: Key) -> str:
    """A name or position as text, as it goes on the wire (an int as its decimal digits)."""
    return int.__repr__(key) if isinstance(key, int) else str.__str__(key)


def command_alias(
    command: Command, name: str | None, where: str, seen: dict[str, str]
) -> str | None:
    """The ``as`` a command sends (its own, else its name as text), checked and recorded in
    ``seen``.

    Only what both protocols refuse is checked here (an empty alias, one already in ``seen``);
    each protocol's ``prepare`` checks its own naming rule.

    Raises:
        SdkError: The alias is empty or already in ``seen`` (two names alike as text, such as
            ``1`` and ``"1"``, included).
    """
    alias = command.as_ if command.as_ is not None else name
    if alias is None:
        return None
    from_name = command.as_ is None
    if not alias.strip():
        origin = "its name, sent as 'as'," if from_name else "its 'as'"
        fix = " (or give the row its own 'as')" if from_name else ""
        raise SdkError(f"{where}: {origin} is empty; an alias is a non-empty name{fix}")
    if alias in seen:
        if from_name:
            raise SdkError(
                f"{where} and {seen[alias]} are named alike: both are sent as {alias!r}; "
                f"each command needs a name of its own"
            )
        raise SdkError(
            f"{where} uses the alias {alias!r}, as {seen[alias]} does; "
            f"each 'as' must be unique in a batch"
        )
    seen[alias] = where
    return alias


def ref(path: str) -> dict[str, str]:
    """A reference to one value of an earlier command's output, for a later command's params.

    Args:
        path: ``alias.item.field`` (or ``alias.items.0.field``): the earlier command's ``as``
            (or name), then the path into its output.

    Raises:
        SdkError: The path is not a non-empty dotted path.

    Examples:
        >>> ref("created.item.id")
        {'$ref': 'created.item.id'}
    """
    return {"$ref": _checked_path(path, "ref")}


def ref_array(path: str) -> dict[str, str]:
    """A reference to one field collected over an earlier list command's ``items``.

    Args:
        path: ``alias.field``, e.g. ``tasks.id`` for every ``id`` in ``tasks``'s items.

    Examples:
        >>> ref_array("tasks.id")
        {'$refArray': 'tasks.id'}
    """
    return {"$refArray": _checked_path(path, "ref_array")}


def _checked_path(path: object, what: str) -> str:
    if not isinstance(path, str):
        raise SdkTypeError(f"{what}() takes a str path, not {type(path).__name__}")
    parts = path.split(".")
    if len(parts) < 2 or not all(part.strip() for part in parts):
        raise SdkError(
            f"{what}({path!r}): a reference path is 'alias.field' or 'alias.item.field', "
            f"dot-separated with no empty part"
        )
    return path


def _plain(row: object) -> bool:
    """Whether ``row`` is a ``(method, dict)`` tuple that needs no further checking."""
    if type(row) is not tuple or len(row) != 2:
        return False
    method, params = row
    return (
        type(method) is str
        and type(params) is dict
        and method.isascii()
        and method.strip() == method != ""
        and method.lower() != "batch"
    )


def _from_mapping(row: Mapping[Any, Any], where: str) -> Command:
    unknown = set(row) - _ROW_KEYS
    if unknown:
        name = sorted(map(str, unknown))[0]
        hint = (
            "; use 'params' for the method's parameters (b24batch sends them as 'query')"
            if name == "query"
            else "; use 'as_' in Command(...) or 'as' in a dict row"
            if name == "as_"
            else f"; a dict row takes {', '.join(sorted(_ROW_KEYS))}"
        )
        raise SdkError(f"{where} has the unknown key {name!r}{hint}")
    if "method" not in row:
        raise SdkError(f"{where} has no 'method'; a dict row is {{'method': ..., 'params': ...}}")
    return Command(
        row["method"],
        row.get("params"),
        as_=row.get("as"),
        parallel=row.get("parallel"),
        read_only=row.get("read_only"),
    )


def _from_sequence(row: tuple[Any, ...] | list[Any], where: str) -> Command:
    if len(row) == 1:
        return Command(row[0])
    if len(row) == 2:
        return Command(row[0], row[1])
    raise SdkError(
        f"{where} has {len(row)} items; a tuple row is (method,) or (method, params). "
        f"For an alias or parallel use a dict row or Command(method, params, as_=...)"
    )


def _checked(command: Command, where: str) -> Command:
    method = command.method
    if not isinstance(method, str):
        raise SdkTypeError(f"{where} has a method of type {type(method).__name__}; use a str")
    stripped = method.strip()
    if not stripped:
        raise SdkError(f"{where} has an empty method name")
    if method != stripped:
        raise SdkError(f"{where} has the method {method!r}, with spaces around it; remove them")
    if not method.isascii() and not is_utf8(method):  # ASCII is always valid text
        raise SdkError(f"{where} has a method that is not valid text (a lone surrogate)")
    if method.lower() == "batch":
        raise SdkError(f"{where} calls 'batch'; a batch cannot contain another batch")
    params = command.params
    if params is not None and not isinstance(params, dict):
        if not isinstance(params, Mapping):
            raise SdkTypeError(
                f"{where} has params of type {type(params).__name__}; params must be a dict "
                f"(use {{}} or leave them out when there are none)"
            )
        command = attrs.evolve(command, params=dict(params))  # json only encodes real dicts
    if command.as_ is not None and not isinstance(command.as_, str):
        raise SdkTypeError(f"{where} has 'as' of type {type(command.as_).__name__}; use a str")
    for name, value in (("parallel", command.parallel), ("read_only", command.read_only)):
        if value is not None and not isinstance(value, bool):
            raise SdkTypeError(
                f"{where} has '{name}' of type {type(value).__name__}; use True or False"
            )
    return command


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
