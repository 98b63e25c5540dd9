"""Result models (attrs) and the one private cattrs Converter that fills them.

``BatchResult`` is what ``BatchV3.make`` returns; ``AjaxResult`` is one command's answer;
``Time`` is the batch's timing block; ``FieldError`` one validation row. Nothing here does I/O;
structuring errors become [`DecodeError`][b24batch.DecodeError] naming the command and the path.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from b24batch import display
from b24batch.errors import AjaxError, B24Error, DecodeError, SdkTypeError

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "AjaxResult",
    "BatchResult",
    "ChunkError",
    "ChunkedResult",
    "FieldError",
    "Key",
    "Time",
    "check_type",
    "structure",
    "structure_quick",
]

Key = int | str
"""A command's key: its position in a list of calls, or its name in a dict of calls."""

D = TypeVar("D")
"""The type of ``BatchResult.data``: ``list[T]`` for list calls, ``dict[K, T]`` for named
(``K`` is ``str``; a classic call may also name commands by int)."""


@functools.cache
def _converters() -> tuple[cattrs.Converter, cattrs.Converter]:
    """The private cattrs converters: the detailed one, and the fast one.

    Private, as cattrs advises for libraries: users' own hooks on the global converter never
    change how b24batch decodes, and ours never leak into theirs. ``use_alias`` lets an attrs
    field named in snake_case read its camelCase wire key: ``attrs.field(alias="responsibleId")``.
    The fast one keeps the same rules without detailed validation: about twice as fast on the
    success path; when it fails, the detailed one structures the value again, only to say where
    and why. Two threads racing on the first call can at worst build a spare pair.
    """
    # Imported here, not at the top: only a call with ``result_type`` structures anything, so a
    # call that keeps JSON, and ``import b24batch``, never load cattrs.
    import cattrs

    return (
        cattrs.Converter(use_alias=True, forbid_extra_keys=False),
        cattrs.Converter(use_alias=True, forbid_extra_keys=False, detailed_validation=False),
    )


@attrs.frozen
class FieldError:
    """One row of a REST 3.0 ``validation`` list: which field, and what is wrong with it.

    Examples:
        >>> FieldError("id", "Required field `id` is not specified").field
        'id'
    """

    field: str
    message: str


@attrs.frozen(kw_only=True)
class Time:
    """The batch's ``time`` block (protocol §3). Every field is optional.

    There is one ``Time`` per batch: REST 3.0 reports no per-command times.

    Attributes:
        start: Unix seconds when the portal started the batch.
        finish: Unix seconds when it finished.
        duration: Seconds the batch took on the portal.
        processing: Seconds of processing the portal reports.
        date_start: ``start`` as an ISO 8601 string with the portal's offset.
        date_finish: ``finish`` likewise.
        operating_reset_at: Unix seconds when the oldest operating-time basket expires.
        operating: Seconds of operating time accumulated by the method (protocol §5).

    Examples:
        >>> time = Time.from_json({"start": 1787219542, "duration": 0.89, "operating": "n/a"})
        >>> time.start, time.duration, time.operating
        (1787219542.0, 0.89, None)
    """

    start: float | None = None
    finish: float | None = None
    duration: float | None = None
    processing: float | None = None
    date_start: str | None = None
    date_finish: str | None = None
    operating_reset_at: float | None = None
    operating: float | None = None

    @classmethod
    def from_json(cls, value: object) -> Time | None:
        """Build a ``Time`` from the ``time`` JSON object; None when it is absent.

        The block is a hint, never worth losing a batch's results over: a field that is
        missing or of the wrong type becomes None.
        """
        if type(value) is not dict and not isinstance(value, Mapping):
            return None
        get = value.get
        # None, an exact float or an exact str is taken as it is (no call); anything else (an
        # int, a bool, a subclass, a wrong type) goes the checked way, as before.
        start, finish, duration, processing, reset_at, operating = [
            number if number is None or type(number) is float else _number(number)
            for number in map(get, _NUMBERS)
        ]
        date_start, date_finish = get("date_start"), get("date_finish")
        if date_start is not None and type(date_start) is not str:
            date_start = _text(date_start)
        if date_finish is not None and type(date_finish) is not str:
            date_finish = _text(date_finish)
        return cls(
            start=start,
            finish=finish,
            duration=duration,
            processing=processing,
            date_start=date_start,
            date_finish=date_finish,
            operating_reset_at=reset_at,
            operating=operating,
        )


_NUMBERS = ("start", "finish", "duration", "processing", "operating_reset_at", "operating")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@attrs.frozen(kw_only=True, repr=False)
class AjaxResult:
    """One command's answer, as the JS SDK's ``AjaxResult``.

    Attributes:
        key: The command's position (list calls) or name (dict calls).
        method: The REST method the command called.
        params: The parameters it was called with.
        result: The decoded result (typed when a ``result_type`` applied), or None.
        time: The command's own ``Time`` in a classic batch (its ``result_time``); the
            batch's in REST 3.0, which has no per-command time.
        status: The HTTP status of the batch's answer.
        error: None on success, else this command's own error (a classic batch reports each
            command's; in REST 3.0 the ones ``isolate_errors`` finds).
        total: For a classic list method, the list's ``total`` (None when absent, as with
            ``start=-1``).
        next: For a classic list method, the ``start`` of the next page, when there is one.
        request_id: The id the request was sent with (``bx24_request_id``).

    Examples:
        >>> r = AjaxResult(key=0, method="tasks.task.get", params={"id": 1},
        ...                result={"item": {"id": 1}}, time=None, status=200)
        >>> r.is_success, r
        (True, <AjaxResult 0 tasks.task.get ok: {"item": {"id": 1}}>)
    """

    key: Key
    method: str
    params: Mapping[str, Any]
    result: Any
    time: Time | None
    status: int
    error: AjaxError | None = None
    total: int | None = None
    next: int | None = None
    request_id: str | None = None

    @property
    def is_success(self) -> bool:
        """True when the command has a result and no error."""
        return self.error is None

    def raise_for_errors(self) -> AjaxResult:
        """Return ``self`` on success; otherwise raise its ``error``.

        What ``raise_errors=True`` does to a single call (docs/errors.md, "Returned or raised").

        Examples:
            >>> from b24batch.testing import FakePortal
            >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
            ...     CallV3(b24).make("tasks.task.get", {"id": 7}).raise_for_errors()
            Traceback (most recent call last):
              ...
            b24batch.errors.AjaxError: ...
        """
        if self.error is None:
            return self
        raise self.error

    def __repr__(self) -> str:
        return display.ajax_repr(self)

    def _repr_html_(self) -> str:
        """A one-row HTML table for Jupyter."""
        return display.ajax_html(self)


@attrs.frozen(kw_only=True, repr=False)
class BatchResult(Generic[D]):
    """What ``BatchV3.make`` returns.

    In a notebook it renders as a table, one row per command; ``repr()`` is one short line.

    Attributes:
        data: List calls give a list in call order, dict calls a dict keyed by the caller's
            names, as passed (a classic ``35943`` stays an int, ``"35943"`` a str). Items are
            decoded results, or [`AjaxResult`][b24batch.AjaxResult] objects when the call asked
            for ``return_ajax_result=True``. Empty when the batch failed: a REST 3.0 batch
            stops at its first failing command and the portal answers only that error. With
            ``isolate_errors=True`` a failed batch gives a partial result: a list holds None
            where a command failed, a dict only the commands that succeeded, and
            ``return_ajax_result=True`` gives an [`AjaxResult`][b24batch.AjaxResult] for every
            command.
        errors: The errors the portal answered with, in call order; empty on success. A failed
            REST 3.0 batch has one error, naming no command; with ``isolate_errors=True`` there
            is one per failing command, each with its ``key``.
        time: The batch's timing block, when the portal sent one.
        request_id: The id sent as ``bx24_request_id``.
        status: The HTTP status of the answer.
        attempts: How many times this call sent the batch (1 without retries).
        waited: Seconds spent waiting in backoff and for the limiters.
        replayed: The portal answered from its idempotency store: the batch had already run
            under this ``Idempotency-Key`` and was not executed again.
        positions: For one chunk of a chunked call, the positions in the whole input that it
            covered; None for a plain batch.
        keys: The commands' keys (positions or names), in call order.
        methods: The commands' methods, in call order.
        not_executed: Keys of the commands that did not run, in call order: in a classic
            batch with ``halt_on_error=True``, those after the first failing command. They have
            no result and no error. Always empty for REST 3.0, whose answer names no command.
        unanswered: Keys of the commands that were sent but that the answer says nothing
            about although nothing skipped them (a classic answer that names them in no
            section): each may have run, so each is in ``maybe_executed``; none has a result.

    Examples:
        >>> from b24batch.testing import FakePortal
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     _ = portal.add_tasks(1)
        ...     result = BatchV3(b24).make([("tasks.task.get", {"id": 1})])
        >>> result
        <BatchResult ok: 1 command, HTTP 200, request_id='...'>
        >>> result.data[0]["item"]["title"]
        'Task 1'
    """

    data: D
    errors: tuple[AjaxError, ...] = ()
    time: Time | None = None
    request_id: str
    status: int
    attempts: int = 1
    waited: float = 0.0
    replayed: bool = False
    positions: range | None = None
    keys: tuple[Key, ...] = ()
    methods: tuple[str, ...] = ()
    not_executed: tuple[Key, ...] = ()
    unanswered: tuple[Key, ...] = ()

    @property
    def is_success(self) -> bool:
        """True when the batch ran and every command has its result."""
        return not self.errors and not self.not_executed and not self.unanswered

    @property
    def errors_by_key(self) -> Mapping[Key, AjaxError]:
        """Each failing command's error by its key; empty unless the failing commands are known.

        A plain failed REST 3.0 batch names no command, so this is empty for it too; the
        errors ``isolate_errors`` finds are here.
        """
        return {error.key: error for error in self.errors if error.key is not None}

    @property
    def maybe_executed(self) -> tuple[Key, ...]:
        """Keys of the commands that may have run although no result says so: the writes an
        error leaves in doubt (see [`B24Error.maybe_executed`][b24batch.B24Error]), then
        ``unanswered``.

        Empty on success (every result is in ``data``).
        """
        doubtful = [key for error in self.errors for key in error.maybe_executed]
        return (*doubtful, *(key for key in self.unanswered if key not in doubtful))

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per command, for ``pandas.DataFrame(result.to_records())``.

        Columns: ``key``, ``method``, ``ok``, then the result's fields flattened with dots
        (``item.id``, ``item.title``); a failed batch gives ``ok=False`` and ``error``.
        """
        return display.batch_records(self)

    def __repr__(self) -> str:
        return display.batch_repr(self)

    def _repr_html_(self) -> str:
        """An HTML table for Jupyter: key, method, status and a short preview per command."""
        return display.batch_html(self)

    @property
    def error_messages(self) -> list[str]:
        """One readable line per error (code, status, message and validation rows)."""
        return [str(error) for error in self.errors]

    def raise_for_errors(self) -> BatchResult[D]:
        """Return ``self`` on success; otherwise raise the first error.

        The other errors, if any, are attached to the raised one as ``others``, and this
        result as its ``result`` (what ran, ``not_executed``, ``maybe_executed``). What
        ``raise_errors=True`` does to a batch (docs/errors.md, "Returned or raised").

        Examples:
            >>> from b24batch.testing import FakePortal
            >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
            ...     _ = portal.add_tasks(1)
            ...     calls = [("tasks.task.get", {"id": 1}), ("tasks.task.get", {"id": 2})]
            ...     BatchV3(b24).make(calls).raise_for_errors()
            Traceback (most recent call last):
              ...
            b24batch.errors.AjaxError: ...
        """
        if not self.errors:
            if not self.unanswered:
                return self
            silent = unanswered_error(self.unanswered, self.request_id)
            silent.result = self
            raise silent
        first, *rest = self.errors
        first.others = tuple(rest)
        first.result = self
        raise first


@attrs.frozen
class ChunkError:
    """The error of one chunk of a chunked call, naming the commands it covered.

    A failed REST 3.0 batch names no command, so the error covers every command of the chunk;
    with ``isolate_errors=True`` there is one ``ChunkError`` per failing command instead.

    Attributes:
        chunk: The chunk's index, from 0.
        keys: The keys of the commands the error covers: positions in the whole input, or names.
        error: The portal's error for the chunk (or the error raised while sending it).

    Examples:
        >>> error = AjaxError("boom", code="X", status=400)
        >>> print(ChunkError(1, (50, 51, 52), error))
        chunk 1 (commands 50 to 52): X (HTTP 400): boom
    """

    chunk: int
    keys: tuple[Key, ...]
    error: B24Error

    @property
    def maybe_executed(self) -> tuple[Key, ...]:
        """The chunk's writes that may have run, by global key (see ``B24Error.maybe_executed``)."""
        return self.error.maybe_executed

    def __str__(self) -> str:
        first, last = self.keys[0], self.keys[-1]
        span = f"{first!r}" if len(self.keys) == 1 else f"{first!r} to {last!r}"
        return f"chunk {self.chunk} (commands {span}): {self.error}"


@attrs.frozen(kw_only=True, repr=False)
class ChunkedResult(Generic[D]):
    """What ``BatchByChunkV3.make`` returns.

    Generic in its ``data``, as [`BatchResult`][b24batch.BatchResult]:
    ``make(calls, result_type=T)`` gives a ``ChunkedResult[list[T]]`` for list calls and
    ``ChunkedResult[dict[str, T]]`` for dict calls.

    Attributes:
        data: The results of every command that succeeded, in call order for list calls (a
            list) or by name for dict calls (a dict), as in ``BatchV3``; commands of failed
            or unsent chunks are absent (``chunks`` maps list results back to positions).
        errors: One [`ChunkError`][b24batch.ChunkError] per failed chunk (per failing command with
            ``isolate_errors``); errors of different chunks never overwrite one another.
        chunks: One [`BatchResult`][b24batch.BatchResult] per chunk sent, each with its
            ``positions``.
        not_executed: Keys of the commands never sent, after a halt.

    Examples:
        >>> ChunkedResult(data=[1, 2], not_executed=(2, 3))
        <ChunkedResult failed: 0 of 0 chunks failed, 2 not executed>
    """

    data: D
    errors: tuple[ChunkError, ...] = ()
    chunks: tuple[BatchResult[Any], ...] = ()
    not_executed: tuple[Key, ...] = ()

    def to_records(self) -> list[dict[str, Any]]:
        """The records of every chunk sent, in order (see
        [`BatchResult.to_records`][b24batch.BatchResult.to_records])."""
        return [record for chunk in self.chunks for record in chunk.to_records()]

    def __repr__(self) -> str:
        return display.chunked_repr(self)

    def _repr_html_(self) -> str:
        """An HTML table for Jupyter: one row per chunk."""
        return display.chunked_html(self)

    @property
    def is_success(self) -> bool:
        """True when every command was sent and every chunk succeeded."""
        return (
            not self.errors
            and not self.not_executed
            and not any(chunk.unanswered for chunk in self.chunks)
        )

    @property
    def maybe_executed(self) -> tuple[Key, ...]:
        """Commands that may have run although no result says so: the writes of every failed
        chunk an error leaves in doubt, then every chunk's ``unanswered``, in order."""
        doubtful = [key for error in self.errors for key in error.maybe_executed]
        unanswered = [key for chunk in self.chunks for key in chunk.unanswered]
        return (*doubtful, *(key for key in unanswered if key not in doubtful))

    @property
    def error_messages(self) -> list[str]:
        """One readable line per failed chunk, naming its commands."""
        return [str(error) for error in self.errors]

    def raise_for_errors(self) -> ChunkedResult[D]:
        """Return ``self`` when every chunk succeeded; else raise the first chunk's error.

        The other chunks' errors are attached to it as ``others``; this result as ``partial``.
        What ``raise_errors=True`` does to a chunked call (docs/errors.md, "Returned or
        raised").
        """
        if not self.errors:
            unanswered = tuple(key for chunk in self.chunks for key in chunk.unanswered)
            if not unanswered:
                return self
            silent = unanswered_error(unanswered, None)
            silent.partial = self
            raise silent
        first, *rest = (error.error for error in self.errors)
        first.others = tuple(rest)
        first.partial = self
        raise first


def unanswered_error(keys: tuple[Key, ...], request_id: str | None) -> DecodeError:
    """The error ``raise_for_errors()`` raises for commands the answer said nothing of.

    A classic answer can leave a command out of both ``result`` and ``result_error``: it was
    sent, it may have run, and no error names it. ``is_success`` is False for such a result,
    so raising must not let it pass as a success.
    """
    error = DecodeError(
        "the answer names neither a result nor an error for commands that were sent",
        request_id=request_id,
        outcome_unknown=True,
    )
    error.set_maybe_executed(keys, "unknown")
    return error


def check_type(type_: Any, where: str) -> None:
    """Check, before anything is sent, that cattrs can structure into ``type_``.

    cattrs builds a class's hook on first use, resolving its annotations; a class whose
    annotations cannot be resolved would otherwise fail only when the answer arrives, and look
    like a bad answer from the portal. Hooks are cached, so later checks cost a dict lookup.

    Raises:
        SdkTypeError: ``type_`` cannot be structured; the message names ``where``.
    """
    try:
        _converters()[0].get_structure_hook(type_)
    except Exception as exc:
        raise SdkTypeError(
            f"{where}={_type_name(type_)} cannot be used: cattrs cannot structure it "
            f"({type(exc).__name__}: {exc}); pass an attrs class, dataclass or typing type "
            f"whose annotations resolve at module level"
        ) from exc


def structure_quick(value: Any, type_: Any) -> Any:
    """Structure ``value`` into ``type_`` without collecting error details (the fast path).

    Raises:
        Exception: Whatever cattrs raises; call `structure` for a ``DecodeError`` that
            says where and why.
    """
    return _converters()[1].structure(value, type_)


def structure(
    value: Any, type_: Any, *, path: str = "$", label: str = "", request_id: str | None = None
) -> Any:
    """Structure JSON ``value`` into ``type_`` with the private converter.

    Args:
        value: Decoded JSON.
        type_: Anything cattrs can structure: attrs classes, ``dict[str, Any]``, ``list[...]``,
            ``Optional[...]``.
        path: Where ``value`` sits in the answer, e.g. ``$.result[3]``; error paths extend it.
        label: How the message names the value, e.g. ``command 3 (tasks.task.get)``.
        request_id: The batch's request id, for the error.

    Raises:
        DecodeError: ``value`` does not fit ``type_``; the message gives each failing path.
    """
    try:
        return _converters()[0].structure(value, type_)
    except Exception as exc:  # cattrs raises ClassValidationError, ValueError, TypeError, ...
        from cattrs import transform_error  # loaded by _converters() already

        details = "; ".join(transform_error(exc, path=path))
        raise DecodeError(
            f"{label or path} does not fit {_type_name(type_)}: {details}", request_id=request_id
        ) from exc


def _type_name(type_: Any) -> str:
    name = getattr(type_, "__qualname__", None)
    return name if isinstance(name, str) and not getattr(type_, "__args__", None) else repr(type_)
