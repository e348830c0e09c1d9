"""Where a batch's money went: delivered, still to fetch, lost, committed in flight; and,
per model, what was estimated against what RunComfy billed.

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

from sqlalchemy import Connection, and_, case, exists, func, or_, select

from orchestrator.store.spend import COMMITTED_SPEND
from orchestrator.store.states import TO_FETCH, JobState
from orchestrator.store.tables import ATTEMPTS, JOBS

if TYPE_CHECKING:
    from collections.abc import Sequence

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


@dataclass(frozen=True, slots=True)
class ModelCost:
    """One model's estimate against what RunComfy billed (:meth:`Store.cost_by_model`).

    A job is *billed* once RunComfy reported its cost; its actual cost is what all its
    paid attempts cost, so a re-roll counts against the one estimate its job has.

    The estimate is the job's *quoted* one (``quoted_cost_usd``): the first price it was
    given, at enqueue or before a capped run. The spend cap's ``estimated_cost_usd`` is
    raised when a bill comes in above it (:meth:`~orchestrator.store.prices.PriceBook.
    raise_estimates`), the billed job's own included, since it is still in flight when its
    bill arrives; comparing with that would hide the difference.
    """

    model_id: str
    jobs: int
    billed: int
    """Jobs with an actual cost."""
    compared: int
    """Billed jobs that also have an estimate: the ones :attr:`ratio` compares."""
    estimated_usd: float | None
    """The estimates of all the model's jobs; None when none has one."""
    billed_estimate_usd: float | None
    """The estimates of the billed jobs; None when none of them has one."""
    actual_usd: float | None
    """What RunComfy billed for the model's jobs; None when none is billed yet."""
    compared_actual_usd: float | None
    """What RunComfy billed for the :attr:`compared` jobs (the same as
    :attr:`actual_usd` unless some billed job has no estimate)."""

    @property
    def ratio(self) -> float | None:
        """Actual over estimate for the jobs that have both; None where not comparable
        (nothing billed with an estimate, or estimates of zero).

        >>> ModelCost("m", 2, 2, 2, 1.0, 1.0, 1.25, 1.25).ratio
        1.25
        >>> ModelCost("m", 2, 2, 0, None, None, 1.25, None).ratio is None
        True
        """
        if not self.compared or not self.billed_estimate_usd or self.compared_actual_usd is None:
            return None
        return self.compared_actual_usd / self.billed_estimate_usd

    @property
    def difference_pct(self) -> float | None:
        """How much more (positive) or less (negative) was billed than estimated, in %."""
        ratio = self.ratio
        return None if ratio is None else (ratio - 1.0) * 100.0

    @property
    def over_estimate(self) -> bool:
        """Billed more than estimated, by enough to show (0.1% or more)."""
        pct = self.difference_pct
        return pct is not None and round(pct, 1) > 0

    def difference_text(self) -> str:
        """``+25.0%``, ``-40.0%``, or why there is no difference to show.

        >>> ModelCost("m", 2, 2, 2, 1.0, 1.0, 0.6, 0.6).difference_text()
        '-40.0%'
        >>> ModelCost("m", 3, 3, 2, 1.0, 1.0, 0.9, 0.6).difference_text()
        '-40.0% (2 of 3 billed had an estimate)'
        >>> ModelCost("m", 1, 1, 0, None, None, 0.25, None).difference_text()
        'no estimate'
        """
        pct = self.difference_pct
        if pct is not None:
            # One decimal place; never "-0.0%" for a bill that matched its estimate.
            text = "0.0%" if round(pct, 1) == 0 else f"{pct:+.1f}%"
            if self.compared < self.billed:
                # The estimate then covers fewer jobs than the actual cost: say so.
                text += f" ({self.compared} of {self.billed} billed had an estimate)"
            return text
        if not self.billed:
            return "not billed yet"
        if not self.compared:
            return "no estimate"
        return "estimate $0"

    def as_dict(self) -> dict[str, Any]:
        ratio, pct = self.ratio, self.difference_pct
        return {
            "model": self.model_id,
            "jobs": self.jobs,
            "billed": self.billed,
            "compared": self.compared,
            "estimated_usd": _rounded(self.estimated_usd),
            "billed_estimate_usd": _rounded(self.billed_estimate_usd),
            "actual_usd": _rounded(self.actual_usd),
            "compared_actual_usd": _rounded(self.compared_actual_usd),
            "ratio": None if ratio is None else round(ratio, 6),
            "difference_pct": None if pct is None else round(pct, 4),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def any_cost(costs: Sequence[ModelCost]) -> bool:
    """Whether the comparison has anything to show: some job has an estimate or a cost."""
    return any(c.estimated_usd is not None or c.actual_usd is not None for c in costs)


_BILLED = JOBS.c.cost_usd.is_not(None)
# The first estimate, not the raised one: raising it to the bill would hide the difference.
_QUOTED = func.coalesce(JOBS.c.quoted_cost_usd, JOBS.c.estimated_cost_usd)
_COMPARED = and_(_BILLED, _QUOTED.is_not(None))
# SUM of no rows, or of NULLs only, is NULL: "no estimate" stays apart from "$0.00".
_COST_BY_MODEL = (
    select(
        JOBS.c.model_id,
        func.count(),
        func.count(JOBS.c.cost_usd),
        func.count(case((_COMPARED, 1))),
        func.sum(_QUOTED),
        func.sum(case((_BILLED, _QUOTED))),
        func.sum(JOBS.c.cost_usd),
        func.sum(case((_COMPARED, JOBS.c.cost_usd))),
    )
    .group_by(JOBS.c.model_id)
    .order_by(JOBS.c.model_id)
)


def cost_by_model(connection: Connection, batch: str | None) -> list[ModelCost]:
    """Estimate against actual for each model of one batch (or of every batch), by model
    id; one grouped query."""
    query = _COST_BY_MODEL if batch is None else _COST_BY_MODEL.where(JOBS.c.batch == batch)
    return [
        ModelCost(
            model_id=model_id,
            jobs=int(jobs),
            billed=int(billed),
            compared=int(compared),
            estimated_usd=_float(estimated),
            billed_estimate_usd=_float(billed_estimate),
            actual_usd=_float(actual),
            compared_actual_usd=_float(compared_actual),
        )
        for (
            model_id,
            jobs,
            billed,
            compared,
            estimated,
            billed_estimate,
            actual,
            compared_actual,
        ) in connection.execute(query)
    ]


def _float(value: Any) -> float | None:
    """Aggregates may come back as Decimal (PostgreSQL) or float; None stays None."""
    return None if value is None else float(value)
