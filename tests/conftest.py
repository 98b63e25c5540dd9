"""Shared fixtures: a FakePortal on loopback and a client bound to it; the programs the tests need.

Some tests run against real programs, never skipped: PHP's ``parse_str`` (``php``, Debian's
``php-cli``) and ``redis-server``. Without one the run stops after collection with one message
naming it and the install line, instead of one failure or error per test.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator

import pytest

from b24batch import B24Hook
from b24batch.testing import FakePortal

SECRET = "s3cr3tWebhookValue42"

INSTALL = "sudo apt-get install php-cli redis-server"

_PROGRAMS = {
    # the support module a test imports: (the program it runs, how a message names it)
    "tests.support.php": ("php", "php (Debian's php-cli)"),
    "tests.support.redis_server": ("redis-server", "redis-server"),
}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Stop the run before any test when a program the collected tests need is missing.

    A test needs a program when its module (or a conftest) imports the support module that
    runs it, so collection has imported that module by now.
    """
    missing = [
        name
        for module, (program, name) in _PROGRAMS.items()
        if module in sys.modules and shutil.which(program) is None
    ]
    if session.items and missing and not session.config.option.collectonly:
        one = len(missing) == 1
        raise pytest.UsageError(
            f"the tests collected need {' and '.join(missing)}, which "
            f"{'is' if one else 'are'} not installed; they run against the real "
            f"{'program' if one else 'programs'} and are never skipped. "
            f"Install both with: {INSTALL}"
        )


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
