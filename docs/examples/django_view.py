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
- **What is the caller's fault (400).** Bad ``ids`` are rejected before anything is sent.
  When the portal rejects the batch because of the ids themselves (a validation error, an id
  that does not exist), the caller gets a 400 with the portal's messages.
- **What is the portal's fault (502).** Any other returned error (access denied, an unknown
  method), and every raised ``AjaxError``, ``TransportError`` or ``DecodeError`` (401, 5xx,
  rate limits still exceeded after retrying, timeouts, HTML error pages, answers that do not
  fit ``TaskItem``) is a 502 with ``str(exc)``: b24batch guarantees its messages never carry
  the webhook secret. An ``SdkError`` means this module built a bad batch: a bug, left to
  Django's 500 handling.
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
    AjaxError,
    B24Hook,
    BatchV3,
    DecodeError,
    RetryPolicy,
    SdkError,
    TransportError,
)

__all__ = ["MAX_IDS", "get_client", "parse_ids", "reset_client", "task_titles"]

log = logging.getLogger(__name__)

MAX_IDS: Final = 50
"""The most ids one request may ask for: one batch carries at most 50 commands."""
TIMEOUT: Final = (5.0, 30.0)
"""(connect, read) seconds for every request to the portal."""
RETRY: Final = RetryPolicy(max_attempts=2, base_delay=0.25, max_delay=1.0, max_wait=5.0)
"""At most one repeat, and at most 5 s of waiting in all, per view call."""
CALLER_FAULTS: Final = ("VALIDATION", "ENTITYNOTFOUND")
"""Parts of a portal error code that mean the ids themselves were wrong."""

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

    Answers 400 ``{"error": ...}`` for bad ids (nothing is sent) and 400 with the portal's
    ``messages`` for ids the portal rejects; 502 ``{"error": ..., "request_id": ...}`` when
    the portal fails.
    """
    try:
        ids = parse_ids(request.GET.get("ids"))
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    calls = [("tasks.task.get", {"id": task_id, "select": ["id", "title"]}) for task_id in ids]
    try:
        result = BatchV3(get_client()).make(calls, result_type=TaskItem)
    except (AjaxError, TransportError, DecodeError) as exc:
        log.warning("tasks.task.get batch %s failed: %s", exc.request_id, exc)
        return JsonResponse({"error": str(exc), "request_id": exc.request_id}, status=502)
    if not result.is_success:
        error = result.errors[0]
        caller_fault = 400 <= error.status < 500 and any(
            marker in error.code.upper() for marker in CALLER_FAULTS
        )
        if not caller_fault:
            log.warning("tasks.task.get batch %s refused: %s", result.request_id, error)
        return JsonResponse(
            {
                "error": "the portal rejected these ids" if caller_fault else "the portal failed",
                "messages": result.error_messages,
                "request_id": result.request_id,
            },
            status=400 if caller_fault else 502,
        )
    return JsonResponse({"tasks": [attrs.asdict(entry.item) for entry in result.data]})
