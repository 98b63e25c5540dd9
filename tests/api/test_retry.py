"""Retry policy, the read-only rule and failure classification (b24batch.retry), no I/O."""

from __future__ import annotations

import pytest

from b24batch import (
    AjaxError,
    AuthError,
    DecodeError,
    OperatingLimitError,
    RateLimitError,
    RetryPolicy,
    SdkError,
    SdkTypeError,
    TransportError,
)
from b24batch.retry import RetryKind, backoff, is_read_only, retry_kind


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("tasks.task.get", True),
        ("crm.item.list", True),
        ("tasks.task.history.tail", True),
        ("crm.deal.count", True),
        ("user.search", True),
        ("crm.deal.fields", True),
        ("TASKS.TASK.GET", True),
        ("user.current", True),
        ("tasks.task.add", False),
        ("tasks.task.update", False),
        ("tasks.task.delete", False),
        ("crm.deal.userfield.add", False),
        ("im.message.send", False),
        ("tasks.task.getaccess", False),
        ("list", True),
        ("batch", False),
    ],
)
def test_read_only_rule(method: str, expected: bool) -> None:
    """The name rule: read verbs are read-only, everything else is a write, also for a name
    without a dot."""
    assert is_read_only(method) is expected


def test_policy_defaults() -> None:
    """Three attempts in all, with a bounded backoff and a total wait budget."""
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base_delay, policy.max_delay, policy.max_wait) == (
        3,
        0.5,
        10.0,
        60.0,
    )


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_attempts": 0}, "max_attempts=0"),
        ({"max_attempts": 2.5}, "max_attempts=2.5"),
        ({"max_attempts": True}, "max_attempts=True"),
        ({"base_delay": -1}, "base_delay=-1"),
        ({"max_wait": float("nan")}, "max_wait=nan"),
        ({"base_delay": 5, "max_delay": 1}, "base_delay=5 is above max_delay=1"),
    ],
)
def test_bad_policies_fail_at_construction(options: dict[str, float], fragment: str) -> None:
    """Contradictory or impossible settings are refused with a message saying what to do."""
    with pytest.raises(SdkError, match=fragment):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_policy_is_immutable() -> None:
    """A policy cannot be changed after construction."""
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    """The n-th delay is rand() times min(max_delay, base * 2**(n-1))."""
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    assert [backoff(policy, n, lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff(policy, 2, lambda: 0.25) == 0.25
    assert backoff(policy, 1, lambda: 0.0) == 0.0


def _ajax(error_type: type[AjaxError], status: int, *, unknown: bool = False) -> AjaxError:
    return error_type("m", code="C", status=status, outcome_unknown=unknown)


def _never_connected() -> TransportError:
    error = TransportError("could not connect")
    error.never_connected = True
    return error


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        pytest.param(_ajax(RateLimitError, 503), RetryKind.RATE, id="query-limit"),
        pytest.param(_ajax(OperatingLimitError, 429), RetryKind.OPERATING, id="operating"),
        pytest.param(_ajax(AjaxError, 500, unknown=True), RetryKind.AMBIGUOUS, id="500"),
        pytest.param(_ajax(AjaxError, 503), None, id="overload"),
        pytest.param(_ajax(AuthError, 401), None, id="401"),
        pytest.param(TransportError("t", outcome_unknown=True), RetryKind.AMBIGUOUS, id="timeout"),
        pytest.param(TransportError("t"), None, id="certificate-or-redirect"),
        pytest.param(_never_connected(), RetryKind.CONNECT, id="refused-or-connect-timeout"),
        pytest.param(DecodeError("d", outcome_unknown=True), RetryKind.AMBIGUOUS, id="truncated"),
        pytest.param(DecodeError("d"), None, id="missing-entry"),
    ],
)
def test_failures_are_classified_by_what_their_error_says(
    error: AjaxError | TransportError | DecodeError, kind: RetryKind | None
) -> None:
    """Refusals before execution repeat always, ambiguous failures conditionally, others never."""
    assert retry_kind(error) is kind


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": True}, "max_attempts=True: pass a whole number >= 1 (1 means no retry)"),
        ({"max_attempts": "3"}, "max_attempts='3': pass a whole number >= 1 (1 means no retry)"),
        ({"max_attempts": 2.0}, "max_attempts=2.0: pass a whole number >= 1 (1 means no retry)"),
        ({"base_delay": True}, "base_delay=True: pass a number of seconds >= 0"),
        ({"max_delay": "10"}, "max_delay='10': pass a number of seconds >= 0"),
        ({"max_wait": False}, "max_wait=False: pass a number of seconds >= 0"),
    ],
)
def test_a_bool_or_a_str_is_a_type_error(options: dict[str, object], message: str) -> None:
    """A bool or a str where a number belongs is SdkTypeError (a TypeError), the whole message
    naming the option."""
    with pytest.raises(SdkTypeError) as info:
        RetryPolicy(**options)  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts=0: pass a whole number >= 1 (1 means no retry)"),
        ({"base_delay": -0.5}, "base_delay=-0.5: pass a number of seconds >= 0"),
        ({"max_wait": float("nan")}, "max_wait=nan: pass a number of seconds >= 0"),
    ],
)
def test_a_number_out_of_range_is_a_value_error(options: dict[str, object], message: str) -> None:
    """A number out of range is SdkError but not SdkTypeError, with the whole message."""
    with pytest.raises(SdkError) as info:
        RetryPolicy(**options)  # type: ignore[arg-type]
    assert not isinstance(info.value, TypeError)
    assert str(info.value) == message


def test_zero_waits_and_one_attempt_are_allowed() -> None:
    """The boundaries are valid: no delay, no wait budget, a single attempt."""
    policy = RetryPolicy(max_attempts=1, base_delay=0, max_delay=0, max_wait=0)
    assert (policy.max_attempts, policy.base_delay, policy.max_wait) == (1, 0, 0)
