"""What the limit-store tests share: the portal they key, the calls they send, a settable clock."""

from __future__ import annotations

from collections.abc import Callable

from b24batch import LimitStore

ORIGIN = "https://example.bitrix24.com"
CALLS = [("tasks.task.list", {"select": ["id"]})]
KINDS = ["memory", "sqlite", "redis"]
SHARED = ["sqlite", "redis"]


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


StoreFactory = Callable[[str], LimitStore]
