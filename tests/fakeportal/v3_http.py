"""Plain-``requests`` helpers for the REST 3.0 FakePortal tests: URL, rows, error codes, clock."""

from __future__ import annotations

import time
from typing import Any

import requests

from b24batch.testing import FakePortal

SELECT = "BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION"
VALIDATION = "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION"
NOT_FOUND = "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"
METHOD = "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION"
PAGINATION = "BITRIX_REST_V3_EXCEPTION_INVALIDPAGINATIONEXCEPTION"
TIMEOUT = 5.0


class FakeClock:
    """A settable clock, so limiter tests never sleep."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def batch_url(portal: FakePortal) -> str:
    return portal.webhook_url.replace("/rest/", "/rest/api/") + "batch"


def post(portal: FakePortal, body: Any, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", TIMEOUT)
    return requests.post(batch_url(portal), json=body, **kwargs)


def cmd(method: str, query: dict[str, Any] | None = None, /, **extra: Any) -> dict[str, Any]:
    return {"method": method, "query": {} if query is None else query, **extra}


def add(title: str, /, **extra: Any) -> dict[str, Any]:
    return cmd("tasks.task.add", {"fields": {"title": title}}, **extra)


def error_code(response: requests.Response) -> str:
    error = response.json()["error"]
    return error if isinstance(error, str) else str(error["code"])


def wait_for(predicate: Any, seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())
