"""``status`` from a second process while ``run`` works: SQLite's WAL lets a reader see the
batch without waiting for (or blocking) the writer."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.simulator import SimulatorServer, load_profile

REPO = Path(__file__).resolve().parent.parent
TOKEN = "status-token"


@pytest.mark.slow
def test_status_while_a_run_is_in_progress(tmp_path: Path) -> None:
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    db = tmp_path / "store.db"
    env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN}
    # Slow enough (60 simulated s x 0.02 = 1.2 s per job, 2 slots) to be caught mid-run.
    profile = load_profile("calm").with_overrides(time_scale=0.02, slots=2)
    with SimulatorServer(profile, token=TOKEN) as server:
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "run",
                str(tmp_path / "manifests/matrix-all-models.yaml"),
                "--db",
                str(db),
                "--out",
                str(tmp_path / "out"),
                "--api-base",
                server.api_base,
                "--trust-host",
                "localhost",
                "--poll-min",
                "0.05",
                "--poll-max",
                "0.5",
                "--quiet",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seen_mid_run = None
        deadline = time.monotonic() + 60
        try:
            while run.poll() is None and time.monotonic() < deadline:
                if not db.exists():
                    # Wait on the run itself, briefly, rather than spin.
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        run.wait(timeout=0.05)
                    continue
                status = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "orchestrator",
                        "status",
                        "--db",
                        str(db),
                        "--batch",
                        "model-comparison",
                        "--json",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                if status.returncode != 0:
                    continue  # the store was still being created
                counts = json.loads(status.stdout)["counts"]
                if sum(counts.values()) == 10 and 0 < counts["succeeded"] < 10:
                    seen_mid_run = counts
                    break
            assert run.wait(timeout=60) == 0
        finally:
            if run.poll() is None:
                run.kill()
    assert seen_mid_run is not None, "status never saw the batch half done"
    assert seen_mid_run["pending"] + seen_mid_run["submitted"] + seen_mid_run["downloading"] > 0
