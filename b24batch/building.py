"""Building a ``BatchResult`` from decoded answers: typed results, AjaxResults, partial results.

One ``Builder`` per call turns what the portal answered — every command's result, or the
errors found per command, or one error for the whole batch — into the ``BatchResult`` both
protocols return. Pure: no I/O, no retries; a result that does not fit ``result_type`` raises
``DecodeError`` with the untyped answer kept on it.
"""

from __future__ import annotations

from typing import Any

from b24batch.commands import Commands
from b24batch.errors import AjaxError, DecodeError
from b24batch.results import AjaxResult, BatchResult, Time, structure, structure_quick
from b24batch.sending import writes
from b24batch.wire import Envelope

__all__ = ["Builder"]


class Builder:
    """Builds a batch's ``BatchResult`` from its answers; one per call of :func:`execute`."""

    def __init__(
        self,
        commands: Commands,
        request_id: str,
        result_type: Any,
        return_ajax_result: bool,
        positions: range | None,
    ) -> None:
        self.commands = commands
        self.request_id = request_id
        self._result_type = result_type
        self._as_ajax = return_ajax_result
        self._positions = positions

    def __call__(
        self,
        entries: list[Any] | None,
        errors: dict[int, AjaxError],
        envelope: Envelope,
        *,
        attempts: int,
        waited: float,
    ) -> BatchResult[Any]:
        """The result for ``entries`` (one raw result per command, None for a failed batch)
        and the ``errors`` found, by position (``{0: error}`` for a batch's own error)."""
        commands = self.commands
        if entries is not None and (
            self._result_type is not None or any(c.result_type is not None for c in commands.items)
        ):
            entries = self._typed(entries, errors, envelope, attempts, waited)
        data: Any
        if entries is None:  # the batch failed as a whole: no results
            data = {} if commands.named else []
        else:
            values = entries
            if self._as_ajax:
                values = self._ajax(entries, errors, envelope.time, envelope.status)
            if commands.named:
                data = dict(zip(map(str, commands.keys), values, strict=True))
                for position in errors if not self._as_ajax else ():
                    del data[str(commands.keys[position])]
            else:
                data = values
        return BatchResult(
            data=data,
            errors=tuple(errors[position] for position in sorted(errors)),
            time=envelope.time,
            request_id=self.request_id,
            status=envelope.status,
            attempts=attempts,
            waited=waited,
            replayed=envelope.replayed,
            positions=self._positions,
            keys=commands.keys,
            methods=tuple(command.method for command in commands.items),
        )

    def _ajax(
        self, entries: list[Any], errors: dict[int, AjaxError], time: Time | None, status: int
    ) -> list[AjaxResult]:
        commands = self.commands
        return [
            AjaxResult(
                key=key,
                method=command.method,
                params=command.params or {},
                result=entry,
                time=time,
                status=status if position not in errors else errors[position].status,
                error=errors.get(position),
            )
            for position, (entry, command, key) in enumerate(
                zip(entries, commands.items, commands.keys, strict=True)
            )
        ]

    def _typed(
        self,
        entries: list[Any],
        errors: dict[int, AjaxError],
        envelope: Envelope,
        attempts: int,
        waited: float,
    ) -> list[Any]:
        commands = self.commands
        try:
            return [
                _typed(
                    entry,
                    command.result_type or self._result_type,
                    position,
                    key,
                    command.method,
                    self.request_id,
                )
                for position, (entry, command, key) in enumerate(
                    zip(entries, commands.items, commands.keys, strict=True)
                )
            ]
        except DecodeError as error:
            # The batch ran: keep what it returned, untyped, rather than lose it with the error.
            error.message += "; the batch was executed: its untyped results are on error.result"
            untyped = Builder(commands, self.request_id, None, False, self._positions)
            error.result = untyped(entries, errors, envelope, attempts=attempts, waited=waited)
            error.attempts = attempts
            error.set_maybe_executed(writes(commands), "ran")
            raise


def _typed(entry: Any, type_: Any, position: int, key: object, method: str, request_id: str) -> Any:
    if entry is None or type_ is None:
        return entry
    try:
        return structure_quick(entry, type_)
    except Exception:  # structured again only to say where and why
        label = f"the result of command {key!r} ({method})"
        return structure(
            entry, type_, path=f"$.result[{position}]", label=label, request_id=request_id
        )
