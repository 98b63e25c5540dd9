"""Which commands ran, may have run, or did not: ``mark``, the read/write rules, ``CallRecord``.

Pure functions and one small thread-safe record, tested directly: each protocol's failure
model through ``V3``/``V2`` ``prepare`` on ``normalize`` output, and the stop signal with an
injected sleep and with the real ``time.sleep`` (bounded).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from b24batch._engine.outcomes import (
    CallRecord,
    Stopped,
    interrupted,
    mark,
    read_only,
    reads,
    writes,
    writes_before_last,
)
from b24batch._protocols.base import Prepared
from b24batch._protocols.v2 import V2
from b24batch._protocols.v3 import V3
from b24batch.commands import Command, normalize
from b24batch.errors import AjaxError, B24Error, TransportError

NOT_FOUND = "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"
REFUSED = "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION"

# add, get, add, update: writes at 0, 2, 3; the last row (3) is a write.
CALLS: list[Any] = [
    ("tasks.task.add", {"fields": {"title": "one"}}),
    ("tasks.task.get", {"id": 1}),
    ("tasks.task.add", {"fields": {"title": "three"}}),
    ("tasks.task.update", {"id": 1, "fields": {"title": "four"}}),
]


def v3(calls: Any = CALLS) -> Prepared:
    return V3.prepare(normalize(calls), halt=True)


def v2(calls: Any = CALLS) -> Prepared:
    return V2.prepare(normalize(calls, what="classic"), halt=True)


def ajax(code: str = NOT_FOUND, *, outcome_unknown: bool = False) -> AjaxError:
    return AjaxError("failed", code=code, status=400, outcome_unknown=outcome_unknown)


STOPPED_NOTE = (
    "; a REST 3.0 batch stops at its first failing command without rollback: the "
    "commands before it were executed and their results are lost, so up to 2 writes may have "
    "run (maybe_executed: 0, 2); the portal does not say which command failed"
)


def test_v3_error_answer_may_have_run_the_writes_before_the_last_row() -> None:
    """REST 3.0 answered an error: every write but the last row's may have run."""
    error = ajax()
    mark(error, v3(), returned=True, uncertain=False)
    assert error.maybe_executed == (0, 2)
    assert str(error) == f"{NOT_FOUND} (HTTP 400): failed{STOPPED_NOTE}"


def test_v3_error_without_a_code_counts_as_stopped() -> None:
    """An error with no code attribute still marks the writes before the last row."""
    error = B24Error("failed")
    mark(error, v3(), returned=True, uncertain=False)
    assert error.maybe_executed == (0, 2)
    assert str(error) == f"failed{STOPPED_NOTE}"


def test_v3_refusal_before_running_marks_nothing() -> None:
    """A REST 3.0 code answered before any command ran leaves maybe_executed empty."""
    error = ajax(REFUSED)
    mark(error, v3(), returned=True, uncertain=False)
    assert error.maybe_executed == ()
    assert str(error) == f"{REFUSED} (HTTP 400): failed"


@pytest.mark.parametrize("prepare", [v3, v2], ids=["v3", "classic"])
def test_no_answer_and_no_doubt_marks_nothing(prepare: Any) -> None:
    """Not returned, not uncertain, outcome known: nothing ran."""
    error = TransportError("refused")
    mark(error, prepare(), returned=False, uncertain=False)
    assert error.maybe_executed == ()
    assert str(error) == "refused"


def test_classic_error_answer_marks_nothing() -> None:
    """A classic error envelope refuses the whole request: nothing ran."""
    error = ajax("ERROR_METHOD_NOT_FOUND")
    mark(error, v2(), returned=True, uncertain=False)
    assert error.maybe_executed == ()
    assert str(error) == "ERROR_METHOD_NOT_FOUND (HTTP 400): failed"


@pytest.mark.parametrize("prepare", [v3, v2], ids=["v3", "classic"])
@pytest.mark.parametrize("returned", [True, False], ids=["returned", "no-answer"])
def test_uncertain_attempt_marks_every_write(prepare: Any, returned: bool) -> None:
    """An earlier attempt in doubt: every write may have run, whatever this answer says."""
    error = ajax(REFUSED)
    mark(error, prepare(), returned=returned, uncertain=True)
    assert error.maybe_executed == (0, 2, 3)
    assert str(error) == (
        f"{REFUSED} (HTTP 400): failed; 3 writes may have run (maybe_executed: 0, 2, 3)"
    )


@pytest.mark.parametrize("prepare", [v3, v2], ids=["v3", "classic"])
def test_outcome_unknown_marks_every_write(prepare: Any) -> None:
    """An error whose outcome is unknown (a timeout after sending) lists every write."""
    error = TransportError("timed out", outcome_unknown=True)
    mark(error, prepare(), returned=False, uncertain=False)
    assert error.maybe_executed == (0, 2, 3)
    assert str(error) == "timed out; 3 writes may have run (maybe_executed: 0, 2, 3)"


def test_writes_in_call_order_by_name() -> None:
    """writes() gives the keys of the writing commands, names for a dict of calls."""
    commands = normalize(
        {"first": ("tasks.task.add",), "read": ("tasks.task.list",), "last": ("crm.deal.delete",)}
    )
    assert writes(commands) == ("first", "last")
    assert writes(commands, before_last=True) == ("first",)
    assert writes_before_last(commands) == ("first",)


def test_writes_before_last_drops_only_the_last_row() -> None:
    """Before the last row: a read as the last row changes nothing, a write is dropped."""
    assert writes_before_last(normalize(CALLS)) == (0, 2)
    assert writes_before_last(normalize([*CALLS, ("tasks.task.get", {"id": 2})])) == (0, 2, 3)
    assert writes_before_last(normalize([("tasks.task.add",)])) == ()


def test_read_only_flag_overrides_the_name_rule() -> None:
    """A command's read_only wins over its method name, either way."""
    commands = normalize(
        [
            Command("tasks.task.add", read_only=True),
            Command("tasks.task.get", read_only=False),
            Command("tasks.task.list"),
            Command("tasks.task.delete"),
        ]
    )
    assert [reads(command) for command in commands.items] == [True, False, True, False]
    assert writes(commands) == (1, 3)


def test_read_only_needs_every_command_to_read() -> None:
    """read_only() is true only when no command writes."""
    assert read_only(normalize([("tasks.task.get",), ("tasks.task.list",)])) is True
    assert read_only(normalize([("tasks.task.get",), ("tasks.task.add",)])) is False
    assert read_only(normalize([Command("tasks.task.add", read_only=True)])) is True


def test_interrupted_lists_every_write_as_in_doubt() -> None:
    """An abandoned batch's error: outcome unknown, every write named, the request id kept."""
    error = interrupted(v3(), "req.2")
    assert type(error) is TransportError
    assert (error.request_id, error.outcome_unknown) == ("req.2", True)
    assert error.maybe_executed == (0, 2, 3)
    assert str(error) == (
        "the call was interrupted after this batch was sent, before its answer was taken; "
        "3 writes may have run (maybe_executed: 0, 2, 3)"
    )


def test_stopped_is_an_exception() -> None:
    """Stopped is an Exception, so the engine's handlers catch it, not a BaseException."""
    assert issubclass(Stopped, Exception)
    assert not issubclass(Stopped, B24Error)


def test_a_new_record_is_running_and_has_sent_nothing() -> None:
    """A fresh record is not stopped, passes check() and has sent no batch."""
    record = CallRecord()
    assert record.stopped is False
    record.check()
    assert (record.was_sent(None), record.was_sent(0)) == (False, False)


def test_sending_counts_each_batch() -> None:
    """sending(k) marks exactly batch k as sent; None is the single batch."""
    record = CallRecord()
    record.sending(3)
    assert [record.was_sent(index) for index in (None, 0, 3, 4)] == [False, False, True, False]
    record.sending(None)
    assert record.was_sent(None) is True


def test_stop_refuses_every_later_batch() -> None:
    """After stop(): stopped, check() raises, sending() raises and counts nothing."""
    record = CallRecord()
    record.sending(0)
    record.stop()
    assert record.stopped is True
    with pytest.raises(Stopped):
        record.check()
    with pytest.raises(Stopped):
        record.sending(1)
    assert (record.was_sent(0), record.was_sent(1)) == (True, False)


def test_injected_sleep_is_called_as_it_is() -> None:
    """An injected sleep gets the seconds asked for, and nothing for zero or less."""
    slept: list[float] = []
    record = CallRecord()
    record.sleep(0.5, slept.append)
    record.sleep(0, slept.append)
    record.sleep(-1, slept.append)
    assert slept == [0.5]


def test_injected_sleep_then_checks_the_stop_signal() -> None:
    """A stop during an injected sleep raises Stopped once the sleep returns."""
    record = CallRecord()
    slept: list[float] = []

    def stopping_sleep(seconds: float) -> None:
        slept.append(seconds)
        record.stop()

    with pytest.raises(Stopped):
        record.sleep(2.0, stopping_sleep)
    assert slept == [2.0]


def test_injected_sleep_of_a_stopped_call_raises() -> None:
    """A stopped call's sleep of zero seconds still raises Stopped."""
    record = CallRecord()
    record.stop()
    with pytest.raises(Stopped):
        record.sleep(0, lambda seconds: None)


def test_real_sleep_waits_the_seconds() -> None:
    """With time.sleep the record waits about the seconds asked for, then returns."""
    record = CallRecord()
    waited: list[float] = []

    def wait() -> None:
        start = time.monotonic()
        record.sleep(0.05, time.sleep)
        waited.append(time.monotonic() - start)

    thread = threading.Thread(target=wait, daemon=True)  # a wait that never ends fails, not hangs
    thread.start()
    thread.join(2)
    assert len(waited) == 1
    assert 0.04 <= waited[0] < 2


def test_real_sleep_of_a_stopped_call_returns_at_once() -> None:
    """With time.sleep a stopped call does not wait: it raises Stopped at once."""
    record = CallRecord()
    record.stop()
    start = time.monotonic()
    with pytest.raises(Stopped):
        record.sleep(3, time.sleep)
    assert time.monotonic() - start < 1


def test_stop_wakes_a_real_sleep() -> None:
    """stop() from another thread cuts a time.sleep wait short with Stopped."""
    record = CallRecord()
    timer = threading.Timer(0.05, record.stop)
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(Stopped):
            record.sleep(3, time.sleep)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 2
