"""docs/examples/oauth_app.py's Django views answer as its docstring says, over real HTTP.

The install handler gets the FakeAuthServer's install form and ONAPPINSTALL event through
Django's test client; the view reads through the stored tokens, across an expiry, and answers
409 once the portal's tokens are unusable.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402 - only once Django is known to be installed

from b24batch.testing import FakeAuthServer, FakePortal  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "oauth_app.py"

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only-not-secret",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

from django.test import Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402


def load_example() -> ModuleType:
    """docs/examples is not a package: load the file as module ``oauth_app``."""
    spec = importlib.util.spec_from_file_location("oauth_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = load_example()
urlpatterns = [
    path("b24/install/", example.install),
    path("b24/<str:member_id>/titles/", example.task_titles),
]


@pytest.fixture
def auth(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeAuthServer]:
    """A FakeAuthServer whose application the example is configured for, on an SQLite store."""
    with FakeAuthServer() as server, override_settings(ROOT_URLCONF=__name__):
        monkeypatch.setenv("B24_CLIENT_ID", server.client_id)
        monkeypatch.setenv("B24_CLIENT_SECRET", server.client_secret)
        monkeypatch.setenv("B24_TOKEN_URL", server.token_url)
        monkeypatch.setenv("B24_STORE", str(tmp_path / "b24.sqlite3"))
        example.reset()
        yield server
        example.reset()


@pytest.fixture
def portal(auth: FakeAuthServer) -> Iterator[FakePortal]:
    with FakePortal(auth_server=auth) as fake:
        yield fake


def _get(member_id: str, ids: str) -> tuple[int, dict[str, Any]]:
    response = Client().get(f"/b24/{member_id}/titles/", {"ids": ids})
    return response.status_code, json.loads(response.content)


@pytest.mark.parametrize("shape", ["install_form", "install_event"])
def test_an_install_is_stored_and_the_view_reads_through_it_across_an_expiry(
    auth: FakeAuthServer, portal: FakePortal, shape: str
) -> None:
    """The install POST is stored; the view reads titles, and again after the token expired,
    with one refresh."""
    first = portal.add_task(title="Write the report")
    second = portal.add_task(title="Call ACME")
    response = Client().post("/b24/install/", getattr(auth, shape)(portal))
    assert (response.status_code, json.loads(response.content)) == (
        200,
        {"installed": portal.member_id},
    )
    assert _get(portal.member_id, f"{second},{first}") == (
        200,
        {"titles": ["Call ACME", "Write the report"]},
    )
    auth.expire_access_tokens()
    assert _get(portal.member_id, f"{first}") == (200, {"titles": ["Write the report"]})
    assert auth.refresh_calls() == 1


def test_a_broken_install_post_is_a_400_naming_the_field(
    auth: FakeAuthServer, portal: FakePortal
) -> None:
    """An install form without REFRESH_ID: 400 naming it; nothing stored."""
    form = {k: v for k, v in auth.install_form(portal).items() if k != "REFRESH_ID"}
    response = Client().post("/b24/install/", form)
    assert response.status_code == 400
    assert "'refresh_token'" in json.loads(response.content)["error"]
    assert form["AUTH_ID"] not in response.content.decode()
    assert example.get_app().portals() == []


def test_unusable_tokens_are_a_409_asking_for_a_reinstall(
    auth: FakeAuthServer, portal: FakePortal
) -> None:
    """The authorization server answers invalid_grant: the view says to reinstall (409)."""
    task = portal.add_task(title="Seed")
    Client().post("/b24/install/", auth.install_form(portal))
    auth.fail_refresh("invalid_grant")
    auth.expire_access_tokens()
    status, body = _get(portal.member_id, str(task))
    assert (status, body) == (409, {"error": "open the application on this portal again"})
