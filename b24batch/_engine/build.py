"""Building a ``BatchResult`` from decoded answers: typed results, AjaxResults, partial results.

One ``Builder`` per call turns what the portal answered — every command's result, or the
errors found per command, or one error for the whole batch — into the ``BatchResult`` both
protocols return. Pure: no I/O, no retries; a result that does not fit ``result_type`` raises
``DecodeError`` with the untyped answer kept on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from b24batch._engine.outcomes import reads
from b24batch._protocols.base import Answers
from b24batch.commands import Commands
from b24batch.errors import DecodeError
from b24batch.results import AjaxResult, BatchResult, structure, structure_quick

__all__ = ["Builder"]


class Builder:
    """Builds a batch's ``BatchResult`` from its answers; one per call of a protocol's execute."""

    def __init__(
        self,
        commands: Commands,
        request_id: str,
        result_type: Any,
        return_ajax_result: bool,
        positions: range | None,
        observe: Callable[[Answers, int, float], None] | None = None,
    ) -> None:
        """``observe`` is given the answers every result is built from, before it is built
        (a journal records them)."""
        self._observe = observe
        self.commands = commands
        self.request_id = request_id
        self._result_type = result_type
        self._as_ajax = return_ajax_result
        self._positions = positions

    def __call__(self, answers: Answers, *, attempts: int, waited: float) -> BatchResult[Any]:
        """The result: data as the call asked for it, errors in call order, what did not run."""
        if self._observe is not None:
            self._observe(answers, attempts, waited)
        commands = self.commands
        entries = answers.entries
        errors = answers.errors if answers.error is None else {0: answers.error}
        if entries is not None and (
            self._result_type is not None or any(c.result_type is not None for c in commands.items)
        ):
            entries = self._typed(answers, entries, attempts, waited)
        data: Any
        if entries is None:  # the batch failed as a whole: no results
            data = {} if commands.named else []
        else:
            values: list[Any] = entries
            if self._as_ajax:
                values = self._ajax(answers, entries)
            if commands.named:
                silent = answers.not_run | answers.unknown  # no result of theirs to show
                left_out = silent if self._as_ajax else {*answers.errors, *silent}
                data = {
                    key: value
                    for position, (key, value) in enumerate(zip(commands.keys, values, strict=True))
                    if position not in left_out
                }
            else:
                data = values
        keys = commands.keys
        return BatchResult(
            data=data,
            errors=tuple(errors[position] for position in sorted(errors)),
            time=answers.time,
            request_id=self.request_id,
            status=answers.status,
            attempts=attempts,
            waited=waited,
            replayed=answers.replayed,
            positions=self._positions,
            keys=keys,
            methods=tuple(command.method for command in commands.items),
            not_executed=tuple(keys[position] for position in sorted(answers.not_run)),
            unanswered=tuple(keys[position] for position in sorted(answers.unknown)),
        )

    def _ajax(self, answers: Answers, entries: list[Any]) -> list[Any]:
        commands = self.commands
        errors = answers.errors
        times, totals, nexts = answers.times, answers.totals, answers.nexts
        return [
            None
            if position in answers.not_run or position in answers.unknown
            else AjaxResult(
                key=key,
                method=command.method,
                params=command.params or {},
                result=entry,
                time=answers.time if times is None else times[position],
                status=answers.status if position not in errors else errors[position].status,
                error=errors.get(position),
                total=None if totals is None else totals[position],
                next=None if nexts is None else nexts[position],
                request_id=self.request_id,
            )
            for position, (entry, command, key) in enumerate(
                zip(entries, commands.items, commands.keys, strict=True)
            )
        ]

    def _typed(
        self, answers: Answers, entries: list[Any], attempts: int, waited: float
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
            error.result = untyped(answers, attempts=attempts, waited=waited)
            error.attempts = attempts
            ran = [
                key
                for position, (key, command) in enumerate(
                    zip(commands.keys, commands.items, strict=True)
                )
                if position not in answers.not_run
                and position not in answers.errors
                and not reads(command)
            ]
            error.set_maybe_executed(tuple(ran), "ran")
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
