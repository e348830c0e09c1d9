"""Learned run times, kept in the store so a resumed run and the next night's batch start
from what earlier runs learned instead of probing blind.

A key names what a run time was learned for (the engine uses model, clip length and
resolution, e.g. ``bytedance/seedance-v1/pro/image-to-video|5s|1080p``); the store treats
it as opaque text. A bad estimate is never stored: rows with a NaN, infinite or negative
value, a negative sample count, an empty model id or an empty or over-long key are
skipped, not written.

>>> from orchestrator.store import Store
>>> from orchestrator.store.work import WorkQueue
>>> with Store.open(":memory:") as store:
...     book = RunTimeBook(WorkQueue(store))
...     book.save([StoredRunTime("m|5s|1080p", "m", 95.0, 12.5, 4),
...                StoredRunTime("m|10s|1080p", "m", float("nan"), 1.0, 1)])
...     list(book.load().values()), book.forget("m")
1
([StoredRunTime(key='m|5s|1080p', model_id='m', typical_s=95.0, spread_s=12.5, samples=4)], 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from orchestrator.store.tables import RUN_TIMES

if TYPE_CHECKING:
    from collections.abc import Iterable

    from orchestrator.store.work import WorkQueue

MAX_KEY_LENGTH: Final = 300
"""Longer keys are skipped: a key is a few names joined, so a longer one is a bug upstream."""

_VALUES: Final = ("model_id", "typical_s", "spread_s", "samples", "updated_at")


def _upsert(dialect: Any) -> Any:
    """``INSERT ... ON CONFLICT (key) DO UPDATE``: the newest estimate replaces the old."""
    statement = dialect.insert(RUN_TIMES)
    return statement.on_conflict_do_update(
        index_elements=[RUN_TIMES.c.key],
        set_={name: statement.excluded[name] for name in _VALUES},
    )


# Built once: the same upsert text on every save. Both dialects spell it alike, but each
# needs its own construct to compile.
_UPSERTS: Final = {"sqlite": _upsert(sqlite), "postgresql": _upsert(postgresql)}
_LOAD: Final = select(
    RUN_TIMES.c.key,
    RUN_TIMES.c.model_id,
    RUN_TIMES.c.typical_s,
    RUN_TIMES.c.spread_s,
    RUN_TIMES.c.samples,
).order_by(RUN_TIMES.c.key)


@dataclass(frozen=True, slots=True)
class StoredRunTime:
    """One learned run time: typical seconds, their spread, and how many runs it rests on."""

    key: str
    model_id: str
    typical_s: float
    spread_s: float
    samples: int


def storable(row: StoredRunTime) -> bool:
    """Whether ``row`` may be stored: finite values >= 0, a whole sample count >= 0, a key
    of 1-300 characters and a model id.

    >>> storable(StoredRunTime("m|5s|1080p", "m", 95.0, 12.5, 4))
    True
    >>> storable(StoredRunTime("m|5s|1080p", "m", float("inf"), 12.5, 4))
    False
    >>> storable(StoredRunTime("m" * 301, "m", 95.0, 12.5, 4))
    False
    """
    # Checked at run time too: rows come from the engine's arithmetic and a bad one must
    # be skipped, not stored or raised halfway through a save.
    return (
        _text(row.key, MAX_KEY_LENGTH)
        and _text(row.model_id, None)
        and _count(row.samples)
        and _seconds(row.typical_s)
        and _seconds(row.spread_s)
    )


def _text(value: object, limit: int | None) -> bool:
    return isinstance(value, str) and value != "" and (limit is None or len(value) <= limit)


def _count(value: object) -> bool:
    # bool is an int: True as a sample count is a caller's mix-up, not a count.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _seconds(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value >= 0


class RunTimeBook:
    """Learned run times per key, shared by every worker and every night's batch.

    Synchronous like the rest of the store; call it from a thread.
    """

    def __init__(self, queue: WorkQueue) -> None:
        self.queue = queue

    def load(self) -> dict[str, StoredRunTime]:
        """Every stored run time, by key."""
        with self.queue.store.read() as connection:
            rows = [
                StoredRunTime(key, model_id, float(typical), float(spread), int(samples))
                for key, model_id, typical, spread, samples in connection.execute(_LOAD)
            ]
        # PostgreSQL can hold NaN and anyone can edit a table by hand: what was not fit to
        # store is not fit to start a schedule from either.
        return {row.key: row for row in rows if storable(row)}

    def save(self, rows: Iterable[StoredRunTime]) -> int:
        """Insert or replace run times by key, all in one transaction; rows that are not
        :func:`storable` are skipped. Returns how many rows were written."""
        latest = {row.key: row for row in rows if storable(row)}  # the last one for a key wins
        if not latest:
            return 0
        now = self.queue.now()
        # Sorted by key, so two workers saving overlapping keys lock rows in the same order
        # (no PostgreSQL deadlock); one row per key, as one PostgreSQL upsert statement may
        # not change a row twice.
        params = [
            {
                "key": row.key,
                "model_id": row.model_id,
                "typical_s": float(row.typical_s),
                "spread_s": float(row.spread_s),
                "samples": row.samples,
                "updated_at": now,
            }
            for _, row in sorted(latest.items())
        ]
        upsert = _UPSERTS[self.queue.store.engine.dialect.name]
        with self.queue.store.write() as connection:
            connection.execute(upsert, params)
        return len(params)

    def forget(self, model_id: str | None = None) -> int:
        """Delete the run times of one model, or all of them (None): for a user who wants
        the next run to learn afresh. Returns how many rows were deleted."""
        statement = delete(RUN_TIMES)
        if model_id is not None:
            statement = statement.where(RUN_TIMES.c.model_id == model_id)
        with self.queue.store.write() as connection:
            return int(connection.execute(statement).rowcount)
