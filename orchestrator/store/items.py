"""What the engine holds of a job (:class:`WorkItem`) and the row helpers the queue's
modules share (:mod:`.work`, :mod:`.workers`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from orchestrator.redact import redact_value
from orchestrator.store.states import JobState
from orchestrator.store.tables import ATTEMPTS, BATCHES, JOBS


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


def _item(row: Any, kind: str | None = None) -> WorkItem:
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


def _select_items() -> Any:
    return select(JOBS, BATCHES.c.output_root).join(BATCHES, BATCHES.c.name == JOBS.c.batch)


# Statements on the engine's hot path are built once, with bound parameters: building a
# SQLAlchemy statement per call cost more CPU than running it. Parameter names start with
# ``p_`` so they never collide with the column names an UPDATE's SET clause takes from the
# parameters.
_LATEST_ATTEMPT = update(ATTEMPTS).where(
    ATTEMPTS.c.job_id == bindparam("p_job"),
    ATTEMPTS.c.number
    == select(func.max(ATTEMPTS.c.number))
    .where(ATTEMPTS.c.job_id == bindparam("p_job"))
    .scalar_subquery(),
)


def _update_latest_attempt(connection: Connection, row_id: int, values: Mapping[str, Any]) -> None:
    """Record facts on a job's most recent attempt (the one a transition concludes)."""
    connection.execute(_LATEST_ATTEMPT, {"p_job": row_id, **redact_value(dict(values))})


def _known(detail: Mapping[str, Any]) -> dict[str, Any]:
    """``detail`` without its None values (events keep only what is known)."""
    return {key: value for key, value in detail.items() if value is not None}
