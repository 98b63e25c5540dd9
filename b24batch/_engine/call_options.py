"""The options of one call — a batch, a chunked call or a list walk — checked once.

Every face turns its keyword arguments into one frozen ``CallOptions`` before anything else is
done; an option of the wrong type or value raises ``SdkTypeError`` / ``SdkError`` naming it and
the fix. The engine reads options only from here. No I/O.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Final, Literal

import attrs

from b24batch._protocols.base import Protocol
from b24batch.commands import MAX_COMMANDS
from b24batch.errors import SdkError, SdkTypeError
from b24batch.results import check_type

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_IN_FLIGHT",
    "CallOptions",
    "InDoubt",
    "InFlight",
    "checked_idempotency_key",
    "checked_in_flight",
    "checked_request_id",
]

MAX_ID_LENGTH: Final = 255
"""The longest request id and ``Idempotency-Key`` the portal takes."""
MAX_IN_FLIGHT: Final = 16
"""The widest window: more would load a real portal with thousands of commands at once."""
_SUFFIX_ROOM: Final = 10  # ".<chunk number>" appended to request ids and idempotency keys

InFlight = int | Literal["auto"]
"""``max_in_flight``: a fixed number of batches on the wire, or ``"auto"``."""
InDoubt = Literal["report", "resend"]
"""``in_doubt``: what a resumed job does with a chunk an earlier run sent without an answer."""


@attrs.frozen(kw_only=True)
class CallOptions:
    """One call's options, checked (build it with :meth:`checked`).

    Attributes:
        request_id: The call's request id; a chunked call's batch ``k`` sends ``{id}.{k}``.
        halt_on_error: Stop at the first failure (what that means is the protocol's, and the
            chunk runner's: no chunk is sent after a failed one).
        return_ajax_result: Put ``AjaxResult`` objects in ``data`` (single batches).
        result_type: What each result is structured into; None keeps JSON.
        idempotency_key: Sent as ``Idempotency-Key`` (a chunked call's batch ``k`` sends
            ``{key}.{k}``); None for none.
        isolate_errors: Find the failing commands of a failed read-only batch by re-sending parts.
        chunk_size: Commands per chunk (chunked calls).
        max_in_flight: Batches on the wire at once (chunked calls).
        journal: The path of the job's journal (chunked calls); None for none.
        in_doubt: ``"report"`` leaves a chunk an earlier run sent without a recorded answer
            unsent, unless repeating it is safe; ``"resend"`` sends it again.
        raise_errors: Raise the first error the result holds instead of returning it; None
            takes the client's ``raise_errors`` (see :meth:`raises`).
    """

    request_id: str
    halt_on_error: bool = True
    return_ajax_result: bool = False
    result_type: Any = None
    idempotency_key: str | None = None
    isolate_errors: bool = False
    chunk_size: int = MAX_COMMANDS
    max_in_flight: InFlight = 1
    journal: str | None = None
    in_doubt: InDoubt = "report"
    raise_errors: bool | None = None

    @classmethod
    def checked(
        cls,
        protocol: Protocol,
        *,
        halt_on_error: object = True,
        return_ajax_result: object = False,
        request_id: object = None,
        result_type: Any = None,
        idempotency_key: object = None,
        isolate_errors: object = False,
        chunk_size: object = None,
        max_in_flight: object = 1,
        journal: object = None,
        in_doubt: object = "report",
        raise_errors: object = None,
    ) -> CallOptions:
        """Check a call's options for ``protocol``; ``chunk_size`` set means a chunked call.

        Raises:
            SdkError: An option's value is wrong; SdkTypeError (also a TypeError) for one of
                the wrong type. The message names the option and the fix.
        """
        if idempotency_key is not None and not protocol.takes_idempotency_key:
            raise SdkError(
                f"idempotency_key: the {protocol.name} batch endpoint has no Idempotency-Key, "
                f"so a {protocol.name} batch with a write is never sent again after a failure "
                f"that may have run it; REST 3.0 methods take one with BatchV3"
            )
        chunked = chunk_size is not None
        if chunked:
            if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
                raise SdkTypeError(
                    f"chunk_size={chunk_size!r}: pass a whole number from 1 to {MAX_COMMANDS}"
                )
            if not 1 <= chunk_size <= MAX_COMMANDS:
                raise SdkError(
                    f"chunk_size={chunk_size}: a batch takes 1 to {MAX_COMMANDS} commands"
                )
        for name, value in (
            ("halt_on_error", halt_on_error),
            ("return_ajax_result", return_ajax_result),
            ("isolate_errors", isolate_errors),
        ):
            if not isinstance(value, bool):
                raise SdkTypeError(f"{name}={value!r}: pass True or False")
        if raise_errors is not None and not isinstance(raise_errors, bool):
            raise SdkTypeError(
                f"raise_errors={raise_errors!r}: pass True or False, or None for the client's"
            )
        if result_type is not None:
            check_type(result_type, "result_type")
        base_id = checked_request_id(request_id)
        key = checked_idempotency_key(idempotency_key)
        if chunked:
            for name, text in (("request_id", base_id), ("idempotency_key", key)):
                if text is not None and len(text) > MAX_ID_LENGTH - _SUFFIX_ROOM:
                    raise SdkError(
                        f"{name} is {len(text)} characters; chunked calls append '.<chunk>', "
                        f"so keep it to {MAX_ID_LENGTH - _SUFFIX_ROOM}"
                    )
        if in_doubt not in ("report", "resend"):
            raise SdkError(f"in_doubt={in_doubt!r}: pass 'report' or 'resend'")
        if journal is not None:
            if not isinstance(journal, str | os.PathLike):
                raise SdkTypeError(
                    f"journal is a {type(journal).__name__}; pass a file path (str or "
                    f"os.PathLike) or None"
                )
            journal = os.fspath(journal)
            if not isinstance(journal, str) or not journal:
                raise SdkError("journal: pass a non-empty file path")
        return cls(
            request_id=base_id,
            halt_on_error=bool(halt_on_error),
            return_ajax_result=bool(return_ajax_result),
            result_type=result_type,
            idempotency_key=key,
            isolate_errors=bool(isolate_errors),
            chunk_size=chunk_size if isinstance(chunk_size, int) else MAX_COMMANDS,
            max_in_flight=checked_in_flight(max_in_flight),
            journal=journal,
            in_doubt="resend" if in_doubt == "resend" else "report",
            raise_errors=raise_errors if isinstance(raise_errors, bool) else None,
        )

    def raises(self, client: object) -> bool:
        """Whether the call raises the first error its result holds: its own ``raise_errors``,
        else the client's (False for a client without the option)."""
        if self.raise_errors is not None:
            return self.raise_errors
        return getattr(client, "raise_errors", False) is True

    def ids(self, index: int | None) -> tuple[str, str | None]:
        """``(request id, idempotency key)`` of batch ``index`` of the call (None: the one)."""
        if index is None:
            return self.request_id, self.idempotency_key
        key = self.idempotency_key
        return f"{self.request_id}.{index}", None if key is None else f"{key}.{index}"


def checked_request_id(request_id: object) -> str:
    """A caller's request id, checked; a new uuid4 for None.

    Raises:
        SdkError: Not 1 to 255 printable characters; SdkTypeError for a non-str.
    """
    if request_id is None:
        return str(uuid.uuid4())
    if not isinstance(request_id, str):
        raise SdkTypeError(f"request_id is a {type(request_id).__name__}; pass a str or None")
    if not request_id or len(request_id) > MAX_ID_LENGTH or not request_id.isprintable():
        raise SdkError(
            f"request_id must be 1 to {MAX_ID_LENGTH} printable characters; "
            f"leave it None for a generated one"
        )
    return request_id


def checked_idempotency_key(key: object) -> str | None:
    """A caller's idempotency key, checked: None or False for none, True for a new one.

    Raises:
        SdkError: Not 1 to 255 printable ASCII characters, or spaces at an end;
            SdkTypeError for anything but a str or a bool.
    """
    if key is None or key is False:
        return None
    if key is True:
        return uuid.uuid4().hex
    if not isinstance(key, str):
        raise SdkTypeError(
            f"idempotency_key is a {type(key).__name__}; pass a str, True to generate one, or None"
        )
    if not 1 <= len(key) <= MAX_ID_LENGTH or not all(" " <= ch <= "~" for ch in key):
        raise SdkError(
            f"idempotency_key must be 1 to {MAX_ID_LENGTH} printable ASCII characters "
            f"(got {len(key)} characters); pass True to have one generated"
        )
    if key != key.strip(" "):  # an HTTP header value cannot start or end with a space
        raise SdkError(
            f"idempotency_key {key!r} starts or ends with a space, which an HTTP header cannot "
            f"carry; remove it, or pass True to have one generated"
        )
    return key


def checked_in_flight(value: object) -> InFlight:
    """Check ``max_in_flight``: ``"auto"`` or a whole number from 1 to ``MAX_IN_FLIGHT``.

    Raises:
        SdkError: A number out of range; SdkTypeError for anything else.
    """
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int):
        raise SdkTypeError(
            f"max_in_flight={value!r}: pass 'auto' or a whole number from 1 to {MAX_IN_FLIGHT}"
        )
    if not 1 <= value <= MAX_IN_FLIGHT:
        raise SdkError(
            f"max_in_flight={value}: pass 1 to {MAX_IN_FLIGHT} (1 sends one batch at a time)"
        )
    return value
