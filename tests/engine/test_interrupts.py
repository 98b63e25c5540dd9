"""Ctrl+C in a call of many batches: nothing new leaves, and every command is accounted for (#21).

A real SIGINT is delivered to the test's (main) thread while a batch is on the wire or waiting
in a limiter, as a user's Ctrl+C would be; the ``KeyboardInterrupt`` carries ``.partial``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from b24batch import B24Hook, BatchByChunkV2, BatchByChunkV3, CallListV3, RateLimit
from b24batch.testing import FakePortal, Fault
from tests.support.interrupts import BOUND, interrupt, when


@pytest.fixture
def hook(portal: FakePortal) -> Iterator[B24Hook]:
    """A client with no retries and no client-side limits, so each chunk is one request."""
    with B24Hook.from_webhook_url(
        portal.webhook_url, timeout=(2.0, BOUND), retry=None, rate_limit=None
    ) as client:
        yield client


def _adds(count: int) -> list[Any]:
    return [("tasks.task.add", {"fields": {"title": f"T{n}"}}) for n in range(count)]


def test_a_chunk_on_the_wire_when_ctrl_c_comes_is_in_doubt_not_lost(
    portal: FakePortal, hook: B24Hook
) -> None:
    """One batch at a time: the chunk interrupted on the wire ran, and is listed as maybe
    executed; the chunks before it are in data, the ones after it never ran."""
    portal.inject(Fault.delay(0.0), times=2)
    portal.inject(Fault.delay(1.0))  # the third chunk is slow to answer
    when(lambda: len(portal.requests) >= 3, interrupt)
    with pytest.raises(KeyboardInterrupt) as raised:
        BatchByChunkV3(hook).make(_adds(200), max_in_flight=1, halt_on_error=False)
    partial = raised.value.partial  # type: ignore[attr-defined]
    assert len(partial.data) == 100
    assert partial.maybe_executed == tuple(range(100, 150))
    assert partial.not_executed == tuple(range(150, 200))
    assert len(portal.requests) == 3
    deadline = time.monotonic() + BOUND
    while len(portal.tasks) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)  # the portal finishes the interrupted batch on its own time
    assert len(portal.tasks) == 150  # it did run: 'maybe' was right, and nothing else ran


def test_after_ctrl_c_nothing_waiting_in_a_limiter_is_sent(portal: FakePortal) -> None:
    """With batches asleep in the request bucket, Ctrl+C wakes them and none is sent."""
    limit = RateLimit(burst=2, per_second=1.0, headroom=0)
    client = B24Hook.from_webhook_url(
        portal.webhook_url, timeout=(2.0, BOUND), retry=None, rate_limit=limit
    )
    when(lambda: len(portal.requests) >= 2, interrupt)
    with client, pytest.raises(KeyboardInterrupt) as raised:
        BatchByChunkV3(client).make(_adds(20), chunk_size=1, max_in_flight=8, halt_on_error=False)
    sent = len(portal.requests)
    time.sleep(1.5)  # longer than the bucket's next slot: a sleeper would have gone by now
    assert len(portal.requests) == sent <= 3
    partial = raised.value.partial  # type: ignore[attr-defined]
    executed = [key for chunk in partial.chunks for key in chunk.keys]
    accounted = [*executed, *partial.maybe_executed, *partial.not_executed]
    assert sorted(accounted) == list(range(20))  # each command in exactly one place
    assert len(portal.tasks) == len(executed) + len(partial.maybe_executed) == sent


def test_iter_ctrl_c_carries_what_landed_and_what_is_in_doubt(
    portal: FakePortal, hook: B24Hook
) -> None:
    """iter(): the interrupt carries the chunk it left on the wire, in doubt."""
    portal.inject(Fault.delay(0.0))
    portal.inject(Fault.delay(1.0))
    chunks = BatchByChunkV2(hook).iter(
        [("crm.deal.add", {"fields": {"TITLE": f"D{n}"}}) for n in range(150)],
        max_in_flight=1,
        halt_on_error=False,
    )
    first = next(chunks)
    assert len(first.data) == 50
    when(lambda: len(portal.requests) >= 2, interrupt)
    with pytest.raises(KeyboardInterrupt) as raised:
        next(chunks)
    partial = raised.value.partial  # type: ignore[attr-defined]
    assert partial.maybe_executed == tuple(range(50, 100))
    assert partial.data == []


def test_a_second_ctrl_c_abandons_what_is_on_the_wire(portal: FakePortal, hook: B24Hook) -> None:
    """The first Ctrl+C waits for the batches on the wire; a second one leaves them, in doubt."""
    portal.inject(Fault.delay(3.0), times=4)

    def twice() -> None:
        interrupt()
        time.sleep(0.3)
        interrupt()

    when(lambda: len(portal.requests) >= 4, twice)
    with pytest.raises(KeyboardInterrupt) as raised:
        BatchByChunkV3(hook).make(_adds(200), max_in_flight=4, halt_on_error=False)
    partial = raised.value.partial  # type: ignore[attr-defined]
    assert partial.data == []  # it did not wait for the slow answers
    assert partial.maybe_executed == tuple(range(200))
    assert partial.not_executed == ()


def test_a_list_walk_interrupted_keeps_the_items_it_fetched(
    portal: FakePortal, hook: B24Hook
) -> None:
    """CallListV3: Ctrl+C between batches keeps every item fetched, in id order."""
    portal.add_tasks(3000)
    portal.inject(Fault.delay(0.0))
    portal.inject(Fault.delay(1.0))
    when(lambda: len(portal.requests) >= 2, interrupt)
    with pytest.raises(KeyboardInterrupt) as raised:
        CallListV3(hook).make("tasks.task.list", {"select": ["id"]})
    items = raised.value.partial.data  # type: ignore[attr-defined]
    ids = [item["id"] for item in items]
    assert ids == sorted(ids)
    assert ids[:50] == list(range(1, 51))
