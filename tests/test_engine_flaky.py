"""The flaky profile, 300 jobs, over real sockets: every job ends with a stated outcome and
nothing is paid for twice unless the store recorded it as a re-roll."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import anyio
import httpx
import pytest
from engine_helpers import check_paid_once

from orchestrator.api import RunComfyClient
from orchestrator.catalog import builtin_catalog
from orchestrator.engine import Engine, EngineSettings
from orchestrator.engine.decisions import PollPolicy
from orchestrator.engine.download import Downloader
from orchestrator.engine.paidwork import FetchPolicy
from orchestrator.manifest import load_manifest
from orchestrator.planning import enqueue
from orchestrator.simulator import SimulatorServer, load_profile, parse_profile
from orchestrator.store import Store
from orchestrator.store.work import WorkQueue

REPO = Path(__file__).resolve().parent.parent
TOKEN = "flaky-token"
JOBS = 300


def flaky_profile():  # type: ignore[no-untyped-def]
    base = load_profile("flaky")
    faults = {name: getattr(base.faults, name) for name in base.faults.__slots__}
    faults["slow_seconds"] = 0.5  # past the client's 0.25 s timeout below
    return parse_profile(
        {
            "slots": 16,
            "time_scale": 0.001,
            "seed": 11,
            "url_ttl": 3600,
            "faults": faults,
            "durations": {"default": {"distribution": "uniform", "low": 30, "high": 90}},
        },
        name="flaky-test",
    )


@pytest.mark.slow
def test_flaky_300_jobs(tmp_path: Path) -> None:
    shutil.copy(REPO / "manifests/images/lake.png", tmp_path / "lake.png")
    seeds = ", ".join(str(s) for s in range(JOBS))
    (tmp_path / "m.yaml").write_text(
        "batch: flaky\nmodel: runwayml/runway-gen-4/turbo/image-to-video\n"
        f"matrix: {{seed: [{seeds}]}}\nretry: {{max_attempts: 3}}\n"
        "jobs:\n  - {id: shot, prompt: a slow pan, image: lake.png}\n",
        encoding="utf-8",
    )
    expansion = load_manifest(tmp_path / "m.yaml")
    settings = EngineSettings(
        batch="flaky",
        max_in_flight=24,
        base_delay=0.01,
        max_delay=0.1,
        poll=PollPolicy(minimum=0.01, maximum=0.1),
        idle_check=0.02,
        max_download_tries=6,
        fetch=FetchPolicy.lasting(5),  # a paid video whose fetch fails waits milliseconds
    )
    with (
        SimulatorServer(flaky_profile(), token=TOKEN) as server,
        Store.open(str(tmp_path / "store.db")) as store,
    ):
        enqueue(store, expansion, tmp_path / "out")

        async def main() -> None:
            timeout = httpx.Timeout(0.25, connect=1.0)
            async with (
                RunComfyClient(
                    server.api_base, token=TOKEN, timeout=timeout, submit_timeout=timeout
                ) as api,
                Downloader(trusted_hosts=["127.0.0.1", "localhost"]) as downloader,
            ):
                engine = Engine(WorkQueue(store), api, downloader, builtin_catalog(), settings)
                await engine.run()

        anyio.run(main)
        ledger = server.simulator.snapshot()

    with sqlite3.connect(tmp_path / "store.db") as db:
        states = dict(db.execute("select state, count(*) from jobs group by state").fetchall())
        failed_without_reason = db.execute(
            "select count(*) from jobs where state = 'failed' and coalesce(error, '') = ''"
        ).fetchone()[0]
        attempts = db.execute(
            "select job_id, number, kind, request_id, outcome from attempts order by job_id, number"
        ).fetchall()
    # Every job ends: succeeded, failed with a reason, or waiting for a reconcile decision.
    assert sum(states.values()) == JOBS
    assert set(states) <= {"succeeded", "failed", "needs_reconcile", "fetch_paused"}, states
    assert failed_without_reason == 0
    assert states.get("succeeded", 0) > JOBS * 0.8
    # The faults really happened.
    assert ledger["faults"].get("submit_accepted_then_error", 0) > 0
    assert ledger["faults"].get("truncated_download", 0) > 0
    # Accepted-then-500 submits end in needs_reconcile (never blindly resubmitted).
    assert states.get("needs_reconcile", 0) >= ledger["faults"]["submit_accepted_then_error"]
    # A payload accepted twice must be a re-roll the store recorded for one job.
    rerolled = check_paid_once(attempts, ledger)
    assert rerolled > 0
    assert not list((tmp_path / "out").rglob("*.part"))
