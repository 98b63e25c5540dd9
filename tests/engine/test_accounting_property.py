"""The accounting invariant as a property: whatever the portal does to a chunked call of writes,
every command ends in one place and the portal's own count agrees (#21).

A FakePortal over real HTTP answers each request with a drawn fault (a hang-up before or after
running the batch, a 503, an HTML page, a truncated body, an answer that says less or other than
what ran) or as usual; the call runs with a
window of 1, 4 or 16, through ``make`` or ``iter``, in either protocol. Then, by the portal's
own record of which writes ran: a command in the results ran exactly once; one listed as maybe
executed ran at most once; one in neither never ran; none ran twice.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b24batch import B24Error, B24Hook, BatchByChunkV2, BatchByChunkV3, BatchResult, RetryPolicy
from b24batch.testing import FakePortal, Fault


def _says_less(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer less its last command: it ran, and the answer does not say so."""
    result = answer.get("result")
    if isinstance(result, list) and result:  # REST 3.0: positional
        return {**answer, "result": result[:-1]}
    if isinstance(result, dict):  # classic: every section keyed by command
        sections = {}
        for name, section in result.items():
            if isinstance(section, dict) and section:
                section = dict(list(section.items())[:-1])
            elif isinstance(section, list) and section:
                section = section[:-1]
            sections[name] = section
        return {**answer, "result": sections}
    return answer


def _says_other(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer with a command that was not sent: it cannot be matched to what ran."""
    result = answer.get("result")
    if isinstance(result, list):
        return {**answer, "result": [*result, None]}
    if isinstance(result, dict):
        return {**answer, "result": {**result, "result": {"not-sent": 1}}}
    return answer


FAULTS = {
    "ok": Fault.delay(0.0),
    "says_less": Fault.rewrite(_says_less),
    "says_other": Fault.rewrite(_says_other),
    "error_too": Fault.rewrite(lambda answer: {**answer, "error": "ODD"}),
    "drop_before": Fault.drop_before(),
    "drop_after": Fault.drop_after(),
    "503": Fault.rate_limited(),
    "html": Fault.html(502),
    "truncated": Fault.truncated(),
}


def _rows(protocol: str, count: int) -> list[Any]:
    if protocol == "v3":
        return [("tasks.task.add", {"fields": {"title": f"T{n}"}}) for n in range(count)]
    return [("crm.deal.add", {"fields": {"TITLE": f"T{n}"}}) for n in range(count)]


def _ran(portal: FakePortal, protocol: str) -> Counter[int]:
    """How many times the portal ran each command, by its position (from the titles)."""
    if protocol == "v3":
        titles = [task["title"] for task in portal.tasks.values()]
    else:
        titles = [deal["TITLE"] for deal in portal.deals.values()]
    return Counter(int(title[1:]) for title in titles)


def _landed(results: list[BatchResult[Any]]) -> set[Any]:
    """The keys of the commands whose results came back."""
    done: set[Any] = set()
    for result in results:
        left_out = {*result.not_executed, *result.maybe_executed, *result.errors_by_key}
        if result.errors and not result.errors_by_key and not result.data:
            continue  # failed as a whole, with no result kept
        done |= {key for key in result.keys if key not in left_out}
    return done


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    protocol=st.sampled_from(["v3", "v2"]),
    count=st.integers(min_value=1, max_value=130),
    window=st.sampled_from([1, 4, 16]),
    lazy=st.booleans(),
    halt=st.booleans(),
    faults=st.lists(st.sampled_from(sorted(FAULTS)), max_size=6),
)
def test_every_command_is_accounted_for(
    protocol: str, count: int, window: int, lazy: bool, halt: bool, faults: list[str]
) -> None:
    """Results ran once, maybe-executed at most once, the rest never; nothing ran twice."""
    policy = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)
    with FakePortal() as portal:
        for name in faults:
            portal.inject(FAULTS[name])
        client = B24Hook.from_webhook_url(
            portal.webhook_url, timeout=(2.0, 5.0), retry=policy, rate_limit=None
        )
        face = BatchByChunkV3(client) if protocol == "v3" else BatchByChunkV2(client)
        options: dict[str, Any] = {"max_in_flight": window, "halt_on_error": halt}
        results: list[BatchResult[Any]] = []
        doubt: set[Any] = set()
        listed_unsent: set[Any] = set()
        with client:
            try:
                if lazy:
                    results.extend(face.iter(_rows(protocol, count), **options))
                else:
                    whole = face.make(_rows(protocol, count), **options)
                    results.extend(whole.chunks)
                    doubt |= set(whole.maybe_executed)
                    listed_unsent |= set(whole.not_executed)
            except B24Error as error:
                doubt |= set(error.maybe_executed)
                partial = error.partial
                if partial is not None:
                    results.extend(partial.chunks)
                    doubt |= set(partial.maybe_executed)
                    listed_unsent |= set(partial.not_executed)
        for result in results:
            doubt |= set(result.maybe_executed)
        ran = _ran(portal, protocol)
    landed = _landed(results)
    assert max(ran.values(), default=0) <= 1  # nothing ran twice
    assert all(ran[key] == 1 for key in landed)  # a result means it ran, once
    assert not landed & doubt
    assert not (landed | doubt) & listed_unsent  # each command in one place
    assert all(ran[key] == 0 for key in listed_unsent)  # not executed: never ran
    unaccounted = set(ran) - landed - doubt
    assert unaccounted == set()  # nothing ran without a result or a doubt
