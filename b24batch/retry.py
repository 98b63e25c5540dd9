"""When a failed batch may be sent again, and how long to wait first. Pure: no I/O, no sleeping.

``RetryPolicy`` is the immutable policy; ``is_read_only`` is the documented rule on method
names; ``retry_kind`` classifies a failure from the attributes its error was born with; and
``backoff`` computes full-jitter exponential delays. The loop itself is ``_engine/send.py``'s.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

from b24batch.errors import (
    B24Error,
    OperatingLimitError,
    RateLimitError,
    SdkError,
    SdkTypeError,
    TransportError,
)

__all__ = [
    "READ_ONLY_METHODS",
    "READ_ONLY_VERBS",
    "RetryKind",
    "RetryPolicy",
    "backoff",
    "is_read_only",
    "retry_kind",
]

READ_ONLY_VERBS = frozenset({"get", "list", "tail", "count", "search", "fields", "getfields"})
"""A method whose last dotted part is one of these reads and changes nothing, e.g.
``tasks.task.get``, ``crm.item.list``, ``crm.deal.fields``. Any other method is a write."""

READ_ONLY_METHODS = frozenset(
    {"user.current", "profile", "server.time", "app.info", "scope", "methods"}
)
"""Read-only methods whose names the verb rule does not catch."""


def is_read_only(method: str) -> bool:
    """Whether ``method`` only reads, by the documented name rule (override per Command).

    Examples:
        >>> is_read_only("tasks.task.list"), is_read_only("tasks.task.add")
        (True, False)
    """
    name = method.strip().lower()
    return name in READ_ONLY_METHODS or name.rsplit(".", 1)[-1] in READ_ONLY_VERBS


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    message = f"{attribute.name}={value!r}: pass a number of seconds >= 0"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SdkTypeError(message)
    if not value >= 0:
        raise SdkError(message)


def _attempts(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    message = f"max_attempts={value!r}: pass a whole number >= 1 (1 means no retry)"
    if isinstance(value, bool) or not isinstance(value, int):
        raise SdkTypeError(message)
    if value < 1:
        raise SdkError(message)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often, and how patiently, a batch is sent again after a failure that allows it.

    A failure allows a repeat when the batch surely did not run (503 ``QUERY_LIMIT_EXCEEDED``,
    429 ``OPERATION_TIME_LIMIT``, a connection that could not be opened), or when it may have
    run but repeating is harmless: every command is read-only, or the call carries an
    idempotency key. ``OVERLOAD_LIMIT``, 4xx
    answers and failures of a write batch that may have run are never repeated.

    Attributes:
        max_attempts: Sends in all, the first included; 1 turns retries off.
        base_delay: Seconds; the n-th retry waits a random time up to
            ``min(max_delay, base_delay * 2 ** (n - 1))`` ("full jitter").
        max_delay: The cap on one backoff delay.
        max_wait: The most seconds one batch may spend waiting: for the request-rate bucket, for an
            operating-time reset, in backoff or ``Retry-After``, and for the connect timeout of a
            repeat after a connection could not be opened. A wait that would take the total past it
            is not started: the call raises at once (the limiters' refusals,
            [`RateLimitError`][b24batch.RateLimitError] and
            [`OperatingLimitError`][b24batch.OperatingLimitError] with ``retry_at``, before anything
            is sent). A chunked call gives each chunk its own ``max_wait``. A small value makes a
            web view fail fast instead of holding its worker.

    Examples:
        >>> RetryPolicy(max_attempts=5, max_wait=120.0).max_attempts
        5
    """

    max_attempts: int = attrs.field(default=3, validator=_attempts)
    base_delay: float = attrs.field(default=0.5, validator=_non_negative)
    max_delay: float = attrs.field(default=10.0, validator=_non_negative)
    max_wait: float = attrs.field(default=60.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.base_delay > self.max_delay:
            raise SdkError(
                f"base_delay={self.base_delay} is above max_delay={self.max_delay}: "
                f"raise max_delay or lower base_delay"
            )


class RetryKind(enum.Enum):
    """Why a failure may be repeated."""

    RATE = "rate"
    """Refused before execution by the request-rate limit: always safe after a delay."""
    OPERATING = "operating"
    """Refused before execution by the operating-time limit: safe after the reset."""
    CONNECT = "connect"
    """No connection could be opened, so nothing was sent: always safe after a delay."""
    AMBIGUOUS = "ambiguous"
    """The batch may have run: safe only for read-only batches or with an idempotency key."""


def retry_kind(error: B24Error) -> RetryKind | None:
    """Classify ``error``; None when it must not be repeated at all."""
    if isinstance(error, RateLimitError):
        return RetryKind.RATE
    if isinstance(error, OperatingLimitError):
        return RetryKind.OPERATING
    if isinstance(error, TransportError) and error.never_connected:
        return RetryKind.CONNECT
    if error.outcome_unknown:
        return RetryKind.AMBIGUOUS
    return None


def backoff(policy: RetryPolicy, retry: int, rand: Callable[[], float]) -> float:
    """Seconds before the ``retry``-th repeat (1-based): full jitter under an exponential cap."""
    cap = min(policy.max_delay, policy.base_delay * 2 ** (retry - 1))
    return float(cap * rand())
