"""``BatchV3``: validate, wait for the limiters, send (and repeat what is safe), decode, build.

The one place that decides what is raised and what is returned — a 4xx error envelope (other
than 401 and 429) comes back in ``BatchResult.errors``, as the JS SDK's ``isSuccess``; 401,
429, 5xx, transport and decoding failures are raised — the one place that decides whether a
failed batch is sent again (``retry.py`` classifies), and the one that says which writes of a
failed batch may have run (``maybe_executed``). No HTTP and no parsing of its own.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import attrs

from b24batch.commands import Command, Commands, check_references, normalize, references
from b24batch.errors import (
    AjaxError,
    AuthError,
    B24Error,
    DecodeError,
    OperatingLimitError,
    SdkError,
    SdkTypeError,
    TransportError,
)
from b24batch.isolate import Isolation
from b24batch.results import (
    AjaxResult,
    BatchResult,
    Key,
    Time,
    check_type,
    structure,
    structure_quick,
)
from b24batch.retry import RetryKind, is_read_only, retry_kind
from b24batch.wire import Envelope, encode_batch

if TYPE_CHECKING:
    from b24batch.client import _Client

__all__ = [
    "BatchV3",
    "check_isolation",
    "check_options",
    "check_result_types",
    "checked_idempotency_key",
    "checked_request_id",
    "execute",
]

T = TypeVar("T")
_MAX_REQUEST_ID = 255
_IDEMPOTENCY_KEY_MAX = 255
log = logging.getLogger("b24batch")
# Error envelopes the portal answers before running any row: nothing of the batch ran.
_REFUSED_BEFORE_RUNNING = frozenset(
    {
        "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION",
        "BITRIX_REST_V3_EXCEPTION_INVALIDIDEMPOTENCYKEYEXCEPTION",
        "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION",
    }
)


class BatchV3:
    """Runs up to 50 commands in one REST 3.0 ``batch`` request.

    Example:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     task_id = portal.add_task(title="Write docs")
        ...     calls = [("tasks.task.get", {"id": task_id, "select": ["title"]})]
        ...     BatchV3(b24).make(calls).data
        [{'item': {'title': 'Write docs'}}]
    """

    def __init__(self, client: _Client) -> None:
        """Args: client: the portal client (B24Hook or B24OAuth) the batches go through."""
        self._client = client

    @overload
    def make(
        self,
        calls: Mapping[str, Any],
        *,
        halt_on_error: bool = ...,
        return_ajax_result: Literal[False] = ...,
        request_id: str | None = ...,
        result_type: type[T],
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
    ) -> BatchResult[dict[str, T]]: ...

    @overload
    def make(
        self,
        calls: Iterable[Any],
        *,
        halt_on_error: bool = ...,
        return_ajax_result: Literal[False] = ...,
        request_id: str | None = ...,
        result_type: type[T],
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
    ) -> BatchResult[list[T]]: ...

    @overload
    def make(
        self,
        calls: object,
        *,
        halt_on_error: bool = ...,
        return_ajax_result: bool = ...,
        request_id: str | None = ...,
        result_type: Any = ...,
        idempotency_key: str | bool | None = ...,
        isolate_errors: bool = ...,
    ) -> BatchResult[Any]: ...

    def make(
        self,
        calls: object,
        *,
        halt_on_error: bool = True,
        return_ajax_result: bool = False,
        request_id: str | None = None,
        result_type: Any = None,
        idempotency_key: str | bool | None = None,
        isolate_errors: bool = False,
    ) -> BatchResult[Any]:
        """Send ``calls`` as one batch and decode every command's result.

        The portal runs the commands in order and stops at the first that fails, without
        rolling back the ones before it: their writes stay, their results are lost, and the
        answer does not say which command failed. A failed result says which writes may have
        run in ``maybe_executed``.

        Args:
            calls: 1 to 50 commands: a list of ``(method, params)`` tuples, of dicts
                ``{"method", "params", "as", "parallel"}`` or of :class:`Command` (mixed as you
                like), or a dict mapping your names to such rows.
            halt_on_error: Sent as ``parallel = not halt_on_error`` on rows that do not set
                their own, as the JS SDK does. The portal ignores it: it always stops at the
                first failing command.
            return_ajax_result: Put :class:`AjaxResult` objects in ``data`` instead of the
                bare results.
            request_id: Sent as ``bx24_request_id`` for tracing; a new uuid4 when None.
            result_type: What to structure each command's result into (an attrs class,
                ``dict[str, Any]``, ...); a :class:`Command` may set its own. None keeps JSON.
                A ``null`` result stays None whatever the type.
            idempotency_key: Sent as ``Idempotency-Key`` on every attempt of this call, so the
                portal executes the batch at most once and a repeat after a lost answer is
                safe; True generates one. A string must be 1 to 255 printable ASCII characters.
                The portal stores only successful answers, so it does not make a batch that
                failed at a command safe to send again.
            isolate_errors: For a batch whose commands all only read: when it fails, find the
                failing commands by re-sending parts of it (about log2(n) more requests per
                failure, through the same limiter and retry policy) and return a partial
                result, one error per failing command in ``errors_by_key``. Refused for a
                batch with a write (re-sending writes is never safe) or with references.

        Returns:
            A :class:`BatchResult`. Check ``is_success``: a 4xx error envelope, such as a
            validation error or a missing record, is returned in ``errors``, not raised.

        Raises:
            SdkError: ``calls`` or an option is wrong (before anything is sent).
            AuthError: HTTP 401.
            AjaxError: HTTP 429 and 5xx envelopes.
            TransportError: Refused connection, timeout, TLS failure, reset.
            DecodeError: An answer that cannot be decoded, or does not fit ``result_type``.
        """
        commands = normalize(calls)
        check_options(halt_on_error, return_ajax_result, isolate_errors)
        check_result_types(commands, result_type)
        request_id = checked_request_id(request_id)
        key = checked_idempotency_key(idempotency_key)
        body = encode_batch(commands, halt_on_error=halt_on_error)
        if b'"$ref' in body:  # a C-speed scan keeps the walk off the common path
            check_references(commands)
        if isolate_errors:
            check_isolation(commands)
        return execute(
            self._client,
            commands,
            body,
            request_id=request_id,
            idempotency_key=key,
            result_type=result_type,
            return_ajax_result=return_ajax_result,
            halt_on_error=halt_on_error,
            isolate_errors=isolate_errors,
        )


def execute(
    client: _Client,
    commands: Commands,
    body: bytes,
    *,
    request_id: str,
    idempotency_key: str | None,
    result_type: Any,
    return_ajax_result: bool,
    halt_on_error: bool = True,
    isolate_errors: bool = False,
    positions: range | None = None,
) -> BatchResult[Any]:
    """Send one validated, encoded batch and build its result (for BatchV3 and the chunker).

    Raises:
        B24Error: As :meth:`BatchV3.make`.
    """
    envelope, attempts, waited, uncertain = _send(
        client, commands, body, request_id, idempotency_key
    )
    build = _Builder(commands, request_id, result_type, return_ajax_result, positions)
    error = envelope.error
    if error is None:
        assert envelope.result is not None  # decode_response sets result when error is None
        return build(envelope.result, {}, envelope, attempts=attempts, waited=waited)
    if not isolate_errors:
        error.attempts = attempts
        _mark(error, commands, returned=True, uncertain=uncertain)
        return build(None, {0: error}, envelope, attempts=attempts, waited=waited)
    return _isolated(client, commands, envelope, build, halt_on_error, attempts, waited)


def _isolated(
    client: _Client,
    commands: Commands,
    first: Envelope,
    build: _Builder,
    halt_on_error: bool,
    attempts: int,
    waited: float,
) -> BatchResult[Any]:
    """Find the failing commands of a failed read-only batch; build the partial result."""
    request_id = build.request_id

    def send(positions: range) -> tuple[Envelope, int, float]:
        part = commands.part(positions)
        body = encode_batch(part, halt_on_error=halt_on_error)
        envelope, sends, part_waited, _ = _send(client, part, body, request_id, None)
        return envelope, sends, part_waited

    isolation = Isolation(len(commands), first, commands.keys)

    def partial() -> BatchResult[Any]:
        entries = [isolation.results.get(position) for position in range(len(commands))]
        total = attempts + isolation.attempts
        for error in isolation.errors.values():
            error.attempts = total
        last = attrs.evolve(first, time=isolation.time)
        return build(
            entries, isolation.errors, last, attempts=total, waited=waited + isolation.waited
        )

    try:
        isolation.run(send)
    except B24Error as raised:
        raised.attempts += attempts + isolation.attempts
        raised.result = partial()
        raise
    return partial()


def _send(
    client: _Client, commands: Commands, body: bytes, request_id: str, key: str | None
) -> tuple[Envelope, int, float, bool]:
    """Send until the batch has an answer to return, or raise.

    Returns ``(envelope, sends, waited, uncertain)``; ``uncertain`` says that an earlier
    attempt failed in a way that leaves open whether it ran (so a later answer does not say
    all that ran). Repeats what the policy allows: refusals before execution always, failures
    that may have executed only for read-only batches, or with an idempotency key when no write
    comes before the last command (see ``_writes_before_last``). One
    credential renewal (OAuth) is re-sent outside the budget. Never sleeps after the last
    attempt. A raised error says in ``maybe_executed`` which writes may have run.
    """
    policy = client.retry
    limiter = client.limiter
    sends = budgeted = 0
    waited = 0.0
    connecting = 0.0  # the connect timeouts of repeats after a failed connect: waits too
    renewed = uncertain = False
    while True:
        try:
            waited += limiter.before_send(policy.max_wait - waited - connecting)
        except AjaxError as refused:  # a limiter's wait would not fit: nothing was sent
            refused.request_id, refused.attempts = request_id, sends
            raise
        version = client.credential_version()
        sends += 1
        budgeted += 1
        failure: B24Error
        try:
            envelope = client.send(
                body, keys=commands.keys, request_id=request_id, idempotency_key=key
            )
        except (TransportError, DecodeError) as exc:
            failure = exc
        else:
            error = envelope.error
            if error is None or not _raised(error.status):
                return envelope, sends, waited, uncertain
            failure = error
        if (
            isinstance(failure, AuthError)
            and not renewed
            and _renew(client, failure, version, sends, commands, uncertain)
        ):
            renewed = True
            budgeted -= 1  # the re-send after a renewal is outside the retry budget
            continue
        repeatable = _read_only(commands) or (key is not None and not _writes_before_last(commands))
        delay = _retry_delay(client, failure, repeatable, budgeted, waited + connecting)
        if delay is None:
            failure.attempts = sends
            _mark(failure, commands, returned=False, uncertain=uncertain)
            raise failure
        uncertain = uncertain or failure.outcome_unknown
        if retry_kind(failure) is RetryKind.CONNECT:
            connecting += _connect_timeout(client)
        log.warning(
            "batch %s: attempt %d of %d in %.2f s after %s",
            request_id,
            budgeted + 1,
            policy.max_attempts,
            delay,
            _cause(failure),
        )
        limiter.sleep(delay)
        waited += delay


def _mark(error: B24Error, commands: Commands, *, returned: bool, uncertain: bool) -> None:
    """Set ``error.maybe_executed``: the writes that may have run although no result says so.

    ``returned``: the portal answered ``error`` for the batch (an error envelope), so it ran
    the commands before the failing one, which is at the latest the last. Otherwise nothing
    ran unless the error, or an earlier attempt (``uncertain``), leaves it open.
    """
    if uncertain or error.outcome_unknown:
        error.set_maybe_executed(_writes(commands), "unknown")
    elif returned and getattr(error, "code", None) not in _REFUSED_BEFORE_RUNNING:
        error.set_maybe_executed(_writes_before_last(commands), "stopped")


def _writes_before_last(commands: Commands) -> tuple[Key, ...]:
    """The writes a batch that failed at a command may have run: all but the last row's.

    An ``Idempotency-Key`` makes a repeat safe only when none exists: the portal stores only
    successful answers, so a batch that ran and failed at its third command runs its first
    two again when it is repeated.
    """
    return _writes(commands, before_last=True)


def _writes(commands: Commands, *, before_last: bool = False) -> tuple[Key, ...]:
    """The keys of the commands that write, in call order (without the last, if asked)."""
    count = len(commands) - 1 if before_last else len(commands)
    return tuple(
        key
        for key, command in zip(commands.keys[:count], commands.items[:count], strict=True)
        if not _reads(command)
    )


def _renew(
    client: _Client,
    error: AuthError,
    version: int,
    sends: int,
    commands: Commands,
    uncertain: bool,
) -> bool:
    try:
        return client.renew(error, version)
    except B24Error as failure:
        failure.attempts = sends
        _mark(failure, commands, returned=False, uncertain=uncertain)
        raise


def _retry_delay(
    client: _Client, error: B24Error, repeatable: bool, attempts: int, waited: float
) -> float | None:
    """Seconds to wait before repeating after ``error``, or None to raise it now."""
    policy = client.retry
    kind = retry_kind(error)
    if isinstance(error, OperatingLimitError):
        error.retry_at, delay = client.limiter.operating_retry()  # said even when giving up
    if kind is None or (kind is RetryKind.AMBIGUOUS and not repeatable):
        return None
    if attempts >= policy.max_attempts:
        return None
    if not isinstance(error, OperatingLimitError):  # that one waits for the reset, above
        retry_after = error.retry_after if isinstance(error, AjaxError) else None
        delay = client.backoff(attempts) if retry_after is None else retry_after
    # Not started unless the whole way to the next send fits: this delay, the limiters' waits
    # after it, and (after a failed connect) the connect timeout the repeat may spend again.
    connect = _connect_timeout(client) if kind is RetryKind.CONNECT else 0.0
    ahead = delay + client.limiter.wait_after(delay) + connect
    return None if waited + ahead > policy.max_wait else delay


def _connect_timeout(client: _Client) -> float:
    timeout = client.timeout
    return timeout[0] if isinstance(timeout, tuple) else timeout


def _read_only(commands: Commands) -> bool:
    """Whether every command only reads (its ``read_only``, else the name rule)."""
    return all(map(_reads, commands.items))


def _reads(command: Command) -> bool:
    """Whether ``command`` only reads: its ``read_only``, else the rule on method names."""
    return is_read_only(command.method) if command.read_only is None else command.read_only


def _raised(status: int) -> bool:
    """Whether an error envelope with ``status`` is raised rather than returned."""
    return status == 401 or status == 429 or status >= 500


def _cause(error: B24Error) -> str:
    return error.code if isinstance(error, AjaxError) else type(error).__name__


class _Builder:
    """Builds a batch's ``BatchResult`` from its answers; one per call of :func:`execute`."""

    def __init__(
        self,
        commands: Commands,
        request_id: str,
        result_type: Any,
        return_ajax_result: bool,
        positions: range | None,
    ) -> None:
        self.commands = commands
        self.request_id = request_id
        self._result_type = result_type
        self._as_ajax = return_ajax_result
        self._positions = positions

    def __call__(
        self,
        entries: list[Any] | None,
        errors: dict[int, AjaxError],
        envelope: Envelope,
        *,
        attempts: int,
        waited: float,
    ) -> BatchResult[Any]:
        """The result for ``entries`` (one raw result per command, None for a failed batch)
        and the ``errors`` found, by position (``{0: error}`` for a batch's own error)."""
        commands = self.commands
        if entries is not None and (
            self._result_type is not None or any(c.result_type is not None for c in commands.items)
        ):
            entries = self._typed(entries, errors, envelope, attempts, waited)
        data: Any
        if entries is None:  # the batch failed as a whole: no results
            data = {} if commands.named else []
        else:
            values = entries
            if self._as_ajax:
                values = self._ajax(entries, errors, envelope.time, envelope.status)
            if commands.named:
                data = dict(zip(map(str, commands.keys), values, strict=True))
                for position in errors if not self._as_ajax else ():
                    del data[str(commands.keys[position])]
            else:
                data = values
        return BatchResult(
            data=data,
            errors=tuple(errors[position] for position in sorted(errors)),
            time=envelope.time,
            request_id=self.request_id,
            status=envelope.status,
            attempts=attempts,
            waited=waited,
            replayed=envelope.replayed,
            positions=self._positions,
            keys=commands.keys,
            methods=tuple(command.method for command in commands.items),
        )

    def _ajax(
        self, entries: list[Any], errors: dict[int, AjaxError], time: Time | None, status: int
    ) -> list[AjaxResult]:
        commands = self.commands
        return [
            AjaxResult(
                key=key,
                method=command.method,
                params=command.params or {},
                result=entry,
                time=time,
                status=status if position not in errors else errors[position].status,
                error=errors.get(position),
            )
            for position, (entry, command, key) in enumerate(
                zip(entries, commands.items, commands.keys, strict=True)
            )
        ]

    def _typed(
        self,
        entries: list[Any],
        errors: dict[int, AjaxError],
        envelope: Envelope,
        attempts: int,
        waited: float,
    ) -> list[Any]:
        commands = self.commands
        try:
            return [
                _typed(
                    entry,
                    command.result_type or self._result_type,
                    position,
                    key,
                    command.method,
                    self.request_id,
                )
                for position, (entry, command, key) in enumerate(
                    zip(entries, commands.items, commands.keys, strict=True)
                )
            ]
        except DecodeError as error:
            # The batch ran: keep what it returned, untyped, rather than lose it with the error.
            error.message += "; the batch was executed: its untyped results are on error.result"
            untyped = _Builder(commands, self.request_id, None, False, self._positions)
            error.result = untyped(entries, errors, envelope, attempts=attempts, waited=waited)
            error.attempts = attempts
            error.set_maybe_executed(_writes(commands), "ran")
            raise


def _typed(entry: Any, type_: Any, position: int, key: object, method: str, request_id: str) -> Any:
    if entry is None or type_ is None:
        return entry
    try:
        return structure_quick(entry, type_)
    except Exception:  # structured again only to say where and why
        label = f"the result of command {key!r} ({method})"
        return structure(
            entry, type_, path=f"$.result[{position}]", label=label, request_id=request_id
        )


def check_result_types(commands: Commands, result_type: Any) -> None:
    """Check ``make``'s and every command's ``result_type`` before anything is sent."""
    if result_type is not None:
        check_type(result_type, "result_type")
    for key, command in zip(commands.keys, commands.items, strict=True):
        if command.result_type is not None:
            check_type(command.result_type, f"calls[{key!r}] result_type")


def check_options(
    halt_on_error: object, return_ajax_result: object, isolate_errors: object = False
) -> None:
    for name, value in (
        ("halt_on_error", halt_on_error),
        ("return_ajax_result", return_ajax_result),
        ("isolate_errors", isolate_errors),
    ):
        if not isinstance(value, bool):
            raise SdkTypeError(f"{name}={value!r}: pass True or False")


def check_isolation(commands: Commands) -> None:
    """Refuse ``isolate_errors=True`` for a batch it cannot re-send in parts safely.

    Raises:
        SdkError: A command writes (it would run again), or references another command (a
            part of the batch could lose what it references); the message names the row.
    """
    for key, command in zip(commands.keys, commands.items, strict=True):
        if not _reads(command):
            raise SdkError(
                f"isolate_errors=True re-sends parts of a failed batch, which is safe only for "
                f"commands that read; calls[{key!r}] ({command.method}) writes. Send writes in "
                f"a batch of their own without isolate_errors, or mark a command that only "
                f"reads with Command(..., read_only=True)"
            )
        if command.params and references(command.params):
            raise SdkError(
                f"isolate_errors=True re-sends parts of a failed batch, and calls[{key!r}] "
                f"references another command, which a part may not contain; send it without "
                f"isolate_errors"
            )


def checked_request_id(request_id: object) -> str:
    if request_id is None:
        return str(uuid.uuid4())
    if not isinstance(request_id, str):
        raise SdkTypeError(f"request_id is a {type(request_id).__name__}; pass a str or None")
    if not request_id or len(request_id) > _MAX_REQUEST_ID or not request_id.isprintable():
        raise SdkError(
            f"request_id must be 1 to {_MAX_REQUEST_ID} printable characters; "
            f"leave it None for a generated one"
        )
    return request_id


def checked_idempotency_key(key: object) -> str | None:
    if key is None or key is False:
        return None
    if key is True:
        return uuid.uuid4().hex
    if not isinstance(key, str):
        raise SdkTypeError(
            f"idempotency_key is a {type(key).__name__}; pass a str, True to generate one, or None"
        )
    if not 1 <= len(key) <= _IDEMPOTENCY_KEY_MAX or not all(" " <= ch <= "~" for ch in key):
        raise SdkError(
            f"idempotency_key must be 1 to {_IDEMPOTENCY_KEY_MAX} printable ASCII characters "
            f"(got {len(key)} characters); pass True to have one generated"
        )
    if key != key.strip(" "):  # an HTTP header value cannot start or end with a space
        raise SdkError(
            f"idempotency_key {key!r} starts or ends with a space, which an HTTP header cannot "
            f"carry; remove it, or pass True to have one generated"
        )
    return key
