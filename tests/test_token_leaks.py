"""The token never leaves, even when the API host echoes it into everything it says.

The simulator plants the request's Authorization header in every free-text string and URL
of every reply (``echo_authorization``). A run through every kind of reply (accepted,
rate-limited, 5xx, failed jobs, a job that fails only in its result) and every
read-out command (status, jobs, reconcile, export in each format, the report) must leave
the token in no output, no file under the test's folder (the SQLite store included, read as
bytes), and no request to the file host.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr
from typing import TYPE_CHECKING

import pytest
import yaml
from engine_helpers import TOKEN, make_profile
from model_ids import PRO

from orchestrator.cli import main
from orchestrator.simulator import SimulatorServer

if TYPE_CHECKING:
    from pathlib import Path

IMAGE = "https://images.example/frames/beach.jpg"
FAULTS = {
    "rate_limit": 0.15,
    "server_error": 0.1,
    "job_failed": 0.2,
    "job_failed_result_only": 0.1,
}


def cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stderr(err):
        code = main(list(args), out=out)
    return code, out.getvalue() + err.getvalue()


@pytest.fixture
def echoing(monkeypatch: pytest.MonkeyPatch) -> SimulatorServer:
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", TOKEN)
    return SimulatorServer(make_profile(FAULTS, seed=7), token=TOKEN, echo_authorization=True)


@pytest.mark.timeout(180)  # a dozen commands, a run among them; slower under coverage
@pytest.mark.slow
def test_a_server_echoing_the_token_everywhere_never_gets_it_printed_or_stored(
    echoing: SimulatorServer, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    jobs = [{"id": f"j{n}", "prompt": f"shot {n}", "image": IMAGE} for n in range(12)]
    manifest = tmp_path / "echo.yaml"
    document = {"batch": "echo", "model": PRO, "jobs": jobs, "output": {"dir": "out"}}
    document["retry"] = {"max_attempts": 2}
    manifest.write_text(yaml.safe_dump(document), encoding="utf-8")
    db = str(tmp_path / "s.db")
    outputs: list[str] = []
    with echoing as server:
        api = ["--api-base", server.api_base]
        for command in (
            ["plan", str(manifest), "--db", db, *api],
            ["run", str(manifest), "--db", db, *api, "--trust-host", "localhost",
             "--poll-min", "0.01", "--poll-max", "0.2", "--fetch-patience", "0.05",
             "--quiet"],
            ["status", "--db", db, "--batch", "echo", "--json"],
            ["status", "--db", db],
            ["jobs", "--db", db, "--json"],
            ["jobs", "--db", db],
            ["reconcile", "--db", db, "--json"],
            ["export", "--db", db, "--batch", "echo", "--format", "jsonl"],
            ["export", "--db", db, "--batch", "echo", "--format", "csv"],
            ["export", "--db", db, "--batch", "echo", "--format", "hf"],
            ["report", "--db", db, "--batch", "echo"],
            ["models", "--refresh", "--db", db, *api, "--json"],
        ):  # fmt: skip
            code, text = cli(*command)
            assert code in (0, 1), (command, text)
            outputs.append(text)
        ledger = server.simulator.snapshot()
    captured = capfd.readouterr()
    outputs += [captured.out, captured.err]

    # The run went through the replies that carry text: the test is not vacuous.
    replies = ledger["replies"]
    assert ledger["faults"], ledger
    assert any(reply.endswith((" 429", " 500", " 502", " 503")) for reply in replies), replies
    stored = json.loads(cli("jobs", "--db", db, "--json")[1])
    assert any(job["error"] and "Authorization: " in job["error"] for job in stored), stored
    assert any(job["state"] == "succeeded" for job in stored)

    for text in outputs:
        assert TOKEN not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), f"the token is in {path}"
    for download in ledger["downloads"]:
        assert "authorization" not in download["headers"]
        assert TOKEN not in json.dumps(download)
