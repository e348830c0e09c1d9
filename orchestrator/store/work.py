"""The engine's side of the store: claim, transition, release - each one short transaction.

Every state change goes through :meth:`WorkQueue.transition`, which updates the job only if
it is still in the state the caller saw *and* still carries the lease token the caller
holds (zero rows updated = someone else moved it or took it over; the change is dropped and
reported) and appends the event in the same transaction. Claims count the global limits
inside their own transaction, so they hold for every worker together
(:mod:`orchestrator.store.workers` has the rest of the multi-worker protocol, crash
recovery included, and builds on this module; the row-level steps both use are in
:mod:`orchestrator.store.transitions`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, func, select, update

from orchestrator import failpoints
from orchestrator.store.claims import REMOTE_ACTIVE, ClaimLimits, claim_pending, in_flight_counts
from orchestrator.store.spend import MAY_BE_PAID, committed
from orchestrator.store.states import PARKED, TERMINAL, JobState
from orchestrator.store.tables import ATTEMPTS, JOBS
from orchestrator.store.transitions import (
    MOVE_FENCED,
    STALE_WRITE,
    TRANSITION,
    WorkItem,
    item_from_row,
    known,
    move,
    record_job_event,
    select_items,
    update_latest_attempt,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from orchestrator.store.store import Store

__all__ = ["HELD", "REMOTE_ACTIVE", "STALE_WRITE", "TRANSITION", "WorkItem", "WorkQueue"]

HELD = frozenset({JobState.SUBMITTING, JobState.SUBMITTED, JobState.DOWNLOADING})
"""States in which a job belongs to one worker (its lease)."""

# The hot path's statements, built once with bound parameters (see transitions.py for why).
_JOB_COST = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("p_id"))
    .values(
        cost_usd=select(func.sum(ATTEMPTS.c.cost_usd))
        .where(ATTEMPTS.c.job_id == bindparam("p_id"))
        .scalar_subquery()
    )
)


class WorkQueue:
    """Queue operations over a :class:`Store` (synchronous; call them from a thread)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def now(self) -> datetime:
        return self.store.now()

    # -- reads -----------------------------------------------------------------------------

    def in_flight(self, batch: str | None = None) -> dict[str, int]:
        """Model id -> jobs RunComfy is working on (submitting or submitted); for limits.

        A job being downloaded no longer holds a remote slot, so it does not count: the
        next submit can take the slot the moment the remote job finishes.
        """
        with self.store.read() as connection:
            return in_flight_counts(connection, batch)

    def committed_spend(self, batch: str) -> float:
        """Money spent plus money committed, for the spend cap (see :mod:`.spend`)."""
        with self.store.read() as connection:
            return committed(connection, batch)

    def active(self, batch: str | None = None) -> list[WorkItem]:
        """Jobs to poll or download: submitted and downloading."""
        query = select_items().where(
            JOBS.c.state.in_([JobState.SUBMITTED.value, JobState.DOWNLOADING.value])
        )
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        with self.store.read() as connection:
            return [item_from_row(row) for row in connection.execute(query.order_by(JOBS.c.id))]

    def unfinished(self, batch: str | None = None) -> int:
        """Jobs that still need work (not terminal, not parked waiting for a person)."""
        parked = [s.value for s in TERMINAL | PARKED]
        query = select(func.count()).select_from(JOBS).where(JOBS.c.state.not_in(parked))
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        with self.store.read() as connection:
            return int(connection.execute(query).scalar_one())

    def next_retry_at(self, batch: str | None = None) -> datetime | None:
        query = select(func.min(JOBS.c.next_attempt_at)).where(
            JOBS.c.state == JobState.RETRY_WAIT.value
        )
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        with self.store.read() as connection:
            value = connection.execute(query).scalar_one()
        return value if isinstance(value, datetime) else None

    def has_pending(self, batch: str | None = None) -> bool:
        query = select(JOBS.c.id).where(JOBS.c.state == JobState.PENDING.value).limit(1)
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        with self.store.read() as connection:
            return connection.execute(query).first() is not None

    def leases(self, row_ids: Sequence[int]) -> dict[int, tuple[str, int]]:
        """Row id -> (state, lease token) of these jobs, read in chunks."""
        found: dict[int, tuple[str, int]] = {}
        with self.store.read() as connection:
            for start in range(0, len(row_ids), 1000):
                chunk = list(row_ids[start : start + 1000])
                query = select(JOBS.c.id, JOBS.c.state, JOBS.c.lease_token).where(
                    JOBS.c.id.in_(chunk)
                )
                for row_id, state, lease in connection.execute(query):
                    found[row_id] = (state, lease)
        return found

    def paid_attempts(self, row_id: int) -> int:
        """Attempts that may have been billed: every one except submits that provably never
        reached RunComfy (``not_sent``, ``held``) or were refused (``rejected``)."""
        query = (
            select(func.count())
            .select_from(ATTEMPTS)
            .where(ATTEMPTS.c.job_id == row_id, MAY_BE_PAID)
        )
        with self.store.read() as connection:
            return int(connection.execute(query).scalar_one())

    def facts(self, row_id: int) -> dict[str, Any]:
        """Cost and timestamps of one job, JSON-ready (for its sidecar)."""
        columns = (
            JOBS.c.cost_usd,
            JOBS.c.created_at,
            JOBS.c.submitted_at,
            JOBS.c.started_at,
            JOBS.c.finished_at,
        )
        with self.store.read() as connection:
            row = connection.execute(select(*columns).where(JOBS.c.id == row_id)).one()
        return {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in row._mapping.items()
        }

    # -- writes ----------------------------------------------------------------------------

    def release_due(self, batch: str | None = None) -> int:
        """Move ``retry_wait`` jobs whose ``next_attempt_at`` has passed back to pending."""
        now = self.now()
        query = select(JOBS.c.id).where(
            JOBS.c.state == JobState.RETRY_WAIT.value, JOBS.c.next_attempt_at <= now
        )
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        # Several workers release at once on PostgreSQL: each takes the due rows no other
        # holds, so two never wait on each other's rows (they deadlocked, in opposite order).
        query = query.order_by(JOBS.c.id).with_for_update(skip_locked=True)
        moved = 0
        with self.store.write() as connection:
            for (row_id,) in connection.execute(query).all():
                moved += move(
                    connection,
                    row_id,
                    JobState.RETRY_WAIT,
                    JobState.PENDING,
                    "retry_due",
                    {"next_attempt_at": None},
                    None,
                    now=now,
                )
        return moved

    def claim(
        self,
        batch: str | None,
        limit: int,
        per_model_room: Mapping[str, int] | None = None,
        default_room: int | None = None,
        *,
        worker_id: str | None = None,
        max_in_flight: int | None = None,
        per_model_cap: int | None = None,
        max_spend: float | None = None,
    ) -> list[WorkItem]:
        """Take up to ``limit`` pending jobs: write the intent (``submitting``), count the
        attempt and stamp the lease, before any network I/O (see :mod:`.claims`).

        ``per_model_room`` caps jobs per model. The keyword limits are counted inside the
        claim's own transaction, across every worker sharing the store: ``max_in_flight``
        (jobs submitting or submitted, all batches), ``per_model_cap`` (the same per model)
        and the spend caps: ``max_spend`` for ``batch`` when given, else every batch's own
        stored ``limits.max_spend``, against its spent and committed money
        (:mod:`.spend`). Under a cap, jobs are claimed in order until one does not
        fit, and a job with no price is never claimed. On PostgreSQL rows are picked
        ``FOR UPDATE SKIP LOCKED`` under an advisory lock that serialises claims (waiting for
        it briefly: if another worker still holds it, this claim takes nothing); on SQLite
        ``BEGIN IMMEDIATE`` does.
        """
        if limit <= 0:
            return []
        limits = ClaimLimits(
            limit=limit,
            per_model_room=per_model_room,
            default_room=default_room,
            worker_id=worker_id,
            max_in_flight=max_in_flight,
            per_model_cap=per_model_cap,
            max_spend=max_spend,
        )
        with self.store.write() as connection:
            return claim_pending(connection, batch, limits, self.now)

    def transition(
        self,
        item: WorkItem,
        to_state: JobState,
        outcome: str,
        fields: Mapping[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
        attempt: Mapping[str, Any] | None = None,
    ) -> bool:
        """Move one job from ``item.state``; False if it was no longer in that state or its
        lease moved on (``item.lease_token`` is stale: the write is dropped and recorded as a
        ``stale_write`` event, with any request id it carried, for reconciliation)."""
        if item.worker_id is not None:
            detail = {**dict(detail or {}), "worker": item.worker_id, "lease": item.lease_token}
        with self.store.write() as connection:
            moved = move(
                connection,
                item.row_id,
                item.state,
                to_state,
                outcome,
                fields,
                detail,
                now=self.now(),
                lease=item.lease_token,
                batch=item.batch,
            )
            failpoints.reached("before_commit")
            if not moved:
                self._record_stale(connection, item, to_state, outcome, fields, attempt)
            elif attempt:
                update_latest_attempt(connection, item.row_id, attempt)
                if "cost_usd" in attempt:
                    # A job's cost is what all its paid attempts cost: a failed generation
                    # that was billed stays in the spend after the re-roll.
                    connection.execute(_JOB_COST, {"p_id": item.row_id})
        return bool(moved)

    def _record_stale(
        self,
        connection: Connection,
        item: WorkItem,
        to_state: JobState,
        outcome: str,
        fields: Mapping[str, Any] | None,
        attempt: Mapping[str, Any] | None,
    ) -> None:
        """Keep what a fenced writer knew: a request id from a submit whose lease was taken
        over is the one fact reconciliation needs."""
        current = connection.execute(
            select(JOBS.c.lease_token).where(JOBS.c.id == item.row_id)
        ).first()
        if current is None or current.lease_token == item.lease_token:
            return  # a plain state race (a user command got there first): nothing to keep
        request_id = (fields or {}).get("request_id") or (attempt or {}).get("request_id")
        record_job_event(
            connection,
            item,
            STALE_WRITE,
            known(
                {
                    "worker": item.worker_id,
                    "lease": item.lease_token,
                    "holder_lease": current.lease_token,
                    "wanted": to_state.value,
                    "outcome": outcome,
                    "request_id": request_id,
                }
            ),
            at=self.now(),
        )

    def note(self, item: WorkItem, fields: Mapping[str, Any]) -> bool:
        """Update facts of a job without changing its state (remote status, queue place);
        False if the job moved on or its lease did."""
        with self.store.write() as connection:
            result = connection.execute(
                MOVE_FENCED,
                {
                    "p_id": item.row_id,
                    "p_from": item.state.value,
                    "p_lease": item.lease_token,
                    "updated_at": self.now(),
                    **fields,
                },
            )
        return bool(result.rowcount)

    def user_action(
        self,
        batch: str | None,
        names: Sequence[str] | None,
        from_states: Sequence[JobState],
        to_state: JobState,
        outcome: str,
        fields: Mapping[str, Any] | None = None,
        attempt: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Move a batch's jobs (all with ``names`` None, else only those named: an empty
        list moves none) between states for a user command; ``attempt`` facts go on each
        moved job's latest attempt (a confirmed cancel was never billed, say)."""
        if names is not None and not names:
            return []
        query = select(JOBS.c.id, JOBS.c.name, JOBS.c.state).where(
            JOBS.c.state.in_([s.value for s in from_states])
        )
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        if names is not None:
            query = query.where(JOBS.c.name.in_(list(names)))
        moved: list[str] = []
        with self.store.write() as connection:
            for row_id, name, state in connection.execute(query).all():
                # A user's decision fences out any worker still holding the job.
                values = {**dict(fields or {}), "lease_token": JOBS.c.lease_token + 1}
                if move(
                    connection,
                    row_id,
                    JobState(state),
                    to_state,
                    outcome,
                    values,
                    {"by": "user"},
                    now=self.now(),
                ):
                    moved.append(name)
                    if attempt:
                        update_latest_attempt(connection, row_id, attempt)
        return moved
