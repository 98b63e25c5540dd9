"""Which writes of a failed REST 3.0 batch may have run: ``maybe_executed``, over real HTTP.

The portal runs a batch's commands in order and stops at the first failure without rolling
back the ones before it (protocol §4), so every failure says which writes may have run.
"""

from __future__ import annotations

from typing import Any

import pytest

from b24batch import (
    AjaxError,
    AuthError,
    B24Hook,
    BatchByChunkV3,
    BatchV3,
    Command,
    RateLimitError,
    RetryPolicy,
    TransportError,
)
from b24batch.testing import FakePortal, Fault

NOT_FOUND = "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"


def add(title: str) -> tuple[str, dict[str, Any]]:
    return ("tasks.task.add", {"fields": {"title": title}})


def get(task_id: int) -> tuple[str, dict[str, Any]]:
    return ("tasks.task.get", {"id": task_id})


def titles(portal: FakePortal) -> list[str]:
    return [task["title"] for task in portal.tasks.values()]


def test_failing_third_of_five_writes_keeps_two_and_lists_four(
    portal: FakePortal, client: B24Hook
) -> None:
    """Rows 1-2 stay written; maybe_executed lists every write before the last row."""
    calls = [add("one"), add("two"), get(99), add("four"), add("five")]
    result = BatchV3(client).make(calls)
    assert not result.is_success
    assert titles(portal) == ["one", "two"]
    (error,) = result.errors
    assert error.code == NOT_FOUND
    assert error.key is None  # the portal names no command
    assert result.maybe_executed == error.maybe_executed == (0, 1, 3)
    assert result.errors_by_key == {}
    assert str(error) == (
        f"{NOT_FOUND} (HTTP 400): Record with ID = `99` not found; a REST 3.0 batch stops at "
        "its first failing command without rollback: the commands before it were executed and "
        "their results are lost, so up to 3 writes may have run (maybe_executed: 0, 1, 3); the "
        "portal does not say which command failed"
    )


def test_named_calls_list_names(portal: FakePortal, client: B24Hook) -> None:
    """Named calls give the names of the writes, in call order."""
    calls = {"a": add("a"), "b": add("b"), "bad": get(99), "c": add("c"), "d": add("d")}
    result = BatchV3(client).make(calls)
    assert titles(portal) == ["a", "b"]
    assert result.data == {}
    assert result.maybe_executed == ("a", "b", "c")
    assert "maybe_executed: 'a', 'b', 'c'" in result.error_messages[0]


def test_reads_are_never_listed(portal: FakePortal, client: B24Hook) -> None:
    """A read-only batch gives (); a write marked read_only=True is not listed either."""
    portal.add_task(title="t")
    reads = BatchV3(client).make([get(1), ("tasks.task.list",), get(99), get(1)])
    assert (reads.is_success, reads.maybe_executed) == (False, ())
    assert "may have run" not in reads.error_messages[0]
    marked = BatchV3(client).make(
        [Command("app.touch", read_only=True), add("x"), get(99), add("y"), get(1)]
    )
    assert marked.maybe_executed == (1, 3)


def test_one_command_batch_lists_nothing(portal: FakePortal, client: B24Hook) -> None:
    """The only command of a batch is the failing one: it did not run."""
    result = BatchV3(client).make([("tasks.task.update", {"id": 99, "fields": {"title": "x"}})])
    assert (result.is_success, result.maybe_executed) == (False, ())
    assert result.error_messages[0].endswith("not found")


def test_success_lists_nothing(portal: FakePortal, client: B24Hook) -> None:
    """A successful batch has every result in data: maybe_executed is empty."""
    result = BatchV3(client).make([add("a"), add("b")])
    assert (result.is_success, result.maybe_executed) == (True, ())


def test_timeout_after_sending_lists_every_write(portal: FakePortal) -> None:
    """A timeout after sending a write batch lists every write, the last one included."""
    portal.inject(Fault.delay(0.6))
    with (
        B24Hook.from_webhook_url(portal.webhook_url, timeout=(2.0, 0.15), retry=None) as hook,
        pytest.raises(TransportError) as info,
    ):
        BatchV3(hook).make([add("a"), get(1), add("b")])
    assert info.value.outcome_unknown is True
    assert info.value.maybe_executed == (0, 2)
    assert "sent no answer within 0.15 s; the request may have been executed" in str(info.value)
    assert str(info.value).endswith("; 2 writes may have run (maybe_executed: 0, 2)")


def test_connection_lost_after_running_lists_every_write(
    portal: FakePortal, client: B24Hook
) -> None:
    """A connection lost after the portal ran the batch lists every write: they did run."""
    portal.inject(Fault.drop_after())
    with pytest.raises(TransportError) as info:
        BatchV3(client).make({"x": add("x"), "y": add("y")})
    assert info.value.maybe_executed == ("x", "y")
    assert titles(portal) == ["x", "y"]


def test_server_error_lists_every_write(portal: FakePortal, client: B24Hook) -> None:
    """A 500 leaves the outcome open: every write is listed."""
    portal.inject(Fault.response(500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "x"}))
    with pytest.raises(AjaxError) as info:
        BatchV3(client).make([add("a"), add("b")])
    assert info.value.maybe_executed == (0, 1)
    assert str(info.value) == (
        "INTERNAL_SERVER_ERROR (HTTP 500): x (the request may have been executed); 2 writes may "
        "have run (maybe_executed: 0, 1)"
    )


def test_rate_limit_refusal_lists_nothing(portal: FakePortal, client: B24Hook) -> None:
    """A 503 QUERY_LIMIT_EXCEEDED is refused before execution: nothing is listed."""
    portal.inject(Fault.rate_limited())
    with pytest.raises(RateLimitError) as info:
        BatchV3(client).make([add("a"), add("b")])
    assert (info.value.maybe_executed, portal.executed_commands) == ((), 0)
    assert "may have run" not in str(info.value)


def test_refused_credential_lists_nothing(portal: FakePortal) -> None:
    """A 401 runs nothing: nothing is listed."""
    url = portal.webhook_url.replace(portal.secret, "wrong")
    with B24Hook.from_webhook_url(url, retry=None) as hook, pytest.raises(AuthError) as info:
        BatchV3(hook).make([add("a"), add("b")])
    assert (info.value.maybe_executed, portal.executed_commands) == ((), 0)


def test_idempotency_key_does_not_repeat_writes_before_the_last(portal: FakePortal) -> None:
    """A lost answer to a keyed batch with writes before its last command is not re-sent."""
    portal.add_task(title="seed")
    portal.inject(Fault.drop_after())
    policy = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)
    with (
        B24Hook.from_webhook_url(portal.webhook_url, retry=policy, rate_limit=None) as hook,
        pytest.raises(TransportError) as info,
    ):
        BatchV3(hook).make([add("a"), get(99), add("b")], idempotency_key=True)
    # Re-sent, the batch would have run "a" again: the portal stores no failed answer.
    assert (len(portal.requests), titles(portal)) == (1, ["seed", "a"])
    assert info.value.maybe_executed == (0, 2)


def test_idempotency_key_repeats_a_batch_whose_only_write_is_last(portal: FakePortal) -> None:
    """A keyed batch that writes only in its last command is re-sent after a lost answer."""
    portal.add_task(title="seed")
    portal.inject(Fault.drop_after())
    policy = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)
    with B24Hook.from_webhook_url(portal.webhook_url, retry=policy, rate_limit=None) as hook:
        result = BatchV3(hook).make([get(1), add("once")], idempotency_key=True)
    assert (result.is_success, result.attempts, result.replayed) == (True, 2, True)
    assert titles(portal) == ["seed", "once"]


def test_failure_after_an_uncertain_attempt_lists_every_write(portal: FakePortal) -> None:
    """When an earlier attempt may have run, a later error envelope lists every write."""
    portal.add_task(title="seed")
    portal.inject(Fault.drop_before())
    policy = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0)
    with B24Hook.from_webhook_url(portal.webhook_url, retry=policy, rate_limit=None) as hook:
        result = BatchV3(hook).make([get(99), add("b")], idempotency_key=True)
    assert (result.attempts, result.maybe_executed) == (2, (1,))


def test_chunk_failure_lists_the_chunks_writes(portal: FakePortal, client: B24Hook) -> None:
    """In a chunked call the failed chunk's writes before its last row are listed, globally."""
    calls = [add(f"t{n}") for n in range(7)]
    calls[5] = get(99)
    result = BatchByChunkV3(client).make(calls, chunk_size=3)
    assert [chunk.is_success for chunk in result.chunks] == [True, False]
    (chunk_error,) = result.errors
    assert chunk_error.keys == (3, 4, 5)
    assert chunk_error.maybe_executed == (3, 4)
    assert result.maybe_executed == (3, 4)
    assert result.not_executed == (6,)
    assert titles(portal) == ["t0", "t1", "t2", "t3", "t4"]


def test_chunks_add_up_without_halting(portal: FakePortal, client: B24Hook) -> None:
    """With halt_on_error=False every failed chunk's writes are listed, in call order."""
    calls = [add("a"), add("b"), get(99), add("c"), get(98), add("d")]
    result = BatchByChunkV3(client).make(calls, chunk_size=3, halt_on_error=False)
    assert [error.maybe_executed for error in result.errors] == [(0, 1), (3,)]
    assert result.maybe_executed == (0, 1, 3)


def test_raised_chunk_error_keeps_what_may_have_run(portal: FakePortal, client: B24Hook) -> None:
    """A chunk that raises lists its writes, and partial lists every chunk's."""
    calls = [add("a"), get(99), add("b"), add("c")]
    portal.inject(Fault.drop_after(), times=1)
    with pytest.raises(TransportError) as info:
        BatchByChunkV3(client).make(calls, chunk_size=2, halt_on_error=False)
    assert info.value.maybe_executed == (0,)
    assert info.value.partial is not None
    assert info.value.partial.maybe_executed == (0,)
