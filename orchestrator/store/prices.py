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
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select, update

from orchestrator.store.spend import stalled
from orchestrator.store.states import JobState
from orchestrator.store.tables import ATTEMPTS, JOBS

if TYPE_CHECKING:
    from collections.abc import Iterable

    from orchestrator.store.work import WorkQueue

#: Jobs that may still be submitted: these need a price under a spend cap.
CLAIMABLE = (JobState.PENDING.value, JobState.RETRY_WAIT.value)
#: Jobs whose estimate still matters for the spend cap (no cost reported yet).
NOT_YET_BILLED = (*CLAIMABLE, JobState.SUBMITTING.value, JobState.SUBMITTED.value)
_RAISE = (
    update(JOBS)
    .where(
        JOBS.c.batch == bindparam("p_batch"),
        JOBS.c.model_id == bindparam("p_model"),
        JOBS.c.state.in_(NOT_YET_BILLED),
        JOBS.c.estimated_cost_usd.is_not(None),
    )
    .values(estimated_cost_usd=JOBS.c.estimated_cost_usd * bindparam("p_ratio"))
)


def raised_estimate_ratio(estimate: float | None, actual: float | None) -> float | None:
    """By how much to raise a model's estimates when RunComfy billed a job more than its
    estimate (never lowered: the spend cap must stay a bound).

    >>> raised_estimate_ratio(0.5, 0.75)
    1.5
    >>> raised_estimate_ratio(0.5, 0.4) is None
    True
    """
    if estimate is None or actual is None or estimate <= 0 or actual <= estimate * 1.001:
        return None
    return actual / estimate


_SET_ESTIMATE = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("p_id"))
    .values(
        estimated_cost_usd=bindparam("p_usd"),
        quoted_cost_usd=func.coalesce(JOBS.c.quoted_cost_usd, bindparam("p_usd")),
    )
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

    def raise_estimates(self, batch: str, model_id: str, row_id: int, cost: float) -> int:
        """RunComfy billed job ``row_id`` ``cost``: when that is more than its estimate
        (as stored now, which an earlier report may already have raised), raise the
        estimates of the model's jobs not yet billed by the same ratio. One transaction,
        so two reports at once raise once. Returns how many estimates moved."""
        with self.queue.store.write() as connection:
            current = connection.execute(
                select(JOBS.c.estimated_cost_usd).where(JOBS.c.id == row_id)
            ).scalar_one_or_none()
            ratio = raised_estimate_ratio(current, cost)
            if ratio is None:
                return 0
            params = {"p_batch": batch, "p_model": model_id, "p_ratio": ratio}
            return int(connection.execute(_RAISE, params).rowcount)

    def spend_stalled(self, batch: str | None, max_spend: float | None = None) -> str | None:
        """Why nothing pending can be claimed under the spend caps (see :func:`.stalled`)."""
        with self.queue.store.read() as connection:
            return stalled(connection, batch, max_spend)

    def set_estimates(self, estimates: Iterable[tuple[int, float]]) -> int:
        """Store estimates by row id (one transaction)."""
        rows = [{"p_id": row_id, "p_usd": usd} for row_id, usd in estimates]
        if not rows:
            return 0
        with self.queue.store.write() as connection:
            connection.execute(_SET_ESTIMATE, rows)
        return len(rows)
