"""Fixtures of the token tests: a real redis-server a module, and each kind of store on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from b24batch import LimitStore, RedisStore, SQLiteStore
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """One real redis-server for the module; each test flushes it first."""
    running = RedisServer()
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    """A plain redis-py client on the test server, to spoil what the store wrote."""
    client = redis.Redis(unix_socket_path=str(server.socket), socket_timeout=2.0)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, raw: redis.Redis) -> LimitStore:
    """A SQLiteStore on a real file, then a RedisStore on the real server."""
    if request.param == "sqlite":
        return SQLiteStore(tmp_path / "tokens.sqlite3")
    return RedisStore(f"unix://{raw.connection_pool.connection_kwargs['path']}")
