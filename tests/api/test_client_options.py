"""``ClientOptions``, the type of the clients' ``**options``, names exactly the options taken."""

from __future__ import annotations

import attrs
import pytest

from b24batch import B24Hook, B24OAuth, BatchV3, ClientOptions, SdkTypeError
from b24batch.options import Options
from b24batch.testing import FakePortal


def test_the_typed_options_are_the_checked_ones() -> None:
    """Every option the clients check is typed, and nothing else: editors offer exactly these."""
    assert set(ClientOptions.__annotations__) == {field.name for field in attrs.fields(Options)}
    assert ClientOptions.__optional_keys__ == frozenset(ClientOptions.__annotations__)


def test_a_dict_of_options_reaches_the_client() -> None:
    """A ClientOptions dict passed with ** sets the options of a client that then works."""
    options: ClientOptions = {"timeout": (2.0, 7.0), "retry": None, "rate_limit": None}
    with FakePortal() as portal:
        portal.add_tasks(1)
        with B24Hook.from_webhook_url(portal.webhook_url, **options) as b24:
            assert b24.timeout == (2.0, 7.0)
            assert b24.retry.max_attempts == 1
            result = BatchV3(b24).make([("tasks.task.get", {"id": 1})])
        assert result.data[0]["item"]["title"] == "Task 1"
        with B24OAuth(portal.oauth_endpoint, portal.access_token, **options) as oauth:
            assert oauth.timeout == (2.0, 7.0)


def test_an_unknown_option_is_still_refused_at_run_time() -> None:
    """The types help editors; the check at construction stays for untyped callers."""
    with pytest.raises(SdkTypeError, match="unknown option retries="):
        B24Hook.from_webhook_url("https://example.bitrix24.com/rest/1/abc123/", retries=3)  # type: ignore[call-arg]
