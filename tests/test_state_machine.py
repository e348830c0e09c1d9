"""A Hypothesis state machine over the pure decisions, the store and its leases (issue 7).

The machine plays the engine by hand: every rule asks :func:`next_state` and applies the
answer through the real :class:`WorkQueue` on a real SQLite store, with a fake clock and
a fake in-memory RunComfy (no network, no simulator). Two workers, "A" and "B", share the
store: each is registered with :class:`WorkerRegistry` (a 30 s lease of fake clock), claims
with its own worker id and holds its own in-memory items (what its engine would hold).

Rules enqueue, claim (by one worker), submit (with a fault before or after the remote
accepts, or a crash right after it accepts), poll, download, release due retries, cancel,
resubmit parked jobs, and advance the clock (which lets leases expire). Submit, poll and
download act on the items of every worker that has not stopped, paused ones included, so
a worker that was taken over really does write with its stale lease. The lease rules:
``heartbeat`` (a worker told it was declared dead drops its items and stops, as the engine
does), ``pause``/``resume`` (it stops beating, like SIGSTOP, but keeps its items and may
write again after SIGCONT), ``take_over`` (beat, then sweep: adopt dead workers' submitted
and downloading jobs, park their submits), ``rejoin`` (a stopped worker's engine is run
again under a new id), ``crash`` (the process dies: both workers' memory and the store
handle are dropped, and their ids leave ``_RUNNING_HERE`` - their engine in this process
ended) and ``restart`` (fresh workers register and take over). A rule naming a worker
that cannot act (paused, stopped) acts on the other one; the clock most often moves 40 s
(past a lease) and a crash is rarer than the other rules, so runs get to the takeovers.

Invariants, checked after every rule: a fenced write (a stale lease) returned False,
changed nothing in the job's row and was logged as ``stale_write``; at most one live lease
per job (one in-memory item carries the job's lease token, held by a worker not declared
dead, and it is the job's ``worker_id``; a job the store says a worker holds is in its
memory); every held job belongs to a worker that has not stopped, and each worker is alive
or dead by the workers table and the clock exactly as the model expects; unfinished
attempts match the job's state; a terminal job never changes again; accepted remote
submissions per job are bounded by the attempts the store recorded as possibly sent, and
repeats are recorded as re-rolls or resubmits; every transition event is one the decision
table allows. Teardown first plays one takeover whatever the history (a worker submits,
freezes past its lease, is taken over, then writes: every write must be fenced), then
drains with faults off (each round every worker beats or rejoins, and sweeps before it
works) and checks the invariants and that every job ends terminal or in
``needs_reconcile``.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from engine_helpers import new_job
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import func, select

from orchestrator.engine.decisions import TABLE, Outcome, next_state, retry_delay
from orchestrator.store import JobState, Store
from orchestrator.store import workers as workers_module
from orchestrator.store.states import TERMINAL, AttemptKind
from orchestrator.store.tables import ATTEMPTS, EVENTS, JOBS, WORKERS
from orchestrator.store.work import HELD, STALE_WRITE, WorkItem, WorkQueue
from orchestrator.store.workers import ProcessIdentity, WorkerRegistry, why_dead

if TYPE_CHECKING:
    from collections.abc import Callable

S = JobState
BATCH = "sm"
START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MAX_ATTEMPTS = 2
UNPAID = ("not_sent", "held", "rejected")
SENT_KINDS = {k.value for k in AttemptKind}  # submit, reroll, resubmit
DRAIN_ROUNDS = 60
LEASE = 30.0  # seconds of fake clock
NAMES = ("A", "B")
HELD_VALUES = {s.value for s in HELD}
#: Both workers run in this process, on a machine that can check pids: one of ours is alive
#: only while it is in ``_RUNNING_HERE`` (and beating), whatever host runs the tests.
HERE = ProcessIdentity("sm-host", os.getpid(), "sm-host/boot/ns")


def _allowed_moves() -> set[tuple[str, str, str]]:
    """(from, outcome, to) triples the decision table can produce (both reroll branches)."""
    allowed: set[tuple[str, str, str]] = set()
    for (state, outcome), target in TABLE.items():
        if isinstance(target, JobState):
            allowed.add((state.value, outcome.value, target.value))
        else:
            for paid in (0, MAX_ATTEMPTS):
                allowed.add((state.value, outcome.value, target(paid, MAX_ATTEMPTS).value))
    return allowed


ALLOWED = _allowed_moves()


class NotSent(Exception):
    """The POST never reached the fake API (connect error, 429)."""


class Ambiguous(Exception):
    """The fake API accepted the POST, then the answer was lost."""


@dataclass
class Remote:
    """One accepted submission on the fake API."""

    will_fail: bool
    status: str = "in_queue"  # in_queue -> in_progress -> succeeded | failed


class FakeApi:
    """RunComfy as plain data: what it accepted, per job key, and how far each job got."""

    def __init__(self) -> None:
        self.accepted: dict[str, list[tuple[str, int]]] = {}  # key -> [(request id, attempt)]
        self.remote: dict[str, Remote] = {}
        self._ids = 0

    def submit(self, key: str, attempt: int, fault: str, will_fail: bool) -> str:
        if fault == "before":
            raise NotSent("connection refused")
        self._ids += 1
        request_id = f"req-{self._ids:04d}"
        self.accepted.setdefault(key, []).append((request_id, attempt))
        self.remote[request_id] = Remote(will_fail)
        if fault == "after":
            raise Ambiguous("read timeout after the body was sent")
        return request_id

    def advance(self) -> None:
        for job in self.remote.values():
            if job.status == "in_queue":
                job.status = "in_progress"
            elif job.status == "in_progress":
                job.status = "failed" if job.will_fail else "succeeded"

    def status(self, request_id: str) -> str:
        return self.remote[request_id].status


@dataclass
class Worker:
    """One engine (one worker id) as the machine plays it."""

    name: str
    id: str
    beat_at: datetime  # its last successful heartbeat, by the store's clock
    held: dict[int, WorkItem] = field(default_factory=dict)  # submitting/submitted/downloading
    paused: bool = False  # not beating (SIGSTOP); keeps its items, may write after SIGCONT
    stopped: bool = False  # learnt it was declared dead: holds nothing, does nothing

    @property
    def beating(self) -> bool:
        """Running and sending heartbeats (so it also sweeps for dead workers)."""
        return not self.paused and not self.stopped


@dataclass(frozen=True)
class Fenced:
    """A write made with a stale lease, and the job's row around it."""

    worker: str
    item: WorkItem
    kind: str  # "transition" or "note"
    done: bool
    before: Any
    after: Any
    stale_events: tuple[int, int]  # stale_write events of the job before and after


class OrchestratorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="orch-sm-"))
        self.db = str(self.dir / "store.db")
        self.now = START
        self.rng = random.Random(0)
        self.api = FakeApi()
        self.store = Store.open(self.db, clock=self.clock)
        self.store.ensure_batch(
            BATCH, manifest_path="m.yaml", output_root=str(self.dir / "out"), settings={}
        )
        self.queue = WorkQueue(self.store)
        self.registry = WorkerRegistry(self.queue, HERE)
        self.up = True  # False between a crash and the restart
        self.workers: dict[str, Worker] = {}  # empty between a crash and the restart
        self.ids: set[str] = set()  # every worker id registered (for the cleanup)
        self.fenced: list[Fenced] = []  # stale writes since the last invariant check
        self.names = 0
        self.terminal_seen: dict[int, JobState] = {}

    def clock(self) -> datetime:
        return self.now

    def working(self) -> list[Worker]:
        """Workers that may still write (paused ones too), in name order."""
        return [w for w in self.workers.values() if not w.stopped]

    def can(self, able: Callable[[Worker], bool]) -> bool:
        return self.up and any(able(worker) for worker in self.workers.values())

    def pick(self, name: str, able: Callable[[Worker], bool]) -> Worker:
        """The worker named if it is ``able``, else the other one (a rule's precondition
        says one is), so no step is wasted on a worker that cannot act."""
        order = sorted(self.workers.values(), key=lambda worker: worker.name != name)
        return next(worker for worker in order if able(worker))

    # -- reading the store ------------------------------------------------------------------

    def _row(self, row_id: int) -> Any:
        with self.store.read() as connection:
            return connection.execute(select(JOBS).where(JOBS.c.id == row_id)).one()

    def _stale_events(self, row_id: int) -> int:
        query = (
            select(func.count())
            .select_from(EVENTS)
            .where(EVENTS.c.job_id == row_id, EVENTS.c.kind == STALE_WRITE)
        )
        with self.store.read() as connection:
            return int(connection.execute(query).scalar_one())

    def _worker_rows(self) -> dict[str, Any]:
        with self.store.read() as connection:
            return {row.id: row for row in connection.execute(select(WORKERS))}

    # -- applying decisions -----------------------------------------------------------------

    def write(
        self, worker: Worker, item: WorkItem, kind: str, after: WorkItem, apply: Callable[[], bool]
    ) -> None:
        """Make one write of ``worker`` about ``item``. A write with the job's current state
        and lease must land; a stale one (fenced) is recorded for
        :meth:`fenced_writes_change_nothing`. The worker then holds ``after`` if the write
        landed and the job is still held, else nothing (the engine drops a fenced item)."""
        before = self._row(item.row_id)
        fenced = (before.state, before.lease_token) != (item.state.value, item.lease_token)
        stale_before = self._stale_events(item.row_id) if fenced else 0
        done = bool(apply())
        if fenced:
            self.fenced.append(
                Fenced(
                    worker.name,
                    item,
                    kind,
                    done,
                    before,
                    self._row(item.row_id),
                    (stale_before, self._stale_events(item.row_id)),
                )
            )
        else:
            assert done, f"{worker.name}'s {kind} of {item.name} under the current lease dropped"
        worker.held.pop(item.row_id, None)
        if done and after.state in HELD:
            worker.held[item.row_id] = after

    def settle(
        self,
        worker: Worker,
        item: WorkItem,
        outcome: Outcome,
        *,
        paid: int | None = None,
        fields: dict[str, Any] | None = None,
        attempt: dict[str, Any] | None = None,
    ) -> None:
        """What ``Engine._settle`` does: ask the table, apply it in one transaction."""
        target = next_state(
            item.state,
            outcome,
            paid_attempts=item.attempts if paid is None else paid,
            max_attempts=item.max_attempts,
        )
        values = dict(fields or {})
        if target == S.RETRY_WAIT:
            delay = retry_delay(max(1, paid or 1), base=2, cap=30, rng=self.rng)
            values["next_attempt_at"] = self.now + timedelta(seconds=delay)
        if attempt is not None and target in (S.SUCCEEDED, S.FAILED):
            attempt = {**attempt, "finished_at": self.now}
        after = replace(item, state=target, request_id=values.get("request_id", item.request_id))
        self.write(
            worker,
            item,
            "transition",
            after,
            lambda: self.queue.transition(item, target, outcome.value, values, None, attempt),
        )

    def do_claim(self, worker: Worker, limit: int) -> None:
        for item in self.queue.claim(BATCH, limit, worker_id=worker.id):
            assert item.state == S.SUBMITTING
            assert item.worker_id == worker.id
            worker.held[item.row_id] = item

    def do_submit(self, worker: Worker, item: WorkItem, fault: str, will_fail: bool) -> None:
        try:
            request_id = self.api.submit(item.key, item.attempts, fault, will_fail)
        except NotSent as exc:
            self.settle(
                worker, item, Outcome.NOT_SENT, attempt={"outcome": "not_sent", "error": str(exc)}
            )
        except Ambiguous as exc:
            self.settle(
                worker,
                item,
                Outcome.AMBIGUOUS,
                attempt={"outcome": "ambiguous", "error": str(exc)},
            )
        else:
            self.settle(
                worker,
                item,
                Outcome.ACCEPTED,
                fields={
                    "request_id": request_id,
                    "submitted_at": self.now,
                    "remote_status": "in_queue",
                    "error": None,
                },
                attempt={"request_id": request_id},
            )

    def do_poll(self, worker: Worker, item: WorkItem) -> None:
        assert item.request_id is not None
        status = self.api.status(item.request_id)
        if status in ("in_queue", "in_progress"):
            # Outcome.RUNNING keeps the state: the engine only notes the remote status.
            assert next_state(S.SUBMITTED, Outcome.RUNNING) == S.SUBMITTED
            self.write(
                worker, item, "note", item, lambda: self.queue.note(item, {"remote_status": status})
            )
            return
        facts = {"remote_status": status, "finished_at": self.now, "queue_position": None}
        if status == "succeeded":
            self.settle(
                worker,
                item,
                Outcome.REMOTE_SUCCEEDED,
                fields=facts,
                attempt={"outcome": "succeeded", "cost_usd": 0.1},
            )
        else:
            paid = self.queue.paid_attempts(item.row_id)
            self.settle(
                worker,
                replace(item, attempts=paid),
                Outcome.REMOTE_FAILED,
                paid=paid,
                fields=facts,
                attempt={"outcome": "failed", "error": "generation failed", "cost_usd": 0.1},
            )

    def do_download(self, worker: Worker, item: WorkItem) -> None:
        self.settle(
            worker,
            item,
            Outcome.DOWNLOADED,
            fields={"size_bytes": 1, "sha256": "0" * 64, "downloaded_at": self.now},
        )

    def each_held(self, state: JobState) -> list[tuple[Worker, WorkItem]]:
        """Every (worker, item) in ``state`` held by a worker that may write, in order."""
        return [
            (worker, worker.held[row_id])
            for worker in self.working()
            for row_id in sorted(worker.held)
            if worker.held[row_id].state == state
        ]

    # -- the workers ------------------------------------------------------------------------

    def register(self, name: str) -> Worker:
        worker_id = self.registry.register(batch=BATCH, lease_seconds=LEASE)
        self.ids.add(worker_id)
        return Worker(name, worker_id, beat_at=self.now)

    def do_heartbeat(self, worker: Worker) -> bool:
        """Beat; a worker declared dead learns it here, drops its items and stops (the
        engine's ``_keep_lease`` returns, and ``_leave`` stops the worker)."""
        if self.registry.heartbeat(worker.id):
            worker.beat_at = self.now
            return True
        worker.held.clear()
        worker.stopped = True
        self.registry.stop(worker.id, "lease_lost")
        return False

    def sweep(self, worker: Worker) -> None:
        """``registry.take_over`` for ``worker``: it holds what it adopted."""
        taken = self.registry.take_over(worker.id, BATCH)
        assert worker.id not in taken.dead, f"{worker.name} declared itself dead"
        for item in taken.adopted:
            assert item.state in (S.SUBMITTED, S.DOWNLOADING)
            assert item.worker_id == worker.id
            worker.held[item.row_id] = item

    def do_crash(self) -> None:
        for worker in self.workers.values():
            # The process died: its engines ended (why_dead: "its engine in this process
            # ended"), and nothing they held in memory survives.
            workers_module._RUNNING_HERE.discard(worker.id)
        self.workers = {}
        self.store.close()
        # A new process: only the database file and the remote side survive.
        self.store = Store.open(self.db, clock=self.clock)
        self.queue = WorkQueue(self.store)
        self.registry = WorkerRegistry(self.queue, HERE)
        self.up = False

    def do_restart(self) -> None:
        """What ``Engine.run`` does in a new process, for each worker: register, take over."""
        self.workers = {name: self.register(name) for name in NAMES}
        for worker in self.workers.values():
            self.sweep(worker)
        self.up = True

    # -- rules ------------------------------------------------------------------------------

    @initialize(count=st.integers(2, 4))
    def seed(self, count: int) -> None:
        self.workers = {name: self.register(name) for name in NAMES}
        self.enqueue(count, again=False)

    @precondition(lambda self: self.up)
    @rule(count=st.integers(1, 3), again=st.booleans())
    def enqueue(self, count: int, again: bool) -> None:
        names = [f"job{self.names + i}" for i in range(count)]
        repeat = ["job0"] if again and self.names else []
        self.names += count
        before = {job.key: job.state for job in self.store.list_jobs(batch=BATCH)}
        result = self.store.enqueue(
            BATCH, [new_job(n, max_attempts=MAX_ATTEMPTS) for n in names + repeat]
        )
        assert (result.added, result.existing) == (count, len(repeat))
        after = {job.key: job.state for job in self.store.list_jobs(batch=BATCH)}
        for key, state in before.items():  # enqueue is idempotent: stored jobs unchanged
            assert after[key] == state

    @precondition(lambda self: self.can(lambda w: not w.stopped))
    @rule(worker=st.sampled_from(NAMES), limit=st.integers(1, 4))
    def claim(self, worker: str, limit: int) -> None:
        """A paused worker may claim too (its heartbeat is what is stuck); one declared
        dead gets nothing."""
        self.do_claim(self.pick(worker, lambda w: not w.stopped), limit)

    @precondition(lambda self: self.up)
    @rule(
        worker=st.sampled_from(NAMES),
        faults=st.lists(
            st.sampled_from(["none", "before", "after", "crash"]), min_size=1, max_size=4
        ),
        will_fail=st.booleans(),
    )
    def submit(self, worker: str, faults: list[str], will_fail: bool) -> None:
        """Submit every submitting item of every worker (``worker`` claims two first if
        none is held), the i-th with the i-th fault, cycling; "crash" = the remote accepts,
        then the process dies before the request id is committed."""
        if not self.each_held(S.SUBMITTING) and self.can(lambda w: not w.stopped):
            self.do_claim(self.pick(worker, lambda w: not w.stopped), 2)
        for index, (holder, item) in enumerate(self.each_held(S.SUBMITTING)):
            fault = faults[index % len(faults)]
            if fault == "crash":
                self.api.submit(item.key, item.attempts, "none", will_fail)
                self.do_crash()
                return
            self.do_submit(holder, item, fault, will_fail)

    @precondition(lambda self: self.up)
    @rule()
    def poll(self) -> None:
        for worker, item in self.each_held(S.SUBMITTED):
            self.do_poll(worker, item)

    @precondition(lambda self: self.up)
    @rule()
    def download(self) -> None:
        for worker, item in self.each_held(S.DOWNLOADING):
            self.do_download(worker, item)

    @rule(seconds=st.sampled_from([40, 5, 1, 30, 120]))  # 40: past a lease
    def advance_clock(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self.api.advance()

    @precondition(lambda self: self.can(lambda w: w.beating))
    @rule(worker=st.sampled_from(NAMES))
    def heartbeat(self, worker: str) -> None:
        self.do_heartbeat(self.pick(worker, lambda w: w.beating))

    @precondition(lambda self: self.can(lambda w: w.beating))
    @rule(worker=st.sampled_from(NAMES))
    def pause(self, worker: str) -> None:
        self.pick(worker, lambda w: w.beating).paused = True

    @precondition(lambda self: self.can(lambda w: w.paused and not w.stopped))
    @rule(worker=st.sampled_from(NAMES))
    def resume(self, worker: str) -> None:
        """SIGCONT: it writes what it was doing (maybe with a stale lease), beats later."""
        self.pick(worker, lambda w: w.paused and not w.stopped).paused = False

    @precondition(lambda self: self.can(lambda w: w.beating))
    @rule(worker=st.sampled_from(NAMES))
    def take_over(self, worker: str) -> None:
        """The engine sweeps right after a successful heartbeat (``_keep_lease``)."""
        chosen = self.pick(worker, lambda w: w.beating)
        if self.do_heartbeat(chosen):
            self.sweep(chosen)

    @precondition(lambda self: self.can(lambda w: w.stopped))
    @rule(worker=st.sampled_from(NAMES))
    def rejoin(self, worker: str) -> None:
        """A stopped worker's engine is started again: a new id, then a takeover."""
        name = self.pick(worker, lambda w: w.stopped).name
        self.workers[name] = self.register(name)
        self.sweep(self.workers[name])

    @precondition(lambda self: self.up)
    @rule()
    def release_due(self) -> None:
        self.queue.release_due(BATCH)

    @precondition(lambda self: self.up)
    @rule(pick=st.integers(0, 3))
    def crash(self, pick: int) -> None:
        if pick == 3:  # rarer than the other rules: leases need crash-free stretches
            self.do_crash()

    @precondition(lambda self: not self.up)
    @rule()
    def restart(self) -> None:
        self.do_restart()

    @precondition(lambda self: self.up)
    @rule()
    def user_resubmit(self) -> None:
        self.queue.user_action(
            BATCH, None, [S.NEEDS_RECONCILE], S.PENDING, "resubmit", {"error": None}
        )

    @precondition(lambda self: self.up)
    @rule(pick=st.integers(0, 10))
    def user_cancel(self, pick: int) -> None:
        waiting = [
            job.id
            for job in self.store.list_jobs(batch=BATCH)
            if job.state in (S.PENDING, S.RETRY_WAIT)
        ]
        if waiting and pick >= 7:  # rare: a cancelled job takes no further part
            name = waiting[pick % len(waiting)]
            assert self.queue.user_action(
                BATCH, [name], [S.PENDING, S.RETRY_WAIT], S.CANCELLED, "cancelled"
            ) == [name]

    # -- invariants -------------------------------------------------------------------------

    def _jobs(self) -> list[Any]:
        with self.store.read() as connection:
            return list(connection.execute(select(JOBS).where(JOBS.c.batch == BATCH)))

    def _attempts(self) -> dict[int, list[Any]]:
        by_job: dict[int, list[Any]] = {}
        with self.store.read() as connection:
            for row in connection.execute(select(ATTEMPTS).order_by(ATTEMPTS.c.number)):
                by_job.setdefault(row.job_id, []).append(row)
        return by_job

    @invariant()
    def fenced_writes_change_nothing(self) -> None:
        for write in self.fenced:
            what = f"{write.worker}'s stale {write.kind} of {write.item.name}"
            assert not write.done, f"{what} was applied"
            assert write.after == write.before, f"{what} changed the row"
            if write.kind == "transition" and write.before.lease_token != write.item.lease_token:
                before, after = write.stale_events
                assert after == before + 1, f"{what} left no stale_write event"
        self.fenced.clear()

    @invariant()
    def at_most_one_live_lease(self) -> None:
        rows = self._worker_rows()
        dead = {worker_id for worker_id, row in rows.items() if row.stopped_at is not None}
        for job in self._jobs():
            holders = [
                (worker, worker.held[job.id])
                for worker in self.workers.values()
                if job.id in worker.held and worker.held[job.id].lease_token == job.lease_token
            ]
            live = [(worker, item) for worker, item in holders if worker.id not in dead]
            assert len(live) <= 1, f"{job.name}: live leases held by {[w.name for w, _ in live]}"
            # Stronger: a worker declared dead has lost every lease in the same transaction.
            assert len(holders) == len(live), f"{job.name}: a dead worker holds its lease"
            if live:
                worker, item = live[0]
                assert job.worker_id == worker.id, f"{job.name}: held by {worker.name} in memory"
                assert job.state == item.state.value, f"{job.name}: {job.state} vs {item.state}"
            elif job.state in HELD_VALUES:
                # Nothing is lost: a job the store says a current worker holds is in its memory.
                owners = [w.name for w in self.workers.values() if w.id == job.worker_id]
                assert not owners, f"{job.name} ({job.state}) is {owners}'s, not in its memory"

    @invariant()
    def held_jobs_belong_to_unstopped_workers(self) -> None:
        rows = self._worker_rows()
        current = {worker.id: worker for worker in self.workers.values()}
        for worker_id, row in rows.items():
            reason = why_dead(row, now=self.now, here=HERE)
            worker = current.get(worker_id)
            if worker is not None and worker.stopped:
                assert row.stopped_at is not None, f"{worker.name} stopped, its row did not"
            if row.stopped_at is not None:
                assert reason == "stopped"
            elif worker is None:  # a crashed engine's, or one that lost its lease
                assert reason is not None, f"{worker_id} of an ended engine counts as alive"
            else:
                silent = (self.now - worker.beat_at).total_seconds()
                assert (reason is None) == (silent <= LEASE), (worker.name, silent, reason)
        for job in self._jobs():
            if job.state in HELD_VALUES:
                assert job.worker_id in rows, f"{job.name} ({job.state}) held by no worker"
                row = rows[job.worker_id]
                # Not stopped: alive, or silent (expired, or its engine ended) and not yet
                # taken over (take_over stops a worker and moves its jobs in one transaction).
                assert row.stopped_at is None, f"{job.name} held by stopped {job.worker_id}"

    @invariant()
    def unfinished_attempts_match_the_state(self) -> None:
        # An attempt row with neither an outcome nor a request id is a submit not yet
        # concluded: a job holds at most one, only while submitting, and then it is the
        # latest attempt. Attempts with a request id and no outcome are accepted generations
        # still running remotely; those are at most one per job too.
        attempts = self._attempts()
        for job in self._jobs():
            rows = attempts.get(job.id, [])
            assert len(rows) == job.attempts, f"{job.name}: attempts counter vs rows"
            live = [r for r in rows if r.outcome is None and r.request_id is None]
            running = [r for r in rows if r.outcome is None]
            assert len(running) <= 1, f"{job.name}: {len(running)} attempts without outcome"
            if job.state == S.SUBMITTING.value:
                assert len(live) == 1, job.name
                assert live[0].number == rows[-1].number, job.name
            else:
                assert not live, f"{job.name} in {job.state} holds an unfinished attempt"
            if running and job.state not in (S.SUBMITTING.value, S.SUBMITTED.value):
                raise AssertionError(f"{job.name} in {job.state} has an open attempt")

    @invariant()
    def terminal_stays_terminal(self) -> None:
        for job in self._jobs():
            state = JobState(job.state)
            first = self.terminal_seen.get(job.id)
            if first is not None:
                assert state == first, f"{job.name} left terminal {first} for {state}"
            elif state in TERMINAL:
                self.terminal_seen[job.id] = state

    @invariant()
    def accepted_submissions_are_recorded(self) -> None:
        attempts = self._attempts()
        jobs = {job.key: job for job in self._jobs()}
        for key, accepted in self.api.accepted.items():
            rows = {r.number: r for r in attempts.get(jobs[key].id, [])}
            maybe_sent = [
                r
                for r in rows.values()
                if r.kind in SENT_KINDS and (r.outcome is None or r.outcome not in UNPAID)
            ]
            assert len(accepted) <= len(maybe_sent), f"{key}: more accepted than recorded"
            for index, (request_id, number) in enumerate(accepted):
                row = rows[number]
                # The store must never call a submission the remote accepted "not sent".
                assert row.outcome is None or row.outcome not in UNPAID, (request_id, row)
                if row.request_id is not None:
                    assert row.request_id == request_id
                if index > 0:  # a second paid generation must say why it was made
                    assert row.kind in (AttemptKind.REROLL, AttemptKind.RESUBMIT), row

    @invariant()
    def events_follow_the_table(self) -> None:
        for event in self.store.events(batch=BATCH):
            if event.kind != "transition":
                continue
            assert event.detail is not None
            move = (event.from_state, event.detail["outcome"], event.to_state)
            # Claims (pending -> submitting) and recoveries (submitting -> needs_reconcile)
            # are table entries too (CLAIMED, CRASH_RECOVERED), so one check covers them.
            assert move in ALLOWED, f"event {event.id} moved {move}"

    # -- the end: drain with faults off -----------------------------------------------------

    def takeover_drill(self) -> None:
        """Whatever the history, one takeover: a worker (the first paused one, or the one
        holding the most) submits what it can claim and freezes; the clock passes its lease
        in two steps (so the remote jobs finish) while the other one beats and takes it
        over; then it resumes and writes what it held before its next heartbeat. Each of
        those writes names a lease that was taken over, so each must be fenced."""
        for name, worker in self.workers.items():
            if worker.stopped:
                self.workers[name] = self.register(name)
                self.sweep(self.workers[name])
        paused = [worker for worker in self.workers.values() if worker.paused]
        frozen = paused[0] if paused else max(self.workers.values(), key=lambda w: len(w.held))
        others = [worker for worker in self.workers.values() if worker is not frozen]
        for worker in others:
            worker.paused = False
        self.do_claim(frozen, 2)
        for worker, item in self.each_held(S.SUBMITTING):
            if worker is frozen:
                self.do_submit(worker, item, "none", will_fail=False)
        for _ in range(2):
            self.advance_clock(int(LEASE) // 2 + 5)
        for worker in others:
            if self.do_heartbeat(worker):
                self.sweep(worker)
        frozen.paused = False
        self.work(frozen)
        self.fenced_writes_change_nothing()

    def work(self, worker: Worker) -> None:
        """One pass over what ``worker`` holds, faults off."""
        for row_id in sorted(worker.held):
            item = worker.held[row_id]
            if item.state == S.SUBMITTING:
                self.do_submit(worker, item, "none", will_fail=False)
            elif item.state == S.SUBMITTED:
                self.do_poll(worker, item)
            else:
                self.do_download(worker, item)

    def drain(self) -> None:
        if not self.up:
            self.do_restart()
        self.takeover_drill()
        for _ in range(DRAIN_ROUNDS):
            # Every worker beats (or learns it lost its lease and is started again), then
            # sweeps: whatever a dead worker left is adopted or parked before any work.
            for name, worker in self.workers.items():
                if worker.stopped:
                    self.workers[name] = self.register(name)
                else:
                    self.do_heartbeat(worker)
            for worker in self.working():
                self.sweep(worker)
            held = any(worker.held for worker in self.workers.values())
            if not self.queue.unfinished(BATCH) and not held:
                break
            self.queue.release_due(BATCH)
            for worker in self.working():
                self.do_claim(worker, 100)
                self.work(worker)
            self.advance_clock(120)

    def teardown(self) -> None:
        try:
            self.drain()
            for invariant_check in (
                self.fenced_writes_change_nothing,
                self.at_most_one_live_lease,
                self.held_jobs_belong_to_unstopped_workers,
                self.unfinished_attempts_match_the_state,
                self.terminal_stays_terminal,
                self.accepted_submissions_are_recorded,
                self.events_follow_the_table,
            ):
                invariant_check()
            for job in self.store.list_jobs(batch=BATCH):
                assert job.state in TERMINAL or job.state == S.NEEDS_RECONCILE, (
                    f"{job.id} left in {job.state} after a fault-free drain"
                )
        finally:
            workers_module._RUNNING_HERE.difference_update(self.ids)
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)


TestOrchestratorMachine = OrchestratorMachine.TestCase
TestOrchestratorMachine.pytestmark = [pytest.mark.slow]
TestOrchestratorMachine.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
)
