"""An application installed on many portals: its install handler, a Django view, a Celery task.

Configure it with environment variables, read on first use so that web workers and Celery
workers share one configuration: ``B24_CLIENT_ID`` and ``B24_CLIENT_SECRET`` (the
application's), ``B24_STORE`` (``redis://…``, ``rediss://…`` or ``unix://…`` for a
RedisStore, else the path of an SQLite file every process can write) and ``B24_TOKEN_URL``
(only to point at a FakeAuthServer).
Wire the views up with::

    path("b24/install/", oauth_app.install),
    path("b24/<str:member_id>/titles/", oauth_app.task_titles),

The choices, and why:

- **One OAuthApp and one store per process**; the store holds the limits and the tokens of
  every portal, so every Gunicorn and Celery worker draws on one request budget per portal
  and refreshes each portal's token once per expiry, whichever process meets it first.
- **One client per portal and process**, kept in a dict under a lock: a client holds the
  connection pool and its limiters, and is safe to share between threads.
- **The install handler takes what Bitrix24 posts** — the install page's ``AUTH_ID`` form or
  the ``ONAPPINSTALL`` event's ``auth[...]`` fields — and stores it. A refused field is a 400
  naming it (never the token).
- **``invalid_grant`` means reinstall.** ``AuthError.reinstall`` is True when the portal's
  tokens are unusable; the view answers 409 and a person must open the application on that
  portal again. ``may_retry`` covers the rest (the authorization server was down, slow, or
  ``PAYMENT_REQUIRED``): the task retries later, the view answers 503.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import shared_task
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from b24batch import (
    AuthError,
    B24Error,
    B24OAuth,
    BatchV3,
    OAuthApp,
    RedisStore,
    RetryPolicy,
    SdkError,
    SQLiteStore,
)

AUTH_SERVER = "https://oauth.bitrix.info/oauth/token/"
_lock = threading.Lock()
_app: OAuthApp | None = None
_clients: dict[str, B24OAuth] = {}


def get_app() -> OAuthApp:
    """This process's OAuthApp, built on first use from the environment."""
    global _app
    with _lock:
        if _app is None:
            where = os.environ["B24_STORE"]
            store = RedisStore(where) if "://" in where else SQLiteStore(where)
            _app = OAuthApp(
                client_id=os.environ["B24_CLIENT_ID"],
                client_secret=os.environ["B24_CLIENT_SECRET"],
                store=store,
                token_url=os.environ.get("B24_TOKEN_URL", AUTH_SERVER),
            )
        return _app


def client_for(member_id: str) -> B24OAuth:
    """This process's client for one portal (its refresh goes through the shared store)."""
    app = get_app()
    with _lock:
        client = _clients.get(member_id)
        if client is None:
            client = app.client(
                member_id, timeout=(5.0, 30.0), retry=RetryPolicy(max_attempts=2, max_wait=5.0)
            )
            _clients[member_id] = client
        return client


def reset() -> None:
    """Forget the app and close every client (tests, and a changed configuration)."""
    global _app
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
        _app = None


@csrf_exempt
@require_POST
def install(request: HttpRequest) -> JsonResponse:
    """The install page's form, or the ONAPPINSTALL event: store the portal's tokens."""
    try:
        member_id = get_app().save_tokens(request.POST)
    except SdkError as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse({"installed": member_id})


def titles(member_id: str, ids: list[int]) -> list[str]:
    """The titles of tasks ``ids`` on one portal, from one batch."""
    calls = [("tasks.task.get", {"id": i, "select": ["id", "title"]}) for i in ids]
    result = BatchV3(client_for(member_id)).make(calls)
    return [row["item"]["title"] for row in result.raise_for_errors().data]


@require_GET
def task_titles(request: HttpRequest, member_id: str) -> JsonResponse:
    """``GET /b24/MEMBER_ID/titles/?ids=1,2``: the titles, or why not."""
    try:
        ids = [int(i) for i in request.GET.get("ids", "").split(",")]
    except ValueError:
        return JsonResponse({"error": "pass ids=1,2,3"}, status=400)
    try:
        return JsonResponse({"titles": titles(member_id, ids)})
    except AuthError as error:
        if error.reinstall:
            return JsonResponse({"error": "open the application on this portal again"}, status=409)
        return JsonResponse({"error": str(error)}, status=503 if error.may_retry else 502)
    except B24Error as error:
        return JsonResponse({"error": str(error)}, status=502)


@shared_task(bind=True, max_retries=3, name="b24.sync_titles")
def sync_titles(self: Any, member_id: str, ids: list[int]) -> list[str]:
    """The same read from a Celery worker, for one portal; retried when it may succeed later."""
    try:
        return titles(member_id, ids)
    except AuthError as error:
        if error.may_retry:
            raise self.retry(exc=error, countdown=30) from error
        raise
