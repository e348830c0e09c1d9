"""Rendered jobs waiting to be fetched, and the store's own identity.

A job RunComfy rendered is paid for: its only way forward is its result. A failed download
leaves it in ``fetch_wait`` with a durable ``next_attempt_at``; when that comes due a
worker claims it (``fetch_wait -> downloading``, with a new lease token, like a submit
claim) and fetches a fresh ``/result`` and the video. A job that ran out of patience waits
in ``fetch_paused`` until a re-run or a user's ``retry`` resumes it.

>>> from orchestrator.store import Store
>>> from orchestrator.store.work import WorkQueue
>>> with Store.open(":memory:") as store:
...     fetches = FetchQueue(WorkQueue(store))
...     len(fetches.store_id()), fetches.claim("b", worker_id=None, limit=4)
(32, [])
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from orchestrator.store.spend import MAY_BE_PAID
from orchestrator.store.states import JobState
from orchestrator.store.tables import ATTEMPTS, JOBS, STORE_META
from orchestrator.store.transitions import WorkItem, item_from_row, move, select_items

if TYPE_CHECKING:
    from orchestrator.store.work import WorkQueue

#: Jobs a worker still has paid work on: remote runs to poll, videos to fetch.
PAID_WORK = (
    JobState.SUBMITTING.value,
    JobState.SUBMITTED.value,
    JobState.DOWNLOADING.value,
    JobState.FETCH_WAIT.value,
)
_NEXT_DUE = select(func.min(JOBS.c.next_attempt_at)).where(
    JOBS.c.state == JobState.FETCH_WAIT.value
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A job a ``retry`` may act on."""

    name: str
    state: JobState
    last_paid_outcome: str | None
    estimated_cost_usd: float | None
    request_id: str | None


class FetchQueue:
    """Fetch-side queue operations over a :class:`WorkQueue` (synchronous; use a thread)."""

    def __init__(self, queue: WorkQueue) -> None:
        self.queue = queue
        self._store_id: str | None = None

    def store_id(self) -> str:
        """This store's identity (written into sidecars); made by migration 0003."""
        if self._store_id is None:
            query = select(STORE_META.c.value).where(STORE_META.c.key == "store_id")
            with self.queue.store.read() as connection:
                self._store_id = str(connection.execute(query).scalar_one())
        return self._store_id

    def next_due(self, batch: str | None) -> datetime | None:
        """When the earliest ``fetch_wait`` job comes due (None when there is none)."""
        query = _NEXT_DUE if batch is None else _NEXT_DUE.where(JOBS.c.batch == batch)
        with self.queue.store.read() as connection:
            value = connection.execute(query).scalar_one()
        return value if isinstance(value, datetime) else None

    def claim(self, batch: str | None, *, worker_id: str | None, limit: int) -> list[WorkItem]:
        """Take up to ``limit`` due ``fetch_wait`` jobs for fetching (``downloading``)."""
        if limit <= 0:
            return []
        now = self.queue.now()
        query = select_items().where(
            JOBS.c.state == JobState.FETCH_WAIT.value, JOBS.c.next_attempt_at <= now
        )
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        query = query.order_by(JOBS.c.next_attempt_at, JOBS.c.id).limit(limit)
        claimed: list[WorkItem] = []
        with self.queue.store.write() as connection:
            rows = connection.execute(query.with_for_update(skip_locked=True, of=JOBS)).all()
            for row in rows:
                token = row.lease_token + 1
                moved = move(
                    connection,
                    row.id,
                    JobState.FETCH_WAIT,
                    JobState.DOWNLOADING,
                    "fetch_due",
                    {"worker_id": worker_id, "lease_token": token, "next_attempt_at": None},
                    {"try": row.fetch_failures + 1}
                    | ({} if worker_id is None else {"worker": worker_id, "lease": token}),
                    now=self.queue.now(),
                    lease=row.lease_token,
                    batch=row.batch,
                )
                if moved:
                    claimed.append(
                        replace(
                            item_from_row(row),
                            state=JobState.DOWNLOADING,
                            worker_id=worker_id,
                            lease_token=token,
                        )
                    )
        return claimed

    def resume(
        self,
        batch: str | None,
        names: list[str] | None = None,
        states: tuple[JobState, ...] = (JobState.FETCH_PAUSED, JobState.FETCH_WAIT),
    ) -> list[str]:
        """A re-run or a user's ``retry``: paused and waiting fetches are due now, with a
        fresh patience. Returns the names of the jobs resumed."""
        return self.queue.user_action(
            batch,
            names,
            list(states),
            JobState.FETCH_WAIT,
            "fetch_resumed",
            {"next_attempt_at": self.queue.now(), "fetch_failures": 0},
        )

    def candidates(
        self, batch: str, states: list[JobState], names: list[str] | None
    ) -> list[Candidate]:
        """The jobs a user's ``retry`` may act on, with the outcome of each one's newest
        attempt that may have been billed (what tells a rendered job from a failed one)."""
        last = (
            select(ATTEMPTS.c.outcome)
            .where(ATTEMPTS.c.job_id == JOBS.c.id, MAY_BE_PAID)
            .order_by(ATTEMPTS.c.number.desc())
            .limit(1)
            .scalar_subquery()
        )
        query = select(
            JOBS.c.name, JOBS.c.state, JOBS.c.estimated_cost_usd, JOBS.c.request_id, last
        ).where(JOBS.c.batch == batch, JOBS.c.state.in_([s.value for s in states]))
        if names is not None:
            query = query.where(JOBS.c.name.in_(names))
        with self.queue.store.read() as connection:
            return [
                Candidate(name, JobState(state), outcome, estimate, request_id)
                for name, state, estimate, request_id, outcome in connection.execute(
                    query.order_by(JOBS.c.id)
                )
            ]

    def paid_work_left(self, batch: str | None) -> int:
        """Jobs still to be polled or fetched (a stopped submitter waits for these)."""
        query = select(func.count()).select_from(JOBS).where(JOBS.c.state.in_(PAID_WORK))
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        with self.queue.store.read() as connection:
            return int(connection.execute(query).scalar_one())
