"""``BatchV3``: validate, wait for the limiters, send (and repeat what is safe), decode, build.

The one place that decides what is raised and what is returned — a 4xx error envelope (other
than 401 and 429) comes back in ``BatchResult.errors``, as the JS SDK's ``isSuccess``; 401,
429, 5xx, transport and decoding failures are raised — and the one place that decides whether a
failed batch is sent again (``retry.py`` classifies). No HTTP and no parsing of its own.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from b24batch.commands import Commands, check_references, normalize
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
from b24batch.results import AjaxResult, BatchResult, check_type, structure, structure_quick
from b24batch.retry import RetryKind, is_read_only, retry_kind
from b24batch.wire import Envelope, encode_batch

if TYPE_CHECKING:
    from b24batch.client import _Client

__all__ = [
    "BatchV3",
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
    ) -> BatchResult[Any]:
        """Send ``calls`` as one batch and decode every command's result.

        Args:
            calls: 1 to 50 commands: a list of ``(method, params)`` tuples, of dicts
                ``{"method", "params", "as", "parallel"}`` or of :class:`Command` (mixed as you
                like), or a dict mapping your names to such rows.
            halt_on_error: Sent as ``parallel = not halt_on_error`` on rows that do not set
                their own. A REST 3.0 batch is all-or-nothing either way.
            return_ajax_result: Put :class:`AjaxResult` objects in ``data`` instead of the
                bare results.
            request_id: Sent as ``bx24_request_id`` for tracing; a new uuid4 when None.
            result_type: What to structure each command's result into (an attrs class,
                ``dict[str, Any]``, ...); a :class:`Command` may set its own. None keeps JSON.
                A ``null`` result stays None whatever the type.
            idempotency_key: Sent as ``Idempotency-Key`` on every attempt of this call, so the
                portal executes the batch at most once and a repeat after a lost answer is
                safe; True generates one. A string must be 1 to 255 printable ASCII characters.

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
        check_options(halt_on_error, return_ajax_result)
        check_result_types(commands, result_type)
        request_id = checked_request_id(request_id)
        key = checked_idempotency_key(idempotency_key)
        body = encode_batch(commands, halt_on_error=halt_on_error)
        if b'"$ref' in body:  # a C-speed scan keeps the walk off the common path
            check_references(commands)
        return execute(
            self._client,
            commands,
            body,
            request_id=request_id,
            idempotency_key=key,
            result_type=result_type,
            return_ajax_result=return_ajax_result,
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
    positions: range | None = None,
) -> BatchResult[Any]:
    """Send one validated, encoded batch and build its result (for BatchV3 and the chunker).

    Raises:
        B24Error: As :meth:`BatchV3.make`.
    """
    envelope, attempts, waited = _send(client, commands, body, request_id, idempotency_key)
    if envelope.error is not None:
        envelope.error.attempts = attempts
        return BatchResult(
            data={} if commands.named else [],
            errors=(envelope.error,),
            time=envelope.time,
            request_id=request_id,
            status=envelope.status,
            attempts=attempts,
            waited=waited,
            positions=positions,
            keys=commands.keys,
            methods=tuple(command.method for command in commands.items),
        )
    return _succeeded(
        commands,
        envelope,
        request_id,
        result_type,
        return_ajax_result,
        attempts,
        waited,
        positions,
    )


def _send(
    client: _Client, commands: Commands, body: bytes, request_id: str, key: str | None
) -> tuple[Envelope, int, float]:
    """Send until the batch has an answer to return, or raise; ``(envelope, sends, waited)``.

    Repeats what the policy allows: refusals before execution always, failures that may have
    executed only for read-only batches or with an idempotency key. One credential renewal
    (OAuth) is re-sent outside the budget. Never sleeps after the last attempt.
    """
    policy = client.retry
    limiter = client.limiter
    sends = budgeted = 0
    waited = 0.0
    connecting = 0.0  # the connect timeouts of repeats after a failed connect: waits too
    renewed = False
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
                return envelope, sends, waited
            failure = error
        if (
            isinstance(failure, AuthError)
            and not renewed
            and _renew(client, failure, version, sends)
        ):
            renewed = True
            budgeted -= 1  # the re-send after a renewal is outside the retry budget
            continue
        repeatable = key is not None or _read_only(commands)
        delay = _retry_delay(client, failure, repeatable, budgeted, waited + connecting)
        if delay is None:
            failure.attempts = sends
            raise failure
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


def _renew(client: _Client, error: AuthError, version: int, sends: int) -> bool:
    try:
        return client.renew(error, version)
    except B24Error as failure:
        failure.attempts = sends
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
    return all(
        is_read_only(c.method) if c.read_only is None else c.read_only for c in commands.items
    )


def _raised(status: int) -> bool:
    """Whether an error envelope with ``status`` is raised rather than returned."""
    return status == 401 or status == 429 or status >= 500


def _cause(error: B24Error) -> str:
    return error.code if isinstance(error, AjaxError) else type(error).__name__


def _succeeded(
    commands: Commands,
    envelope: Envelope,
    request_id: str,
    result_type: Any,
    return_ajax_result: bool,
    attempts: int,
    waited: float,
    positions: range | None,
) -> BatchResult[Any]:
    raw = envelope.result
    assert raw is not None  # decode_response sets result when error is None

    def build(entries: list[Any], as_ajax: bool) -> BatchResult[Any]:
        values: list[Any] = entries
        if as_ajax:
            values = [
                AjaxResult(
                    key=key,
                    method=command.method,
                    params=command.params or {},
                    result=entry,
                    time=envelope.time,
                    status=envelope.status,
                )
                for entry, command, key in zip(entries, commands.items, commands.keys, strict=True)
            ]
        data = dict(zip(map(str, commands.keys), values, strict=True)) if commands.named else values
        return BatchResult(
            data=data,
            time=envelope.time,
            request_id=request_id,
            status=envelope.status,
            attempts=attempts,
            waited=waited,
            replayed=envelope.replayed,
            positions=positions,
            keys=commands.keys,
            methods=tuple(command.method for command in commands.items),
        )

    if result_type is None and all(c.result_type is None for c in commands.items):
        return build(raw, return_ajax_result)
    try:
        typed = [
            _typed(
                entry, command.result_type or result_type, position, key, command.method, request_id
            )
            for position, (entry, command, key) in enumerate(
                zip(raw, commands.items, commands.keys, strict=True)
            )
        ]
    except DecodeError as error:
        # The batch ran: keep what it returned, untyped, rather than lose it with the error.
        error.message += "; the batch was executed: its untyped results are on error.result"
        error.result = build(list(raw), as_ajax=False)
        error.attempts = attempts
        raise
    return build(typed, return_ajax_result)


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


def check_options(halt_on_error: object, return_ajax_result: object) -> None:
    for name, value in (
        ("halt_on_error", halt_on_error),
        ("return_ajax_result", return_ajax_result),
    ):
        if not isinstance(value, bool):
            raise SdkTypeError(f"{name}={value!r}: pass True or False")


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
    return key
