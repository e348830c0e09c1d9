"""The multi-worker contract: registration, fenced writes, takeover, shared limits, pacing.

Every store test runs on each backend (memory, an SQLite file, PostgreSQL: ``db_url``);
tests that need two handles on one database skip the in-memory one (it is per-Store).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from engine_helpers import attempt_rows, new_job
from model_ids import LITE, PRO
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from orchestrator.cli import main
from orchestrator.store import JobState, Store
from orchestrator.store import workers as workers_module
from orchestrator.store.database import retry_safe
from orchestrator.store.tables import JOBS
from orchestrator.store.transitions import lock_claims
from orchestrator.store.work import STALE_WRITE, WorkItem, WorkQueue
from orchestrator.store.workers import ProcessIdentity, WorkerRegistry, why_dead

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

S = JobState
START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
MACHINE = "test-host/boot-1/ns-1"  # one that can see pids (it names boot and namespace)


class Clock:
    """A store clock the test moves by hand (PostgreSQL uses its own for workers)."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def open_store(url: str, clock: Clock, tmp_path: Path) -> Store:
    opened = Store.open(url, clock=clock)
    for batch in ("a", "b"):
        opened.ensure_batch(
            batch, manifest_path="m.yaml", output_root=str(tmp_path / batch), settings={}
        )
    return opened


@pytest.fixture
def store(tmp_path: Path, clock: Clock, db_url: str) -> Iterator[Store]:
    with open_store(db_url, clock, tmp_path) as opened:
        yield opened


@pytest.fixture
def queue(store: Store) -> WorkQueue:
    return WorkQueue(store)


@pytest.fixture
def other(tmp_path: Path, clock: Clock, db_url: str) -> Iterator[WorkQueue]:
    """A second queue over its own handle on the same database (another worker process)."""
    if db_url == ":memory:":
        pytest.skip("an in-memory database belongs to one Store")
    with Store.open(db_url, clock=clock) as opened:
        yield WorkQueue(opened)


def add(store: Store, batch: str, *names: str, model: str = PRO, **kwargs: Any) -> None:
    store.enqueue(batch, [new_job(f"{batch}-{n}", model=model, **kwargs) for n in names])


def job_row(store: Store, name: str) -> Any:
    with store.read() as connection:
        return connection.execute(select(JOBS).where(JOBS.c.name == name)).one()


def event_kinds(store: Store, row_id: int) -> list[str]:
    return [e.kind for e in store.events(job_id=row_id)]


def submit(queue: WorkQueue, item: WorkItem, request_id: str) -> WorkItem:
    assert queue.transition(item, S.SUBMITTED, "accepted", {"request_id": request_id})
    return replace(item, state=S.SUBMITTED, request_id=request_id)


def expire(store: Store, clock: Clock, worker_id: str) -> None:
    """Make a worker's heartbeat an hour old, in the clock the backend decides with."""
    if store.engine.dialect.name == "postgresql":
        with store.write() as connection:
            connection.execute(
                text(
                    "UPDATE workers SET heartbeat_at = heartbeat_at - interval '1 hour'"
                    " WHERE id = :id"
                ),
                {"id": worker_id},
            )
    else:
        clock.now += timedelta(hours=1)


# -- membership ------------------------------------------------------------------------------


def test_register_heartbeat_live_and_stop(store: Store, queue: WorkQueue) -> None:
    here = ProcessIdentity("host-1", 4242, MACHINE)
    workers = WorkerRegistry(queue, here)
    me = workers.register(batch="a", lease_seconds=30)
    assert me.startswith("host-1:4242:")
    add(store, "a", "x", "y", "z", "w")
    x, y, z, w = queue.claim("a", 4, worker_id=me)
    assert x.worker_id == me
    assert job_row(store, "a-x").worker_id == me
    assert queue.transition(submit(queue, z, "r-z"), S.DOWNLOADING, "remote_succeeded")
    submit(queue, y, "r-y")
    assert queue.transition(w, S.FAILED, "rejected")  # finished jobs are not held
    (view,) = workers.live()
    assert (view.id, view.host, view.pid, view.batch) == (me, "host-1", 4242, "a")
    assert view.lease_seconds == 30
    assert 0 <= view.heartbeat_age < 5
    assert view.holds == {"submitting": 1, "submitted": 1, "downloading": 1}
    assert view.as_dict()["holds"] == view.holds
    assert workers.heartbeat(me) is True
    workers.stop(me)
    assert workers.live() == []
    assert workers.heartbeat(me) is False


# -- fencing ---------------------------------------------------------------------------------


def test_a_stale_lease_changes_nothing_and_keeps_the_request_id(
    store: Store, queue: WorkQueue
) -> None:
    add(store, "a", "x")
    (item,) = queue.claim("a", 1, worker_id="w1")
    assert (item.worker_id, item.lease_token) == ("w1", 1)
    assert job_row(store, "a-x").worker_id == "w1"
    stale = replace(item, lease_token=0)
    assert not queue.transition(stale, S.SUBMITTED, "accepted", {"request_id": "req-9"})
    row = job_row(store, "a-x")
    assert (row.state, row.request_id, row.lease_token) == ("submitting", None, 1)
    (event,) = [e for e in store.events(job_id=item.row_id) if e.kind == STALE_WRITE]
    assert event.detail == {
        "worker": "w1",
        "lease": 0,
        "holder_lease": 1,
        "wanted": "submitted",
        "outcome": "accepted",
        "request_id": "req-9",
    }
    assert not queue.note(stale, {"remote_status": "bogus"})
    assert job_row(store, "a-x").remote_status is None
    assert queue.note(item, {"remote_status": "in_queue"})  # the holder still can


def test_a_user_action_fences_out_the_worker(store: Store, queue: WorkQueue) -> None:
    add(store, "a", "x")
    (item,) = queue.claim("a", 1, worker_id="w1")
    current = submit(queue, item, "req-1")
    cancelled = queue.user_action("a", None, [S.PENDING, S.SUBMITTED], S.CANCELLED, "cancelled")
    assert cancelled == ["a-x"]
    assert job_row(store, "a-x").lease_token == 2
    assert not queue.transition(current, S.DOWNLOADING, "remote_succeeded")
    assert job_row(store, "a-x").state == "cancelled"
    assert STALE_WRITE in event_kinds(store, item.row_id)


# -- takeover --------------------------------------------------------------------------------


def exited_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def doomed_worker(
    store: Store, queue: WorkQueue, here: ProcessIdentity
) -> tuple[WorkerRegistry, str, WorkItem, WorkItem]:
    """Worker A holding a submitted job (a-x) and one caught submitting (a-y)."""
    registry = WorkerRegistry(queue, here)
    worker = registry.register(batch=None, lease_seconds=30)
    add(store, "a", "x", "y")
    first, second = queue.claim("a", 2, worker_id=worker)
    return registry, worker, submit(queue, first, "req-x"), second


@pytest.mark.parametrize("death", ["stopped", "expired", "process_gone"])
def test_a_dead_workers_jobs_are_taken_over(
    store: Store, queue: WorkQueue, clock: Clock, death: str
) -> None:
    pid = exited_pid() if death == "process_gone" else 4242
    a, a_id, submitted, submitting = doomed_worker(
        store, queue, ProcessIdentity("host-a", pid, MACHINE)
    )
    machine = MACHINE if death == "process_gone" else "elsewhere/boot-2/ns-2"
    b = WorkerRegistry(queue, ProcessIdentity("host-b", os.getpid(), machine))
    if death == "stopped":
        a.stop(a_id)
        reason = None  # it stopped itself: nobody declares it dead, its jobs are just free
    elif death == "expired":
        expire(store, clock, a_id)
        reason = "no heartbeat for 3600 s"
    else:
        reason = f"process {pid} is gone"
    b_id = b.register(batch=None, lease_seconds=30)
    result = b.take_over(b_id, None)
    assert result.dead == ({} if reason is None else {a_id: reason})
    (adopted,) = result.adopted
    assert (adopted.name, adopted.worker_id, adopted.lease_token) == ("a-x", b_id, 2)
    assert adopted.request_id == "req-x"
    assert adopted.state == S.SUBMITTED
    row = job_row(store, "a-x")
    assert (row.state, row.worker_id, row.lease_token) == ("submitted", b_id, 2)
    (event,) = [e for e in store.events(job_id=row.id) if e.kind == "adopted"]
    because = {} if reason is None else {"reason": reason}
    assert event.detail == {"worker": b_id, "lease": 2, "from_worker": a_id, **because}
    assert result.parked == 1
    parked = job_row(store, "a-y")
    assert (parked.state, parked.worker_id, parked.lease_token) == ("needs_reconcile", None, 2)
    assert attempt_rows(store, parked.id)[-1].outcome == "crash_recovered"
    # A's copies are fenced out; A learns it was declared dead.
    assert not queue.transition(submitted, S.DOWNLOADING, "remote_succeeded")
    assert not queue.transition(submitting, S.SUBMITTED, "accepted", {"request_id": "late"})
    assert job_row(store, "a-y").state == "needs_reconcile"
    assert a.heartbeat(a_id) is False
    assert [w.id for w in b.live()] == [b_id]
    assert queue.transition(adopted, S.DOWNLOADING, "remote_succeeded")  # B holds it now
    assert b.take_over(b_id, None) == workers_module.TakeOver()


@pytest.mark.parametrize("same_machine", [True, False])
def test_a_live_worker_is_not_taken_over(
    store: Store, queue: WorkQueue, same_machine: bool
) -> None:
    # A runs (its pid is ours, a live process) and has just sent a heartbeat.
    a, a_id, _, _ = doomed_worker(store, queue, ProcessIdentity("host-a", os.getppid(), MACHINE))
    assert a.heartbeat(a_id)
    machine = MACHINE if same_machine else "elsewhere/boot-2/ns-2"
    b = WorkerRegistry(queue, ProcessIdentity("host-b", os.getpid(), machine))
    assert b.take_over("B-id", None) == workers_module.TakeOver()
    rows = [job_row(store, name) for name in ("a-x", "a-y")]
    assert [(r.state, r.worker_id) for r in rows] == [("submitted", a_id), ("submitting", a_id)]
    assert a.heartbeat(a_id) is True
    assert [w.id for w in b.live()] == [a_id]


def test_take_over_without_a_worker_parks_but_adopts_nothing(
    store: Store, queue: WorkQueue
) -> None:
    a, a_id, _, _ = doomed_worker(store, queue, ProcessIdentity("host-a", 4242, "elsewhere"))
    a.stop(a_id)
    b = WorkerRegistry(queue, ProcessIdentity("host-b", os.getpid(), MACHINE))
    b_id = b.register(batch=None, lease_seconds=30)
    result = b.take_over(None, None)
    assert (result.adopted, result.parked, result.dead) == ([], 1, {})
    row = job_row(store, "a-x")
    assert (row.state, row.worker_id, row.lease_token) == ("submitted", a_id, 1)
    # The next worker to sweep adopts it (its old owner is no longer live).
    (adopted,) = b.take_over(b_id, None).adopted
    assert (adopted.name, adopted.lease_token) == ("a-x", 2)


def test_a_sweeping_worker_never_declares_itself_dead(
    store: Store, queue: WorkQueue, clock: Clock
) -> None:
    # A sweeps late (its own heartbeat is past its lease): it must not stop itself and
    # then adopt jobs under its stopped id.
    a, a_id, _, _ = doomed_worker(store, queue, ProcessIdentity("host-a", 4242, "elsewhere"))
    expire(store, clock, a_id)
    assert a.take_over(a_id, None) == workers_module.TakeOver()
    assert [(w.state, w.worker_id) for w in (job_row(store, n) for n in ("a-x", "a-y"))] == [
        ("submitted", a_id),
        ("submitting", a_id),
    ]
    # B declares A dead and takes its job; A, sweeping again, adopts nothing.
    b = WorkerRegistry(queue, ProcessIdentity("host-b", os.getpid(), "elsewhere/boot-2/ns-2"))
    b_id = b.register(batch=None, lease_seconds=30)
    assert [i.name for i in b.take_over(b_id, None).adopted] == ["a-x"]
    assert a.take_over(a_id, None) == workers_module.TakeOver()
    assert job_row(store, "a-x").worker_id == b_id


def test_reconcile_shows_the_request_id_a_fenced_submitter_received(
    store: Store, queue: WorkQueue, clock: Clock, tmp_path: Path
) -> None:
    # A posts a-x, pauses past its lease; B parks the job (its outcome is unknown); then A
    # wakes with RunComfy's answer. The write is fenced, but the request id must reach the
    # person reconciling: the job was accepted and is paid for.
    _, a_id, _, parked = doomed_worker(store, queue, ProcessIdentity("host-a", 4242, "elsewhere"))
    expire(store, clock, a_id)
    b = WorkerRegistry(queue, ProcessIdentity("host-b", os.getpid(), MACHINE))
    assert b.take_over(b.register(batch=None, lease_seconds=30), None).parked == 1
    assert not queue.transition(parked, S.SUBMITTED, "accepted", {"request_id": "req-late"})
    assert store.late_request_ids() == {("a", "a-y"): ["req-late"]}
    assert store.late_request_ids("b") == {}
    database = store.engine.url.database
    if store.engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return  # the CLI part opens the SQLite file itself
    out = io.StringIO()
    assert main(["reconcile", "--db", database], out=out) == 0
    assert "a/a-y: RunComfy accepted it as request req-late" in out.getvalue()
    out = io.StringIO()
    assert main(["reconcile", "--db", database, "--json"], out=out) == 0
    (listed,) = json.loads(out.getvalue())["needs_reconcile"]
    assert (listed["id"], listed["late_request_ids"]) == ("a-y", ["req-late"])


def test_a_claim_does_not_wait_for_a_worker_paused_inside_its_claim(
    store: Store, queue: WorkQueue, other: WorkQueue
) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises claims with BEGIN IMMEDIATE")
    add(store, "a", "x")
    # The other worker is stopped mid-claim: its transaction holds the claim lock.
    with other.store.write() as connection:
        lock_claims(connection)
        assert queue.claim("a", 1, worker_id="w1") == []  # nothing this round, no hang
    (item,) = queue.claim("a", 1, worker_id="w1")  # released: the next round claims
    assert item.name == "a-x"


def test_releasing_due_retries_skips_rows_another_worker_holds(
    store: Store, queue: WorkQueue, other: WorkQueue, clock: Clock
) -> None:
    """Two workers releasing due retries at once each take the rows the other does not
    hold: neither waits on the other (they deadlocked when each took them in its order)."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers with BEGIN IMMEDIATE")
    add(store, "a", "x", "y")
    for item in queue.claim("a", 2):
        assert queue.transition(
            item, JobState.RETRY_WAIT, "not_sent", {"next_attempt_at": clock.now}, None, None
        )
    x_id = job_row(store, "a-x").id
    with other.store.write() as releasing:  # the other worker is in the middle of its release
        releasing.execute(select(JOBS.c.id).where(JOBS.c.id == x_id).with_for_update())
        assert queue.release_due("a") == 1  # a-y, at once: a-x is skipped, not waited for
    assert (job_row(store, "a-x").state, job_row(store, "a-y").state) == ("retry_wait", "pending")
    assert queue.release_due("a") == 1  # a-x is released at the next look


def test_a_worker_paused_inside_a_transaction_loses_its_session_and_its_locks(
    pg_url: str, clock: Clock, tmp_path: Path
) -> None:
    """PostgreSQL ends a session idle inside a transaction (here after 0.3 s; 60 s by
    default), so a worker paused while holding the claim lock stops holding up the pacer and
    the claims of the others, and finds its session gone when it resumes."""
    short = f"{pg_url}{'&' if '?' in pg_url else '?'}options=" + (
        "-c%20idle_in_transaction_session_timeout%3D300"
    )
    with open_store(pg_url, clock, tmp_path) as seeded:
        add(seeded, "a", "x")
    with Store.open(short, clock=clock) as paused, Store.open(pg_url, clock=clock) as live:
        with (
            pytest.raises(DBAPIError, match="idle-in-transaction") as error,
            paused.write() as stopped,
        ):
            lock_claims(stopped)
            with live.write() as pacer:
                # A bound of its own, so a broken timeout fails here instead of hanging.
                pacer.execute(text("SET LOCAL lock_timeout = '20s'"))
                lock_claims(pacer)  # returns once the server ended `stopped`
            stopped.execute(select(1))  # the paused worker resumes: its session is gone
        assert retry_safe(error.value)  # what the engine retries on a new connection
        (item,) = WorkQueue(live).claim("a", 1, worker_id="w1")
    assert item.name == "a-x"


def test_the_batch_filter_limits_the_sweep(store: Store, queue: WorkQueue) -> None:
    a, a_id, _, _ = doomed_worker(store, queue, ProcessIdentity("host-a", 4242, "elsewhere"))
    add(store, "b", "x", "y")
    b_first, _ = queue.claim("b", 2, worker_id=a_id)
    submit(queue, b_first, "req-bx")
    a.stop(a_id)
    b = WorkerRegistry(queue, ProcessIdentity("host-b", os.getpid(), MACHINE))
    b_id = b.register(batch=None, lease_seconds=30)
    result = b.take_over(b_id, "a")
    assert [i.name for i in result.adopted] == ["a-x"]
    assert result.parked == 1
    assert (job_row(store, "b-x").worker_id, job_row(store, "b-y").state) == (a_id, "submitting")
    rest = b.take_over(b_id, "b")
    assert [i.name for i in rest.adopted] == ["b-x"]
    assert rest.parked == 1
    assert job_row(store, "b-y").state == "needs_reconcile"


# -- global limits across workers ------------------------------------------------------------


def test_max_in_flight_holds_across_workers(
    store: Store, queue: WorkQueue, other: WorkQueue
) -> None:
    add(store, "a", *(str(i) for i in range(6)))
    assert len(queue.claim("a", 2, worker_id="w1", max_in_flight=3)) == 2
    assert [i.name for i in other.claim("a", 5, worker_id="w2", max_in_flight=3)] == ["a-2"]
    assert queue.claim("a", 5, worker_id="w1", max_in_flight=3) == []
    assert other.claim(None, 5, worker_id="w2", max_in_flight=3) == []
    assert store.counts("a")["submitting"] == 3


def test_per_model_cap_holds_across_workers(
    store: Store, queue: WorkQueue, other: WorkQueue
) -> None:
    add(store, "a", "p1", "p2", "p3", model=PRO)
    add(store, "a", "l1", "l2", "l3", model=LITE)
    assert [i.name for i in queue.claim("a", 1, per_model_cap=2)] == ["a-p1"]
    names = [i.name for i in other.claim("a", 10, per_model_cap=2)]
    assert names == ["a-p2", "a-l1", "a-l2"]
    assert queue.claim("a", 10, per_model_cap=2) == []


def test_max_spend_counts_every_workers_commitments(
    store: Store, queue: WorkQueue, other: WorkQueue
) -> None:
    add(store, "a", "1", "2", "3", "4", cost=0.4)
    assert [i.name for i in queue.claim("a", 1, max_spend=1.0)] == ["a-1"]
    assert [i.name for i in other.claim("a", 10, max_spend=1.0)] == ["a-2"]
    assert queue.claim("a", 10, max_spend=1.0) == []
    assert queue.committed_spend("a") == pytest.approx(0.8)


def test_concurrent_claims_on_postgresql_never_exceed_the_limit(
    pg_url: str, clock: Clock, tmp_path: Path
) -> None:
    with open_store(pg_url, clock, tmp_path) as seeded:
        add(seeded, "a", *(str(i) for i in range(50)))
    start = threading.Barrier(8)
    claimed: list[list[str]] = [[] for _ in range(8)]
    errors: list[Exception] = []

    def work(slot: int) -> None:
        try:
            with Store.open(pg_url, clock=clock) as own:
                mine = WorkQueue(own)
                start.wait(timeout=30)
                # A claim that finds another still claiming may take nothing this round,
                # so each keeps claiming until the limit is reached, then once more.
                for _ in range(500):
                    full = sum(map(len, claimed)) >= 10
                    got = mine.claim("a", 3, worker_id=f"w{slot}", max_in_flight=10)
                    claimed[slot].extend(i.name for i in got)
                    if full:
                        break
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    names = [name for names in claimed for name in names]
    assert len(names) == len(set(names)) == 10
    with open_store(pg_url, clock, tmp_path) as check:
        assert check.counts("a")["submitting"] == 10
        rows = [job_row(check, name) for name in names]
        assert all(len(attempt_rows(check, r.id)) == 1 for r in rows)
        assert sorted(r.worker_id for r in rows) == sorted(
            f"w{slot}" for slot, names in enumerate(claimed) for _ in names
        )


# -- pacing ----------------------------------------------------------------------------------


def test_reserve_spaces_every_workers_submits(store: Store, queue: WorkQueue) -> None:
    workers = WorkerRegistry(queue)
    waits = [workers.reserve("submit", 0.5) for _ in range(3)]
    if store.engine.dialect.name == "postgresql":
        assert waits == pytest.approx([0.0, 0.5, 1.0], abs=0.2)
        assert waits == sorted(waits)
    else:
        assert waits == [0.0, 0.5, 1.0]
    assert workers.reserve("other", 0.5) == pytest.approx(0.0, abs=0.2)  # its own pace


# -- why_dead --------------------------------------------------------------------------------

T = datetime(2026, 1, 1, tzinfo=UTC)
HERE = ProcessIdentity("h", 100, MACHINE)


def worker_row(**changes: Any) -> SimpleNamespace:
    values: dict[str, Any] = {
        "id": "w",
        "stopped_at": None,
        "heartbeat_at": T,
        "lease_seconds": 30.0,
        "machine": MACHINE,
        "pid": 7,
    }
    return SimpleNamespace(**(values | changes))


def never_asked(pid: int) -> bool:
    raise AssertionError(f"pid {pid} checked on another machine")


def verdict(
    row: SimpleNamespace,
    seconds: float = 10,
    exists: Callable[[int], bool] = lambda pid: True,
    here: ProcessIdentity = HERE,
) -> str | None:
    return why_dead(row, now=T + timedelta(seconds=seconds), here=here, exists=exists)


def test_why_dead() -> None:
    assert verdict(worker_row()) is None
    assert verdict(worker_row(stopped_at=T)) == "stopped"
    assert verdict(worker_row(), seconds=45) == "no heartbeat for 45 s"
    assert verdict(worker_row(), exists=lambda pid: pid != 7) == "process 7 is gone"
    assert verdict(worker_row(pid=8), exists=lambda pid: pid != 7) is None
    # Our own pid: alive only if this process still runs that worker.
    assert verdict(worker_row(pid=100)) == "its engine in this process ended"
    # Another machine (or one that cannot see pids) is never pid-checked.
    for machine in ("elsewhere/boot/ns", "no-proc-host"):
        assert verdict(worker_row(machine=machine, pid=100), exists=never_asked) is None
    blind = ProcessIdentity("h", 100, "no-proc-host")
    assert verdict(worker_row(machine="no-proc-host"), exists=never_asked, here=blind) is None


def test_why_dead_knows_the_workers_this_process_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers_module, "_RUNNING_HERE", {"w"})
    assert verdict(worker_row(pid=100), exists=never_asked) is None
