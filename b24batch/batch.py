"""``BatchV3``: validate the calls, encode the REST 3.0 batch, send it, build the result.

Decides what is returned and what is raised: a 4xx error envelope (other than 401 and 429)
comes back in ``BatchResult.errors``, as the JS SDK's ``isSuccess``; 401, 429, 5xx, transport
and decoding failures are raised (by ``sending.py``, the one retry loop, which also says which
writes of a failed batch may have run). Also the option checks the chunker shares, and
``isolate_errors``' bisection wiring. No HTTP and no parsing of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import attrs

from b24batch._engine.build import Answers, Builder
from b24batch._engine.isolate import Isolation
from b24batch._engine.send import mark, reads, send
from b24batch._protocols.v3 import V3, Envelope, encode_batch
from b24batch.commands import Commands, check_references, normalize, references
from b24batch.errors import (
    B24Error,
    SdkError,
    SdkTypeError,
)
from b24batch.results import (
    BatchResult,
    check_type,
)

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
    envelope, attempts, waited, uncertain = send(
        client, commands, body, request_id, idempotency_key, V3
    )
    build = Builder(commands, request_id, result_type, return_ajax_result, positions)
    error = envelope.error
    if error is None:
        assert envelope.result is not None  # decode_response sets result when error is None
        return build(Answers.of(envelope, envelope.result), attempts=attempts, waited=waited)
    if not isolate_errors:
        error.attempts = attempts
        mark(error, commands, V3, returned=True, uncertain=uncertain)
        return build(Answers.of(envelope, None, {0: error}), attempts=attempts, waited=waited)
    return _isolated(client, commands, envelope, build, halt_on_error, attempts, waited)


def _isolated(
    client: _Client,
    commands: Commands,
    first: Envelope,
    build: Builder,
    halt_on_error: bool,
    attempts: int,
    waited: float,
) -> BatchResult[Any]:
    """Find the failing commands of a failed read-only batch; build the partial result."""
    request_id = build.request_id

    def send_part(positions: range) -> tuple[Envelope, int, float]:
        part = commands.part(positions)
        body = encode_batch(part, halt_on_error=halt_on_error)
        envelope, sends, part_waited, _ = send(client, part, body, request_id, None, V3)
        return envelope, sends, part_waited

    isolation = Isolation(len(commands), first, commands.keys)

    def partial() -> BatchResult[Any]:
        entries = [isolation.results.get(position) for position in range(len(commands))]
        total = attempts + isolation.attempts
        for error in isolation.errors.values():
            error.attempts = total
        answers = attrs.evolve(Answers.of(first, entries, isolation.errors), time=isolation.time)
        return build(answers, attempts=total, waited=waited + isolation.waited)

    try:
        isolation.run(send_part)
    except B24Error as raised:
        raised.attempts += attempts + isolation.attempts
        raised.result = partial()
        raise
    return partial()


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
        if not reads(command):
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
