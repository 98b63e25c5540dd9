"""Test support: FakePortal, a real loopback HTTP server that behaves like a Bitrix24 portal's
``batch`` methods (REST 3.0 and classic), with fault injection and request recording.

For tests, demos and users' own test suites; it never talks to a real portal. The pytest fixtures
``b24_portal`` and ``b24_client`` come from ``b24batch.testing.pytest_plugin``.
"""

from b24batch.testing.command_error import CommandError
from b24batch.testing.portal import FakePortal, Fault, RecordedRequest
from b24batch.testing.v2_store import ClassicAnswer

__all__ = ["ClassicAnswer", "CommandError", "FakePortal", "Fault", "RecordedRequest"]
