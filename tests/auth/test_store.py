"""The token records in SQLiteStore and RedisStore: versions, compare-and-set, the lease."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import redis

from b24batch import LimitStore, RedisStore, SQLiteStore
from b24batch.redaction import Secret
from tests.support.redis_server import RedisServer

KEY = "oauth:local.app:member1"


def test_a_record_is_written_with_the_next_version(store: LimitStore) -> None:
    """Unconditional writes number the record 1, 2, ...; a read gives the last one."""
    assert store.token_read(KEY) is None
    assert store.token_write(KEY, Secret("one"), None) == 1
    assert store.token_write(KEY, Secret("two"), None) == 2
    found = store.token_read(KEY)
    assert found is not None
    assert (found[0], found[1].value) == (2, "two")


def test_a_conditional_write_lands_only_on_the_version_it_expects(store: LimitStore) -> None:
    """expect=1 after another write moved it to 2: refused (None), and the record unchanged."""
    store.token_write(KEY, Secret("one"), None)
    store.token_write(KEY, Secret("two"), None)
    assert store.token_write(KEY, Secret("late"), 1) is None
    assert store.token_write(KEY, Secret("three"), 2) == 3
    found = store.token_read(KEY)
    assert found is not None
    assert found[1].value == "three"


def test_the_lease_is_held_by_one_owner_until_released_or_expired(store: LimitStore) -> None:
    """A held lease refuses others; released, or run out, it can be taken again."""
    assert store.token_lease(KEY, "a", 5.0) is True
    assert store.token_lease(KEY, "b", 5.0) is False
    store.token_release(KEY, "b")  # not b's: stays
    assert store.token_lease(KEY, "b", 5.0) is False
    store.token_release(KEY, "a")
    assert store.token_lease(KEY, "b", 0.2) is True
    time.sleep(0.3)
    assert store.token_lease(KEY, "c", 5.0) is True


def test_keys_are_listed_by_prefix(store: LimitStore) -> None:
    """token_keys lists one application's records only, sorted, with no lease among them."""
    for key in ("oauth:app:m2", "oauth:app:m1", "oauth:other:m1"):
        store.token_write(key, Secret("r"), None)
    store.token_lease("oauth:app:m1", "x", 5.0)
    assert store.token_keys("oauth:app:") == ["oauth:app:m1", "oauth:app:m2"]


def test_sqlite_junk_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    """A row whose version is text, or whose record is a blob, is a ValueError naming it."""
    path = tmp_path / "junk.sqlite3"
    store = SQLiteStore(path)
    store.token_write(KEY, Secret("r"), None)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE b24batch_tokens SET version = 'x' WHERE key = ?", (KEY,))
    with pytest.raises(ValueError, match="version"):
        store.token_read(KEY)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE b24batch_tokens SET version = 1, record = x'00' WHERE key = ?", (KEY,))
    with pytest.raises(ValueError, match="not text"):
        store.token_read(KEY)


def test_redis_junk_of_the_wrong_type_is_refused(raw: redis.Redis, server: RedisServer) -> None:
    """A string where the hash belongs, or a hash without a number, is refused, not believed."""
    store = RedisStore(server.url)
    prefix = store.prefix
    raw.hset(prefix + KEY, mapping={"version": "abc", "record": "r"})
    with pytest.raises(ValueError, match="not what b24batch writes"):
        store.token_read(KEY)
    raw.delete(prefix + KEY)
    raw.set(prefix + KEY, "a string")
    with pytest.raises(redis.ResponseError):
        store.token_read(KEY)
    assert store.token_write(KEY, Secret("fresh"), None) == 1  # an install replaces it
