"""Which commands of a failed read-only batch fail: found by re-sending parts of it.

A protocol that stops at its first failure (REST 3.0) answers only that error, naming no
row. So a part that succeeds gives the results of all its rows, and one that fails says the
first failure is inside it: a bisection over parts finds each failing row in about log2(n)
requests. Logic only: the ``send`` callable it is given does the HTTP (through the client's
limiter and retry policy), and ``execute.py`` builds the result. Safe only for read-only rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from b24batch._protocols.base import Answers
from b24batch.errors import AjaxError
from b24batch.results import Time

__all__ = ["Isolation", "Send"]

Send = Callable[[range], tuple[Answers, int, float]]
"""Sends the rows at these positions as one batch: ``(answers, sends, seconds waited)``."""


class Isolation:
    """What the bisection of one failed batch has found so far (kept when a send raises).

    Args:
        count: The batch's number of commands.
        first: The answers that failed the whole batch.
        keys: The commands' keys, put on each error found.

    Attributes:
        results: Position -> raw result of every command found to succeed.
        errors: Position -> the error of every command found to fail, its ``key`` set.
        attempts: Requests sent by the bisection (the first, failed one not included).
        waited: Seconds the bisection spent in the limiters and backoff.
        time: The ``time`` block of the last answer.
    """

    def __init__(self, count: int, first: Answers, keys: tuple[Any, ...]) -> None:
        assert first.error is not None
        self._count = count
        self._first = first
        self._keys = keys
        self.results: dict[int, Any] = {}
        self.errors: dict[int, AjaxError] = {}
        self.attempts = 0
        self.waited = 0.0
        self.time: Time | None = first.time

    def run(self, send: Send) -> None:
        """Find every failing command; raises whatever ``send`` raises, keeping what was found.

        Invariant: every row before ``start`` is known, and when ``failing`` is set the rows
        ``start..failing-1`` sent as one batch failed with ``error`` (the first failure of
        that part, which is the first failure from ``start`` on).
        """
        start = 0
        failing: int | None = self._count
        error = self._first.error
        while start < self._count:
            if failing is None:
                answers = self._send(send, range(start, self._count))
                if answers.error is None:
                    break
                failing, error = self._count, answers.error
            while failing - start > 1:
                middle = (start + failing) // 2
                answers = self._send(send, range(start, middle))
                if answers.error is None:
                    start = middle
                else:
                    failing, error = middle, answers.error
            assert error is not None
            error.key = self._keys[start]
            self.errors[start] = error
            start, failing = start + 1, None

    def _send(self, send: Send, positions: range) -> Answers:
        answers, sends, waited = send(positions)
        self.attempts += sends
        self.waited += waited
        self.time = answers.time
        if answers.error is None:
            assert answers.entries is not None
            self.results.update(zip(positions, answers.entries, strict=True))
        return answers
