"""``retry`` and ``cancel`` over a real store and a real simulator socket."""

from __future__ import annotations

import io
import json
from pathlib import Path

import anyio
import pytest
from engine_helpers import (
    BATCH,
    TOKEN,
    attempt_rows,
    body_of,
    by_name,
    fast_settings,
    make_profile,
    run_engine,
    seed_store,
    simulator,
)

from orchestrator.api import RunComfyClient
from orchestrator.cli import main
from orchestrator.simulator import ManualClock
from orchestrator.store import JobState
from orchestrator.store.work import WorkQueue


def cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(args), out=out), out.getvalue()


def test_retry_requeues_failed_jobs_as_new_attempts(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 2)
    with simulator(make_profile({"job_failed": 1.0})) as server:
        run_engine(store, server, fast_settings())
    assert {j.state for j in by_name(store).values()} == {JobState.FAILED}
    db = str(tmp_path / "store.db")
    code, text = cli("retry", "--db", db, "--batch", BATCH, "--failed", "--json")
    assert code == 0
    assert sorted(json.loads(text)["requeued"]) == ["job0", "job1"]
    jobs = by_name(store)
    assert {j.state for j in jobs.values()} == {JobState.PENDING}
    assert all(j.error is None for j in jobs.values())
    with simulator(make_profile()) as server:
        run_engine(store, server, fast_settings())
    for job in by_name(store).values():
        assert job.state == JobState.SUCCEEDED
        kinds = [row.kind for row in attempt_rows(store, job.row_id)]
        assert kinds == ["submit", "reroll"]  # the user's retry is a new paid attempt


def test_retry_needs_a_selection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_store(tmp_path, 1)
    code, _ = cli("retry", "--db", str(tmp_path / "store.db"), "--batch", BATCH)
    assert code == 2
    assert "--failed" in capsys.readouterr().err


def test_cancel_stops_local_jobs_and_remote_queued_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = seed_store(tmp_path, 5)
    queue = WorkQueue(store)
    clock = ManualClock()
    with simulator(make_profile(slots=1), clock=clock) as server:
        # Three jobs go to RunComfy (one runs, two wait); two stay pending here.
        async def submit_three() -> None:
            async with RunComfyClient(server.api_base, token=TOKEN) as api:
                for item in queue.claim(BATCH, 3):
                    reply = await api.submit(item.model_id, body_of(item.name))
                    queue.transition(
                        item, JobState.SUBMITTED, "accepted", {"request_id": reply.request_id}
                    )

        anyio.run(submit_three)
        monkeypatch.setenv("RUNCOMFY_API_TOKEN", TOKEN)
        code, text = cli(
            "cancel",
            "--db",
            str(tmp_path / "store.db"),
            "--batch",
            BATCH,
            "--api-base",
            server.api_base,
            "--json",
        )
        ledger = server.simulator.snapshot()
    report = json.loads(text)
    assert code == 1, report  # one job was already running
    assert sorted(report["cancelled_locally"]) == ["job3", "job4"]
    assert sorted(report["cancelled_remotely"]) == ["job1", "job2"]
    assert report["already_running"] == ["job0"]
    states = {name: job.state for name, job in by_name(store).items()}
    assert states == {
        "job0": JobState.SUBMITTED,
        "job1": JobState.CANCELLED,
        "job2": JobState.CANCELLED,
        "job3": JobState.CANCELLED,
        "job4": JobState.CANCELLED,
    }
    cancelled = [t for t in ledger["jobs"].values() if t["cancelled_at"] is not None]
    assert len(cancelled) == 2


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "hf"])
def test_export_writes_one_row_per_video(tmp_path: Path, fmt: str) -> None:
    store = seed_store(tmp_path, 2)
    with simulator(make_profile()) as server:
        run_engine(store, server, fast_settings())
    db = str(tmp_path / "store.db")
    code, text = cli("export", "--db", db, "--batch", BATCH, "--format", fmt, "--json")
    assert code == 0
    result = json.loads(text)
    assert result["rows"] == 2
    assert result["skipped"] == []
    assert Path(result["path"]).exists()
    code, text = cli("export", "--db", db, "--batch", BATCH, "--format", fmt)
    assert code == 0
    assert "exported 2 video(s)" in text


def test_export_of_an_unknown_batch_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_store(tmp_path, 1)
    code, _ = cli("export", "--db", str(tmp_path / "store.db"), "--batch", "nope")
    assert code == 2
    assert "nope" in capsys.readouterr().err


def test_report_command_writes_the_page(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 2)
    with simulator(make_profile()) as server:
        run_engine(store, server, fast_settings())
    db = str(tmp_path / "store.db")
    code, text = cli("report", "--db", db, "--batch", BATCH, "--json")
    assert code == 0
    result = json.loads(text)
    assert result["videos"] == 2
    assert Path(result["path"]).exists()
    code, text = cli("report", "--db", db, "--batch", BATCH)
    assert code == 0
    assert "2 video(s)" in text
    assert cli("report", "--db", db, "--batch", "missing")[0] == 2
