"""The exception tree (b24batch.errors): defaults, str() and repr(), the maybe-executed words."""

from __future__ import annotations

import pytest

from b24batch import AjaxError, AuthError, B24Error, TransportError


def test_a_new_error_starts_from_one_attempt_and_nothing_else() -> None:
    """args holds the message; one attempt, no others, nothing maybe executed, no retry_after."""
    error = AjaxError("boom", code="X", status=400)
    assert error.args == ("boom",)
    assert (error.attempts, error.others, error.maybe_executed) == (1, (), ())
    assert error.retry_after is None
    assert TransportError("lost").args == ("lost",)


@pytest.mark.parametrize(
    ("code", "status", "text"),
    [
        pytest.param("X", 400, "X (HTTP 400): boom", id="code-and-status"),
        pytest.param("", 500, "HTTP 500: boom", id="status-only"),
        pytest.param("X", 200, "X: boom", id="code-only"),
        pytest.param("", 200, "boom", id="message-only"),
    ],
)
def test_str_says_only_the_code_and_status_there_are(code: str, status: int, text: str) -> None:
    """A missing code is left out, not shown empty; HTTP 200 (a classic command's) is not said."""
    assert str(AjaxError("boom", code=code, status=status)) == text


def test_repr_names_the_error_class_code_and_status() -> None:
    """repr() is the subclass's name with code and status, and no message."""
    error = AuthError("expired for /rest/1/secret/", code="expired_token", status=401)
    assert repr(error) == "AuthError(code='expired_token', status=401)"


def test_one_write_stopped_reads_in_the_singular() -> None:
    """A stopped batch with one write says '1 write' and names it."""
    error = AjaxError("boom", code="X", status=400)
    error.set_maybe_executed((0,), "stopped")
    assert str(error) == (
        "X (HTTP 400): boom; a REST 3.0 batch stops at its first failing command without "
        "rollback: the commands before it were executed and their results are lost, so up to "
        "1 write may have run (maybe_executed: 0); the portal does not say which command failed"
    )


def test_ten_writes_are_all_named_and_the_eleventh_is_counted() -> None:
    """Up to ten keys are listed; past ten the rest are counted as 'and N more'."""
    ten = B24Error("lost")
    ten.set_maybe_executed(tuple(range(10)), "unknown")
    assert str(ten) == "lost; 10 writes may have run (maybe_executed: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)"
    twelve = B24Error("lost")
    twelve.set_maybe_executed(tuple(range(12)), "unknown")
    assert str(twelve) == (
        "lost; 12 writes may have run (maybe_executed: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 2 more)"
    )


def test_writes_that_ran_add_no_words() -> None:
    """how='ran' records the keys but leaves the message as it is (it says so already)."""
    error = B24Error("the batch was executed")
    error.set_maybe_executed((0, 1), "ran")
    assert (str(error), error.maybe_executed) == ("the batch was executed", (0, 1))
