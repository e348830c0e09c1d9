"""Shared helpers for the engine tests: a store with jobs, fast settings, a simulator, a run.

``seed_store(tmp_path, jobs=3)`` opens a real SQLite store holding one batch of jobs whose
payloads use an https image URL (the simulator renders a placeholder), so no image files
are needed. ``run_engine(store, server, settings)`` drains it with the real pool over the
simulator's loopback socket and returns the report.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from model_ids import PRO
from sqlalchemy import select

from orchestrator.api import RunComfyClient
from orchestrator.catalog import builtin_catalog
from orchestrator.engine.decisions import PollPolicy
from orchestrator.engine.download import Downloader
from orchestrator.engine.paidwork import FetchPolicy
from orchestrator.engine.pool import Engine, EngineReport
from orchestrator.engine.settings import EngineSettings
from orchestrator.simulator import Profile, SimulatorServer, parse_profile
from orchestrator.simulator.state import payload_hash
from orchestrator.store import JobView, NewJob, Store
from orchestrator.store.tables import ATTEMPTS
from orchestrator.store.work import WorkQueue

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence
    from pathlib import Path

TOKEN = "engine-test-token-8f3a"
BATCH = "eng"
IMAGE_URL = "https://images.example/frames/beach.jpg"
WAIT_LIMIT = 10.0
FAST_POLL = PollPolicy(minimum=0.01, maximum=0.2)
#: Fetches of a rendered video retried in milliseconds; three tries before pausing.
FAST_FETCH = FetchPolicy(base=0.005, cap=0.02, tries=3)
#: Small, fast simulator settings: fixed 2 s jobs, tiny one-second videos.
BASE_PROFILE: dict[str, Any] = {
    "slots": 8,
    "time_scale": 0.002,
    "seed": 1,
    "durations": {"default": {"distribution": "fixed", "seconds": 2}},
    "prices": {"default": 0.1},
    "video_fps": 4,
    "video_max_side": 64,
    "video_seconds": 1,
}


def make_profile(faults: dict[str, float] | None = None, **settings: Any) -> Profile:
    """The base profile with ``settings`` and ``faults`` layered on top."""
    raw: dict[str, Any] = {**BASE_PROFILE, **settings}
    if faults:
        raw["faults"] = faults
    return parse_profile(raw, name="engine-test")


def fast_settings(**changes: Any) -> EngineSettings:
    """Settings with tiny delays, so retries and polls take milliseconds."""
    values: dict[str, Any] = {
        "batch": BATCH,
        "max_in_flight": 8,
        "base_delay": 0.005,
        "max_delay": 0.02,
        "max_download_tries": 5,
        "poll": FAST_POLL,
        "fetch": FAST_FETCH,
        "idle_check": 0.05,
    }
    values.update(changes)
    return EngineSettings(**values)


def key_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def body_of(name: str) -> dict[str, Any]:
    """A valid PRO payload, distinct per job name."""
    return {"prompt": f"a slow dolly-in over {name}", "first_frame_image_url": IMAGE_URL}


def new_job(
    name: str,
    *,
    model: str = PRO,
    max_attempts: int = 1,
    cost: float | None = None,
    output_path: str | None = None,
) -> NewJob:
    return NewJob(
        key=key_of(name),
        name=name,
        model_id=model,
        payload=body_of(name),
        output_path=output_path or f"{name}.mp4",
        max_attempts=max_attempts,
        estimated_cost_usd=cost,
    )


def seed_store(
    tmp_path: Path,
    jobs: int | list[NewJob] = 3,
    *,
    batch: str = BATCH,
    max_attempts: int = 1,
    cost: float | None = None,
    db: str = "store.db",
) -> Store:
    """A real SQLite store with one batch of jobs named ``job0``, ``job1`` ..."""
    store = Store.open(str(tmp_path / db))
    store.ensure_batch(
        batch,
        manifest_path=str(tmp_path / "m.yaml"),
        output_root=str(tmp_path / "out"),
        settings={},
    )
    rows = (
        jobs
        if isinstance(jobs, list)
        else [new_job(f"job{i}", max_attempts=max_attempts, cost=cost) for i in range(jobs)]
    )
    store.enqueue(batch, rows)
    return store


def digest_of(job: JobView) -> str:
    """The simulator's identity of the payload a job submits (ledger ``submissions`` key)."""
    return payload_hash({"model": job.model, "input": body_of(job.id)})


def by_name(store: Store, batch: str | None = BATCH) -> dict[str, JobView]:
    return {job.id: job for job in store.list_jobs(batch=batch)}


def attempt_rows(store: Store, row_id: int) -> list[Any]:
    """A job's attempts, oldest first."""
    query = select(ATTEMPTS).where(ATTEMPTS.c.job_id == row_id).order_by(ATTEMPTS.c.number)
    with store.read() as connection:
        return list(connection.execute(query))


def part_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


@dataclass
class Run:
    report: EngineReport
    engine: Engine


def run_engine(
    store: Store,
    server: SimulatorServer,
    settings: EngineSettings,
    *,
    token: str = TOKEN,
    seed: int = 7,
    during: Callable[[Engine, anyio.Event], Awaitable[None]] | None = None,
) -> Run:
    """Drain ``store`` with a real :class:`Engine` against ``server``.

    ``during(engine, stop)`` runs beside the engine (to set the stop event, say); it is
    cancelled when the engine returns.
    """

    async def main() -> Run:
        stop = anyio.Event()
        async with (
            RunComfyClient(server.api_base, token=token) as api,
            Downloader(trusted_hosts=["localhost", "127.0.0.1"]) as downloader,
        ):
            engine = Engine(
                WorkQueue(store),
                api,
                downloader,
                builtin_catalog(),
                settings,
                rng=random.Random(seed),
            )
            async with anyio.create_task_group() as group:
                if during is not None:
                    group.start_soon(during, engine, stop)
                report = await engine.run(stop)
                group.cancel_scope.cancel()
        return Run(report, engine)

    return anyio.run(main)


async def wait_for(condition: Callable[[], bool]) -> None:
    """Check ``condition`` (a store read, run in a thread: the store has no event to wait
    on) until it holds; fail after :data:`WAIT_LIMIT` seconds instead of hanging."""
    with anyio.fail_after(WAIT_LIMIT):
        while True:
            if await anyio.to_thread.run_sync(condition):
                return
            await anyio.sleep(0.002)


def stop_when(condition: Callable[[], bool]) -> Callable[[Engine, anyio.Event], Awaitable[None]]:
    """A ``during`` for :func:`run_engine` that sets the stop event once ``condition`` holds."""

    async def watch(engine: Engine, stop: anyio.Event) -> None:
        await wait_for(condition)
        stop.set()

    return watch


def simulator(profile: Profile, **kwargs: Any) -> SimulatorServer:
    """A server for ``profile`` accepting only :data:`TOKEN` (use it as a context manager)."""
    return SimulatorServer(profile, token=TOKEN, **kwargs)


def check_paid_once(attempts: Sequence[Sequence[Any]], ledger: Mapping[str, Any]) -> int:
    """A payload the simulator accepted twice must belong to one job whose store recorded
    each of those submits as an attempt (a re-roll or resubmit). ``attempts`` rows are
    ``(job_id, number, kind, request_id, outcome)``; returns how many payloads were re-rolled.
    """
    job_of_request = {rid: job for job, _n, _kind, rid, _outcome in attempts if rid}
    # Attempts that may have reached RunComfy: everything but submits refused unsent.
    sendable: dict[Any, list[str]] = defaultdict(list)
    for job, _number, kind, _rid, outcome in attempts:
        if outcome not in ("not_sent", "held"):
            sendable[job].append(kind)
    by_payload: dict[str, list[str]] = defaultdict(list)
    for rid, timeline in ledger["jobs"].items():
        by_payload[timeline["payload_hash"]].append(rid)
    rerolled = 0
    for payload, request_ids in by_payload.items():
        if len(request_ids) < 2:
            continue
        owners = {job_of_request.get(rid) for rid in request_ids}
        owners.discard(None)
        assert len(owners) == 1, f"payload {payload[:8]} accepted for several jobs: {owners}"
        (owner,) = owners
        assert len(request_ids) <= len(sendable[owner]), "a submit was not recorded"
        assert set(sendable[owner][1:]) <= {"reroll", "submit"}
        assert "reroll" in sendable[owner]
        rerolled += 1
    return rerolled
