"""What the engine needs of a client: a structural type, so the engine never imports the clients.

``B24Hook`` and ``B24OAuth`` (``client.py``) fit it; so does any test double with the same
members. The faces annotate their ``client`` with it too, and bind to one through ``Face``,
which checks what it is given with ``checked_client``: the type, that one check, and the
binding; no other behaviour.
"""

from __future__ import annotations

from typing import Final, Protocol

from b24batch._limits.limiter import Limiter
from b24batch._protocols.base import Answers, Prepared
from b24batch.errors import AuthError, SdkTypeError
from b24batch.retry import RetryPolicy
from b24batch.transport import Timeout

__all__ = ["Client", "Face", "checked_client"]


class Client(Protocol):
    """A portal client: what the batches and lists take, and what to annotate one with.

    [`B24Hook`][b24batch.B24Hook] and [`B24OAuth`][b24batch.B24OAuth] are clients; so is any
    object with the same members (a test double). A type, not a class to subclass: the engine
    uses a client's one HTTP send, its limits, its retry policy and its credential renewal.

    Examples:
        >>> from b24batch.testing import FakePortal
        >>> def count_tasks(b24: Client) -> int:
        ...     return len(CallListV3(b24).make("tasks.task.list", {"select": ["id"]}))
        >>> with FakePortal() as portal, B24Hook.from_webhook_url(portal.webhook_url) as b24:
        ...     _ = portal.add_tasks(3)
        ...     count_tasks(b24)
        3
    """

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy applied to this client's calls."""

    @property
    def limiter(self) -> Limiter:
        """The client's rate and operating-time limiters."""

    @property
    def origin(self) -> str:
        """The portal's ``scheme://host[:port]`` (a journal tells one portal's jobs by it)."""

    @property
    def timeout(self) -> Timeout:
        """The timeout every request uses (its connect part bounds repeats after a refusal)."""

    def backoff(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th repeat."""

    def credential_version(self) -> int:
        """A number that changes whenever the credential is renewed."""

    def renew(self, error: AuthError, version: int) -> bool:
        """Renew the credential after a 401; True when a re-send may now succeed."""

    def send(
        self, prepared: Prepared, *, request_id: str, idempotency_key: str | None = None
    ) -> Answers:
        """POST one prepared batch and decode the answer: one HTTP request, no retries."""


_MEMBERS: Final = ("retry", "limiter", "timeout", "backoff", "credential_version", "renew", "send")


def checked_client(client: object, face: str) -> Client:
    """``client`` if it has a client's members, else the error naming the fix, for ``face``.

    Without it a webhook URL passed as the client failed at the first send with
    ``'str' object has no attribute 'retry'``. The value itself is never shown: a URL holds
    its secret.

    Raises:
        SdkTypeError: ``client`` is not a client (a str, such as a webhook URL, or anything else).
    """
    if all(hasattr(client, name) for name in _MEMBERS):
        return client  # type: ignore[return-value]
    kind = type(client).__name__
    if isinstance(client, str):
        raise SdkTypeError(
            f"{face} takes a client, not a str; for a webhook URL make one first: "
            f"{face}(B24Hook.from_webhook_url(url))"
        )
    raise SdkTypeError(
        f"{face} takes a client, not a {kind}; pass B24Hook.from_webhook_url(url) or a B24OAuth"
    )


class Face:
    """What every face (the batches, the chunkers, the lists, the single calls) has in common:
    it is bound to one checked client, which its requests go through."""

    def __init__(self, client: Client) -> None:
        """Bind to ``client``; nothing is sent yet.

        Args:
            client: The portal client ([`B24Hook`][b24batch.B24Hook] or
                [`B24OAuth`][b24batch.B24OAuth]) the requests go through.

        Raises:
            SdkTypeError: ``client`` is not a client (a webhook URL passed as a str, ...): the
                message names the fix.
        """
        self._client = checked_client(client, type(self).__name__)
