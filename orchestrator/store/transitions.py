"""The row-level steps every queue module shares: what the engine holds of a job
(:class:`WorkItem`), moving a job between states, recording an event, and serialising
claims across workers.

Each function runs inside a transaction its caller owns, so :mod:`.work`, :mod:`.workers`
and :mod:`.fetches` compose them into one atomic step. This module imports none of them:
the queue's modules depend on it, never on each other in a circle.

>>> from orchestrator.store import Store
>>> with Store.open(":memory:") as store:
...     with store.write() as connection:
...         record_event(connection, kind="run_started", at=store.now(), detail={"workers": 2})
...     [(event.kind, event.detail) for event in store.events()]
[('run_started', {'workers': 2})]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, func, insert, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import ClauseElement, Select

from orchestrator.redact import redact_value
from orchestrator.store.database import CLAIM_LOCK
from orchestrator.store.states import EventKind, JobState
from orchestrator.store.tables import ATTEMPTS, BATCHES, EVENTS, JOBS

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

TRANSITION = EventKind.TRANSITION.value
STALE_WRITE = EventKind.STALE_WRITE.value


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A job as the engine needs it (a snapshot; the store stays the truth)."""

    row_id: int
    batch: str
    name: str
    key: str
    model_id: str
    state: JobState
    payload: dict[str, Any]
    output_path: str
    output_root: str
    attempts: int
    max_attempts: int
    request_id: str | None
    remote_status: str | None
    estimated_cost_usd: float | None
    submitted_at: datetime | None
    started_at: datetime | None
    attempt_kind: str | None = None
    worker_id: str | None = None
    lease_token: int = 0
    fetch_failures: int = 0


def select_items() -> Select[Any]:
    """A SELECT of job rows with their batch's ``output_root``, for :func:`item_from_row`."""
    return select(JOBS, BATCHES.c.output_root).join(BATCHES, BATCHES.c.name == JOBS.c.batch)


def item_from_row(row: Any, kind: str | None = None) -> WorkItem:
    """The :class:`WorkItem` of a row from :func:`select_items` (``kind``: the attempt's)."""
    return WorkItem(
        row_id=row.id,
        batch=row.batch,
        name=row.name,
        key=row.key,
        model_id=row.model_id,
        state=JobState(row.state),
        payload=json.loads(row.payload),
        output_path=row.output_path,
        output_root=row.output_root,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        request_id=row.request_id,
        remote_status=row.remote_status,
        estimated_cost_usd=row.estimated_cost_usd,
        submitted_at=row.submitted_at,
        started_at=row.started_at,
        attempt_kind=kind,
        worker_id=row.worker_id,
        lease_token=row.lease_token,
        fetch_failures=row.fetch_failures,
    )


def known(detail: Mapping[str, Any]) -> dict[str, Any]:
    """``detail`` without its None values (events keep only what is known)."""
    return {key: value for key, value in detail.items() if value is not None}


# Statements on the engine's hot path are built once, with bound parameters: building a
# SQLAlchemy statement per call cost more CPU than running it. Parameter names start with
# ``p_`` so they never collide with the column names an UPDATE's SET clause takes from the
# parameters.
_ADD_EVENT = insert(EVENTS)
_LATEST_ATTEMPT = update(ATTEMPTS).where(
    ATTEMPTS.c.job_id == bindparam("p_job"),
    ATTEMPTS.c.number
    == select(func.max(ATTEMPTS.c.number))
    .where(ATTEMPTS.c.job_id == bindparam("p_job"))
    .scalar_subquery(),
)
MOVE = update(JOBS).where(JOBS.c.id == bindparam("p_id"), JOBS.c.state == bindparam("p_from"))
"""UPDATE one job still in state ``p_from`` (parameters ``p_id``, ``p_from``, then columns)."""
MOVE_FENCED = MOVE.where(JOBS.c.lease_token == bindparam("p_lease"))
""":data:`MOVE` that also requires the lease token ``p_lease``."""


# -- events ---------------------------------------------------------------------------------


def event_row(
    *,
    kind: str,
    at: datetime,
    job_id: int | None = None,
    batch: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``events`` row, its ``detail`` redacted (the redaction policy at the store's door)."""
    return {
        "job_id": job_id,
        "batch": batch,
        "at": at,
        "kind": kind,
        "from_state": from_state,
        "to_state": to_state,
        "detail": redact_value(dict(detail)) if detail is not None else None,
    }


def record_events(connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append :func:`event_row` rows in one statement (events are never changed)."""
    if rows:
        connection.execute(_ADD_EVENT, list(rows))


def record_event(
    connection: Connection,
    *,
    kind: str,
    at: datetime,
    job_id: int | None = None,
    batch: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one audit event in the caller's transaction (the one way events are written)."""
    row = event_row(
        kind=kind,
        at=at,
        job_id=job_id,
        batch=batch,
        from_state=from_state,
        to_state=to_state,
        detail=detail,
    )
    connection.execute(_ADD_EVENT, row)


def record_job_event(
    connection: Connection, item: WorkItem, kind: str, detail: Mapping[str, Any], *, at: datetime
) -> None:
    """Append an event about one job that does not change its state (an adoption, say)."""
    state = item.state.value
    record_event(
        connection,
        kind=kind,
        at=at,
        job_id=item.row_id,
        batch=item.batch,
        from_state=state,
        to_state=state,
        detail=detail,
    )


# -- state changes ----------------------------------------------------------------------------


def move(
    connection: Connection,
    row_id: int,
    from_state: JobState,
    to_state: JobState,
    outcome: str,
    fields: Mapping[str, Any] | None,
    detail: Mapping[str, Any] | None,
    *,
    now: datetime,
    lease: int | None = None,
    batch: str | None = None,
) -> int:
    """Move one job if it is in ``from_state`` (and holds lease ``lease``, if given),
    setting ``fields`` and appending the transition event; 1 if it moved, else 0.

    ``batch`` saves a lookup when the caller knows the job's batch. ``fields`` may hold
    SQL expressions (a user action bumps the lease in SQL).
    """
    # The redaction policy at the store's door: error texts quote servers, which may
    # echo the token (SQL expressions and other values pass untouched).
    values = {"state": to_state.value, "updated_at": now, **redact_value(dict(fields or {}))}
    if any(isinstance(value, ClauseElement) for value in values.values()):
        # A SQL expression: this statement is built for this call.
        guard = [JOBS.c.id == row_id, JOBS.c.state == from_state.value]
        if lease is not None:
            guard.append(JOBS.c.lease_token == lease)
        result = connection.execute(update(JOBS).where(*guard).values(**values))
    else:
        params = {"p_id": row_id, "p_from": from_state.value, **values}
        if lease is None:
            result = connection.execute(MOVE, params)
        else:
            result = connection.execute(MOVE_FENCED, {"p_lease": lease, **params})
    if not result.rowcount:
        return 0
    if batch is None:
        batch = connection.execute(select(JOBS.c.batch).where(JOBS.c.id == row_id)).scalar_one()
    record_event(
        connection,
        kind=TRANSITION,
        at=now,
        job_id=row_id,
        batch=batch,
        from_state=from_state.value,
        to_state=to_state.value,
        detail={"outcome": outcome, **dict(detail or {})},
    )
    return 1


def update_latest_attempt(connection: Connection, row_id: int, values: Mapping[str, Any]) -> None:
    """Record facts on a job's most recent attempt (the one a transition concludes)."""
    connection.execute(_LATEST_ATTEMPT, {"p_job": row_id, **redact_value(dict(values))})


# -- claims across workers ------------------------------------------------------------------

#: How long a claim waits for another worker's claim to finish (milliseconds).
CLAIM_LOCK_WAIT_MS = 200
#: PostgreSQL's SQLSTATE for a lock wait that ran past ``lock_timeout``.
_LOCK_NOT_AVAILABLE = "55P03"


def lock_claims(connection: Connection) -> None:
    """Serialise claims and pace reservations across workers for this transaction.

    SQLite's ``BEGIN IMMEDIATE`` already does; on PostgreSQL a transaction-scoped advisory
    lock does, so a limit counted inside the claim sees every other worker's claims.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK)))


def try_lock_claims(connection: Connection, wait_ms: int = CLAIM_LOCK_WAIT_MS) -> bool:
    """:func:`lock_claims`, waiting at most ``wait_ms``: False if another worker still holds it.

    Another worker's claim holds the lock for milliseconds, so a short wait keeps claims
    flowing to every worker. The bound matters when the holder is paused (SIGSTOP, a frozen
    VM) inside its claim transaction: it holds the lock until it resumes, and an unbounded
    wait would hang every other worker's claim, and their exit, with it. A claim that gives
    up takes nothing this round and tries again at its next look.
    """
    if connection.dialect.name != "postgresql":
        return True  # BEGIN IMMEDIATE has already serialised this transaction
    connection.execute(text(f"SET LOCAL lock_timeout = {int(wait_ms)}"))
    try:
        # A savepoint, so a timed-out wait leaves the claim's transaction usable.
        with connection.begin_nested():
            connection.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK)))
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            raise
        return False
    finally:
        connection.execute(text("SET LOCAL lock_timeout = DEFAULT"))
    return True


__all__ = [
    "CLAIM_LOCK_WAIT_MS",
    "MOVE",
    "MOVE_FENCED",
    "STALE_WRITE",
    "TRANSITION",
    "WorkItem",
    "event_row",
    "item_from_row",
    "known",
    "lock_claims",
    "move",
    "record_event",
    "record_events",
    "record_job_event",
    "select_items",
    "try_lock_claims",
    "update_latest_attempt",
]
