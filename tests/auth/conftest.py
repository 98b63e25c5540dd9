"""Fixtures of the token tests: a real redis-server a module, and each kind of store on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from b24batch import LimitStore, RedisStore, SQLiteStore
from tests.support.redis_server import raw, server

__all__ = ["raw", "server"]  # the shared fixtures, registered here


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, raw: redis.Redis) -> LimitStore:
    """A SQLiteStore on a real file, then a RedisStore on the real server."""
    if request.param == "sqlite":
        return SQLiteStore(tmp_path / "tokens.sqlite3")
    return RedisStore(f"unix://{raw.connection_pool.connection_kwargs['path']}")
