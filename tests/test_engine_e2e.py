"""End to end over real sockets: the CLI's run against the simulator, five models."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import av
import pytest

from orchestrator.cli import main
from orchestrator.simulator import SimulatorServer, load_profile

REPO = Path(__file__).resolve().parent.parent
TOKEN = "e2e-secret-token-value"


@pytest.fixture
def server() -> SimulatorServer:
    profile = load_profile("calm").with_overrides(time_scale=0.002, slots=4)
    with SimulatorServer(profile, token=TOKEN) as running:
        yield running


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(args), out=out), out.getvalue()


def run_manifest(manifest: Path, db: Path, out: Path, server: SimulatorServer) -> tuple[int, str]:
    """``orchestrator run`` against the test's simulator, polling at simulator speed."""
    return run(
        "run",
        str(manifest),
        "--db",
        str(db),
        "--out",
        str(out),
        "--api-base",
        server.api_base,
        "--trust-host",
        "localhost",
        "--poll-min",
        "0.01",
        "--poll-max",
        "0.2",
    )


@pytest.mark.slow
def test_all_five_models_end_to_end(
    server: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", TOKEN)
    db, out = tmp_path / "store.db", tmp_path / "videos"
    code, text = run_manifest(tmp_path / "manifests/matrix-all-models.yaml", db, out, server)
    assert code == 0, text
    assert "succeeded    10" in text
    jobs = json.loads(run("jobs", "--db", str(db), "--json")[1])
    assert len(jobs) == 10
    assert {j["state"] for j in jobs} == {"succeeded"}
    ledger = server.simulator.snapshot()
    assert ledger["duplicates"] == {}
    assert sum(ledger["submissions"].values()) == 10
    served = {d["path"].split("/")[2] for d in ledger["downloads"] if d["status"] == 200}
    assert len(served) == 10
    for download in ledger["downloads"]:
        assert "authorization" not in download["headers"], "the token reached the file host"
    for job in jobs:
        video = out / job["output_path"]
        data = video.read_bytes()
        assert hashlib.sha256(data).hexdigest() == job["sha256"]
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert sum(1 for _ in container.decode(stream)) > 0
        sidecar = json.loads(video.with_suffix(".json").read_text())
        assert sidecar["request_id"] == job["request_id"]
        assert sidecar["video"]["sha256"] == job["sha256"]
        assert TOKEN not in video.with_suffix(".json").read_text()
    assert TOKEN.encode() not in db.read_bytes()
    # The batch's JSON log: one object per line, each naming its batch and job, no token.
    log_text = (out / "logs" / "model-comparison.jsonl").read_text()
    assert TOKEN not in log_text
    lines = [json.loads(line) for line in log_text.splitlines()]
    submitted = [line for line in lines if line["event"] == "submitted"]
    assert len(submitted) == 10
    assert all(line["batch"] == "model-comparison" and line["job"] for line in submitted)
    assert {line["request_id"] for line in submitted} == {j["request_id"] for j in jobs}
    moves = [line for line in lines if line["event"] == "transition"]
    assert {(m["from_state"], m["to_state"]) for m in moves} == {
        ("submitting", "submitted"),
        ("submitted", "downloading"),
        ("downloading", "succeeded"),
    }
    assert all(m["batch"] and m["job"] and m["attempt"] and m["request_id"] for m in moves)
    # A second run finds everything done and submits nothing.
    code, text = run_manifest(tmp_path / "manifests/matrix-all-models.yaml", db, out, server)
    assert code == 0
    assert sum(server.simulator.snapshot()["submissions"].values()) == 10


def test_run_without_a_token_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNCOMFY_API_TOKEN", raising=False)
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    code, _text = run(
        "run", str(tmp_path / "manifests/runway-gen-4-turbo.yaml"), "--db", str(tmp_path / "s.db")
    )
    assert code == 2


def test_run_simulate_leaves_videos(tmp_path: Path) -> None:
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    code, text = run(
        "run",
        str(tmp_path / "manifests/dreamina-3-0-pro.yaml"),
        "--simulate",
        "--sim-time-scale",
        "0.002",
        "--db",
        str(tmp_path / "s.db"),
        "--out",
        str(tmp_path / "v"),
    )
    assert code == 0, text
    assert sorted(p.name for p in (tmp_path / "v/dreamina-demo/dreamina-3-0-pro").iterdir()) == [
        "city.json",
        "city.mp4",
        "forest.json",
        "forest.mp4",
    ]
