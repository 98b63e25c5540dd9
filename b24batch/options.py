"""The clients' keyword options: their defaults, as named constants, and their checks.

``checked_options`` turns the ``**options`` a client was given into an ``Options``, or raises
``SdkError`` / ``SdkTypeError`` naming the option and the fix, before anything else is done. It
sees no credential.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
import requests

from b24batch.errors import SdkError, SdkTypeError
from b24batch.limits import LeakyBucket, RateLimit
from b24batch.limits import shared_bucket as _shared_bucket
from b24batch.retry import RetryPolicy
from b24batch.transport import DEADLINE_MARGIN, DEFAULT_MAX_RESPONSE_BYTES, Timeout

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_TIMEOUT",
    "Options",
    "RateLimitArg",
    "bucket",
    "checked_options",
    "policy",
]

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 65.0)
"""Connect 5 s; read 65 s, since the cloud cuts a request at 60 s and a full batch can need it."""


class _SharedDefault:
    """The type of :data:`DEFAULT_RATE_LIMIT`."""

    def __repr__(self) -> str:
        return "DEFAULT_RATE_LIMIT"


DEFAULT_RATE_LIMIT: Final = _SharedDefault()
"""``rate_limit=`` default: ``RateLimit()`` in one bucket shared by every client of the same
portal origin in the process, as the portal counts requests per portal and source IP."""

RateLimitArg = RateLimit | _SharedDefault | None


@attrs.frozen
class Options:
    """The keyword options both clients take, each checked (see :class:`~b24batch.B24Hook`)."""

    timeout: Timeout = DEFAULT_TIMEOUT
    session: requests.Session | None = None
    retry: RetryPolicy | None = RetryPolicy()  # noqa: RUF009 - immutable
    rate_limit: RateLimitArg = DEFAULT_RATE_LIMIT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    attempt_deadline: float | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random


_OPTION_NAMES: Final = tuple(field.name for field in attrs.fields(Options))


def checked_options(options: Mapping[str, Any]) -> Options:
    """The options, each checked; SdkTypeError/SdkError naming the first one that is wrong."""
    unknown = sorted(set(options) - set(_OPTION_NAMES))
    if unknown:
        raise SdkTypeError(
            f"unknown option {unknown[0]}=: the options are {', '.join(_OPTION_NAMES)}"
        )
    checked = Options(**options)
    _checked_timeout(checked.timeout)
    if checked.session is not None and not isinstance(checked.session, requests.Session):
        raise SdkTypeError(
            f"session={checked.session!r}: pass a requests.Session, or None for the client's own"
        )
    if checked.retry is not None and not isinstance(checked.retry, RetryPolicy):
        raise SdkTypeError(f"retry={checked.retry!r}: pass a RetryPolicy, or None for no retries")
    if not isinstance(checked.rate_limit, RateLimit | _SharedDefault | None):
        raise SdkTypeError(
            f"rate_limit={checked.rate_limit!r}: pass a RateLimit, None for no client-side "
            f"limit, or leave the default"
        )
    size = checked.max_response_bytes
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise SdkError(
            f"max_response_bytes={size!r}: pass a positive number of bytes (default "
            f"{DEFAULT_MAX_RESPONSE_BYTES}, 64 MiB)"
        )
    deadline = checked.attempt_deadline
    if deadline is not None and not _positive(deadline):
        raise SdkError(
            f"attempt_deadline={deadline!r}: pass seconds as a positive number, or None for "
            f"connect + read timeout + {DEADLINE_MARGIN} s"
        )
    for name in ("clock", "wall_clock", "sleep", "rand"):
        if not callable(getattr(checked, name)):
            raise SdkTypeError(f"{name}=: pass a callable, or leave the default")
    return attrs.evolve(
        checked,
        timeout=_checked_timeout(checked.timeout),
        attempt_deadline=None if deadline is None else float(deadline),
    )


def bucket(origin: str, rate_limit: RateLimitArg, clock: Callable[[], float]) -> LeakyBucket | None:
    if rate_limit is None:
        return None
    if isinstance(rate_limit, RateLimit):
        return LeakyBucket(rate_limit, clock)
    return _shared_bucket(origin, clock)


def policy(rate_limit: RateLimitArg) -> RateLimit | None:
    if isinstance(rate_limit, RateLimit):
        return rate_limit
    return RateLimit() if isinstance(rate_limit, _SharedDefault) else None


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e6


def _checked_timeout(timeout: Any) -> Timeout:
    if isinstance(timeout, tuple) and len(timeout) == 2 and all(map(_positive, timeout)):
        return (float(timeout[0]), float(timeout[1]))
    if _positive(timeout):
        return float(timeout)
    raise SdkError(
        f"timeout={timeout!r}: pass seconds as a positive number, or a (connect, read) pair; "
        f"a request without a timeout could hang forever"
    )
