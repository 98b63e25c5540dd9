"""pytest fixtures for code that talks to Bitrix24: a started FakePortal and a client bound to it.

Registered through the ``pytest11`` entry point, so installing b24batch makes ``b24_portal`` and
``b24_client`` available to every test suite. Fixtures only; no hooks, no options.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from b24batch.testing.portal import FakePortal

if TYPE_CHECKING:
    from b24batch import B24Hook

__all__ = ["b24_client", "b24_portal"]


@pytest.fixture
def b24_portal() -> Iterator[FakePortal]:
    """A started FakePortal with default settings, stopped after the test.

    For example:

    ```python
    def test_add(b24_portal):
        task_id = b24_portal.add_task(title="Seeded")
    ```
    """
    with FakePortal() as portal:
        yield portal


@pytest.fixture
def b24_client(b24_portal: FakePortal) -> Iterator[B24Hook]:
    """A ``B24Hook`` for ``b24_portal``'s webhook URL, closed after the test.

    It has **no client-side rate limit** (``rate_limit=None``): a test sending 60 batches does
    not wait for a leaky bucket of burst 50 at 2 per second, as a default client would. Its
    retry policy is the default one. To test how your code meets limits, make the limit on
    purpose: a portal with ``FakePortal(rate_limit=(burst, per_second))`` (503
    ``QUERY_LIMIT_EXCEEDED``) or ``inject(Fault.rate_limited())``, and a client of your own
    with ``rate_limit=RateLimit(...)`` and an injected ``clock``/``sleep``.

    For example:

    ```python
    def test_many(b24_client):
        for _ in range(60):
            BatchV3(b24_client).make([("tasks.task.list", {})])
    ```
    """
    # Imported here so the plugin loads even where the client package fails to import.
    from b24batch import B24Hook

    with B24Hook.from_webhook_url(b24_portal.webhook_url, rate_limit=None) as client:
        yield client
