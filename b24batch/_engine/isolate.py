"""Which commands of a failed read-only batch fail: found by re-sending parts of it.

A protocol that stops at its first failure (REST 3.0) answers only that error, naming no
row, and a portal may fail a row once and pass it the next time. So an error is put on a row
only when that row, sent alone, answered it. Logic only: the ``send`` callable it is given
does the HTTP (through the client's limiter and retry policy), and ``execute.py`` builds the
result. Safe only for read-only rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from b24batch._protocols.base import Answers
from b24batch.errors import AjaxError
from b24batch.results import Time

__all__ = ["EXTRA_REQUESTS", "Isolation", "Send"]

EXTRA_REQUESTS = 4
"""A failed batch of n commands is isolated in at most n + EXTRA_REQUESTS requests in all.

The first, failed, request included; a request the retry policy repeats counts once per send.
"""

Send = Callable[[range], tuple[Answers, int, float]]
"""Sends the rows at these positions as one batch: ``(answers, sends, seconds waited)``."""


class Isolation:
    """What the search of one failed batch has found so far (kept when a send raises).

    The search resolves the rows in order, each part starting at the first row not yet
    resolved. A part that succeeds resolves all its rows with their results; a row sent alone
    is resolved whatever it answers: its result, or its error, the only way a row gets an
    error. A part of several rows that fails resolves nothing; it is searched (each next part
    at most half of it), but a row is never blamed for it, so a portal that fails a row once
    and then passes it gives that row its result, and every row its own answer. Part sizes
    gallop: 1, 2, 4 … rows while parts succeed; after a row fails, the next part is as long as
    the gap since the failure before it.

    Bound: with ``spare`` = rows resolved - requests sent (the first included), a part of
    several rows is sent only while ``spare > -EXTRA_REQUESTS``, and only such a part, by
    failing, lowers ``spare`` (by 1); every other request resolves at least one row for its
    cost. So ``spare >= -EXTRA_REQUESTS`` always, and the requests are at most the rows
    resolved + ``EXTRA_REQUESTS`` <= n + ``EXTRA_REQUESTS``, whatever the portal answers, even
    if its answers contradict each other: the loop ends there. All n failing cost n + 1; one
    failure among 50 at most 13.

    Args:
        count: The batch's number of commands.
        first: The answers that failed the whole batch.
        keys: The commands' keys, put on each error found.

    Attributes:
        results: Position -> raw result of every command resolved with a result.
        errors: Position -> the error every command resolved with an error answered when sent
            alone, its ``key`` set.
        attempts: Requests sent by the search (the first, failed one not included).
        waited: Seconds the search spent in the limiters and backoff.
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
        """Resolve every command; raises whatever ``send`` raises, keeping what was resolved.

        Rows before ``start`` are resolved, the others not. ``failing``, when set, ends a part
        from ``start`` that (perhaps only once) failed: the first failure from ``start`` on is
        believed to be before it, so the next part is at most half of it.
        """
        count = self._count
        if count == 1:  # the first request sent the command alone
            self._blame(0, self._first.error)
            return
        start, size = 0, 1
        failing: int | None = count
        spare = -1  # rows resolved - requests sent
        previous = -1  # the last row that failed alone
        while start < count:
            if spare <= -EXTRA_REQUESTS:  # one more part failing for nothing breaks the bound
                end = start + 1
            elif failing is None:
                end = min(start + size, count)
            else:
                end = start + max(1, min(size, (failing - start) // 2))
            answers = self._send(send, range(start, end))
            spare -= 1
            if answers.error is None:
                spare += end - start
                start, size = end, size * 2
                if start == failing:  # the part failed, then its rows passed: not deterministic
                    failing = None
            elif end - start == 1:
                self._blame(start, answers.error)
                spare += 1
                size = start - previous  # the next part as long as the gap before this failure
                previous = start
                start += 1
                failing = None
            else:
                failing = end

    def _blame(self, position: int, error: AjaxError | None) -> None:
        assert error is not None
        error.key = self._keys[position]
        self.errors[position] = error

    def _send(self, send: Send, positions: range) -> Answers:
        answers, sends, waited = send(positions)
        self.attempts += sends
        self.waited += waited
        self.time = answers.time
        if answers.error is None:
            assert answers.entries is not None
            # Whole, before anything is kept: a short answer must not lend a result to a row.
            self.results.update(dict(zip(positions, answers.entries, strict=True)))
        return answers
