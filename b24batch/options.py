"""The clients' keyword options: their defaults, as named constants, and their checks.

``ClientOptions`` types them for editors and type checkers; ``checked_options`` turns the
``**options`` a client was given into an ``Options``, or raises
``SdkError`` / ``SdkTypeError`` naming the option and the fix, before anything else is done;
``limiter`` builds a client's limiters from them. It sees no credential, only its hash.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypedDict

import attrs
import requests

from b24batch._limits.bucket import LeakyBucket
from b24batch._limits.bucket import shared_bucket as _shared_bucket
from b24batch._limits.limiter import Limiter
from b24batch._limits.meter import OperatingMeter
from b24batch._limits.policy import RateLimit
from b24batch.errors import SdkError, SdkTypeError
from b24batch.retry import RetryPolicy
from b24batch.transport import DEADLINE_MARGIN, DEFAULT_MAX_RESPONSE_BYTES, Timeout

if TYPE_CHECKING:
    # ``_limits/shared.py`` (what every store shares) is imported where a store is checked or
    # used, not here: a client without ``limit_store=``, and ``import b24batch``, never load it.
    from b24batch._limits.shared import LimitStore
    from b24batch.redaction import Secret

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_TIMEOUT",
    "ClientOptions",
    "Options",
    "RateLimitArg",
    "SharedRateLimit",
    "bucket",
    "checked_options",
    "limiter",
    "policy",
]

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 65.0)
"""Connect 5 s; read 65 s, since the cloud cuts a request at 60 s and a full batch can need it."""


class SharedRateLimit:
    """The type of [`DEFAULT_RATE_LIMIT`][b24batch.DEFAULT_RATE_LIMIT], its only value."""

    def __repr__(self) -> str:
        return "DEFAULT_RATE_LIMIT"


DEFAULT_RATE_LIMIT: Final = SharedRateLimit()
"""``rate_limit=`` default: ``RateLimit()`` in one bucket shared by every client of the same
portal origin in the process, as the portal counts requests per portal and source IP."""

RateLimitArg = RateLimit | SharedRateLimit | None


class ClientOptions(TypedDict, total=False):
    """The keyword options of [`B24Hook`][b24batch.B24Hook], its
    [`from_webhook_url`][b24batch.B24Hook.from_webhook_url] and [`B24OAuth`][b24batch.B24OAuth].

    All optional; each is checked when the client is made (an [`SdkError`][b24batch.SdkError]
    names a wrong value, an [`SdkTypeError`][b24batch.SdkTypeError] a wrong type or an unknown
    option). The clients take them as keyword arguments, so editors complete them and type
    checkers check them; a dict of them can be passed with ``**``.

    Examples:
        >>> options: ClientOptions = {"timeout": 10, "retry": None}
        >>> B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/abc123/", **options)
        <B24Hook https://example.bitrix24.com/rest/api/1/***/>
    """

    timeout: float | tuple[float, float]
    """Seconds, or ``(connect, read)``; default [`DEFAULT_TIMEOUT`][b24batch.DEFAULT_TIMEOUT]."""
    session: requests.Session | None
    """A ``requests.Session`` to use as given (its adapters, headers, proxies, cookies); the
    client neither configures nor closes it. None (the default) makes one, which stores no
    cookies and reads answers within the deadline."""
    retry: RetryPolicy | None
    """The [`RetryPolicy`][b24batch.RetryPolicy] (default ``RetryPolicy()``); None sends every
    batch once."""
    rate_limit: RateLimit | SharedRateLimit | None
    """A [`RateLimit`][b24batch.RateLimit] for this client alone, None for no client-side limits,
    or the default: the common plan's limits in one bucket per portal origin
    ([`DEFAULT_RATE_LIMIT`][b24batch.DEFAULT_RATE_LIMIT])."""
    limit_store: LimitStore | None
    """A [`RedisStore`][b24batch.RedisStore] or [`SQLiteStore`][b24batch.SQLiteStore] that keeps
    the request-rate bucket (one per portal) and the operating-time meter for every process
    using it; None (the default) keeps them in this process."""
    max_response_bytes: int
    """The most an answer may hold once decoded (default
    [`DEFAULT_MAX_RESPONSE_BYTES`][b24batch.DEFAULT_MAX_RESPONSE_BYTES], 64 MiB); a bigger one is
    dropped as a [`TransportError`][b24batch.TransportError] whose ``outcome_unknown`` is True."""
    attempt_deadline: float | None
    """Seconds one HTTP attempt may take in all, from sending to the answer's last byte
    (default: connect + read timeout + [`DEADLINE_MARGIN`][b24batch.DEADLINE_MARGIN]). With a
    ``session`` of your own it is checked only between reads of the body."""
    raise_errors: bool
    """True makes every face raise the first error a result holds, with the rest attached,
    instead of returning it (default False; a call's own ``raise_errors=`` wins). See
    docs/errors.md, "Returned or raised"."""
    clock: Callable[[], float]
    """Monotonic seconds (default ``time.monotonic``); injectable for tests."""
    wall_clock: Callable[[], float]
    """Unix seconds (default ``time.time``); injectable for tests."""
    sleep: Callable[[float], None]
    """Waits the seconds given (default ``time.sleep``); injectable for tests."""
    rand: Callable[[], float]
    """A float in [0, 1) for the retries' jitter (default ``random.random``); injectable for
    tests."""


@attrs.frozen
class Options:
    """The keyword options both clients take, each checked (see ``ClientOptions``)."""

    timeout: Timeout = DEFAULT_TIMEOUT
    session: requests.Session | None = None
    retry: RetryPolicy | None = RetryPolicy()  # noqa: RUF009 - immutable
    rate_limit: RateLimitArg = DEFAULT_RATE_LIMIT
    limit_store: LimitStore | None = None
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    attempt_deadline: float | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random
    raise_errors: bool = False


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
    if not isinstance(checked.rate_limit, RateLimit | SharedRateLimit | None):
        raise SdkTypeError(
            f"rate_limit={checked.rate_limit!r}: pass a RateLimit, None for no client-side "
            f"limit, or leave the default"
        )
    if checked.limit_store is not None:
        from b24batch._limits.shared import LimitStore  # loaded with any store there is

        if not isinstance(checked.limit_store, LimitStore):
            raise SdkTypeError(
                f"limit_store={checked.limit_store!r}: pass a RedisStore or SQLiteStore, or None "
                f"to keep the limits in this process"
            )
        if checked.rate_limit is None:
            raise SdkError(
                "limit_store= with rate_limit=None: no client-side limit leaves the store "
                "nothing to keep; pass a RateLimit (or the default), or drop limit_store"
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
    if not isinstance(checked.raise_errors, bool):
        raise SdkTypeError(f"raise_errors={checked.raise_errors!r}: pass True or False")
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


def limiter(origin: str, credential: Secret[str], options: Options) -> Limiter:
    """A client's limiters: in-process, or in ``options.limit_store`` (which falls back to the
    in-process ones while it is unreachable). A store names ``credential`` by a hash of it."""
    fallback = bucket(origin, options.rate_limit, options.clock)
    limit, store = policy(options.rate_limit), options.limit_store
    if store is None or fallback is None:
        return Limiter(
            fallback,
            OperatingMeter(limit, options.wall_clock),
            sleep=options.sleep,
            wall_clock=options.wall_clock,
            limit=limit,
        )
    from b24batch._limits.shared import SharedBucket, SharedMeter, fingerprint  # as above

    # The portal charges a batch's operating time to the method "batch" (protocol section 5).
    key = store.meter_key(origin, fingerprint(credential), "batch")
    return Limiter(
        SharedBucket(store, origin, options.clock, fallback),
        SharedMeter(store, key, limit, options.wall_clock),
        sleep=options.sleep,
        wall_clock=options.wall_clock,
        limit=limit,
    )


def policy(rate_limit: RateLimitArg) -> RateLimit | None:
    if isinstance(rate_limit, RateLimit):
        return rate_limit
    return RateLimit() if isinstance(rate_limit, SharedRateLimit) else None


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
