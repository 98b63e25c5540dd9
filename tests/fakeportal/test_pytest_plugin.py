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


PLUGIN_CONFTEST = """
import b24batch.testing.pytest_plugin as plugin

def pytest_configure(config):
    # The pytest11 entry point registers the plugin once b24batch is installed.
    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "b24batch-test")
"""


def test_plugin_provides_a_started_portal(pytester: pytest.Pytester) -> None:
    """The b24_portal fixture yields a running portal and stops it afterwards."""
    pytester.makeconftest(PLUGIN_CONFTEST)
    pytester.makepyfile(
        """
        import requests

        seen = []

        def test_running(b24_portal):
            seen.append(b24_portal)
            assert b24_portal.running
            url = b24_portal.webhook_url.replace("/rest/", "/rest/api/") + "batch"
            assert requests.post(url, json=[{"method": "tasks.task.list", "query": {}}],
                                 timeout=5).status_code == 200

        def test_stopped_afterwards():
            assert not seen[0].running
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_plugin_provides_a_client_for_the_portal(pytester: pytest.Pytester) -> None:
    """The b24_client fixture is a B24Hook bound to b24_portal's address."""
    pytester.makeconftest(PLUGIN_CONFTEST)
    pytester.makepyfile(
        """
        from b24batch import B24Hook

        def test_client(b24_portal, b24_client):
            assert isinstance(b24_client, B24Hook)
            assert b24_portal.base_url in repr(b24_client)
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
