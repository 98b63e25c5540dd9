"""Every command accounted for when an answer says less than it should, over real HTTP (#21).

When the portal may have run commands and its answer does not say what happened to them, they
are maybe executed, and every result that can be read is kept.
"""

from __future__ import annotations

from typing import Any

import pytest

from b24batch import (
    B24Hook,
    BatchByChunkV2,
    BatchV2,
    BatchV3,
    DecodeError,
    RateLimitError,
    RetryPolicy,
    TransportError,
)
from b24batch.testing import FakePortal, Fault


def _classic(result: dict[str, Any], errors: Any = ()) -> dict[str, Any]:
    """A classic 200 answer with these ``result`` and ``result_error`` sections."""
    return {
        "result": {
            "result": result,
            "result_error": dict(errors) if errors else [],
            "result_total": [],
            "result_next": [],
            "result_time": [],
        },
        "time": {"start": 1.0, "finish": 1.1, "duration": 0.1},
    }


ADDS = {"a": ("crm.deal.add", {"fields": {"TITLE": "A"}}), "b": ("crm.deal.add", {})}


def test_a_command_a_full_answer_leaves_out_may_have_run(
    portal: FakePortal, client: B24Hook
) -> None:
    """Without halt, a command named in no section was sent and nothing skipped it: maybe run."""
    portal.inject(Fault.response(200, _classic({"a": 5})))
    result = BatchV2(client).make(ADDS, halt_on_error=False)
    assert result.data == {"a": 5}
    assert result.unanswered == ("b",)
    assert result.maybe_executed == ("b",)
    assert result.not_executed == ()
    assert result.errors == ()
    assert not result.is_success


def test_raise_errors_does_not_let_an_unanswered_command_pass(
    portal: FakePortal, client: B24Hook
) -> None:
    """No error names it, yet it may have run: raise_errors raises, naming it, result attached."""
    portal.inject(Fault.response(200, _classic({"a": 5})))
    with pytest.raises(DecodeError, match="neither a result nor an error") as raised:
        BatchV2(client).make(ADDS, halt_on_error=False, raise_errors=True)
    assert raised.value.maybe_executed == ("b",)
    assert raised.value.outcome_unknown is True
    assert "maybe_executed: 'b'" in str(raised.value)
    assert raised.value.result is not None
    assert raised.value.result.data == {"a": 5}


def test_a_chunked_call_raises_for_an_unanswered_command_too(
    portal: FakePortal, client: B24Hook
) -> None:
    """The chunked result's raise_for_errors() raises for it, the whole result as ``partial``."""
    portal.inject(Fault.response(200, _classic({"a": 5})))
    result = BatchByChunkV2(client).make(ADDS, halt_on_error=False, max_in_flight=1)
    assert result.errors == ()
    with pytest.raises(DecodeError, match="neither a result nor an error") as raised:
        result.raise_for_errors()
    assert raised.value.maybe_executed == ("b",)
    assert raised.value.partial is result


def test_under_halt_only_the_commands_after_the_failure_did_not_run(
    portal: FakePortal, client: B24Hook
) -> None:
    """With halt, a command left out before the first failure may have run; after it, did not."""
    calls = {**ADDS, "c": ("crm.deal.add", {}), "d": ("crm.deal.add", {})}
    failure = {"error": "", "error_description": "Bad fields"}
    portal.inject(Fault.response(200, _classic({"b": 7}, {"c": failure})))
    result = BatchV2(client).make(calls, halt_on_error=True)
    assert result.data == {"b": 7}
    assert result.unanswered == ("a",)
    assert [error.key for error in result.errors] == ["c"]
    assert result.not_executed == ("d",)
    assert result.maybe_executed == ("a",)


def test_an_unanswered_command_has_no_ajax_result(portal: FakePortal, client: B24Hook) -> None:
    """A list call's unanswered command holds None in data, as one that did not run does."""
    portal.inject(Fault.response(200, _classic([5])))
    calls = [("crm.deal.add", {}), ("crm.deal.add", {})]
    result = BatchV2(client).make(calls, halt_on_error=False, return_ajax_result=True)
    assert result.data[1] is None
    assert result.data[0].result == 5
    assert result.unanswered == (1,)


def test_a_classic_answer_naming_an_unsent_command_leaves_every_write_in_doubt(
    portal: FakePortal, client: B24Hook
) -> None:
    """A 200 whose sections name a key not sent ran the batch: every write may have run."""
    portal.inject(Fault.response(200, _classic({"a": 1, "zz": 2})))
    with pytest.raises(DecodeError, match="was not sent") as raised:
        BatchV2(client).make({**ADDS, "me": ("user.current",)}, halt_on_error=False)
    assert raised.value.outcome_unknown is True
    assert raised.value.maybe_executed == ("a", "b")


def test_a_chunk_whose_answer_cannot_be_read_lists_its_writes(
    portal: FakePortal, client: B24Hook
) -> None:
    """In a chunked classic call, that chunk's 50 writes are in maybe_executed, not lost."""
    portal.inject(Fault.response(200, _classic({"0": 1, "zz": 2})))
    calls = [("crm.deal.add", {"fields": {"TITLE": f"d{n}"}}) for n in range(60)]
    with pytest.raises(DecodeError) as raised:
        BatchByChunkV2(client).make(calls, max_in_flight=1)
    partial = raised.value.partial
    assert partial is not None
    assert partial.maybe_executed == tuple(range(50))
    assert partial.not_executed == tuple(range(50, 60))


def test_a_classic_error_envelope_on_200_leaves_the_writes_in_doubt(
    portal: FakePortal, client: B24Hook
) -> None:
    """A whole-request error answered with 200 says nothing of the writes: they may have run."""
    portal.inject(Fault.response(200, {"error": "SOMETHING", "error_description": "odd"}))
    result = BatchV2(client).make({**ADDS, "me": ("user.current",)}, halt_on_error=False)
    assert [error.code for error in result.errors] == ["SOMETHING"]
    assert result.maybe_executed == ("a", "b")


def test_a_rest3_answer_with_too_few_results_leaves_every_write_in_doubt(
    portal: FakePortal, client: B24Hook
) -> None:
    """A REST 3.0 200 whose result does not match the commands: every write may have run."""
    portal.inject(Fault.response(200, {"result": [{"item": {"id": 1}}]}))
    calls = [("tasks.task.add", {"fields": {"title": "x"}}), ("tasks.task.get", {"id": 1})]
    with pytest.raises(DecodeError, match="does not match the commands") as raised:
        BatchV3(client).make(calls)
    assert raised.value.outcome_unknown is True
    assert raised.value.maybe_executed == (0,)


def test_a_failed_resend_after_a_limit_keeps_what_ran(portal: FakePortal) -> None:
    """When the re-send of a limit-refused command fails, the error keeps the results that
    came back and names the re-sent writes as maybe executed."""
    seen: list[str] = []

    def flaky(params: dict[str, Any]) -> Any:
        seen.append(params["n"])
        if len(seen) == 2:
            raise FakePortal.CommandError("Too many requests", code="QUERY_LIMIT_EXCEEDED")
        return {"n": params["n"]}

    portal.register("app.item.add", flaky)
    portal.inject(Fault.delay(0.0))  # the first batch runs as usual
    portal.inject(Fault.drop_after())  # the re-send runs, and its answer is lost
    policy = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)
    hook = B24Hook.from_webhook_url(portal.webhook_url, retry=policy, rate_limit=None)
    with hook, pytest.raises(TransportError) as raised:
        BatchV2(hook).make([("app.item.add", {"n": n}) for n in range(3)])
    error = raised.value
    assert seen == ["0", "1", "1", "2"]
    assert error.outcome_unknown is True
    assert error.maybe_executed == (1, 2)
    assert error.attempts == 2
    assert error.result is not None
    assert error.result.data == [{"n": "0"}, None, None]
    assert [type(e) for e in error.result.errors] == [RateLimitError]
    assert error.result.errors[0].key == 1
    assert error.result.not_executed == (2,)


def test_an_error_beside_a_rest3_result_keeps_the_results(
    portal: FakePortal, client: B24Hook
) -> None:
    """A 200 that carries an error beside a full result ran the batch: the results are kept,
    and no command of it is left in doubt."""
    portal.inject(Fault.rewrite(lambda answer: {**answer, "error": "ODD"}))
    calls = {
        "a": ("tasks.task.add", {"fields": {"title": "x"}}),
        "b": ("tasks.task.add", {"fields": {"title": "y"}}),
    }
    result = BatchV3(client).make(calls)
    assert [error.code for error in result.errors] == ["ODD"]
    assert result.data["a"]["item"]["title"] == "x"
    assert set(result.data) == {"a", "b"}
    assert result.maybe_executed == ()
    assert len(portal.tasks) == 2


def test_an_error_beside_a_classic_result_keeps_what_it_reports(
    portal: FakePortal, client: B24Hook
) -> None:
    """A classic 200 with an error beside its sections keeps the results it reports; the
    command it leaves out may have run."""
    body = _classic({"a": 5})
    portal.inject(Fault.response(200, {**body, "error": "ODD", "error_description": "x"}))
    result = BatchV2(client).make(ADDS, halt_on_error=False)
    assert result.data == {"a": 5}
    assert result.maybe_executed == ("b",)
