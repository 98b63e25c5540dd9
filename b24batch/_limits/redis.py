"""``RedisStore``: the limiters' state in Redis, for processes on many hosts.

Each operation is one Lua script, atomic on the server, that reads the time from the server
(``TIME``), so hosts whose clocks disagree still share one bucket. The arithmetic mirrors
``bucket.bucket_step`` line for line. Needs the ``redis`` extra (redis-py); importing this
module does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from b24batch._limits.policy import MAX_BOOKED_WAIT, RateLimit, max_level
from b24batch._limits.shared import (
    DEFAULT_RECHECK,
    DEFAULT_STORE_TIMEOUT,
    FUTURE_TOLERANCE,
    LIVE_WINDOW,
    RESET_HORIZON,
    LimitStore,
    MeterState,
)
from b24batch.errors import SdkError, SdkTypeError
from b24batch.redaction import Secret

__all__ = ["DEFAULT_PREFIX", "RedisStore"]

DEFAULT_PREFIX = "b24batch:"
"""What every key of a [`RedisStore`][b24batch.RedisStore] starts with, unless ``prefix=`` says
otherwise."""

_SCHEMES = ("redis", "rediss", "unix")
_BIG = 1e300  # stands for an unbounded budget: Lua's tonumber("inf") is platform-defined

# Shared head of both scripts: the time (ARGV[1], or the server's), and a foreign value under
# the key (not a hash) deleted, so that it reads as empty and the write replaces it; `foreign`
# says so to the caller, which warns.
_HEAD = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local foreign = 0
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'hash' and kind ~= 'none' then redis.call('DEL', KEYS[1]); foreign = 1 end
local function finite(x) return x ~= nil and x == x and x > -math.huge and x < math.huge end
local function fmt(x) if x == nil then return '' end return string.format('%.17g', x) end
"""

# KEYS: the bucket, the sorted set of its clients (scored by when each was last seen).
# ARGV: now, op, ceiling, burst, per_second, arg, future tolerance, highest level, client id,
# live window. Returns {result, level after the op, foreign, live clients}.
_BUCKET = (
    _HEAD
    + """
local op, ceiling, burst = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local rate, arg, tolerance = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local highest = tonumber(ARGV[8])
local stored = redis.call('HMGET', KEYS[1], 'level', 'updated')
local level, updated = tonumber(stored[1]), tonumber(stored[2])
if not (finite(level) and finite(updated) and level >= 0 and level <= highest
        and updated <= now + tolerance) then
  if stored[1] or stored[2] then redis.call('DEL', KEYS[1]); foreign = 1 end
  level, updated = 0, now
end
local function drained(at) return math.max(0, level - math.max(0, at - updated) * rate) end
local result, write = 0, false
if op == 'reserve' then
  local booked = drained(now) + 1
  result = math.max(0, (booked - ceiling) / rate)
  if result <= arg then level, updated, write = booked, now, true end
elseif op == 'wait' then
  result = math.max(0, (drained(now + arg) + 1 - ceiling) / rate)
elseif op == 'saturate' then
  level, updated, write = math.max(drained(now), burst), now, true
elseif op == 'available' then
  result = math.max(0, ceiling - drained(now))
else
  return redis.error_reply('unknown bucket op ' .. op)
end
if write then
  redis.call('HSET', KEYS[1], 'level', fmt(level), 'updated', fmt(updated))
  redis.call('PEXPIRE', KEYS[1], math.ceil((level / rate + 60) * 1000))
end
local live = tonumber(ARGV[10])
if redis.call('TYPE', KEYS[2]).ok ~= 'zset' then redis.call('DEL', KEYS[2]) end
redis.call('ZADD', KEYS[2], now, ARGV[9])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - live)
redis.call('PEXPIRE', KEYS[2], math.ceil(live * 1000))
return {fmt(result), fmt(drained(now)), foreign, redis.call('ZCARD', KEYS[2])}
"""
)

# ARGV: now, op, operating, reset_at, reset horizon. Returns {operating, reset_at, now,
# foreign}, '' for none.
_METER = (
    _HEAD
    + """
local op = ARGV[2]
local stored = redis.call('HMGET', KEYS[1], 'operating', 'reset_at')
local operating, reset_at = tonumber(stored[1]), tonumber(stored[2])
if not (finite(operating) and operating >= 0) then operating = nil end
if not (finite(reset_at) and reset_at >= 0 and reset_at <= now + tonumber(ARGV[5])) then
  reset_at = nil
end
local write = false
if (stored[1] and operating == nil) or (stored[2] and reset_at == nil) then
  foreign, write = 1, true
end
if op == 'record' then
  operating = tonumber(ARGV[3]) or operating
  local given = tonumber(ARGV[4])  -- one it could not read back is never written
  if finite(given) and given >= 0 and given <= now + tonumber(ARGV[5]) then reset_at = given end
  write = true
elseif op == 'forget' then
  if reset_at ~= nil and reset_at == tonumber(ARGV[4]) then operating, write = nil, true end
elseif op ~= 'read' then
  return redis.error_reply('unknown meter op ' .. op)
end
if write then
  redis.call('DEL', KEYS[1])
  if operating ~= nil then redis.call('HSET', KEYS[1], 'operating', fmt(operating)) end
  if reset_at ~= nil then redis.call('HSET', KEYS[1], 'reset_at', fmt(reset_at)) end
  local ahead = 0
  if reset_at ~= nil then ahead = math.max(0, reset_at - now) end
  redis.call('EXPIRE', KEYS[1], math.ceil(ahead + 660))
end
return {fmt(operating), fmt(reset_at), fmt(now), foreign}
"""
)


# KEYS: the token record (a hash: version, record). ARGV: the record, the expected version
# ('' for any). Returns the new version, or 0 when the stored one moved.
_RECORD_WRITE = """
local kind = redis.call('TYPE', KEYS[1]).ok
local current = 0
if kind == 'hash' then current = tonumber(redis.call('HGET', KEYS[1], 'version')) or 0 end
if ARGV[2] ~= '' and current ~= tonumber(ARGV[2]) then return 0 end
if kind ~= 'hash' and kind ~= 'none' then redis.call('DEL', KEYS[1]) end
local version = math.max(0, math.floor(current)) + 1
redis.call('HSET', KEYS[1], 'version', version, 'record', ARGV[1])
return version
"""

# KEYS: the lease. ARGV: its owner. Deletes it only if that owner still holds it.
_LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _number(text: Any) -> float | None:
    """A figure of a script's answer: None for ''; ValueError for anything else."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    if text == "":
        return None
    if not isinstance(text, str):
        raise ValueError
    value = float(text)
    if not math.isfinite(value):
        raise ValueError
    return value


def _answer(answer: Any, shape: str, what: str) -> list[Any]:
    """A script's answer of ``shape`` (``f``: a figure, None for ''; ``i``: an integer), or
    OSError (the store counts as unreachable) for any other: a look-alike may answer anything."""
    try:
        if not isinstance(answer, list) or len(answer) != len(shape):
            raise ValueError
        items: list[Any] = []
        for kind, item in zip(shape, answer, strict=True):
            if kind == "i" and (isinstance(item, bool) or not isinstance(item, int)):
                raise ValueError
            items.append(item if kind == "i" else _number(item))
        return items
    except (ValueError, TypeError, UnicodeDecodeError):
        shown = repr(answer)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise OSError(f"the {what} script answered {shown}") from None


def _where(url: Secret[str]) -> str | None:
    """``scheme://host:port/db`` (or the socket's path) of a Redis URL, without its password;
    None when it is not a Redis URL. Never raises: a traceback would show the URL it holds."""
    try:
        parts = urlsplit(url.value)
        port = parts.port
    except ValueError:  # a port that is no number, a broken IPv6 address
        return None
    if parts.scheme not in _SCHEMES or not (parts.hostname or parts.path):
        return None
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{parts.hostname}:{port or 6379}{parts.path}"


def _connect(redis: Any, url: Secret[str], timeout: float, retry: Any) -> Any:
    """A redis-py client for ``url`` (it connects on first use), or None when redis-py refuses
    the URL's options; returned, not raised, so that no traceback shows a frame holding it."""
    try:
        return redis.Redis.from_url(
            url.value,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=retry,
            health_check_interval=0,
        )
    except (ValueError, TypeError):
        return None


def _glob(text: str) -> str:
    """``text`` with Redis's glob characters escaped, for SCAN's MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _arg(value: float | None) -> str:
    return "" if value is None else repr(float(min(value, _BIG)))


class RedisStore(LimitStore):
    """Limits shared by processes on many hosts through one Redis server.

    Every update is a Lua script, atomic on the server, timed by the server's clock; keys live
    under ``prefix`` and expire once they no longer matter. The limits write nothing secret:
    the operating-time meter is keyed by a one-way hash of the credential. An
    [`OAuthApp`][b24batch.OAuthApp] using the store keeps its portals' token pairs here (the
    only secrets).

    Args:
        url: ``redis://[:password@]host:6379/0``, ``rediss://...`` (TLS) or
            ``unix:///path/redis.sock[?db=0]``, as redis-py takes them.
        prefix: What every key starts with (default [`DEFAULT_PREFIX`][b24batch.DEFAULT_PREFIX]).
        egress: A label for the public IP this host's requests leave through, when hosts
            leave through different ones (each IP has its own bucket at the portal).
        timeout: Seconds to connect or to wait for an answer before the store counts as
            unreachable (the clients then limit in-process).
        recheck: Seconds between attempts to reach an unreachable store.
        clock: Unix seconds for the scripts instead of the server's ``TIME`` (for tests).

    Raises:
        SdkError: The ``redis`` extra is not installed (``pip install 'b24batch[redis]'``),
            or an argument is wrong.

    Examples:
        >>> store = RedisStore("redis://:password@redis.internal:6379/0")  # connects on use
        >>> store
        <RedisStore redis://redis.internal:6379/0 prefix='b24batch:'>
        >>> b24 = B24Hook.from_webhook_url(
        ...     "https://example.bitrix24.com/rest/1/s/", limit_store=store
        ... )
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        egress: str | None = None,
        timeout: float = DEFAULT_STORE_TIMEOUT,
        recheck: float = DEFAULT_RECHECK,
        clock: Callable[[], float] | None = None,
    ) -> None:
        hidden = Secret(url)
        del url  # it may hold a password: a traceback's frames show their locals
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise SdkError(
                "RedisStore needs redis-py: pip install 'b24batch[redis]' (or pip install redis)"
            ) from None
        if not isinstance(hidden.value, str):
            raise SdkTypeError("url: pass a str such as redis://host:6379/0")
        where = _where(hidden)
        if where is None:
            raise SdkError(
                "url: pass redis://host:6379/0, rediss://host:6380/0 or unix:///path/redis.sock"
            )
        if not isinstance(prefix, str) or not prefix.isprintable():
            raise SdkError(f"prefix={prefix!r}: pass a printable str such as {DEFAULT_PREFIX!r}")
        if clock is not None and not callable(clock):
            raise SdkTypeError("clock=: pass a callable returning Unix seconds, or None")
        super().__init__(egress=egress, recheck=recheck, timeout=timeout)
        self.prefix = prefix
        self._clock = clock
        self._where = where  # no password
        # One attempt per operation: the fallback, not a retry loop, covers an outage.
        connection = _connect(redis, hidden, self.timeout, Retry(NoBackoff(), 0))
        if connection is None:  # raised here, not in _connect: its frames see the URL
            raise SdkError(
                "url: redis-py refused its query (db=, or another option): pass "
                "redis://host:6379/0 or unix:///path/redis.sock?db=0"
            )
        self._redis = connection
        self._bucket = self._redis.register_script(_BUCKET)
        self._meter = self._redis.register_script(_METER)
        self._token_write = self._redis.register_script(_RECORD_WRITE)
        self._token_release = self._redis.register_script(_LEASE_RELEASE)

    def __repr__(self) -> str:
        where, prefix = getattr(self, "_where", None), getattr(self, "prefix", None)
        if where is None or prefix is None:  # half-built: an error page shows its locals
            return "<RedisStore (not set up)>"
        return f"<RedisStore {where} prefix={prefix!r}>"

    def describe(self) -> str:
        return repr(self)

    def _now(self) -> str:
        return "" if self._clock is None else repr(float(self._clock()))

    def bucket_op(
        self, key: str, op: str, limit: RateLimit, arg: float, clock: Callable[[], float]
    ) -> float:
        del clock  # the server's time (or the store's own clock): hosts' clocks may disagree
        args = [self._now(), op, str(limit.ceiling), str(limit.burst), repr(limit.per_second)]
        args += [_arg(min(arg, MAX_BOOKED_WAIT)), repr(FUTURE_TOLERANCE), repr(max_level(limit))]
        args += [self.client_id(), repr(LIVE_WINDOW)]
        keys = [self.prefix + key, f"{self.prefix}clients:{key}"]
        result, level, foreign, clients = _answer(
            self._bucket(keys=keys, args=args), "ffii", "bucket"
        )
        if foreign:
            self.found_foreign(keys[0])
        if result is None or level is None:
            raise OSError("the bucket script answered no figure")
        self.saw(key, level, max(1, clients))
        return float(result)

    def meter_op(
        self,
        key: str,
        op: str,
        operating: float | None,
        reset_at: float | None,
        clock: Callable[[], float],
    ) -> MeterState:
        del clock
        args = [self._now(), op, _arg(operating), _arg(reset_at), repr(RESET_HORIZON)]
        key = self.prefix + key
        operating, reset_at, now, foreign = _answer(
            self._meter(keys=[key], args=args), "fffi", "meter"
        )
        if foreign:
            self.found_foreign(key)
        if now is None:
            raise OSError("the meter script answered no time")
        return operating, reset_at, float(now)

    def token_read(self, key: str) -> tuple[int, Secret[str]] | None:
        found = Secret(self._redis.hmget(self.prefix + key, "version", "record"))
        if not isinstance(found.value, list) or found.value == [None, None]:
            return None
        version, record = found.value[0], Secret(found.value[-1])
        del found  # holds the tokens: no frame shows them
        number = int(version) if isinstance(version, bytes) and version.isdigit() else 0
        if number < 1 or not isinstance(record.value, bytes):
            raise ValueError("its version or record is not what b24batch writes")
        try:
            return number, Secret(record.value.decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError("its record is not UTF-8 text") from None

    def token_write(self, key: str, record: Secret[str], expect: int | None) -> int | None:
        version = self._token_write(
            keys=[self.prefix + key], args=[record.value, "" if expect is None else str(expect)]
        )
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise OSError(f"the token script answered {version!r:.80}")
        return version or None

    def token_lease(self, key: str, owner: str, seconds: float) -> bool:
        taken = self._redis.set(
            f"{self.prefix}lease:{key}", owner, nx=True, px=max(1, math.ceil(seconds * 1000))
        )
        return bool(taken)

    def token_release(self, key: str, owner: str) -> None:
        self._token_release(keys=[f"{self.prefix}lease:{key}"], args=[owner])

    def token_keys(self, prefix: str) -> list[str]:
        pattern = _glob(self.prefix + prefix) + "*"
        found = []
        for name in self._redis.scan_iter(match=pattern, count=500):
            text = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
            found.append(text[len(self.prefix) :])
        return sorted(found)

    def close(self) -> None:
        """Close the connections to the server (the store reconnects if used again)."""
        self._redis.close()
