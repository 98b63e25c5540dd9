"""The FakePortal's classic (v2) batch: the request body, references, execution. Pure: no I/O.

Reads ``halt``, ``cmd[KEY]=METHOD?QUERY`` and ``auth`` from a form or JSON body, decodes each
query as PHP's ``parse_str`` does, substitutes ``$result[KEY][path]`` (and ``$next``,
``$total``, ``$time``, ``$error``), runs the commands in order and answers the five sections in
PHP's JSON shapes (protocol §7). Authentication, limits and time belong to
``v2_route.py``.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from b24batch.testing.command_error import CommandError
from b24batch.testing.phpform import PhpKey, parse_str, parse_str_bytes, php_key, php_text
from b24batch.testing.v2_store import ClassicAnswer, CrmStore
from b24batch.testing.v2_tasks import classic_task_method
from b24batch.testing.v3_store import TaskStore

__all__ = [
    "MAX_COMMANDS",
    "SECTIONS",
    "ClassicBatch",
    "Method",
    "classic_methods",
    "execute_classic",
    "parse_classic",
    "php_truthy",
    "substitute",
]

logger = logging.getLogger("b24batch.testing")

MAX_COMMANDS: Final = 50
"""Commands past the 50th are answered ``ERROR_BATCH_LENGTH_EXCEEDED``, one by one."""
SECTIONS: Final = ("result", "result_error", "result_total", "result_next", "result_time")
_KINDS: Final = {
    "result": "result",
    "error": "result_error",
    "total": "result_total",
    "next": "result_next",
    "time": "result_time",
}
_REFERENCE: Final = re.compile(r"\$(result|error|total|next|time)((?:\[[^\]]+\])+)")
_SEGMENT: Final = re.compile(r"\[([^\]]+)\]")
_NOT_IN_BATCH: Final = frozenset({"batch", "disk.file.upload", "disk.folder.uploadfile"})

Method = Callable[[dict[str, Any]], ClassicAnswer]
"""A classic method: takes the decoded params, returns its
[`ClassicAnswer`][b24batch.testing.ClassicAnswer]."""


def _error(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description}


@attrs.frozen
class ClassicBatch:
    """A decoded batch request: each command's key and ``METHOD?QUERY`` bytes, in order.

    A ``cmd`` entry that is not a string has None and is skipped, as the portal does.
    """

    commands: tuple[tuple[PhpKey, bytes | None], ...]
    halt: bool
    auth: str | None = attrs.field(default=None, repr=False)


def php_truthy(value: Any) -> bool:
    """PHP's truthiness: ``""``, ``"0"``, 0, 0.0, false, null and empty arrays are false."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value not in ("", "0")
    return bool(value)


def parse_classic(content_type: str, raw: bytes, query: Mapping[str, str]) -> ClassicBatch:
    """Decode a classic batch body: form (``parse_str``) or JSON; ``auth`` also from the URL.

    Raises:
        CommandError: The body is not valid JSON, or has no ``cmd`` array.
    """
    fields: dict[Any, Any]
    if "json" in content_type.lower():
        try:
            data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except ValueError:
            raise CommandError("Request body is not valid JSON", code="INVALID_REQUEST") from None
        if not isinstance(data, dict):
            raise CommandError(
                "The classic batch body is an object with halt and cmd; the REST 3.0 batch "
                "(a JSON array) is served under /rest/api/",
                code="INVALID_REQUEST",
            )
        fields = data
        cmd = data.get("cmd")
        if not isinstance(cmd, dict | list):
            raise _no_commands()
        entries = cmd.items() if isinstance(cmd, dict) else enumerate(cmd)
        commands = tuple(
            (
                php_key(str(key).encode("utf-8")),
                value.encode("utf-8", "surrogateescape") if isinstance(value, str) else None,
            )
            for key, value in entries
        )
    else:
        form = parse_str_bytes(raw)
        fields = {
            key.decode("utf-8", "replace") if isinstance(key, bytes) else key: value
            for key, value in form.items()
        }
        cmd = fields.get("cmd")
        if not isinstance(cmd, dict):
            raise _no_commands()
        commands = tuple(
            (key, value if isinstance(value, bytes) else None) for key, value in cmd.items()
        )
    auth = fields.get("auth", query.get("auth"))
    if isinstance(auth, bytes):
        auth = auth.decode("utf-8", "replace")
    return ClassicBatch(
        commands=commands,
        halt=php_truthy(fields.get("halt", 0)),
        auth=auth if isinstance(auth, str) else None,
    )


def _no_commands() -> CommandError:
    return CommandError("cmd must be an array of commands", code="INVALID_REQUEST")


def substitute(value: Any, sections: Mapping[str, Mapping[PhpKey, Any]]) -> Any:
    """Replace ``$result[KEY][a][b]`` (and the other kinds) in string values.

    A value that is exactly one reference becomes what it points to (an array stays an array);
    a reference inside longer text becomes that value's text. A path that does not resolve to
    the end is replaced by the part that did (a short list page gives the page itself); a key
    that names no command leaves the reference as it is.
    """
    if isinstance(value, str):
        return _replace(value, sections)
    if isinstance(value, list):
        return [substitute(item, sections) for item in value]
    if isinstance(value, dict):
        # Keys are left alone: brackets nest in a PHP form, so no key can hold a reference.
        return {key: substitute(item, sections) for key, item in value.items()}
    return value


def _replace(text: str, sections: Mapping[str, Mapping[PhpKey, Any]]) -> Any:
    whole = _REFERENCE.fullmatch(text)
    if whole is not None:
        return _resolve(whole, sections)
    return _REFERENCE.sub(lambda match: php_text(_resolve(match, sections)), text)


def _resolve(match: re.Match[str], sections: Mapping[str, Mapping[PhpKey, Any]]) -> Any:
    section = sections[_KINDS[match.group(1)]]
    first, *path = _SEGMENT.findall(match.group(2))
    key = php_key(first.encode("utf-8"))
    if key not in section:
        return match.group(0)
    node = section[key]
    for segment in path:
        if isinstance(node, dict) and node.get(segment) is not None:
            node = node[segment]
        elif (
            isinstance(node, list)
            and segment.isdigit()
            and int(segment) < len(node)
            and node[int(segment)] is not None
        ):
            node = node[int(segment)]
        else:
            break  # as PHP's isset() walk: stop at what resolved
    return node


def classic_methods(
    handlers: Mapping[str, Callable[[dict[str, Any]], Any]],
    crm: CrmStore,
    tasks: TaskStore,
    clock: Callable[[], float],
) -> Callable[[str], Method | None]:
    """Find a method by lower-case name: a registered handler first, else a built-in (the
    CRM's, ``user.current``, ``tasks.task.*`` over the REST 3.0 tasks store).

    A handler's return value is the command's ``result`` unless it is a ``ClassicAnswer``.
    """

    def find(name: str) -> Method | None:
        handler = handlers.get(name)
        if handler is not None:
            found = handler
            return lambda params: _answer(copy.deepcopy(found(params)))
        builtin = crm.method(name) or classic_task_method(tasks, name)
        if builtin is None:
            return None
        return lambda params: builtin(params, clock())

    return find


def _answer(value: Any) -> ClassicAnswer:
    return value if isinstance(value, ClassicAnswer) else ClassicAnswer(value)


def execute_classic(
    batch: ClassicBatch,
    find: Callable[[str], Method | None],
    *,
    clock: Callable[[], float],
    time_block: Callable[[str, float], dict[str, Any]],
    on_command: Callable[[str], None] = lambda method: None,
    blocked: Callable[[str], dict[str, str] | None] = lambda method: None,
) -> tuple[dict[str, Any], int]:
    """Run the batch's commands in order; return the ``result`` object and how many ran.

    Args:
        batch: The decoded request.
        find: The method called by a lower-case name, or None when there is none.
        clock: Wall seconds, for each command's start.
        time_block: Builds a command's ``result_time`` from its method and start.
        on_command: Called with the method just before it runs (to charge operating time).
        blocked: The error that refuses a method before it runs (an operating-time limit),
            or None to run it.
    """
    sections: dict[str, dict[PhpKey, Any]] = {name: {} for name in SECTIONS}
    counted = ran = 0
    for key, command in batch.commands:
        if command is None:
            continue
        counted += 1
        error: dict[str, str] | None = None
        if counted > MAX_COMMANDS:
            error = _error("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
        else:
            head, _, query = command.partition(b"?")
            method = head.decode("utf-8", "replace").strip().lower()
            target = find(method)
            if method in _NOT_IN_BATCH:
                error = _error("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch")
            elif target is None:
                error = _error("ERROR_METHOD_NOT_FOUND", "Method not found!")
            elif (refusal := blocked(method)) is not None:
                error = refusal
            else:
                params = substitute(parse_str(query), sections)
                on_command(method)
                ran += 1
                start = clock()
                try:
                    answer = target(_as_dict(params))
                    json.dumps(answer.result)
                except CommandError as exc:
                    error = _error(exc.code, exc.message)
                except Exception:
                    logger.exception("classic method %s failed", method)
                    error = _error("INTERNAL_SERVER_ERROR", "Internal server error")
                else:
                    sections["result"][key] = answer.result
                    if answer.total is not None:
                        sections["result_total"][key] = answer.total
                    if answer.next is not None:
                        sections["result_next"][key] = answer.next
                    sections["result_time"][key] = time_block(method, start)
        if error is not None:
            sections["result_error"][key] = error
            if batch.halt:
                break
    return {name: _php_json(section) for name, section in sections.items()}, ran


def _as_dict(params: dict[str, Any] | list[Any]) -> dict[str, Any]:
    """A query like ``0=a&1=b`` decodes to a list; methods take a dict of names."""
    return params if isinstance(params, dict) else {str(i): v for i, v in enumerate(params)}


def _php_json(section: dict[PhpKey, Any]) -> Any:
    """A section as PHP's json_encode writes it: a list for keys 0..n-1, else an object."""
    if list(section) == list(range(len(section))):
        return list(section.values())
    return {
        (str(key) if isinstance(key, int) else key.decode("utf-8", "replace")): value
        for key, value in section.items()
    }
