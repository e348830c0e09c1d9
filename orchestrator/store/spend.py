"""What a batch has spent and committed, and the spend caps it is held to.

Every attempt that may have been billed counts what RunComfy reported for it, or, until
it reports, the job's estimate: a re-roll in flight counts again although its job already
has a cost, and an attempt whose cost never came counts too. Only submits that provably
never reached RunComfy (``not_sent``, ``held``) or were refused (``rejected``) are free.
The functions run inside a transaction their caller owns (a claim counts the cap in its
own transaction, so it holds for every worker together).

>>> from orchestrator.store import Store
>>> with Store.open(":memory:") as store, store.read() as connection:
...     committed(connection, "b"), caps(connection, None, None)
(0.0, {})
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, func, or_, select

from orchestrator.store.tables import ATTEMPTS, BATCHES, JOBS

UNPAID = ("not_sent", "held", "rejected")
MAY_BE_PAID = or_(ATTEMPTS.c.outcome.is_(None), ATTEMPTS.c.outcome.not_in(UNPAID))
"""Attempts that may have been billed (an outcome not known yet included)."""
COMMITTED_SPEND = (
    select(
        func.coalesce(
            func.sum(func.coalesce(ATTEMPTS.c.cost_usd, JOBS.c.estimated_cost_usd, 0.0)), 0.0
        )
    )
    .select_from(ATTEMPTS.join(JOBS, JOBS.c.id == ATTEMPTS.c.job_id))
    .where(MAY_BE_PAID)
)
_BATCH_COMMITTED = COMMITTED_SPEND.where(JOBS.c.batch == bindparam("p_batch"))


def committed(connection: Connection, batch: str) -> float:
    """USD a batch has spent or committed (reported costs, else estimates)."""
    return float(connection.execute(_BATCH_COMMITTED, {"p_batch": batch}).scalar_one())


def caps(connection: Connection, batch: str | None, max_spend: float | None) -> dict[str, float]:
    """Spend caps by batch: ``max_spend`` for ``batch`` when given, else each batch's own
    ``limits.max_spend`` as stored (so ``work`` over every batch still holds each cap)."""
    if batch is not None and max_spend is not None:
        return {batch: max_spend}
    query = select(BATCHES.c.name, BATCHES.c.settings)
    if batch is not None:
        query = query.where(BATCHES.c.name == batch)
    found: dict[str, float] = {}
    for name, settings in connection.execute(query):
        limits = settings.get("limits") if isinstance(settings, dict) else None
        cap = limits.get("max_spend") if isinstance(limits, dict) else None
        if isinstance(cap, int | float) and not isinstance(cap, bool):
            found[name] = float(cap)
    return found


def stalled(connection: Connection, batch: str | None, max_spend: float | None) -> str | None:
    """Why nothing pending can ever be claimed under the spend caps, or None while some
    pending job could be (an uncapped batch, or a next job that fits its cap).

    Jobs are claimed in order, so a capped batch is stalled when its next pending job
    does not fit what is left of its cap, or has no price at all.
    """
    limits = caps(connection, batch, max_spend)
    if not limits:
        return None
    first = (
        select(JOBS.c.batch, func.min(JOBS.c.id).label("first"))
        .where(JOBS.c.state == "pending")
        .group_by(JOBS.c.batch)
    )
    if batch is not None:
        first = first.where(JOBS.c.batch == batch)
    reasons: list[str] = []
    for name, row_id in connection.execute(first).all():
        cap = limits.get(name)
        if cap is None:
            return None
        cost = connection.execute(
            select(JOBS.c.estimated_cost_usd).where(JOBS.c.id == row_id)
        ).scalar_one()
        spent = committed(connection, name)
        if cost is None:
            reasons.append(
                f"batch {name}: the next job's price is unknown and the spend cap of "
                f"${cap:,.2f} needs one (pass --prices FILE)"
            )
        elif spent + cost > cap + 1e-9:
            reasons.append(
                f"batch {name}: the spend cap of ${cap:,.2f} would be passed "
                f"(${spent:,.2f} spent or committed, the next job ${cost:,.2f})"
            )
        else:
            return None
    return "; ".join(reasons) or None
