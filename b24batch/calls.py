"""``CallV3`` and ``CallV2``: one REST method at its own URL, REST 3.0 or classic.

Faces only: signatures, docstrings, examples. Each checks its options once and hands the call
to the engine (``_engine/execute.py``), which sends it as a batch of one command to the
method's own URL (protocol §10), with the batch's limits, repeats and outcome rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from b24batch._engine import execute
from b24batch._engine.call_options import CallOptions
from b24batch._engine.port import Face
from b24batch._protocols.base import Protocol
from b24batch._protocols.v2 import V2
from b24batch._protocols.v3 import V3
from b24batch.results import AjaxResult

__all__ = ["CallV2", "CallV3"]


class _Call(Face):
    _protocol: Protocol

    def _make(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        result_type: Any,
        request_id: str | None,
        idempotency_key: object,
        read_only: bool | None,
        raise_errors: bool | None,
    ) -> AjaxResult:
        options = CallOptions.checked(
            self._protocol,
            request_id=request_id,
            result_type=result_type,
            idempotency_key=idempotency_key,
            raise_errors=raise_errors,
        )
        return execute.call(self._client, self._protocol, method, params, read_only, options)


class CallV3(_Call):
    """Calls one REST 3.0 method at its own URL (``/rest/api/…/METHOD``).

    For one command where a batch would be a detour; the JS SDK's ``CallV3``. The method must
    be a REST 3.0 one (tasks, `note.*`, mail, …: the table in the quick start); CRM and most
    of the API are classic: use `CallV2`.

    Examples:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     task_id = portal.add_task(title="Write docs")
        ...     answer = CallV3(b24).make("tasks.task.get", {"id": task_id, "select": ["title"]})
        ...     answer.is_success, answer.result
        (True, {'item': {'title': 'Write docs'}})
    """

    _protocol = V3

    def make(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        result_type: Any = None,
        request_id: str | None = None,
        idempotency_key: str | bool | None = None,
        read_only: bool | None = None,
        raise_errors: bool | None = None,
    ) -> AjaxResult:
        """Call ``method`` with ``params`` and decode its answer.

        Sent with the client's limits and retry policy, as a batch is: a failure that leaves
        open whether a write ran is not repeated (unless an ``idempotency_key`` makes the
        repeat safe), and the raised error lists it in ``maybe_executed``; a read is repeated.

        Args:
            method: The REST 3.0 method, e.g. ``"tasks.task.get"``.
            params: Its parameters, sent as the JSON body; None for none.
            result_type: What to structure ``result`` into (an attrs class for
                ``{"item": …}``, ``dict[str, Any]``, …); None keeps JSON. A ``null`` result
                stays None.
            request_id: Sent as ``bx24_request_id`` for tracing; a new uuid4 when None.
            idempotency_key: Sent as ``Idempotency-Key`` on every attempt, so the portal runs
                the call at most once and a repeat after a lost answer is safe; True
                generates one. 1 to 255 printable ASCII characters.
            read_only: Whether the method only reads (then a failure that may have run it is
                repeated); None applies the rule on method names (``*.get``, ``*.list``, …).
            raise_errors: True raises an error envelope (as ``AjaxError``) instead of
                returning it in ``error``; None takes the client's ``raise_errors``.

        Returns:
            An `AjaxResult`: ``result``, ``time``, ``status``, ``request_id``, and ``error``
            when the portal answered an error envelope (a 4xx: validation, not found, unknown
            method, …), which is returned, not raised, unless ``raise_errors``. See
            docs/errors.md, "Returned or raised".

        Raises:
            SdkError: The method, params or an option is wrong (before anything is sent).
            AuthError: HTTP 401.
            AjaxError: HTTP 429 and 5xx envelopes; any error envelope with ``raise_errors``.
            TransportError: Refused connection, timeout, TLS failure, reset.
            DecodeError: An answer that cannot be decoded, or does not fit ``result_type``.
        """
        options = (result_type, request_id, idempotency_key, read_only, raise_errors)
        return self._make(method, params, *options)


class CallV2(_Call):
    """Calls one classic method at its own URL (``/rest/…/METHOD``): CRM, users, disk, ….

    The JS SDK's ``CallV2``. Params travel as the PHP form the classic batch sends (no
    booleans: send ``"Y"``/``"N"``; no empty lists or dicts); a list method's answer carries
    ``total`` and ``next``.

    Examples:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     _ = portal.add_deals(70)
        ...     page = CallV2(b24).make("crm.deal.list", {"select": ["ID"]})
        ...     len(page.result), page.total, page.next
        (50, 70, 50)
    """

    _protocol = V2

    def make(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        result_type: Any = None,
        request_id: str | None = None,
        idempotency_key: None = None,
        read_only: bool | None = None,
        raise_errors: bool | None = None,
    ) -> AjaxResult:
        """Call the classic ``method`` with ``params`` and decode its answer.

        Sent with the client's limits and retry policy, as a batch is: a failure that leaves
        open whether a write ran is never repeated (the classic endpoint has no
        ``Idempotency-Key``), and the raised error lists it in ``maybe_executed``; a read is
        repeated.

        Args:
            method: The classic method, e.g. ``"crm.deal.get"``.
            params: Its parameters, sent as a PHP form; None for none.
            result_type: What to structure ``result`` into; None keeps JSON.
            request_id: Sent as ``bx24_request_id`` for tracing; a new uuid4 when None.
            idempotency_key: Refused: the classic endpoint has none.
            read_only: As for `CallV3.make`.
            raise_errors: As for `CallV3.make`.

        Returns:
            An `AjaxResult`: ``result``, ``time``, ``status``, ``request_id``, ``total`` and
            ``next`` for a list method, and ``error`` when the portal answered an error
            envelope, returned unless ``raise_errors`` (docs/errors.md, "Returned or raised").

        Raises:
            SdkError: The method, params or an option is wrong (before anything is sent).
            AuthError: HTTP 401.
            AjaxError: HTTP 429 and 5xx envelopes; any error envelope with ``raise_errors``.
            TransportError: Refused connection, timeout, TLS failure, reset.
            DecodeError: An answer that cannot be decoded, or does not fit ``result_type``.
        """
        options = (result_type, request_id, idempotency_key, read_only, raise_errors)
        return self._make(method, params, *options)
