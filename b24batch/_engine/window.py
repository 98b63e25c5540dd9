"""Sending planned chunks with a window of batches in flight, handing answers back in order.

A real portal takes 0.5–3 s to run a batch: sent one after another, the request bucket sits
idle most of the time. A ``Window`` keeps up to ``size`` chunks on the wire, each sent from a
thread of its own through the same ``send`` (so the same limiters and retry policy), and hands
the outcomes back in chunk order, on the caller's thread. ``"auto"`` opens as wide as the
bucket's unspent burst allows, then keeps what keeps its drain rate busy. No planning, no
merging: ``chunked.py`` does.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import attrs

from b24batch._engine.call_options import MAX_IN_FLIGHT, InFlight
from b24batch._engine.plan import Chunk
from b24batch.results import BatchResult

__all__ = ["Outcome", "Window"]

_SMOOTHING = 0.3  # weight of the newest latency in the moving average


@attrs.frozen
class Outcome:
    """What one chunk gave: its result, or the exception its sending raised."""

    chunk: Chunk
    result: BatchResult[Any] | None = None
    error: BaseException | None = None


class Window:
    """Up to ``size`` chunks in flight; outcomes in chunk order.

    Args:
        send: Sends one chunk and returns its result (or raises), on a worker thread.
        size: ``max_in_flight``.
        rate: ``(burst, per_second)`` of the client's request bucket, for ``"auto"``.
        available: How many requests the bucket would let out now (its unspent burst).
        alone: Whether a chunk must be sent with nothing else in flight, and nothing sent
            until it is answered (a chunk with writes under ``halt_on_error``: a failure must
            stop everything after it).
        clock: Monotonic seconds, to learn the latency.
        interrupt: Called when the run ends early by an exception (Ctrl+C, the caller closing
            the iteration): the call's stop signal, so that batches waiting in a limiter or a
            backoff are never sent.
    """

    def __init__(
        self,
        send: Callable[[Chunk], BatchResult[Any]],
        size: InFlight,
        *,
        rate: tuple[float, float],
        available: Callable[[], float] = lambda: 0.0,
        alone: Callable[[Chunk], bool] = lambda chunk: False,
        clock: Callable[[], float] = time.monotonic,
        interrupt: Callable[[], None] = lambda: None,
    ) -> None:
        self._send = send
        self._interrupt = interrupt
        self.abandoned = False
        """A second interrupt came while waiting for the batches on the wire: they were left."""
        self._auto = size == "auto"
        self._fixed = 1 if size == "auto" else size
        burst, per_second = rate
        self._ceiling = max(1, min(MAX_IN_FLIGHT, int(burst)))
        self._per_second = per_second
        self._available = available
        self._auto_size = 1  # until run() opens the window
        self._alone = alone
        self._clock = clock
        self._latency: float | None = None
        self._stopped = threading.Event()
        self._flying: deque[tuple[Chunk, Future[BatchResult[Any]], float]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._leftover: list[Outcome] = []
        self.sent = 0
        """How many chunks were handed to ``send`` (the rest were never sent)."""

    @property
    def size(self) -> int:
        """The current window: fixed, or what ``"auto"`` learnt at the last answer."""
        return self._auto_size if self._auto else self._fixed

    def stop(self) -> None:
        """Send nothing more; what is in flight still completes and is handed back."""
        self._stopped.set()

    def run(self, chunks: Iterator[Chunk | None]) -> Iterator[Outcome]:
        """Send ``chunks`` (read lazily: at most the window ahead) and yield their outcomes in
        order. Closing the iterator early stops sending and waits for what is in flight.

        ``chunks`` may yield None: nothing to send until an answer lands (a list walk whose
        ranges are all being read); it is read again after the next outcome, and the run ends
        when it has nothing to send and nothing is in flight."""
        waiting: Chunk | None = None  # read from ``chunks`` but not yet sent
        unreadable: Exception | None = None  # a bad row met while reading ahead
        if self._auto:
            self._auto_size = self._opening()
        try:
            while True:
                while not self._stopped.is_set() and len(self._flying) < self.size:
                    if waiting is None:
                        try:
                            waiting = next(chunks, None)
                        except Exception as error:  # raised once what flies has landed
                            unreadable = error
                            self.stop()
                            break
                        if waiting is None:
                            break
                    if self._alone(waiting) and self._flying:
                        break  # it goes when everything before it is answered
                    self._launch(waiting)
                    waiting = None
                    if self._alone(self._flying[-1][0]):
                        break  # and nothing goes with it
                if not self._flying:
                    if unreadable is not None:
                        raise unreadable
                    return
                yield self._land()
        except BaseException:
            self._interrupt()  # nothing more leaves, not even what waits in a limiter
            raise
        finally:
            # Closed early (a halt, an error, Ctrl+C): what is on the wire still lands, and is
            # kept for drain(), so nothing fetched is lost; a second Ctrl+C leaves it.
            self.stop()
            self._land_leftover()

    def drain(self) -> list[Outcome]:
        """Stop sending, wait for every chunk still in flight; their outcomes, in order.

        After :attr:`abandoned`, waits for nothing: what was still on the wire is in
        :meth:`left`.
        """
        self.stop()
        if not self.abandoned:
            self._land_leftover()
        landed, self._leftover = self._leftover, []
        return landed

    def left(self) -> list[Chunk]:
        """The chunks abandoned in flight by a second interrupt, in order."""
        return [chunk for chunk, _, _ in self._flying]

    def _land_leftover(self) -> None:
        try:
            while self._flying:
                self._leftover.append(self._land())
        except BaseException:
            self.abandoned = True  # a second Ctrl+C: stop waiting for what is on the wire
            raise
        finally:
            if self._pool is not None and not self._flying:
                self._pool.shutdown(wait=True)
            elif self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)

    def _launch(self, chunk: Chunk) -> None:
        if self._fixed == 1 and not self._auto:
            future: Future[BatchResult[Any]] = Future()
            started = self._clock()
            try:
                future.set_result(self._send(chunk))
            except BaseException as error:  # handed back in order, as a worker's would be
                future.set_exception(error)
            self._flying.append((chunk, future, started))
            self.sent += 1
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=MAX_IN_FLIGHT, thread_name_prefix="b24batch-window"
            )
        started = self._clock()
        future = self._pool.submit(self._send, chunk)
        self._flying.append((chunk, future, started))
        self.sent += 1

    def _land(self) -> Outcome:
        chunk, future, started = self._flying[0]
        try:
            result = future.result()
        except BaseException as error:
            if not future.done() or future.exception() is not error:
                # Interrupted while waiting (Ctrl+C), not the chunk's own failure: it is still
                # in flight, or has just landed, and is landed later.
                raise
            self._flying.popleft()
            return Outcome(chunk, error=error)
        self._flying.popleft()
        self._learn(self._clock() - started)
        return Outcome(chunk, result=result)

    def _opening(self) -> int:
        """The first window of ``"auto"``: what the bucket lets out now without a wait (its
        unspent burst, this process's or the shared store's), at most the ceiling.

        Nothing is known of the latency yet, and nothing need be: requests the bucket has room
        for cost no wait and risk no 503, and the operating-time ledger holds whatever the
        known figure has no room for. The first answers then set the window (``_learn``).
        Without a limiter (no bucket: nothing is known) it is one batch.
        """
        return max(1, min(self._ceiling, int(self._available())))

    def _learn(self, latency: float) -> None:
        previous = self._latency
        self._latency = (
            latency if previous is None else previous + _SMOOTHING * (latency - previous)
        )
        if self._auto:
            # Enough batches to cover the latency at the drain rate, and one more for the gap
            # between an answer and the next send; a fast portal stays at one. A slow one may
            # also spend what is left of the burst, as a sequential caller would.
            wanted = int(self._per_second * self._latency) + 1
            if wanted > 1:
                wanted = max(wanted, int(self._available()))
            self._auto_size = max(1, min(self._ceiling, wanted))
