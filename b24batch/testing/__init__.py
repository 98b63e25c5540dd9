"""Test support: FakePortal, a loopback HTTP server that acts as a Bitrix24 portal's ``batch``.

REST 3.0 and classic, with fault injection and request recording, and FakeAuthServer, the
authorization server that issues and renews OAuth tokens for FakePortals; for tests, demos and
users' own test suites, they never talk to a real portal. The pytest fixtures ``b24_portal`` and
``b24_client`` come with the package's pytest plugin (``pytest_plugin.py``).
"""

from b24batch.testing.command_error import CommandError
from b24batch.testing.oauth_server import FakeAuthServer
from b24batch.testing.portal import FakePortal, Fault, RecordedRequest
from b24batch.testing.v2_store import ClassicAnswer

__all__ = [
    "ClassicAnswer",
    "CommandError",
    "FakeAuthServer",
    "FakePortal",
    "Fault",
    "RecordedRequest",
]
