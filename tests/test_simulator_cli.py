"""``orchestrator simulate``: a real process that prints its API base and stops on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
from model_ids import PRO
from simulator_helpers import AUTH, TLS, payload

if TYPE_CHECKING:
    from pathlib import Path

API_LINE = re.compile(r"^\s*API:\s+(http://\S+)")


def test_simulate_serves_until_terminated(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_SIM_")}
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "simulate",
                "--port",
                "0",
                "--profile",
                "calm",
                "--time-scale",
                "0.001",
                "--seed",
                "3",
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
        )
        try:
            assert process.stdout is not None
            base = None
            banner = []
            for line in process.stdout:  # the banner is flushed before serving starts
                banner.append(line)
                match = API_LINE.match(line)
                if match:
                    base = match.group(1)
                    break
            assert base is not None, "".join(banner) + log.read_text()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)
            assert "seed 3" in "".join(banner)
            # The socket is bound before the banner, so the first request is safe to send
            # (it waits in the backlog until uvicorn starts accepting).
            with httpx.Client(base_url=base, headers=AUTH, timeout=10, verify=TLS) as api:
                submitted = api.post(f"/v1/models/{PRO}", json=payload(PRO))
                assert submitted.status_code == 200, submitted.text
                request_id = submitted.json()["request_id"]
                assert submitted.json()["status_url"].startswith(base + "/v1/requests/")
                status = api.get(f"/v1/requests/{request_id}/status")
                assert status.json()["status"] in ("in_progress", "completed")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=15)
            finally:
                if process.poll() is None:  # pragma: no cover - only if SIGTERM was ignored
                    process.kill()
                    process.wait()
                assert process.stdout is not None
                process.stdout.close()
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM), log.read_text()
