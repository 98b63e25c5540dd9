"""``BatchV3`` and ``BatchV2``: up to 50 commands in one request, REST 3.0 or classic.

Faces only: signatures, docstrings, examples. Each checks its options once and hands the
calls to the engine (``_engine/execute.py``) with its protocol. What is returned and what is
raised is the engine's rule, the same for both: an error envelope the portal answered comes
back in ``BatchResult.errors`` (raised with ``raise_errors``); 401, 429, 5xx, transport and
decoding failures are raised (docs/errors.md, "Returned or raised").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar, overload

from b24batch._engine import execute
from b24batch._engine.call_options import CallOptions
from b24batch._engine.port import Face
from b24batch._protocols.v2 import V2
from b24batch._protocols.v3 import V3
from b24batch.results import BatchResult

__all__ = ["BatchV2", "BatchV3"]

T = TypeVar("T")
K = TypeVar("K", bound=int | str)
"""A classic command's name: a str, or an int such as a record id."""


class BatchV3(Face):
    """Runs up to 50 commands in one REST 3.0 ``batch`` request.

    Examples:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     task_id = portal.add_task(title="Write docs")
        ...     calls = [("tasks.task.get", {"id": task_id, "select": ["title"]})]
        ...     BatchV3(b24).make(calls).data
        [{'item': {'title': 'Write docs'}}]
    """

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
        raise_errors: bool | None = ...,
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
        raise_errors: bool | None = ...,
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
        raise_errors: bool | None = ...,
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
        raise_errors: bool | None = None,
    ) -> BatchResult[Any]:
        """Send ``calls`` as one batch and decode every command's result.

        The portal runs the commands in order and stops at the first that fails, without
        rolling back the ones before it: their writes stay, their results are lost, and the
        answer does not say which command failed. A failed result says which writes may have
        run in ``maybe_executed``.

        Args:
            calls: 1 to 50 commands: a list of ``(method, params)`` tuples, of dicts
                ``{"method", "params", "as", "parallel"}`` or of [`Command`][b24batch.Command]
                (mixed as you like), or a dict mapping your names to such rows.
            halt_on_error: Sent as ``parallel = not halt_on_error`` on rows that do not set
                their own, as the JS SDK does. The portal ignores it: it always stops at the
                first failing command.
            return_ajax_result: Put [`AjaxResult`][b24batch.AjaxResult] objects in ``data`` instead
                of the bare results.
            request_id: Sent as ``bx24_request_id`` for tracing; a new uuid4 when None.
            result_type: What to structure each command's result into (an attrs class,
                ``dict[str, Any]``, ...); a [`Command`][b24batch.Command] may set its own. None
                keeps JSON. A ``null`` result stays None whatever the type.
            idempotency_key: Sent as ``Idempotency-Key`` on every attempt of this call, so the
                portal executes the batch at most once and a repeat after a lost answer is
                safe; True generates one. A string must be 1 to 255 printable ASCII characters.
                The portal stores only successful answers, so it does not make a batch that
                failed at a command safe to send again.
            isolate_errors: For a batch whose commands all only read: when it fails, find the
                failing commands by re-sending parts of it (through the same limiter and retry
                policy; at most n + 4 requests in all for n commands) and return a partial
                result, one error per command that failed when sent alone, in
                ``errors_by_key``. Refused for a batch with a write (re-sending writes is never
                safe) or with references.
            raise_errors: True raises the first error of the result (``raise_for_errors()``:
                the others on ``error.others``, the result on ``error.result``) instead of
                returning it; None takes the client's ``raise_errors``.

        Returns:
            A [`BatchResult`][b24batch.BatchResult]. Check ``is_success``: a 4xx error envelope,
            such as a validation error or a missing record, is returned in ``errors``, not raised,
            unless ``raise_errors`` (docs/errors.md, "Returned or raised").

        Raises:
            SdkError: ``calls`` or an option is wrong (before anything is sent).
            AuthError: HTTP 401.
            AjaxError: HTTP 429 and 5xx envelopes; with ``raise_errors``, the first error.
            TransportError: Refused connection, timeout, TLS failure, reset.
            DecodeError: An answer that cannot be decoded, or does not fit ``result_type``.
        """
        options = CallOptions.checked(
            V3,
            halt_on_error=halt_on_error,
            return_ajax_result=return_ajax_result,
            request_id=request_id,
            result_type=result_type,
            idempotency_key=idempotency_key,
            isolate_errors=isolate_errors,
            raise_errors=raise_errors,
        )
        return execute.make(self._client, V3, calls, options)


class BatchV2(Face):
    """Runs up to 50 commands in one classic (v2) ``batch`` request.

    CRM, users, disk, chats and most of the API exist only in the classic REST API; its batch
    reports every command on its own.

    Examples:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     deal = portal.add_deal(TITLE="Big one")
        ...     calls = {"deal": ("crm.deal.get", {"id": deal}), "x": ("crm.deal.get", {"id": 99})}
        ...     result = BatchV2(b24).make(calls, halt_on_error=False)
        ...     result.data["deal"].get("TITLE"), list(result.errors_by_key)
        ('Big one', ['x'])
    """

    @overload
    def make(
        self,
        calls: Mapping[K, Any],
        *,
        halt_on_error: bool = ...,
        return_ajax_result: Literal[False] = ...,
        request_id: str | None = ...,
        result_type: type[T],
        idempotency_key: None = ...,
        raise_errors: bool | None = ...,
    ) -> BatchResult[dict[K, T]]: ...

    @overload
    def make(
        self,
        calls: Iterable[Any],
        *,
        halt_on_error: bool = ...,
        return_ajax_result: Literal[False] = ...,
        request_id: str | None = ...,
        result_type: type[T],
        idempotency_key: None = ...,
        raise_errors: bool | None = ...,
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
        idempotency_key: object = ...,
        raise_errors: bool | None = ...,
    ) -> BatchResult[Any]: ...

    def make(
        self,
        calls: object,
        *,
        halt_on_error: bool = True,
        return_ajax_result: bool = False,
        request_id: str | None = None,
        result_type: Any = None,
        idempotency_key: object = None,
        raise_errors: bool | None = None,
    ) -> BatchResult[Any]:
        """Send ``calls`` as one classic batch and decode every command's outcome.

        Args:
            calls: 1 to 50 commands in the forms [`BatchV3.make`][b24batch.BatchV3.make] takes. A
                command's key on the wire, for ``$result[KEY]`` references in later commands, is
                your name (named calls), else the row's ``as``, else its position. A name is any str
                without ``[``, ``]`` or NUL (``"a.b c"``, ``"007"``), or an int such as a record id
                (sent as its digits); ``data``, errors' ``key`` and ``not_executed`` use the names
                as you passed them. Params travel as a PHP form: no booleans (send ``"Y"``/``"N"``
                or 1/0), no empty lists or dicts.
            halt_on_error: Sent as ``halt=1``: the portal stops at the first failing command
                and the ones after it are ``not_executed``. False runs every command.
            return_ajax_result: Put an [`AjaxResult`][b24batch.AjaxResult] per executed command in
                ``data``, with its own ``time``, ``total`` and ``next``.
            request_id: Sent as ``bx24_request_id`` for tracing; a new uuid4 when None.
            result_type: What to structure each successful result into, as in ``BatchV3``.
            idempotency_key: Refused: the classic endpoint has none.
            raise_errors: As in ``BatchV3``: raise the first command's error instead of
                returning it.

        Returns:
            A [`BatchResult`][b24batch.BatchResult]: ``data`` holds every result (a list with None
            where a command has none, or a dict of the commands that succeeded), ``errors`` one
            ``AjaxError`` per failed command with its ``key`` (also in ``errors_by_key``),
            ``not_executed`` the commands a halt skipped. A command refused by a limit inside
            the answer is sent again after the wait the limit implies, within ``max_wait``.
            Returned, not raised, unless ``raise_errors`` (docs/errors.md, "Returned or
            raised").

        Raises:
            SdkError: ``calls`` or an option is wrong (before anything is sent).
            AuthError: HTTP 401.
            AjaxError: HTTP 429 and 5xx envelopes; with ``raise_errors``, the first error.
            TransportError: Refused connection, timeout, TLS failure, reset.
            DecodeError: An answer that cannot be decoded, or does not fit ``result_type``.
        """
        options = CallOptions.checked(
            V2,
            halt_on_error=halt_on_error,
            return_ajax_result=return_ajax_result,
            request_id=request_id,
            result_type=result_type,
            idempotency_key=idempotency_key,
            raise_errors=raise_errors,
        )
        return execute.make(self._client, V2, calls, options)
