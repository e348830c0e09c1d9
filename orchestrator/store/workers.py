"""Worker processes sharing one queue: registration, heartbeats, takeover and pacing.

Several ``run``/``work`` processes (on one host with SQLite, on many with PostgreSQL) drain
one queue. The protocol follows the Postgres queues in docs/style-and-reliability.md (B1,
B2): procrastinate's per-worker heartbeat and graphile-worker's fenced writes.

- Each process registers a ``workers`` row and refreshes ``heartbeat_at`` with the
  *database's* clock (PostgreSQL ``clock_timestamp()``; the store clock on SQLite, whose
  writers share one host), so clock skew between hosts never decides anything.
- A claim stamps the job with the worker and bumps ``lease_token``; every later write
  names that token (:meth:`~orchestrator.store.work.WorkQueue.transition`), so a writer
  whose lease has moved on changes nothing: it is logged and dropped.
- A worker is dead when it stopped, when its heartbeat is older than its
  ``lease_seconds``, or, on the same machine, when its process no longer exists (so a
  restart after ``kill -9`` resumes at once). Its jobs are taken over: ``submitted`` and
  ``downloading`` ones are adopted with a new token (polling resumes by request id); a job
  caught in ``submitting`` may have reached RunComfy, so it goes to ``needs_reconcile`` and
  is never resubmitted blindly.

>>> from orchestrator.store import Store
>>> from orchestrator.store.work import WorkQueue
>>> with Store.open(":memory:") as store:
...     workers = WorkerRegistry(WorkQueue(store))
...     me = workers.register(batch=None, lease_seconds=60)
...     [w.id == me for w in workers.live()], workers.heartbeat(me)
([True], True)
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from orchestrator.store.states import JobState
from orchestrator.store.tables import JOBS, PACERS, WORKERS
from orchestrator.store.transitions import (
    WorkItem,
    item_from_row,
    known,
    lock_claims,
    move,
    record_job_event,
    select_items,
    update_latest_attempt,
)
from orchestrator.store.work import HELD, WorkQueue

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Stopped workers are forgotten after this long (their jobs keep ``worker_id`` as history).
FORGET_STOPPED_AFTER = timedelta(days=7)
SUBMIT_PACER = "submit"


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Where a worker runs. ``machine`` names host, boot and pid namespace: two workers with
    the same one can check each other's pids (and a restarted container cannot be fooled)."""

    host: str
    pid: int
    machine: str

    @property
    def can_see_pids(self) -> bool:
        return "/" in self.machine


@cache
def _machine(host: str) -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot_file:
            boot = boot_file.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # no /proc: only heartbeats decide
        return host
    return f"{host}/{boot}/{namespace}"


def this_process() -> ProcessIdentity:
    host = socket.gethostname()
    return ProcessIdentity(host=host, pid=os.getpid(), machine=_machine(host))


def process_exists(pid: int) -> bool:
    """True while ``pid`` names a running (or stopped) process; a zombie counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


#: Worker ids registered by this process and not yet stopped: a row with our own pid that
#: is not here belongs to an engine this process dropped (tests restart engines in-process).
_RUNNING_HERE: set[str] = set()


def why_dead(
    row: Any,
    *,
    now: datetime,
    here: ProcessIdentity,
    exists: Any = process_exists,
) -> str | None:
    """Why a registered worker counts as dead at database time ``now``, or None if alive.

    >>> from types import SimpleNamespace as Row
    >>> from datetime import UTC
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> here = ProcessIdentity("h", 1, "h/boot/ns")
    >>> alive = Row(id="w", stopped_at=None, heartbeat_at=t, lease_seconds=30.0,
    ...             machine="other", pid=7)
    >>> why_dead(alive, now=t + timedelta(seconds=29), here=here) is None
    True
    >>> why_dead(alive, now=t + timedelta(seconds=31), here=here)
    'no heartbeat for 31 s'
    """
    if row.stopped_at is not None:
        return "stopped"
    silent = (now - row.heartbeat_at).total_seconds()
    if silent > row.lease_seconds:
        return f"no heartbeat for {silent:.0f} s"
    if here.can_see_pids and row.machine == here.machine:
        if row.pid == here.pid:
            return None if row.id in _RUNNING_HERE else "its engine in this process ended"
        if not exists(row.pid):
            return f"process {row.pid} is gone"
    return None


@dataclass(frozen=True, slots=True)
class TakeOver:
    """What :meth:`WorkerRegistry.take_over` did."""

    adopted: list[WorkItem] = field(default_factory=list)
    parked: int = 0
    """Jobs caught in ``submitting`` by a dead worker, moved to ``needs_reconcile``."""
    dead: dict[str, str] = field(default_factory=dict)
    """Worker id -> why it was declared dead in this sweep."""


@dataclass(frozen=True, slots=True)
class WorkerView:
    """A live worker for ``status``: where it runs and what it holds."""

    id: str
    host: str
    pid: int
    batch: str | None
    started_at: datetime
    heartbeat_age: float
    """Seconds since its last heartbeat, in database time."""
    lease_seconds: float
    holds: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "batch": self.batch,
            "started_at": self.started_at.isoformat(),
            "heartbeat_age_s": round(self.heartbeat_age, 1),
            "lease_s": self.lease_seconds,
            "holds": self.holds,
        }


def database_now(connection: Connection, fallback: datetime) -> datetime:
    """The database server's clock on PostgreSQL; ``fallback`` (the store clock) on SQLite."""
    if connection.dialect.name == "postgresql":
        value = connection.execute(select(func.clock_timestamp())).scalar_one()
        assert isinstance(value, datetime)
        return value
    return fallback


class WorkerRegistry:
    """The ``workers`` table and what depends on it (synchronous; call from a thread)."""

    def __init__(self, queue: WorkQueue, here: ProcessIdentity | None = None) -> None:
        self.queue = queue
        self.here = here or this_process()

    def _now(self, connection: Connection) -> datetime:
        return database_now(connection, self.queue.now())

    # -- membership ------------------------------------------------------------------------

    def register(self, *, batch: str | None, lease_seconds: float) -> str:
        """Add this process as a worker; returns its id (``host:pid:random``)."""
        worker_id = f"{self.here.host}:{self.here.pid}:{secrets.token_hex(3)}"
        with self.queue.store.write() as connection:
            now = self._now(connection)
            connection.execute(
                delete(WORKERS).where(WORKERS.c.stopped_at < now - FORGET_STOPPED_AFTER)
            )
            connection.execute(
                insert(WORKERS).values(
                    id=worker_id,
                    host=self.here.host,
                    pid=self.here.pid,
                    machine=self.here.machine,
                    batch=batch,
                    lease_seconds=lease_seconds,
                    started_at=now,
                    heartbeat_at=now,
                )
            )
        _RUNNING_HERE.add(worker_id)
        return worker_id

    def heartbeat(self, worker_id: str) -> bool:
        """Refresh the heartbeat; False if the worker was declared dead (its jobs are gone)."""
        with self.queue.store.write() as connection:
            result = connection.execute(
                update(WORKERS)
                .where(WORKERS.c.id == worker_id, WORKERS.c.stopped_at.is_(None))
                .values(heartbeat_at=self._now(connection))
            )
        return bool(result.rowcount)

    def stop(self, worker_id: str, reason: str = "exited") -> None:
        """Mark the worker stopped: what it still holds can be taken over at once."""
        _RUNNING_HERE.discard(worker_id)
        with self.queue.store.write() as connection:
            connection.execute(
                update(WORKERS)
                .where(WORKERS.c.id == worker_id, WORKERS.c.stopped_at.is_(None))
                .values(stopped_at=self._now(connection), stop_reason=reason)
            )

    def live(self) -> list[WorkerView]:
        """Workers not stopped (a silent one shows its heartbeat age until taken over)."""
        held = [s.value for s in HELD]
        with self.queue.store.read() as connection:
            now = self._now(connection)
            rows = connection.execute(
                select(WORKERS).where(WORKERS.c.stopped_at.is_(None)).order_by(WORKERS.c.id)
            ).all()
            holds: dict[str, dict[str, int]] = {}
            if rows:
                counted = connection.execute(
                    select(JOBS.c.worker_id, JOBS.c.state, func.count())
                    .where(JOBS.c.worker_id.in_([r.id for r in rows]), JOBS.c.state.in_(held))
                    .group_by(JOBS.c.worker_id, JOBS.c.state)
                )
                for worker_id, state, number in counted:
                    holds.setdefault(worker_id, {})[state] = number
        return [
            WorkerView(
                id=row.id,
                host=row.host,
                pid=row.pid,
                batch=row.batch,
                started_at=row.started_at,
                heartbeat_age=max(0.0, (now - row.heartbeat_at).total_seconds()),
                lease_seconds=row.lease_seconds,
                holds=holds.get(row.id, {}),
            )
            for row in rows
        ]

    # -- takeover --------------------------------------------------------------------------

    def recover(self, batch: str | None = None) -> int:
        """After a crash: a job caught in ``submitting`` by no live worker may have been
        paid for, so it goes to ``needs_reconcile``; it is never resubmitted on its own.
        Returns how many (a :meth:`take_over` that adopts nothing)."""
        return self.take_over(None, batch).parked

    def take_over(self, worker_id: str | None, batch: str | None = None) -> TakeOver:
        """Declare silent workers dead and take their jobs (all at once, one transaction).

        ``worker_id`` adopts the ``submitted``/``downloading`` jobs; with None they stay
        unowned for the next worker to adopt. Jobs caught in ``submitting`` always go to
        ``needs_reconcile``. ``batch`` limits the sweep to one batch's jobs.
        """
        adopted: list[WorkItem] = []
        parked = 0
        with self.queue.store.write() as connection:
            now = self._now(connection)
            rows = connection.execute(
                select(WORKERS).where(WORKERS.c.stopped_at.is_(None)).order_by(WORKERS.c.id)
            )
            live: set[str] = set()
            dead: dict[str, str] = {}
            for row in rows:
                # The caller is running (it beat just before this sweep): it never declares
                # itself dead, which would let it adopt jobs under a stopped id.
                reason = None if row.id == worker_id else why_dead(row, now=now, here=self.here)
                if reason is None:
                    live.add(row.id)
                else:
                    dead[row.id] = reason
            if worker_id not in live:
                worker_id = None  # stopped already (taken over itself): it adopts nothing
            # In id order, so two workers sweeping at once lock the rows in the same order
            # (one waits for the other) instead of each holding what the other needs.
            for dead_id, reason in dead.items():
                connection.execute(
                    update(WORKERS)
                    .where(WORKERS.c.id == dead_id)
                    .values(stopped_at=now, stop_reason=f"taken over: {reason}")
                )
            orphaned = select_items().where(
                JOBS.c.state.in_([s.value for s in HELD]),
                or_(JOBS.c.worker_id.is_(None), JOBS.c.worker_id.not_in(live)),
            )
            if batch is not None:
                orphaned = orphaned.where(JOBS.c.batch == batch)
            orphaned = orphaned.order_by(JOBS.c.id).with_for_update(skip_locked=True, of=JOBS)
            for row in connection.execute(orphaned).all():
                item = item_from_row(row)
                detail = {"from_worker": row.worker_id, "reason": dead.get(row.worker_id)}
                if item.state == JobState.SUBMITTING:
                    parked += self._park(connection, item, detail)
                elif worker_id is not None:
                    taken = self._adopt(connection, item, worker_id, detail)
                    if taken is not None:
                        adopted.append(taken)
        return TakeOver(adopted=adopted, parked=parked, dead=dead)

    def _park(self, connection: Connection, item: WorkItem, detail: Mapping[str, Any]) -> int:
        moved = move(
            connection,
            item.row_id,
            JobState.SUBMITTING,
            JobState.NEEDS_RECONCILE,
            "crash_recovered",
            {
                "error": "interrupted while submitting: the job may exist on RunComfy",
                "worker_id": None,
                "lease_token": JOBS.c.lease_token + 1,
            },
            {"reason": "found in submitting after a restart", **known(detail)},
            now=self.queue.now(),
            lease=item.lease_token,
        )
        if moved:
            update_latest_attempt(connection, item.row_id, {"outcome": "crash_recovered"})
        return moved

    def _adopt(
        self, connection: Connection, item: WorkItem, worker_id: str, detail: Mapping[str, Any]
    ) -> WorkItem | None:
        token = item.lease_token + 1
        result = connection.execute(
            update(JOBS)
            .where(
                JOBS.c.id == item.row_id,
                JOBS.c.state == item.state.value,
                JOBS.c.lease_token == item.lease_token,
            )
            .values(worker_id=worker_id, lease_token=token, updated_at=self.queue.now())
        )
        if not result.rowcount:
            return None
        record_job_event(
            connection,
            item,
            "adopted",
            {"worker": worker_id, "lease": token, **known(detail)},
            at=self.queue.now(),
        )
        return replace(item, worker_id=worker_id, lease_token=token)

    # -- shared limits ---------------------------------------------------------------------

    def reserve(self, name: str, spacing: float) -> float:
        """Reserve the next slot of a shared pace (one every ``spacing`` seconds across all
        workers); returns how many seconds to wait before using it."""
        with self.queue.store.write() as connection:
            lock_claims(connection)
            now = self._now(connection)
            row = connection.execute(select(PACERS.c.next_at).where(PACERS.c.name == name)).first()
            start = now if row is None else max(now, row.next_at)
            values = {"next_at": start + timedelta(seconds=spacing)}
            if row is None:
                connection.execute(insert(PACERS).values(name=name, **values))
            else:
                connection.execute(update(PACERS).where(PACERS.c.name == name).values(values))
        return (start - now).total_seconds()


__all__ = [
    "ProcessIdentity",
    "TakeOver",
    "WorkerRegistry",
    "WorkerView",
    "database_now",
    "process_exists",
    "this_process",
    "why_dead",
]
