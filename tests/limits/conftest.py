"""Fixtures of the limit-store tests: one real redis-server a module, stores on a settable clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from b24batch import LimitStore, RedisStore, SQLiteStore
from tests.limits.helpers import Clock, StoreFactory
from tests.support.redis_server import RedisServer, raw, server

__all__ = ["raw", "server"]  # the shared fixtures, registered here


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_store(server: RedisServer, tmp_path: Path, clock: Clock, raw: redis.Redis) -> StoreFactory:
    """``make_store(kind)``: a SQLiteStore in tmp_path, or a RedisStore on the injected clock."""

    def make(kind: str, **options: Any) -> LimitStore:
        if kind == "sqlite":
            return SQLiteStore(tmp_path / "limits.sqlite3", **options)
        return RedisStore(server.url, clock=clock, **options)

    return make
