"""The exception tree of b24batch. Defines exceptions only: no I/O, no parsing.

```text
B24Error                      root; every error carries request_id, outcome_unknown
                              and maybe_executed
├── SdkError (ValueError)     misuse, raised before any request is sent
│   └── SdkTypeError (TypeError)   misuse of a type
├── AjaxError                 the portal answered with an error envelope
│   ├── AuthError             401: bad, expired or missing credential
│   ├── RateLimitError        503 QUERY_LIMIT_EXCEEDED: refused before execution
│   └── OperatingLimitError   429 OPERATION_TIME_LIMIT: the method's time budget is used up
├── TransportError            no usable HTTP answer: refused, timeout, TLS, reset, redirect
└── DecodeError               an answer that cannot be decoded: HTML, truncated JSON,
                              a missing result entry, a result that does not fit result_type
```

Every error has a ``kind`` (an [`ErrorKind`][b24batch.ErrorKind]) to branch on; the table of the
portal's codes behind it is in ``kinds.py``. Messages never contain a webhook secret or token: the
code that raises them redacts first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from b24batch.kinds import ErrorKind, kind_of_code

if TYPE_CHECKING:
    from b24batch.results import BatchResult, ChunkedResult, FieldError, Key

__all__ = [
    "AjaxError",
    "AuthError",
    "B24Error",
    "DecodeError",
    "OperatingLimitError",
    "RateLimitError",
    "SdkError",
    "SdkTypeError",
    "TransportError",
]


class B24Error(Exception):
    """Root of every error b24batch raises or returns.

    Attributes:
        request_id: The batch's request id (``bx24_request_id``), when one was assigned.
        outcome_unknown: True when the batch may have run on the portal although no answer says
            so (a timeout or a lost connection after sending, a 5xx, an answer cut short). False
            when it surely did not run, or the answer says what happened.
        attempts: How many times the call sent the batch before giving up with this error.
        maybe_executed: The keys of the batch's write commands that may have been executed
            although no result says so, in call order; ``()`` when none can have run. A
            REST 3.0 batch stops at its first failing command without rolling back the ones
            before it, so a returned error lists every write but the batch's last command; an
            error with ``outcome_unknown`` lists every write; a refusal before execution (503
            ``QUERY_LIMIT_EXCEEDED``, 401, a connection that never opened) lists none.
            Read-only commands are never listed: running them changes nothing.
        partial: For an error raised in the middle of a chunked call, what the chunks before
            it returned (a ``ChunkedResult``), so nothing already fetched is lost.
        result: What this call had fetched when it failed, as a ``BatchResult``: for a
            ``DecodeError`` the untyped answer, for an error raised while ``isolate_errors``
            re-sent parts of a batch the results found until then.
        others: When ``raise_for_errors()`` raised this error, the result's other errors.
        hint: What b24batch can add to the portal's word, and is shown after it: e.g. that a
            method the REST 3.0 batch did not find is a classic one, and the class to use.

    Every error pickles (``multiprocessing``, ``ProcessPoolExecutor``, Celery) with all its
    attributes; like any exception, its ``__cause__`` and traceback stay behind.

    Examples:
        >>> try:
        ...     BatchV3(B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/s/")).make([])
        ... except B24Error as error:
        ...     print(type(error).__name__, error.outcome_unknown)
        SdkError False
    """

    partial: ChunkedResult[Any] | None = None
    result: BatchResult[Any] | None = None

    @property
    def kind(self) -> ErrorKind:
        """What kind of failure this is, to branch on (see [`ErrorKind`][b24batch.ErrorKind]).

        ``SdkError`` is ``MISUSE``, ``TransportError`` ``TRANSPORT``, ``DecodeError``
        ``DECODING``, ``AuthError`` ``AUTH``, the two limit errors ``LIMIT``; any other
        ``AjaxError`` is looked up by its code, or its HTTP status for an unknown code.
        """
        return ErrorKind.PORTAL

    def __init__(
        self, message: str, *, request_id: str | None = None, outcome_unknown: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.outcome_unknown = outcome_unknown
        self.attempts = 1
        self.others: tuple[B24Error, ...] = ()
        self.maybe_executed: tuple[Key, ...] = ()
        self.hint = ""
        self._executed_note = ""

    def __str__(self) -> str:
        return self.message + self._hint_note() + self._executed_note

    def _hint_note(self) -> str:
        return f"; {self.hint}" if self.hint else ""

    def set_maybe_executed(
        self, keys: tuple[Key, ...], how: Literal["stopped", "unknown", "ran"]
    ) -> None:
        """Record which writes may have run, and say it in the message when any may have.

        Args:
            keys: The write commands' keys, in call order.
            how: ``"stopped"``: the portal answered this error, so the batch stopped at a
                failing command; ``"unknown"``: no answer says what ran; ``"ran"``: the
                batch was executed (the message already says so).
        """
        self.maybe_executed = keys
        self._executed_note = "" if how == "ran" else _executed_words(keys, how)

    def __reduce__(self) -> tuple[Any, ...]:
        # The default rebuilds with cls(*args), which cannot pass AjaxError's keyword-only
        # context. Rebuild from args without __init__, then restore every attribute: a field
        # added later travels with no change here. The state is pickle's third item, applied
        # after the error is memoised, so cycles (error -> partial -> its ChunkError -> error)
        # pickle too. __cause__ and __traceback__ stay behind, as for every exception.
        return (_restore, (type(self), self.args), self._pickled_state())

    def _pickled_state(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _restore(cls: type[B24Error], args: tuple[Any, ...]) -> B24Error:
    """Unpickle a B24Error: create it from ``args`` without ``__init__``; pickle sets the rest."""
    return cls.__new__(cls, *args)


class SdkError(B24Error, ValueError):
    """The SDK was used wrongly; raised before any request is sent. Its ``kind`` is ``MISUSE``.

    Also a `ValueError`, so ``except ValueError`` catches it as it would any bad argument.

    Examples:
        >>> b24 = B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/s/")
        >>> BatchV3(b24).make([{"method": "tasks.task.get", "query": {"id": 1}}])
        Traceback (most recent call last):
        ...
        b24batch.errors.SdkError: calls[0] has the unknown key 'query'; use 'params' ...
    """

    @property
    def kind(self) -> ErrorKind:
        """Always [`ErrorKind.MISUSE`][b24batch.ErrorKind.MISUSE]."""
        return ErrorKind.MISUSE


class SdkTypeError(SdkError, TypeError):
    """An argument of the wrong type; also a `TypeError`.

    Examples:
        >>> B24Hook.from_webhook_url(b"https://example.bitrix24.com/rest/1/s/")
        Traceback (most recent call last):
        ...
        b24batch.errors.SdkTypeError: the webhook URL is a bytes; pass a str
    """


class AjaxError(B24Error):
    """The portal answered with an error envelope (REST 3.0 or classic form).

    Attributes:
        code: The portal's error code, e.g. ``BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION``.
        message: The portal's own message, as sent (secret-free).
        status: The HTTP status of the answer.
        validation: One [`FieldError`][b24batch.FieldError] per ``validation`` row, in the portal's
            order.

    ``str(error)`` joins all of them into one readable line.

    Examples:
        >>> print(AjaxError("Record with ID = `2` not found", code="NOT_FOUND", status=400))
        NOT_FOUND (HTTP 400): Record with ID = `2` not found
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int,
        validation: Sequence[FieldError] = (),
        request_id: str | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message, request_id=request_id, outcome_unknown=outcome_unknown)
        self.code = code
        self.status = status
        self.validation: tuple[FieldError, ...] = tuple(validation)
        self.retry_after: float | None = None
        """Seconds from the answer's ``Retry-After`` header, when it had one."""

    key: Key | None = None
    """The failing command's key, when it is known: set on the errors ``isolate_errors`` finds
    (a REST 3.0 batch's own error names no command)."""

    def __str__(self) -> str:
        # A classic command's error comes inside an HTTP 200 answer, sometimes without a code
        # ("Not found"): say only what there is. Status 0 is the client's own refusal, which
        # had no HTTP answer: "(HTTP 0)" would read as one.
        label = self.code
        if self.status not in (0, 200):
            label = f"{label} (HTTP {self.status})" if label else f"HTTP {self.status}"
        text = f"{label}: {self.message}" if label else self.message
        if self.key is not None:
            text = f"command {self.key!r}: {text}"
        if self.outcome_unknown:
            text += " (the request may have been executed)"
        if self.validation:
            # JS SDK #423 glued the rows together and lost the field: keep both, separated.
            rows = "; ".join(
                f"{row.field}: {row.message}" if row.field else row.message
                for row in self.validation
            )
            text = f"{text} [{rows}]"
        return text + self._hint_note() + self._executed_note

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status})"

    @property
    def kind(self) -> ErrorKind:
        """The kind of the portal's code (``kinds.CODE_KINDS``), or of the HTTP status."""
        return kind_of_code(self.code, self.status, self.message)


class AuthError(AjaxError):
    """HTTP 401: the webhook secret or token is wrong, missing or expired.

    Attributes:
        refresh_error: When ``B24OAuth``'s ``refresh`` callable failed, its exception. It is
            kept out of the message and the traceback chain, as it may name a token. A pickled
            copy (another process, a Celery result backend) carries in its place a
            [`B24Error`][b24batch.B24Error] naming only the exception's type: the original may
            hold the token or the client secret, and may not pickle at all.
        reinstall: True when a refresh through [`OAuthApp`][b24batch.OAuthApp] found the
            portal's tokens unusable (``invalid_grant``: the refresh token is spent, revoked or
            expired): only installing the application again, or an admin opening it, gives
            new ones.
        may_retry: True when the same refresh may succeed later (the authorization server was
            unreachable, slow or failing, ``PAYMENT_REQUIRED`` until the portal pays).

    Examples:
        >>> error = AuthError("expired", code="expired_token", status=401)
        >>> isinstance(error, AjaxError), error.refresh_error
        (True, None)
    """

    refresh_error: BaseException | None = None
    reinstall: bool = False
    may_retry: bool = False

    @property
    def kind(self) -> ErrorKind:
        """Always [`ErrorKind.AUTH`][b24batch.ErrorKind.AUTH]."""
        return ErrorKind.AUTH

    def copy(self) -> AuthError:
        """A new error with this one's fields, as yet unmarked (one attempt, no
        ``maybe_executed``): each batch that shares one failed refresh raises its own."""
        fresh = AuthError(self.message, code=self.code, status=self.status)
        kept = {k: v for k, v in vars(self).items() if k not in ("attempts", "maybe_executed")}
        fresh.__dict__.update(kept, attempts=1, maybe_executed=(), _executed_note="")
        return fresh

    def _pickled_state(self) -> dict[str, Any]:
        state = super()._pickled_state()
        cause = state.get("refresh_error")
        if cause is not None:
            kind = type(cause)
            state["refresh_error"] = B24Error(
                f"the refresh callable raised {kind.__module__}.{kind.__qualname__}; its "
                f"details stay in the process that caught it, as they may name a token"
            )
        return state


class RateLimitError(AjaxError):
    """503 ``QUERY_LIMIT_EXCEEDED``: the portal's request-rate limit; refused before execution.

    Raised only once the retry policy is exhausted; ``attempts`` says how many were made. Also
    raised with ``status=0`` and nothing sent when the client's own request-rate bucket would
    need a wait longer than what is left of the retry policy's ``max_wait``.

    Attributes:
        retry_at: For the client's own refusal, Unix seconds when its bucket has room again.

    Examples:
        >>> issubclass(RateLimitError, AjaxError)
        True
    """

    retry_at: float | None = None

    @property
    def kind(self) -> ErrorKind:
        """Always [`ErrorKind.LIMIT`][b24batch.ErrorKind.LIMIT]."""
        return ErrorKind.LIMIT


class OperatingLimitError(AjaxError):
    """429 ``OPERATION_TIME_LIMIT``: the method's operating-time budget is used up.

    Attributes:
        retry_at: Unix seconds when the portal should accept the method again (its
            ``operating_reset_at``, or an estimate), when known.

    Examples:
        >>> OperatingLimitError("blocked", code="OPERATION_TIME_LIMIT", status=429).retry_at
    """

    retry_at: float | None = None

    @property
    def kind(self) -> ErrorKind:
        """Always [`ErrorKind.LIMIT`][b24batch.ErrorKind.LIMIT]."""
        return ErrorKind.LIMIT


class TransportError(B24Error):
    """No usable HTTP answer: the connection was refused, timed out, failed TLS or was reset.

    The underlying ``requests`` exception is kept as ``__cause__``, as a redacted copy: the
    original names the URL, and the URL holds the webhook secret.

    Attributes:
        never_connected: True when no connection could be opened (refused, DNS failure,
            connect timeout): nothing was sent, so the batch layer may always repeat it.

    Examples:
        >>> TransportError("no answer", outcome_unknown=True).outcome_unknown
        True
    """

    never_connected: bool = False

    @property
    def kind(self) -> ErrorKind:
        """Always [`ErrorKind.TRANSPORT`][b24batch.ErrorKind.TRANSPORT]."""
        return ErrorKind.TRANSPORT


class DecodeError(B24Error):
    """An answer that cannot be decoded into results.

    Raised for a body that is not JSON (an HTML error page, truncated JSON), JSON with neither
    ``result`` nor ``error``, a ``result`` with a missing entry, and a result that does not fit
    the ``result_type`` asked for.

    Attributes:
        result: When the batch ran but a result did not fit ``result_type``, the whole answer
            as a ``BatchResult`` of untyped JSON, so nothing the portal returned is lost (its
            writes ran: they are all in ``maybe_executed``).

    Examples:
        >>> str(DecodeError("the portal answered HTTP 502 with an HTML page"))
        'the portal answered HTTP 502 with an HTML page'
    """

    @property
    def kind(self) -> ErrorKind:
        """Always [`ErrorKind.DECODING`][b24batch.ErrorKind.DECODING]."""
        return ErrorKind.DECODING


_KEYS_SHOWN = 10


def _executed_words(keys: tuple[Key, ...], how: Literal["stopped", "unknown"]) -> str:
    """The words an error's message gets when writes may have run (empty when none may)."""
    if not keys:
        return ""
    shown = ", ".join(repr(key) for key in keys[:_KEYS_SHOWN])
    if len(keys) > _KEYS_SHOWN:
        shown += f" and {len(keys) - _KEYS_SHOWN} more"
    writes = "1 write" if len(keys) == 1 else f"{len(keys)} writes"
    if how == "stopped":
        return (
            f"; a REST 3.0 batch stops at its first failing command without rollback: the "
            f"commands before it were executed and their results are lost, so up to {writes} "
            f"may have run (maybe_executed: {shown}); the portal does not say which command failed"
        )
    return f"; {writes} may have run (maybe_executed: {shown})"
