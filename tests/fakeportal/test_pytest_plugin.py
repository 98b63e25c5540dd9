"""The pytest plugin's fixtures, as a user's test suite sees them."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = "pytest_plugins = ['b24batch.testing.pytest_plugin']"


def test_b24_client_has_no_client_side_rate_limit(pytester: pytest.Pytester) -> None:
    """The b24_client fixture's client has no leaky bucket: 60 batches never wait for one."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        from b24batch import BatchV3

        def test_sixty_batches(b24_portal, b24_client):
            assert b24_client.limit_state().requests_available is None
            for _ in range(60):
                assert BatchV3(b24_client).make([("tasks.task.list", {})]).is_success
            assert len(b24_portal.requests) == 60
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:b24batch")
    result.assert_outcomes(passed=1)
