"""Where a batch's money went: delivered, still to fetch, lost, committed in flight.

Every run and every ``status`` prints this: a user reading it in the morning knows what
was paid for, what is on disk, what can still be fetched for free, and what is gone.
Amounts are what RunComfy reported (``include_cost``), or the estimate where it has not.

>>> from orchestrator.store import Store
>>> with Store.open(":memory:") as store:
...     store.ensure_batch("b", manifest_path="m.yaml", output_root="out", settings={})
...     print(money(store, "b").delivered)
0 job(s), $0.00
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, exists, func, or_, select

from orchestrator.store.spend import COMMITTED_SPEND
from orchestrator.store.states import TO_FETCH, JobState
from orchestrator.store.tables import ATTEMPTS, JOBS

if TYPE_CHECKING:
    from orchestrator.store.store import Store

#: Attempt outcomes that RunComfy never billed: refused unsent, held back, rejected, or
#: cancelled while still queued.
UNBILLED = ("not_sent", "held", "rejected", "cancelled")
#: How many lost jobs the summary names (with why).
SHOWN_LOST = 10


@dataclass(frozen=True, slots=True)
class Amount:
    """A number of jobs and what they cost (reported, or estimated where not yet)."""

    jobs: int = 0
    usd: float = 0.0

    def __str__(self) -> str:
        return f"{self.jobs} job(s), ${self.usd:,.2f}"

    def as_dict(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "usd": round(self.usd, 6)}


@dataclass(frozen=True, slots=True)
class Money:
    """A batch's paid work, by where it stands."""

    delivered: Amount = Amount()
    """Paid and delivered: a verified video on disk."""
    to_fetch: Amount = Amount()
    """Paid (rendered) and still to fetch: free to get, by a re-run or ``retry``."""
    lost: Amount = Amount()
    """Paid and lost: failed for good, or given up; ``lost_reasons`` says why."""
    in_flight: Amount = Amount()
    """Committed: accepted by RunComfy (or being submitted) and not finished yet."""
    spent_usd: float = 0.0
    """What RunComfy reported so far (``include_cost``)."""
    committed_usd: float = 0.0
    """Spent plus the estimates of billable attempts with no reported cost: the figure
    the spend cap is held to."""
    lost_reasons: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self, cap: float | None) -> dict[str, Any]:
        return {
            "delivered": self.delivered.as_dict(),
            "to_fetch": self.to_fetch.as_dict(),
            "lost": {
                **self.lost.as_dict(),
                "why": [{"job": name, "error": error} for name, error in self.lost_reasons],
            },
            "in_flight": self.in_flight.as_dict(),
            "spent_usd": round(self.spent_usd, 6),
            "committed_usd": round(self.committed_usd, 6),
            "cap_usd": cap,
        }


def money(store: Store, batch: str | None) -> Money:
    """The money summary of one batch (or every batch), in one read transaction."""
    with store.read() as connection:
        return _money(connection, batch)


def _money(connection: Connection, batch: str | None) -> Money:
    amount = func.coalesce(JOBS.c.cost_usd, JOBS.c.estimated_cost_usd, 0.0)

    def tally(*conditions: Any) -> Amount:
        query = select(func.count(), func.coalesce(func.sum(amount), 0.0)).where(*conditions)
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        jobs, usd = connection.execute(query).one()
        return Amount(int(jobs), float(usd))

    billed = exists().where(
        ATTEMPTS.c.job_id == JOBS.c.id,
        or_(ATTEMPTS.c.outcome.is_(None), ATTEMPTS.c.outcome.not_in(UNBILLED)),
    )
    gone = and_(JOBS.c.state.in_([JobState.FAILED.value, JobState.CANCELLED.value]), billed)
    lost_query = select(JOBS.c.name, JOBS.c.error).where(gone).order_by(JOBS.c.id)
    if batch is not None:
        lost_query = lost_query.where(JOBS.c.batch == batch)
    reasons = [
        (name, error or "no reason recorded")
        for name, error in connection.execute(lost_query.limit(SHOWN_LOST))
    ]
    spent = select(func.coalesce(func.sum(JOBS.c.cost_usd), 0.0))
    committed = COMMITTED_SPEND
    if batch is not None:
        spent = spent.where(JOBS.c.batch == batch)
        committed = committed.where(JOBS.c.batch == batch)
    in_flight = [JobState.SUBMITTING.value, JobState.SUBMITTED.value]
    return Money(
        delivered=tally(JOBS.c.state == JobState.SUCCEEDED.value),
        to_fetch=tally(JOBS.c.state.in_([s.value for s in TO_FETCH])),
        lost=tally(gone),
        in_flight=tally(JOBS.c.state.in_(in_flight)),
        spent_usd=float(connection.execute(spent).scalar_one()),
        committed_usd=float(connection.execute(committed).scalar_one()),
        lost_reasons=reasons,
    )
