"""``FakePortal``'s bulk loaders: many tasks or deals in one call, and removals, under the lock.

For tests and benchmarks that need 10 000 or 100 000 items: no request is recorded, nothing is
counted, no per-item validation beyond the shared fields. Dense ids continue from the store's
next id; sparse ids are a seeded random sample with gaps, up to ``SPARSE_TOP``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any, Final

from b24batch.testing.command_error import CommandError
from b24batch.testing.v2_store import CrmStore
from b24batch.testing.v3_store import TaskStore, validate_fields

__all__ = ["SPARSE_TOP", "BulkSeeding"]

SPARSE_TOP: Final = 1_000_000
"""Sparse ids are drawn from 1 to this."""


class BulkSeeding:
    """``add_tasks``, ``add_deals``, ``delete_task``, ``delete_deal`` (mixed into FakePortal)."""

    _lock: threading.RLock
    _store: TaskStore
    _crm: CrmStore
    _wall_clock: Callable[[], float]

    def add_tasks(
        self, count: int, *, sparse: bool = False, seed: int | None = None, **fields: Any
    ) -> list[int]:
        """Seed ``count`` tasks at once, each with ``fields`` (title ``Task <id>`` by default).

        Args:
            count: How many.
            sparse: False: the next ``count`` ids. True: ``count`` random free ids from 1 to
                1 000 000, so the ids have gaps of every size.
            seed: Seeds the random ids, for a repeatable run.
            **fields: Writable task fields every new task gets (as
                [`add_task`][b24batch.testing.FakePortal.add_task] takes).

        Returns:
            The new ids, ascending.

        Raises:
            ValueError: ``count`` is negative, a field is wrong, or the ids do not fit.
        """
        _check_count(count)
        try:
            values = validate_fields(fields) if fields else {}
        except CommandError as exc:
            raise ValueError(f"{exc.message}: {exc.validation or exc.code}") from exc
        rand = random.Random(seed)  # noqa: S311 (test data, not secrets)
        with self._lock:
            ids = self._store.free_ids(count, sparse=sparse, rand=rand, top=SPARSE_TOP)
            self._store.create_many(ids, values, now=self._wall_clock())
        return ids

    def add_deals(
        self, count: int, *, sparse: bool = False, seed: int | None = None, **fields: Any
    ) -> list[int]:
        """Seed ``count`` deals at once, as [`add_tasks`][b24batch.testing.FakePortal.add_tasks]
        does tasks (title ``Deal <id>``).

        ``fields`` are upper-case classic deal fields (``OPPORTUNITY=100``); unknown ones are
        refused with ValueError.
        """
        _check_count(count)
        entity = self._crm.deals
        unknown = sorted(
            name
            for name in fields
            if name.upper() not in entity.fields and not name.startswith("UF_")
        )
        if unknown:
            raise ValueError(f"unknown fields {unknown}; known: {', '.join(entity.fields)}")
        rand = random.Random(seed)  # noqa: S311 (test data, not secrets)
        with self._lock:
            ids = entity.free_ids(count, sparse=sparse, rand=rand, top=SPARSE_TOP)
            entity.create_many(ids, fields, self._wall_clock())
        return ids

    def delete_task(self, task_id: int) -> bool:
        """Remove a task directly (nothing recorded); whether it existed.

        Safe to call from a handler or a
        [`before_command`][b24batch.testing.FakePortal.before_command] hook, which run under the
        portal's lock.
        """
        with self._lock:
            return self._store.discard(task_id)

    def delete_deal(self, deal_id: int) -> bool:
        """Remove a deal directly, as [`delete_task`][b24batch.testing.FakePortal.delete_task] does
        a task; whether it existed."""
        with self._lock:
            return self._crm.deals.discard(deal_id)


def _check_count(count: object) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be an int >= 0, got {count!r}")
