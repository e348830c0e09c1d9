"""Claiming pending jobs for submission, inside the claim's own write transaction.

:meth:`~orchestrator.store.work.WorkQueue.claim` opens the transaction and calls
:func:`claim_pending`. Everything that limits a claim is counted here, in the same
transaction, so the limits hold for every worker sharing the store: jobs in flight (all
workers, all batches), the per-model cap and each batch's spend cap (:mod:`.spend`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, func, insert, select

from orchestrator.store.spend import MAY_BE_PAID, caps, committed
from orchestrator.store.states import AttemptKind, JobState
from orchestrator.store.tables import ATTEMPTS, JOBS, WORKERS
from orchestrator.store.transitions import (
    WorkItem,
    item_from_row,
    move,
    select_items,
    try_lock_claims,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

REMOTE_ACTIVE = frozenset({JobState.SUBMITTING, JobState.SUBMITTED})
"""States in which a job holds one of RunComfy's slots (what the in-flight limits count)."""

# Built once with bound parameters (see transitions.py for why).
_ADD_ATTEMPT = insert(ATTEMPTS)
_LAST_PAID_OUTCOME = (
    select(ATTEMPTS.c.outcome)
    .where(ATTEMPTS.c.job_id == bindparam("p_id"), MAY_BE_PAID)
    .order_by(ATTEMPTS.c.number.desc())
    .limit(1)
)
_WORKER_STOPPED_AT = select(WORKERS.c.stopped_at).where(WORKERS.c.id == bindparam("p_id"))


@dataclass(frozen=True, slots=True)
class ClaimLimits:
    """What bounds one claim (see :meth:`~orchestrator.store.work.WorkQueue.claim`)."""

    limit: int
    per_model_room: Mapping[str, int] | None = None
    default_room: int | None = None
    worker_id: str | None = None
    max_in_flight: int | None = None
    per_model_cap: int | None = None
    max_spend: float | None = None


def in_flight_counts(connection: Connection, batch: str | None) -> dict[str, int]:
    """Model id -> jobs RunComfy is working on (submitting or submitted), for limits.

    A job being downloaded no longer holds a remote slot, so it does not count: the next
    submit can take the slot the moment the remote job finishes.
    """
    query = (
        select(JOBS.c.model_id, func.count())
        .where(JOBS.c.state.in_([s.value for s in REMOTE_ACTIVE]))
        .group_by(JOBS.c.model_id)
    )
    if batch is not None:
        query = query.where(JOBS.c.batch == batch)
    return dict(connection.execute(query).all())


def claim_pending(
    connection: Connection,
    batch: str | None,
    limits: ClaimLimits,
    now: Callable[[], datetime],
) -> list[WorkItem]:
    """Claim pending jobs of ``batch`` (every batch with None) within ``limits``, in the
    caller's write transaction; ``now`` is the store's clock."""
    limit, per_model_room, default_room = limits.limit, limits.per_model_room, limits.default_room
    if not try_lock_claims(connection):
        return []  # another worker is still claiming (or paused mid-claim): next round
    if limits.worker_id is not None and _stopped(connection, limits.worker_id):
        # Declared dead while paused: whatever it claimed now would be taken over as soon
        # as it was written. It learns at its next heartbeat and stops.
        return []
    if limits.max_in_flight is not None or limits.per_model_cap is not None:
        counts = in_flight_counts(connection, None)
        if limits.max_in_flight is not None:
            limit = min(limit, limits.max_in_flight - sum(counts.values()))
        if limits.per_model_cap is not None:
            cap = limits.per_model_cap
            per_model_room = {m: max(0, cap - n) for m, n in counts.items()}
            default_room = cap
    budgets = {
        name: cap - committed(connection, name)
        for name, cap in caps(connection, batch, limits.max_spend).items()
    }
    if limit <= 0 or (batch in budgets and budgets[batch] < -1e-9):
        return []
    rooms = replace(limits, limit=limit, per_model_room=per_model_room, default_room=default_room)
    return _claim_rows(connection, batch, rooms, budgets, now)


def _claim_rows(
    connection: Connection,
    batch: str | None,
    limits: ClaimLimits,
    budgets: Mapping[str, float],
    now: Callable[[], datetime],
) -> list[WorkItem]:
    limit, per_model_room, default_room = limits.limit, limits.per_model_room, limits.default_room
    worker_id = limits.worker_id
    committed: dict[str, float] = {}
    stopped: set[str] = set()  # batches whose next job does not fit their cap
    query = select_items().where(JOBS.c.state == JobState.PENDING.value)
    if batch is not None:
        query = query.where(JOBS.c.batch == batch)
    claimed: list[WorkItem] = []
    taken: dict[str, int] = {}
    full = [m for m, room in (per_model_room or {}).items() if room <= 0]
    if full:  # models at their cap never crowd the others out of the candidate rows
        query = query.where(JOBS.c.model_id.not_in(full))
    query = query.order_by(JOBS.c.id).limit(limit * 4)
    for row in connection.execute(query.with_for_update(skip_locked=True, of=JOBS)).all():
        if len(claimed) >= limit:
            break
        room = (per_model_room or {}).get(row.model_id, default_room)
        if room is not None and taken.get(row.model_id, 0) >= room:
            continue
        cost = row.estimated_cost_usd or 0.0
        budget = budgets.get(row.batch)
        if budget is not None:
            # Under a cap a job whose price is unknown is never submitted, and jobs go in
            # order: once one does not fit, its batch takes no more this round.
            spent = committed.get(row.batch, 0.0)
            if row.batch in stopped or row.estimated_cost_usd is None:
                continue
            if spent + cost > budget + 1e-9:
                stopped.add(row.batch)
                continue
        kind = _attempt_kind(connection, row.id)
        number = row.attempts + 1
        token = row.lease_token + 1
        if not move(
            connection,
            row.id,
            JobState.PENDING,
            JobState.SUBMITTING,
            "claimed",
            {"attempts": number, "worker_id": worker_id, "lease_token": token},
            {"attempt": number, "kind": kind}
            | ({} if worker_id is None else {"worker": worker_id, "lease": token}),
            now=now(),
            lease=row.lease_token,
            batch=row.batch,
        ):
            continue
        connection.execute(
            _ADD_ATTEMPT,
            {"job_id": row.id, "number": number, "kind": kind, "started_at": now()},
        )
        taken[row.model_id] = taken.get(row.model_id, 0) + 1
        committed[row.batch] = committed.get(row.batch, 0.0) + cost
        claimed.append(
            replace(
                item_from_row(row, kind),
                state=JobState.SUBMITTING,
                attempts=number,
                worker_id=worker_id,
                lease_token=token,
            )
        )
    return claimed


def _attempt_kind(connection: Connection, row_id: int) -> str:
    # Submits that never left or were refused outright (429, connect error, held, a clean
    # 4xx) were never paid for and do not change why the next one is made: a re-roll
    # refused once with a 429 is still a re-roll, a retried rejection a submit.
    last = connection.execute(_LAST_PAID_OUTCOME, {"p_id": row_id}).first()
    if last is None:
        return AttemptKind.SUBMIT.value
    if last.outcome in ("ambiguous", "crash_recovered", "remote_lost"):
        return AttemptKind.RESUBMIT.value
    return AttemptKind.REROLL.value


def _stopped(connection: Connection, worker_id: str) -> bool:
    """True if the worker is registered and stopped (declared dead, or it exited)."""
    row = connection.execute(_WORKER_STOPPED_AT, {"p_id": worker_id}).first()
    return row is not None and row.stopped_at is not None


__all__ = ["REMOTE_ACTIVE", "ClaimLimits", "claim_pending", "in_flight_counts"]
