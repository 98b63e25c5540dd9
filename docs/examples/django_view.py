"""A Django view that reads Bitrix24 task titles through one shared b24batch client.

Wire it up with ``path("tasks/titles/", django_view.task_titles)`` and put the inbound webhook
URL in ``settings.B24_WEBHOOK_URL``. ``GET /tasks/titles/?ids=1,2,3`` answers
``{"tasks": [{"id": 1, "title": "..."}, ...]}``, in the order asked, from one batch request.

The choices, and why:

- **One client per process.** ``B24Hook`` holds a connection pool and the portal's rate and
  operating-time limiters, and is safe to share between threads. A client per request would
  open a connection per request and could not see what the other requests spent of the
  portal's limits, so ``get_client()`` builds one, lazily (settings are read on first use, not
  at import), under a lock so two first requests cannot both build one. (``functools.lru_cache``
  would also do, but may call the factory twice when two threads miss at once, leaking the
  spare client's pool.) ``reset_client()`` drops it; it runs by itself when a test changes
  ``B24_WEBHOOK_URL`` with ``override_settings``.
- **Timeouts.** Connect 5 s, read 30 s: the SDK's default read timeout (65 s) suits the cloud's
  own 60 s cut-off, but a web worker should give up sooner. Fifty ``tasks.task.get`` calls are
  quick; a portal that needs more than 30 s is better reported than waited for.
- **Retries.** At most two sends and 5 s of backoff in all, so a request fails within a
  bounded time instead of pinning its worker. The SDK only repeats what is safe: this batch is
  read-only, so a timeout or a 5xx is worth one more try.
- **Branch on ``error.kind``, never on the text of a code.** Every b24batch error has a
  ``kind`` (an ``ErrorKind``), from one table of the portal's codes:

  ============  ====  ==========================================================
  kind          HTTP  why
  ============  ====  ==========================================================
  NOT_FOUND     404   an id the portal does not have
  INPUT         400   the portal refused the request's content (validation)
  LIMIT         503   the portal's rate or time limit, still hit after retrying
  other         502   access denied, a bad webhook, 5xx, timeouts, HTML pages,
                      answers that do not fit ``TaskItem``: logged, not blamed on
                      the caller
  ============  ====  ==========================================================

  The messages are ``str(exc)``: b24batch guarantees they never carry the webhook secret. An
  ``SdkError`` (kind ``MISUSE``) means this module built a bad batch: a bug, left to Django's
  500 handling.
- **Why writes are not retried here.** A view that writes must not repeat a batch that may
  already have run (a timeout can hide a commit). The SDK never sends a write twice without an
  idempotency key; a view that writes should pass ``idempotency_key=`` derived from the
  caller's own request id, and never wrap ``make()`` in a retry loop of its own.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

import attrs
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from b24batch import (
    B24Error,
    B24Hook,
    BatchV3,
    ErrorKind,
    RetryPolicy,
    SdkError,
)

__all__ = ["MAX_IDS", "get_client", "parse_ids", "reset_client", "task_titles"]

log = logging.getLogger(__name__)

MAX_IDS: Final = 50
"""The most ids one request may ask for: one batch carries at most 50 commands."""
TIMEOUT: Final = (5.0, 30.0)
"""(connect, read) seconds for every request to the portal."""
RETRY: Final = RetryPolicy(max_attempts=2, base_delay=0.25, max_delay=1.0, max_wait=5.0)
"""At most one repeat, and at most 5 s of waiting in all, per view call."""
STATUS_BY_KIND: Final = {ErrorKind.NOT_FOUND: 404, ErrorKind.INPUT: 400, ErrorKind.LIMIT: 503}
"""The HTTP status the view answers for each kind of portal error; any other kind is a 502."""
ERRORS_BY_KIND: Final = {
    ErrorKind.NOT_FOUND: "no such task",
    ErrorKind.INPUT: "the portal rejected these ids",
    ErrorKind.LIMIT: "the portal is busy: try again later",
}
"""What the caller is told for each kind; any other kind is "the portal failed"."""

_client: B24Hook | None = None
_client_lock = threading.Lock()


@attrs.frozen
class TaskTitle:
    """The two fields the view asks for (``select``) and returns."""

    id: int
    title: str


@attrs.frozen
class TaskItem:
    """One ``tasks.task.get`` result entry: ``{"item": {...}}``."""

    item: TaskTitle


def get_client() -> B24Hook:
    """The process's client for ``settings.B24_WEBHOOK_URL``, built on first use.

    Raises:
        ImproperlyConfigured: The setting is missing or is not a webhook URL.
    """
    global _client
    client = _client
    if client is None:
        with _client_lock:
            if _client is None:
                _client = _new_client()
            client = _client
    return client


def reset_client() -> None:
    """Close and drop the shared client; the next ``get_client()`` builds a new one.

    For tests and settings changes: a request still using the old client may fail.
    """
    global _client
    with _client_lock:
        client, _client = _client, None
    if client is not None:
        client.close()


def _new_client() -> B24Hook:
    url = getattr(settings, "B24_WEBHOOK_URL", None)
    if not url:
        raise ImproperlyConfigured("set B24_WEBHOOK_URL to the portal's inbound webhook URL")
    try:
        return B24Hook.from_webhook_url(url, timeout=TIMEOUT, retry=RETRY)
    except SdkError as exc:  # the message names the host and the expected shape, not the secret
        raise ImproperlyConfigured(f"B24_WEBHOOK_URL: {exc}") from exc


@receiver(setting_changed)
def _webhook_changed(sender: object, setting: str, **kwargs: Any) -> None:
    if setting == "B24_WEBHOOK_URL":
        reset_client()


def parse_ids(raw: str | None) -> list[int]:
    """Parse ``"1,2,3"`` into ``[1, 2, 3]``: 1 to ``MAX_IDS`` positive integers, in order.

    Raises:
        ValueError: The text is missing or malformed; the message is meant for the caller.

    Example:
        >>> parse_ids(" 3, 1 ")
        [3, 1]
    """
    if not raw or not raw.strip():
        raise ValueError(f"pass ids=1,2,3: 1 to {MAX_IDS} task ids, comma-separated")
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) > MAX_IDS:
        raise ValueError(f"at most {MAX_IDS} ids per request, got {len(parts)}")
    ids = []
    for part in parts:
        # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
        if not (part.isascii() and part.isdigit() and len(part) <= 18) or int(part) < 1:
            raise ValueError(f"{part[:20]!r} is not a task id: ids are positive integers")
        ids.append(int(part))
    return ids


@require_GET
def task_titles(request: HttpRequest) -> JsonResponse:
    """``GET ?ids=1,2,3`` -> ``{"tasks": [{"id": 1, "title": "..."}, ...]}`` in that order.

    Answers 400 ``{"error": ...}`` for bad ids (nothing is sent); for a portal error,
    ``{"error": ..., "messages": [...], "request_id": ...}`` with the status of its kind
    (``STATUS_BY_KIND``: 404 not found, 400 refused input, 503 a limit, 502 anything else).
    """
    try:
        ids = parse_ids(request.GET.get("ids"))
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    calls = [("tasks.task.get", {"id": task_id, "select": ["id", "title"]}) for task_id in ids]
    try:
        result = BatchV3(get_client()).make(calls, result_type=TaskItem)
    except SdkError:
        raise  # this module built a bad batch: a bug, for Django's 500 handling
    except B24Error as exc:  # raised: 401, limits after retrying, 5xx, transport, decoding
        return _error_response(exc, exc.request_id)
    if not result.is_success:  # returned: the portal refused the batch
        return _error_response(result.errors[0], result.request_id)
    return JsonResponse({"tasks": [attrs.asdict(entry.item) for entry in result.data]})


def _error_response(error: B24Error, request_id: str | None) -> JsonResponse:
    status = STATUS_BY_KIND.get(error.kind, 502)
    if status == 502:
        log.warning("tasks.task.get batch %s failed (%s): %s", request_id, error.kind, error)
    body = {
        "error": ERRORS_BY_KIND.get(error.kind, "the portal failed"),
        "messages": [str(error)],
        "request_id": request_id,
    }
    return JsonResponse(body, status=status)
