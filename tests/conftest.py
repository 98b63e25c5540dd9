"""Shared fixtures: a FakePortal on loopback and a client bound to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from b24batch import B24Hook
from b24batch.testing import FakePortal

SECRET = "s3cr3tWebhookValue42"


@pytest.fixture
def portal() -> Iterator[FakePortal]:
    """A started FakePortal with a known secret, stopped after the test."""
    with FakePortal(secret=SECRET) as fake:
        yield fake


@pytest.fixture
def client(portal: FakePortal) -> Iterator[B24Hook]:
    """A webhook client for ``portal`` that sends each batch once, with short timeouts.

    Retries and limits are tested on their own (test_resilience.py); here one call is one
    request, sent at once.
    """
    with B24Hook.from_webhook_url(
        portal.webhook_url, timeout=(2.0, 5.0), retry=None, rate_limit=None
    ) as hook:
        yield hook
