"""What the engine needs of a client: a structural type, so the engine never imports the clients.

``B24Hook`` and ``B24OAuth`` (``client.py``) fit it; so does any test double with the same
members. The faces annotate their ``client`` with it too. Types only, no behaviour.
"""

from __future__ import annotations

from typing import Protocol

from b24batch._limits.limiter import Limiter
from b24batch._protocols.base import Answers, Prepared
from b24batch.errors import AuthError
from b24batch.retry import RetryPolicy
from b24batch.transport import Timeout

__all__ = ["Client"]


class Client(Protocol):
    """A portal client as the engine uses it: one HTTP send, limits, retries, credentials."""

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
