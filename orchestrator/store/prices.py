"""The store's side of pricing: jobs a spend cap cannot price yet, and costs seen so far.

>>> from orchestrator.store import Store
>>> from orchestrator.store.work import WorkQueue
>>> with Store.open(":memory:") as store:
...     book = PriceBook(WorkQueue(store))
...     book.unpriced("b"), book.highest_cost("some/model")
({}, None)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, func, select, update

from orchestrator.store.states import JobState
from orchestrator.store.tables import ATTEMPTS, JOBS
from orchestrator.store.work import WorkQueue

#: Jobs that may still be submitted: these need a price under a spend cap.
CLAIMABLE = (JobState.PENDING.value, JobState.RETRY_WAIT.value)
_SET_ESTIMATE = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("p_id"))
    .values(estimated_cost_usd=bindparam("p_usd"))
)


class PriceBook:
    """Price reads and writes over a :class:`WorkQueue` (synchronous; use a thread)."""

    def __init__(self, queue: WorkQueue) -> None:
        self.queue = queue

    def unpriced(self, batch: str | None) -> dict[str, list[tuple[int, dict[str, Any]]]]:
        """Model id -> (row id, payload) of the jobs that may still be submitted and have
        no estimate."""
        query = select(JOBS.c.id, JOBS.c.model_id, JOBS.c.payload).where(
            JOBS.c.state.in_(CLAIMABLE), JOBS.c.estimated_cost_usd.is_(None)
        )
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        found: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        with self.queue.store.read() as connection:
            for row_id, model_id, payload in connection.execute(query.order_by(JOBS.c.id)):
                found.setdefault(model_id, []).append((row_id, json.loads(payload)))
        return found

    def highest_cost(self, model_id: str) -> float | None:
        """The most RunComfy ever reported for one attempt of this model, in any batch."""
        query = (
            select(func.max(ATTEMPTS.c.cost_usd))
            .select_from(ATTEMPTS.join(JOBS, JOBS.c.id == ATTEMPTS.c.job_id))
            .where(JOBS.c.model_id == model_id)
        )
        with self.queue.store.read() as connection:
            value = connection.execute(query).scalar_one()
        return float(value) if value is not None else None

    def set_estimates(self, estimates: Iterable[tuple[int, float]]) -> int:
        """Store estimates by row id (one transaction)."""
        rows = [{"p_id": row_id, "p_usd": usd} for row_id, usd in estimates]
        if not rows:
            return 0
        with self.queue.store.write() as connection:
            connection.execute(_SET_ESTIMATE, rows)
        return len(rows)
