"""Every store-using command of the CLI on PostgreSQL (``--db`` and ``ORCHESTRATOR_DB``), and
``status`` showing the live workers that share the store."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_helpers import BASE_PROFILE
from model_ids import PRO

from orchestrator.cli import main
from orchestrator.store import Store
from orchestrator.store.work import WorkQueue
from orchestrator.store.workers import WorkerRegistry

BATCH = "pgcli"
ImageFactory = Callable[..., Path]
ManifestWriter = Callable[..., Path]


def cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(args), out=out), out.getvalue()


def cli_json(*args: str) -> Any:
    code, text = cli(*args, "--json")
    assert code == 0, text
    return json.loads(text)


@pytest.fixture
def manifest(make_image: ImageFactory, write_manifest: ManifestWriter) -> Path:
    """Three PRO jobs over one real local image; videos under out/."""
    make_image("in/beach.jpg", (1280, 720))
    jobs = "".join(
        f"  - id: {name}\n    prompt: a slow dolly-in over {name}\n    image: in/beach.jpg\n"
        for name in ("a", "b", "c")
    )
    return write_manifest(
        f"batch: {BATCH}\nmodel: {PRO}\nretry:\n  max_attempts: 1\n"
        f"output:\n  dir: out\njobs:\n{jobs}"
    )


@pytest.fixture
def sim_options(tmp_path: Path) -> list[str]:
    """``--simulate`` with the fast test profile (tiny videos, 2 s jobs)."""
    raw = {k: v for k, v in BASE_PROFILE.items() if k != "time_scale"}
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return ["--simulate", "--sim-time-scale", "0.002", "--sim-profile", str(profile), "--quiet"]


def states(url: str, batch: str = BATCH) -> dict[str, str]:
    with Store.open(url) as store:
        return {job.id: job.state.value for job in store.list_jobs(batch=batch)}


@pytest.mark.slow
def test_every_store_command_works_on_postgresql(
    pg_url: str, manifest: Path, tmp_path: Path, sim_options: list[str]
) -> None:
    db = ["--db", pg_url]
    code, text = cli("validate", str(manifest), *db)
    assert code == 0
    assert text.startswith("ok: ")
    assert "3 job(s)" in text

    code, text = cli("plan", str(manifest), *db)
    assert code == 0, text
    assert f"batch {BATCH!r}: 3 job(s): 3 new, 0 already stored, 0 done" in text
    assert states(pg_url) == {}, "plan must not store anything"

    code, text = cli("enqueue", str(manifest), *db)
    assert code == 0
    assert "3 job(s) added, 0 already stored" in text
    assert states(pg_url) == {"a": "pending", "b": "pending", "c": "pending"}
    plan = cli_json("plan", str(manifest), *db)
    assert (plan["new"], plan["stored"]) == (0, 3)
    assert {job["status"] for job in plan["jobs"]} == {"stored (pending)"}
    assert cli_json("enqueue", str(manifest), *db)["existing"] == 3

    code, text = cli("status", *db)
    assert code == 0
    assert "1 batch(es): 3 job(s)" in text
    assert "pending" in text
    status = cli_json("status", "--batch", BATCH, *db)
    assert status["total"] == 3
    assert status["counts"]["pending"] == 3
    assert [b["name"] for b in status["batches"]] == [BATCH]
    assert status["by_model"]
    assert status["workers"] == []

    code, text = cli("jobs", *db)
    assert code == 0
    assert text.rstrip().endswith("3 job(s)")
    listed = cli_json("jobs", "--state", "pending", *db)
    assert sorted(j["id"] for j in listed) == ["a", "b", "c"]

    code, text = cli("cancel", "--batch", BATCH, "--ids", "c", *db)
    assert code == 0
    assert "1 job(s) cancelled before submission" in text
    assert states(pg_url)["c"] == "cancelled"
    code, text = cli("retry", "--batch", BATCH, "--failed", *db)
    assert code == 0
    assert text.startswith("0 job(s)")
    assert cli_json("retry", "--batch", BATCH, "--ids", "c", *db)["requeued"] == ["c"]
    assert states(pg_url)["c"] == "pending"

    code, text = cli("work", "--batch", BATCH, *sim_options, *db)
    assert code == 0, text
    assert states(pg_url) == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}

    exported = cli_json("export", "--batch", BATCH, "--format", "jsonl", *db)
    assert exported["rows"] == 3
    assert exported["skipped"] == []
    lines = Path(exported["path"]).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert all(json.loads(line) for line in lines)
    dest = tmp_path / "videos.csv"
    code, text = cli("export", "--batch", BATCH, "--format", "csv", "--dest", str(dest), *db)
    assert code == 0
    assert "exported 3 video(s)" in text
    with dest.open(encoding="utf-8", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 3

    reported = cli_json("report", "--batch", BATCH, *db)
    assert (reported["videos"], reported["failures"]) == (3, 0)
    assert "<html" in Path(reported["path"]).read_text(encoding="utf-8").lower()

    code, text = cli("reconcile", *db)
    assert code == 0
    assert "no job needs reconciling" in text
    assert cli_json("reconcile", *db) == {"needs_reconcile": [], "resubmitted": []}
    status = cli_json("status", *db)
    assert status["counts"]["succeeded"] == 3
    assert status["total"] == 3


def test_orchestrator_db_environment_variable_selects_postgresql(
    pg_url: str, manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORCHESTRATOR_DB", pg_url)
    code, text = cli("enqueue", str(manifest))
    assert code == 0
    assert "3 job(s) added" in text
    status = cli_json("status")
    assert status["total"] == 3
    assert status["counts"]["pending"] == 3
    assert len(cli_json("jobs", "--batch", BATCH)) == 3
    assert states(pg_url) == {"a": "pending", "b": "pending", "c": "pending"}
    assert not (tmp_path / "orchestrator.db").exists(), "no default SQLite store"
    assert list(tmp_path.glob("*.db")) == []


def test_run_simulate_end_to_end_on_postgresql(
    pg_url: str, tmp_path: Path, make_image: ImageFactory, sim_options: list[str]
) -> None:
    make_image("in/beach.jpg", (1280, 720))
    document = {
        "batch": "pgrun",
        "model": PRO,
        "jobs": [{"id": n, "prompt": f"waves over {n}", "image": "in/beach.jpg"} for n in "xy"],
        "retry": {"max_attempts": 1},
        "output": {"dir": "out"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    code, text = cli("run", str(path), "--db", pg_url, *sim_options)
    assert code == 0, text
    assert "2 new job(s)" in text
    found = cli_json("jobs", "--batch", "pgrun", "--db", pg_url)
    assert {j["id"]: j["state"] for j in found} == {"x": "succeeded", "y": "succeeded"}
    for job in found:
        video = tmp_path / "out" / job["output_path"]
        assert video.is_file()
        assert video.suffix == ".mp4"
        assert video.stat().st_size > 0


def test_status_lists_live_workers_and_what_they_hold(pg_url: str, manifest: Path) -> None:
    assert cli("enqueue", str(manifest), "--db", pg_url)[0] == 0
    with Store.open(pg_url) as store:
        queue = WorkQueue(store)
        workers = WorkerRegistry(queue)
        worker = workers.register(batch=BATCH, lease_seconds=300)
        try:
            claimed = queue.claim(BATCH, 1, worker_id=worker)
            assert [item.worker_id for item in claimed] == [worker]

            code, text = cli("status", "--db", pg_url)
            assert code == 0
            assert "1 live worker(s):" in text
            line = next(row for row in text.splitlines() if row.startswith(worker))
            assert BATCH in line
            assert "1 submitting" in line
            code, text = cli("status", "--batch", BATCH, "--db", pg_url)
            assert code == 0
            assert "live worker" in text
            assert worker in text

            status = cli_json("status", "--db", pg_url)
            assert [w["id"] for w in status["workers"]] == [worker]
            assert status["workers"][0]["holds"] == {"submitting": 1}
            assert status["workers"][0]["batch"] == BATCH
            assert status["counts"]["submitting"] == 1
        finally:
            workers.stop(worker)

    code, text = cli("status", "--db", pg_url)
    assert code == 0
    assert "live worker" not in text
    assert worker not in text
    assert cli_json("status", "--db", pg_url)["workers"] == []
