"""``BatchV3``: validate, encode, send, decode, build the ``BatchResult``.

The one place that decides what is raised and what is returned: a 4xx error envelope (other
than 401 and 429) comes back in ``BatchResult.errors``, as the JS SDK's ``isSuccess``; 401,
429, 5xx, transport and decoding failures are raised. No HTTP and no parsing of its own.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from b24batch.commands import Commands, normalize
from b24batch.errors import AjaxError, SdkError, SdkTypeError
from b24batch.results import AjaxResult, BatchResult, structure
from b24batch.wire import Envelope, encode_batch

if TYPE_CHECKING:
    from b24batch.client import B24Hook

__all__ = ["Actions", "BatchV3"]

_MAX_REQUEST_ID = 255


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

    def __init__(self, client: B24Hook) -> None:
        """Args: client: the portal client the batches are sent through."""
        self._client = client

    def make(
        self,
        calls: object,
        *,
        halt_on_error: bool = True,
        return_ajax_result: bool = False,
        request_id: str | None = None,
        result_type: Any = None,
    ) -> BatchResult:
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
        _check_options(halt_on_error, return_ajax_result)
        request_id = _checked_request_id(request_id)
        body = encode_batch(commands, halt_on_error=halt_on_error)
        envelope = self._client.send(body, keys=commands.keys, request_id=request_id)
        if envelope.error is not None:
            return _failed(commands, envelope, envelope.error, request_id)
        return _succeeded(commands, envelope, request_id, result_type, return_ajax_result)


class _V3:
    def __init__(self, client: B24Hook) -> None:
        self.batch = BatchV3(client)


class Actions:
    """``client.actions.v3.batch``: the JS SDK's path to :class:`BatchV3`."""

    def __init__(self, client: B24Hook) -> None:
        self.v3 = _V3(client)


def _failed(
    commands: Commands, envelope: Envelope, error: AjaxError, request_id: str
) -> BatchResult:
    status = envelope.status
    if status == 401 or status == 429 or status >= 500:
        raise error  # the batch could not run as asked: no caller should go on silently
    return BatchResult(
        data={} if commands.named else [],
        errors=(error,),
        time=envelope.time,
        request_id=request_id,
        status=status,
    )


def _succeeded(
    commands: Commands,
    envelope: Envelope,
    request_id: str,
    result_type: Any,
    return_ajax_result: bool,
) -> BatchResult:
    entries = envelope.result
    assert entries is not None  # decode_response sets result when error is None
    typed = result_type is not None or any(c.result_type is not None for c in commands.items)
    if typed:
        entries = [
            _typed(
                entry, command.result_type or result_type, position, key, command.method, request_id
            )
            for position, (entry, command, key) in enumerate(
                zip(entries, commands.items, commands.keys, strict=True)
            )
        ]
    values: list[Any]
    if return_ajax_result:
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
    else:
        values = entries
    data: list[Any] | dict[str, Any]
    data = (
        dict(zip(map(str, commands.keys), values, strict=True)) if commands.named else list(values)
    )
    return BatchResult(data=data, time=envelope.time, request_id=request_id, status=envelope.status)


def _typed(entry: Any, type_: Any, position: int, key: object, method: str, request_id: str) -> Any:
    if entry is None or type_ is None:
        return entry
    label = f"the result of command {key!r} ({method})"
    return structure(entry, type_, path=f"$.result[{position}]", label=label, request_id=request_id)


def _check_options(halt_on_error: object, return_ajax_result: object) -> None:
    for name, value in (
        ("halt_on_error", halt_on_error),
        ("return_ajax_result", return_ajax_result),
    ):
        if not isinstance(value, bool):
            raise SdkTypeError(f"{name}={value!r}: pass True or False")


def _checked_request_id(request_id: object) -> str:
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
