"""Several ``orchestrator work`` processes sharing one queue, over real sockets.

- Three workers drain 1,000 jobs (on PostgreSQL; 300 on one SQLite file) against the
  ``flaky`` simulator; one is SIGKILLed while it holds jobs. The others take them over:
  every job ends, nothing is paid for twice without a recorded attempt, and no job was
  ever written by a worker that did not hold its lease.
- Fencing: a worker paused (SIGSTOP) past its lease is taken over; when it resumes it
  cannot change the job, which the new holder already finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from engine_helpers import check_paid_once
from sqlalchemy import text

from orchestrator.simulator import ManualClock, SimulatorServer, load_profile, parse_profile
from orchestrator.store import Store

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parent.parent
TOKEN = "many-workers-token-0123456789"
#: The states a run ends a job in (fetch_paused: rendered, its result asked for again by a
#: re-run; a "completed" result without an output URL ends there).
TERMINAL = {"succeeded", "failed", "needs_reconcile", "fetch_paused"}


def write_manifest(folder: Path, batch: str, jobs: int, extra: str = "") -> Path:
    shutil.copy(REPO / "manifests/images/lake.png", folder / "lake.png")
    seeds = ", ".join(str(s) for s in range(jobs))
    path = folder / "m.yaml"
    path.write_text(
        f"batch: {batch}\nmodel: runwayml/runway-gen-4/turbo/image-to-video\n"
        f"matrix: {{seed: [{seeds}]}}\n{extra}"
        "jobs:\n  - {id: shot, prompt: a slow pan, image: lake.png}\n",
        encoding="utf-8",
    )
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", *args]


def enqueue(folder: Path, db: str) -> None:
    done = subprocess.run(
        cli("enqueue", str(folder / "m.yaml"), "--db", db, "--out", str(folder / "out")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


class Worker:
    """An ``orchestrator work`` process whose output goes to files, not pipes: a pipe that
    nobody reads while the test waits for another worker fills up, and then the worker
    blocks on its next log line (and stops heartbeating)."""

    count = 0

    def __init__(self, folder: Path, command: list[str], env: dict[str, str]) -> None:
        Worker.count += 1
        self.out_path = folder / f"worker-{Worker.count}.out"
        self.err_path = folder / f"worker-{Worker.count}.err"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=folder)
        self.pid = self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def poll(self) -> int | None:
        return self.process.poll()

    def send_signal(self, number: int) -> None:
        self.process.send_signal(number)

    def kill(self) -> None:
        self.process.kill()

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.process.wait(timeout=timeout)
        return self.out_path.read_text(), self.err_path.read_text()


def start_worker(folder: Path, db: str, api_base: str, batch: str, *extra: str) -> Worker:
    env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN}
    for name in list(env):
        if name.startswith("ORCHESTRATOR_"):
            del env[name]
    command = cli(
        "work",
        "--batch",
        batch,
        "--db",
        db,
        "--api-base",
        api_base,
        "--trust-host",
        "localhost",
        "--poll-min",
        "0.02",
        "--poll-max",
        "0.2",
        "--fetch-patience",  # a paid video whose fetch fails is retried in milliseconds
        "10",
        "--quiet",
        *extra,
    )
    return Worker(folder, command, env)


def wait_until(condition: Callable[[], bool], limit: float = 120.0) -> None:
    """Re-check ``condition`` (a store read) until it holds; fail after ``limit`` seconds."""
    pause = threading.Event()
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        pause.wait(0.05)


def rows(db: str, query: str, **params: Any) -> list[Any]:
    with Store.open(db) as store, store.read() as connection:
        return list(connection.execute(text(query), params))


def held_by(db: str, pid: int) -> int:
    (row,) = rows(
        db,
        "SELECT count(*) FROM jobs WHERE worker_id LIKE :pattern"
        " AND state IN ('submitting', 'submitted', 'downloading')",
        pattern=f"%:{pid}:%",
    )
    return int(row[0])


def check_leases_never_overlap(db: str) -> dict[str, int]:
    """Walk every job's events in order: each write made by a worker must come from the
    current holder of the lease (set by a claim or a takeover), and tokens only grow."""
    events = rows(
        db, "SELECT job_id, kind, detail FROM events WHERE job_id IS NOT NULL ORDER BY id"
    )
    holder: dict[int, tuple[str | None, int]] = {}
    seen = {"claimed": 0, "adopted": 0, "stale_write": 0, "checked": 0}
    for job_id, kind, raw in events:
        detail = json.loads(raw) if isinstance(raw, str) else raw or {}
        lease = detail.get("lease")
        worker = detail.get("worker")
        # A claim takes the lease: a submit claim, or a claim of a due fetch of a paid video.
        if kind == "adopted" or detail.get("outcome") in ("claimed", "fetch_due"):
            previous = holder.get(job_id, (None, 0))[1]
            assert lease is not None, (job_id, detail)
            assert lease > previous, (job_id, detail)
            holder[job_id] = (worker, lease)
            seen["adopted" if kind == "adopted" else "claimed"] += 1
        elif kind == "stale_write":
            seen["stale_write"] += 1
        elif kind == "transition" and worker is not None:
            assert holder.get(job_id) == (worker, lease), (job_id, detail, holder.get(job_id))
            seen["checked"] += 1
    return seen


@pytest.fixture(params=[("postgresql", 1000), ("sqlite", 300)], ids=["postgresql", "sqlite"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, int]:
    """A queue several processes share, and how many jobs to put through it."""
    backend, jobs = request.param
    if backend == "sqlite":
        return str(tmp_path / "queue.db"), jobs
    return str(request.getfixturevalue("pg_url")), jobs


@pytest.mark.timeout(420)
@pytest.mark.slow
def test_three_workers_one_killed(tmp_path: Path, shared: tuple[str, int]) -> None:
    db, jobs = shared
    write_manifest(
        tmp_path,
        "many",
        jobs,
        "limits: {max_in_flight: 45}\nretry: {max_attempts: 3, base_delay: 0.02, max_delay: 0.2}\n",
    )
    base = load_profile("flaky")
    faults = {name: getattr(base.faults, name) for name in base.faults.__slots__}
    faults["slow_seconds"] = 0.2
    profile = parse_profile(
        {
            "slots": 40,
            "time_scale": 0.002,
            "seed": 5,
            "url_ttl": 3600,
            "faults": faults,
            "video_fps": 4,
            "video_max_side": 64,
            "durations": {"default": {"distribution": "uniform", "low": 30, "high": 90}},
        },
        name="flaky-many",
    )
    enqueue(tmp_path, db)
    with SimulatorServer(profile, token=TOKEN) as server:
        workers = [
            # The kill is seen at once (same machine, pid gone); a long lease keeps a worker
            # slowed by a busy machine from being taken for dead.
            start_worker(tmp_path, db, server.api_base, "many", "--lease-seconds", "30")
            for _ in range(3)
        ]
        victim = workers[1]
        try:
            # Kill it mid-run, while it holds jobs and plenty of work is left.
            wait_until(lambda: held_by(db, victim.pid) >= 3)
            victim.send_signal(signal.SIGKILL)
            victim.communicate()  # reaped, so its pid is gone for the survivors too
            outputs = [w.communicate(timeout=360) for w in (workers[0], workers[2])]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.communicate()
        ledger = server.simulator.snapshot()

    for worker, (_out, err) in zip((workers[0], workers[2]), outputs, strict=True):
        assert worker.returncode in (0, 1), err  # 1: some jobs failed, as flaky ones do
        assert "Traceback" not in err, err
    states = dict(rows(db, "SELECT state, count(*) FROM jobs GROUP BY state"))
    assert sum(states.values()) == jobs
    assert set(states) <= TERMINAL, states
    assert states.get("succeeded", 0) > jobs * 0.7, states
    (unexplained,) = rows(
        db, "SELECT count(*) FROM jobs WHERE state = 'failed' AND coalesce(error, '') = ''"
    )
    assert unexplained[0] == 0
    # The victim was declared dead and what it held was taken over (adopted or parked).
    taken = rows(
        db,
        "SELECT stop_reason FROM workers WHERE pid = :pid",
        pid=victim.pid,
    )
    assert [r[0].startswith("taken over") for r in taken] == [True]
    from_victim = rows(
        db,
        "SELECT count(*) FROM events WHERE (kind = 'adopted' OR kind = 'transition')"
        " AND CAST(detail AS TEXT) LIKE :pattern",
        pattern=f'%"from_worker":"%:{victim.pid}:%',
    )
    assert from_victim[0][0] >= 1
    # Nothing paid for twice unless recorded; no write from a worker without the lease.
    attempts = rows(
        db,
        "SELECT job_id, number, kind, request_id, outcome FROM attempts ORDER BY job_id, number",
    )
    check_paid_once(attempts, ledger)
    seen = check_leases_never_overlap(db)
    assert seen["claimed"] >= jobs
    assert seen["checked"] > jobs
    # Every video on disk matches its recorded digest; no partial file is left.
    out = tmp_path / "out"
    assert not list(out.rglob("*.part"))
    for path, digest in rows(db, "SELECT output_path, sha256 FROM jobs WHERE state = 'succeeded'"):
        video = next(out.rglob(path))
        assert hashlib.sha256(video.read_bytes()).hexdigest() == digest


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_a_paused_worker_taken_over_cannot_overwrite_the_job(tmp_path: Path, pg_url: str) -> None:
    write_manifest(tmp_path, "fence", 1, "retry: {base_delay: 0.02, max_delay: 0.2}\n")
    profile = parse_profile(
        {
            "slots": 4,
            "faults": {},
            "video_fps": 4,
            "video_max_side": 64,
            "url_ttl": 3600,
            "durations": {"default": {"distribution": "fixed", "seconds": 10}},
        },
        name="fence",
    )
    enqueue(tmp_path, pg_url)
    clock = ManualClock()  # the remote job finishes only when the test says so
    with SimulatorServer(profile, token=TOKEN, clock=clock) as server:
        first = start_worker(tmp_path, pg_url, server.api_base, "fence", "--lease-seconds", "60")
        second = None
        try:
            wait_until(lambda: bool(rows(pg_url, "SELECT 1 FROM jobs WHERE state = 'submitted'")))
            first.send_signal(signal.SIGSTOP)
            # Paused past its lease: as the database sees it, its last heartbeat is old.
            with Store.open(pg_url) as store, store.write() as connection:
                connection.execute(
                    text("UPDATE workers SET heartbeat_at = heartbeat_at - interval '1 hour'")
                )
            second = start_worker(tmp_path, pg_url, server.api_base, "fence")
            wait_until(lambda: bool(rows(pg_url, "SELECT 1 FROM events WHERE kind = 'adopted'")))
            clock.advance(60)  # the remote job completes; the new holder downloads it
            _out, err = second.communicate(timeout=60)
            assert second.returncode == 0, err
            first.send_signal(signal.SIGCONT)
            out, err = first.communicate(timeout=60)
        finally:
            for worker in (first, second):
                if worker is not None and worker.poll() is None:
                    worker.send_signal(signal.SIGCONT)
                    worker.kill()
                    worker.communicate()

    # The resumed worker changed nothing. Whichever it did first on waking: its write was
    # fenced off (a stale_write event keeps what it knew), its heartbeat told it that it
    # had been taken over and it stopped (exit status 1), or a status reply read on waking
    # (sent before the pause) could not be noted, and it stopped watching the job.
    seen = check_leases_never_overlap(pg_url)
    fenced = seen["stale_write"] == 1 and "stale transition dropped" in err
    told = first.returncode == 1 and "presumed dead" in out
    dropped = seen["stale_write"] == 0 and "stale status dropped" in err
    assert fenced or told or dropped, out + err
    ((state, worker_id, lease),) = rows(pg_url, "SELECT state, worker_id, lease_token FROM jobs")
    assert state == "succeeded"
    assert lease == 2
    assert f":{second.pid}:" in worker_id
    assert seen == {**seen, "claimed": 1, "adopted": 1}
    video = next((tmp_path / "out").rglob("*.mp4"))
    ((digest,),) = rows(pg_url, "SELECT sha256 FROM jobs")
    assert hashlib.sha256(video.read_bytes()).hexdigest() == digest
