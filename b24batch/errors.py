"""The exception tree of b24batch. Defines exceptions only: no I/O, no parsing.

::

    B24Error                      root; every error carries ``request_id`` and ``outcome_unknown``
    ├── SdkError (ValueError)     misuse, raised before any request is sent
    │   └── SdkTypeError (TypeError)   misuse of a type
    ├── AjaxError                 the portal answered with an error envelope
    │   ├── AuthError             401: bad, expired or missing credential
    │   ├── RateLimitError        503 QUERY_LIMIT_EXCEEDED: refused before execution
    │   └── OperatingLimitError   429 OPERATION_TIME_LIMIT: the method's time budget is used up
    ├── TransportError            no usable HTTP answer: refused, timeout, TLS, reset, redirect
    └── DecodeError               an answer that cannot be decoded: HTML, truncated JSON,
                                  a missing result entry, a result that does not fit result_type

Messages never contain a webhook secret or token: the code that raises them redacts first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from b24batch.results import BatchResult, ChunkedResult, FieldError

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
        partial: For an error raised in the middle of a chunked call, what the chunks before
            it returned (a ``ChunkedResult``), so nothing already fetched is lost.
        others: When ``raise_for_errors()`` raised this error, the result's other errors.

    Example:
        >>> try:
        ...     BatchV3(B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/s/")).make([])
        ... except B24Error as error:
        ...     print(type(error).__name__, error.outcome_unknown)
        SdkError False
    """

    partial: ChunkedResult | None = None

    def __init__(
        self, message: str, *, request_id: str | None = None, outcome_unknown: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.outcome_unknown = outcome_unknown
        self.attempts = 1
        self.others: tuple[B24Error, ...] = ()

    def __str__(self) -> str:
        return self.message


class SdkError(B24Error, ValueError):
    """The SDK was used wrongly; raised before any request is sent.

    Also a :class:`ValueError`, so ``except ValueError`` catches it as it would any bad argument.

    Example:
        >>> b24 = B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/s/")
        >>> BatchV3(b24).make([{"method": "tasks.task.get", "query": {"id": 1}}])
        Traceback (most recent call last):
        ...
        b24batch.errors.SdkError: calls[0] has the unknown key 'query'; use 'params' ...
    """


class SdkTypeError(SdkError, TypeError):
    """An argument of the wrong type; also a :class:`TypeError`.

    Example:
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
        validation: One :class:`FieldError` per ``validation`` row, in the portal's order.

    ``str(error)`` joins all of them into one readable line.

    Example:
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

    def __str__(self) -> str:
        text = f"{self.code} (HTTP {self.status}): {self.message}"
        if self.outcome_unknown:
            text += " (the batch may have been executed)"
        if self.validation:
            # JS SDK #423 glued the rows together and lost the field: keep both, separated.
            rows = "; ".join(
                f"{row.field}: {row.message}" if row.field else row.message
                for row in self.validation
            )
            text = f"{text} [{rows}]"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status})"


class AuthError(AjaxError):
    """HTTP 401: the webhook secret or token is wrong, missing or expired.

    Attributes:
        refresh_error: When ``B24OAuth``'s ``refresh`` callable failed, its exception. It is
            kept out of the message and the traceback chain, as it may name a token.

    Example:
        >>> error = AuthError("expired", code="expired_token", status=401)
        >>> isinstance(error, AjaxError), error.refresh_error
        (True, None)
    """

    refresh_error: BaseException | None = None


class RateLimitError(AjaxError):
    """503 ``QUERY_LIMIT_EXCEEDED``: the portal's request-rate limit; refused before execution.

    Raised only once the retry policy is exhausted; ``attempts`` says how many were made. Also
    raised with ``status=0`` and nothing sent when the client's own request-rate bucket would
    need a wait longer than what is left of the retry policy's ``max_wait``.

    Attributes:
        retry_at: For the client's own refusal, Unix seconds when its bucket has room again.

    Example:
        >>> issubclass(RateLimitError, AjaxError)
        True
    """

    retry_at: float | None = None


class OperatingLimitError(AjaxError):
    """429 ``OPERATION_TIME_LIMIT``: the method's operating-time budget is used up.

    Attributes:
        retry_at: Unix seconds when the portal should accept the method again (its
            ``operating_reset_at``, or an estimate), when known.

    Example:
        >>> OperatingLimitError("blocked", code="OPERATION_TIME_LIMIT", status=429).retry_at
    """

    retry_at: float | None = None


class TransportError(B24Error):
    """No usable HTTP answer: the connection was refused, timed out, failed TLS or was reset.

    The underlying ``requests`` exception is kept as ``__cause__``, as a redacted copy: the
    original names the URL, and the URL holds the webhook secret.

    Attributes:
        never_connected: True when no connection could be opened (refused, DNS failure,
            connect timeout): nothing was sent, so the batch layer may always repeat it.

    Example:
        >>> TransportError("no answer", outcome_unknown=True).outcome_unknown
        True
    """

    never_connected: bool = False


class DecodeError(B24Error):
    """An answer that cannot be decoded into results.

    Raised for a body that is not JSON (an HTML error page, truncated JSON), JSON with neither
    ``result`` nor ``error``, a ``result`` with a missing entry, and a result that does not fit
    the ``result_type`` asked for.

    Attributes:
        result: When the batch ran but a result did not fit ``result_type``, the whole answer
            as a ``BatchResult`` of untyped JSON, so nothing the portal returned is lost.

    Example:
        >>> str(DecodeError("the portal answered HTTP 502 with an HTML page"))
        'the portal answered HTTP 502 with an HTML page'
    """

    result: BatchResult[Any] | None = None
