"""``run``, ``work`` and ``reconcile`` from the command line, in process and as a subprocess."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_helpers import BASE_PROFILE, FAST_POLL, TOKEN, make_profile, simulator
from model_ids import PRO

from orchestrator.catalog import builtin_catalog
from orchestrator.cli import main
from orchestrator.cli.running import connection_for
from orchestrator.engine.runner import Connection, MissingToken, drain, token_from_environment
from orchestrator.engine.settings import EngineSettings
from orchestrator.library.settings import RunOptions, engine_settings
from orchestrator.manifest import load_manifest
from orchestrator.store import JobState, Store
from orchestrator.store.work import WorkQueue

REPO = Path(__file__).resolve().parent.parent
IMAGE = "https://images.example/frames/beach.jpg"


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(args), out=out), out.getvalue()


def manifest(tmp_path: Path, names: tuple[str, ...] = ("a", "b", "c"), **top: Any) -> Path:
    """A manifest of PRO jobs with an https image (no files needed); videos under out/."""
    document: dict[str, Any] = {
        "batch": top.pop("batch", "cli"),
        "model": PRO,
        "jobs": [{"id": n, "prompt": f"a slow dolly-in over {n}", "image": IMAGE} for n in names],
        "retry": {"max_attempts": 1},
        "output": {"dir": "out"},
        **top,
    }
    path = tmp_path / f"{document['batch']}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def profile_file(tmp_path: Path, faults: dict[str, float] | None = None, **settings: Any) -> str:
    """A simulator profile YAML for ``--sim-profile``: tiny videos, 2 s jobs."""
    raw = {**BASE_PROFILE, **settings}
    raw.pop("time_scale")  # --sim-time-scale sets it
    if faults:
        raw["faults"] = faults
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return str(path)


def simulate(tmp_path: Path, profile: str | None = None) -> list[str]:
    """Options for a fast in-process ``--simulate`` run with its store in tmp_path."""
    options = ["--simulate", "--sim-time-scale", "0.002", "--db", str(tmp_path / "s.db")]
    return options + (["--sim-profile", profile] if profile else [])


def jobs(tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    code, text = run("jobs", "--db", str(tmp_path / "s.db"), "--json", *extra)
    assert code == 0
    return list(json.loads(text))


# -- run -----------------------------------------------------------------------------------------


def test_run_exits_0_when_every_job_succeeded(tmp_path: Path) -> None:
    path = manifest(tmp_path)
    code, text = run("run", str(path), *simulate(tmp_path, profile_file(tmp_path)))
    assert code == 0, text
    assert "batch 'cli': 3 new job(s), 0 already stored" in text
    assert re.search(r"^succeeded +3$", text, re.MULTILINE)
    found = jobs(tmp_path)
    assert {j["state"] for j in found} == {"succeeded"}
    for job in found:
        assert (tmp_path / "out" / job["output_path"]).is_file()
        assert job["sha256"]
        assert job["request_id"]
    # Running it again finds everything done.
    code, text = run("run", str(path), *simulate(tmp_path, profile_file(tmp_path)))
    assert code == 0
    assert "0 new job(s), 3 already stored" in text


@pytest.mark.slow
def test_run_exits_1_when_some_job_failed(tmp_path: Path) -> None:
    # Seed 1: one of the three jobs fails remotely, the others succeed.
    profile = profile_file(tmp_path, {"job_failed": 0.5}, seed=1)
    code, text = run("run", str(manifest(tmp_path)), *simulate(tmp_path, profile))
    assert code == 1, text
    states = sorted(j["state"] for j in jobs(tmp_path))
    assert states == ["failed", "succeeded", "succeeded"]
    assert "failed: " in text
    assert "the model failed to generate a video" in text
    assert "next: orchestrator retry --batch cli --failed" in text


def test_run_exits_2_for_a_bad_manifest_and_stores_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"batch: bad\nmodel: {PRO}\njobs:\n  - id: a\n    prompt: hi\n", "utf-8")
    code, text = run("run", str(bad), *simulate(tmp_path))
    assert code == 2
    assert "nothing was stored or submitted" in text
    assert not (tmp_path / "s.db").exists()


def test_run_exits_2_without_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNCOMFY_API_TOKEN", raising=False)
    monkeypatch.delenv("RUNCOMFY_TOKEN", raising=False)
    db = tmp_path / "s.db"
    code, _text = run("run", str(manifest(tmp_path)), "--db", str(db))
    assert code == 2
    assert not db.exists()
    code, _text = run("work", "--db", str(db))
    assert code == 2


def test_run_with_a_rejected_token_exits_1_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "wrong-token")
    with simulator(make_profile()) as server:
        code, text = run(
            "run",
            str(manifest(tmp_path)),
            "--db",
            str(tmp_path / "s.db"),
            "--api-base",
            server.api_base,
            "--trust-host",
            "localhost",
        )
        assert server.simulator.snapshot()["submissions"] == {}
    assert code == 1
    assert "(stopped: authentication failed)" in text
    assert "error: HTTP 401 (401001)" in text
    assert "wrong-token" not in text
    assert {j["state"] for j in jobs(tmp_path)} == {"pending"}


# -- work and reconcile --------------------------------------------------------------------------


def test_work_drains_what_enqueue_stored(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    for batch in ("one", "two"):
        code, _ = run("enqueue", str(manifest(tmp_path, ("x", "y"), batch=batch)), "--db", db)
        assert code == 0
    code, text = run("work", "--batch", "one", *simulate(tmp_path, profile_file(tmp_path)))
    assert code == 0, text
    assert "batch 'one': 2 job(s)" in text
    assert {j["state"] for j in jobs(tmp_path, "--batch", "one")} == {"succeeded"}
    assert {j["state"] for j in jobs(tmp_path, "--batch", "two")} == {"pending"}
    code, text = run("work", *simulate(tmp_path, profile_file(tmp_path)))
    assert code == 0, text
    assert "all batches: 4 job(s)" in text
    assert {j["state"] for j in jobs(tmp_path)} == {"succeeded"}


def test_reconcile_lists_and_resubmits_chosen_jobs(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    path = manifest(tmp_path)
    unknown = profile_file(tmp_path, {"submit_accepted_then_error": 1.0})
    code, text = run("run", str(path), *simulate(tmp_path, unknown))
    assert code == 1
    assert "next: orchestrator reconcile" in text

    code, text = run("reconcile", "--db", db)
    assert code == 0
    assert "These submits may have reached RunComfy" in text
    for name in ("a", "b", "c"):
        assert f" {name} " in text

    code, text = run("reconcile", "--db", db, "--json")
    listed = json.loads(text)
    assert code == 0
    assert listed["resubmitted"] == []
    assert sorted(j["id"] for j in listed["needs_reconcile"]) == ["a", "b", "c"]
    assert {j["state"] for j in listed["needs_reconcile"]} == {"needs_reconcile"}

    code, text = run("reconcile", "--db", db, "--resubmit", "--ids", "a, c", "--json")
    assert code == 0
    assert sorted(json.loads(text)["resubmitted"]) == ["a", "c"]
    states = {j["id"]: j["state"] for j in jobs(tmp_path)}
    assert states == {"a": "pending", "b": "needs_reconcile", "c": "pending"}

    code, text = run("run", str(path), *simulate(tmp_path, profile_file(tmp_path)))
    assert code == 1  # b still waits for a decision
    found = {j["id"]: j for j in jobs(tmp_path)}
    assert (found["a"]["state"], found["b"]["state"], found["c"]["state"]) == (
        "succeeded",
        "needs_reconcile",
        "succeeded",
    )
    assert found["a"]["attempts"] == 2

    code, text = run("reconcile", "--db", db, "--resubmit")
    assert code == 0
    assert "1 job(s) queued again as new paid attempts" in text
    code, text = run("reconcile", "--db", db)
    assert code == 0
    assert text == "no job needs reconciling\n"


# -- settings from the command line ----------------------------------------------------------------


def test_engine_settings_from_the_manifest_and_the_flags(tmp_path: Path) -> None:
    path = manifest(
        tmp_path,
        limits={"max_in_flight": 3, "max_in_flight_per_model": 2, "max_spend": 4.5},
        retry={"max_attempts": 2, "base_delay": 1.5, "max_delay": 40},
    )
    batch = load_manifest(path).settings
    settings = engine_settings("cli", batch, RunOptions(), time_scale=None)
    assert (settings.batch, settings.max_in_flight, settings.max_in_flight_per_model) == (
        "cli",
        3,
        2,
    )
    assert (settings.max_spend, settings.base_delay, settings.max_delay) == (4.5, 1.5, 40)
    assert settings.poll == EngineSettings().poll
    assert not settings.cancel_on_exit
    flags = engine_settings(
        "cli",
        batch,
        RunOptions(max_in_flight=5, max_spend=2.5, cancel_on_exit=True),
        time_scale=None,
    )
    assert (flags.max_in_flight, flags.max_spend, flags.cancel_on_exit) == (5, 2.5, True)
    plain = engine_settings(None, None, RunOptions(), time_scale=None)
    assert (plain.batch, plain.max_in_flight, plain.max_spend, plain.base_delay) == (
        None,
        8,
        None,
        2.0,
    )
    fast = engine_settings(None, None, RunOptions(), time_scale=0.01)
    # The simulator's seconds are a hundredth of real ones: the same schedule, scaled.
    assert fast.base_delay < 1
    assert fast.poll.minimum == pytest.approx(0.005)
    assert fast.poll.maximum == pytest.approx(0.6)
    assert fast.idle_check < plain.idle_check
    bounded = engine_settings(
        None, None, RunOptions(poll_min=0.5, poll_max=10), time_scale=None
    ).poll
    assert (bounded.minimum, bounded.maximum) == (0.5, 10.0)
    floor_only = engine_settings(None, None, RunOptions(poll_min=90), time_scale=None).poll
    assert floor_only.minimum == 90
    assert floor_only.maximum >= 90


def test_the_real_api_needs_a_token_and_trusts_only_listed_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RUNCOMFY_API_TOKEN", raising=False)
    monkeypatch.setenv("RUNCOMFY_TOKEN", "  from-second-variable  ")
    assert token_from_environment() == "from-second-variable"
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "first-token")
    assert token_from_environment() == "first-token"
    with connection_for(trust_host="cdn.example, ,files.example") as connection:
        assert connection == Connection(
            "https://model-api.runcomfy.net", "first-token", ["cdn.example", "files.example"]
        )
    # A token too short to mask in output is refused, never half-masked.
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "t")
    with pytest.raises(MissingToken, match="too short"):
        token_from_environment()
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "  ")
    monkeypatch.delenv("RUNCOMFY_TOKEN")
    with pytest.raises(MissingToken, match="RUNCOMFY_API_TOKEN"):
        token_from_environment()


# -- signals -------------------------------------------------------------------------------------


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        into.put(line)
    into.put("")  # end of stream


def wait_for_line(lines: queue.Queue[str], text: str, deadline: float) -> list[str]:
    """Lines read until one contains ``text`` (fails at the deadline or at end of stream)."""
    seen: list[str] = []
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no line with {text!r} in time:\n{''.join(seen)}"
        line = lines.get(timeout=remaining)
        assert line, f"the process ended before printing {text!r}:\n{''.join(seen)}"
        seen.append(line)
        if text in line:
            return seen


def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(process.stderr, lines), daemon=True).start()
    return process, lines


@pytest.mark.slow
def test_sigint_stops_a_run_with_130_and_a_second_run_finishes_without_resubmitting(
    tmp_path: Path,
) -> None:
    path = manifest(tmp_path, ("a", "b", "c", "d"), limits={"max_in_flight": 2})
    db = tmp_path / "s.db"
    # 20 simulated seconds at 0.05: each job runs a second, long enough to interrupt.
    profile = make_profile(time_scale=0.05, durations={"default": 20})
    env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN}
    with simulator(profile) as server:
        args = ["run", str(path), "--db", str(db), "--api-base", server.api_base]
        process, lines = start([*args, "--trust-host", "localhost"], env)
        try:
            wait_for_line(lines, "submitted", time.monotonic() + 30)
            process.send_signal(signal.SIGINT)
            stdout, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 130, stdout
        assert "(interrupted)" in stdout
        assert "next: run the same command again to resume" in stdout
        with Store.open(str(db)) as store:
            counts = store.counts("cli")
            assert counts["submitting"] == 0
            assert counts["needs_reconcile"] == 0
            assert 1 <= counts["submitted"] <= 2
            assert counts["pending"] >= 2
            before = dict(server.simulator.snapshot()["submissions"])
            assert len(before) == counts["submitted"]
            # The second run re-attaches to the jobs already submitted and submits the rest.
            connection = Connection(server.api_base, TOKEN, ["localhost"])
            settings = EngineSettings(
                batch="cli", base_delay=0.01, max_delay=0.05, poll=FAST_POLL, idle_check=0.05
            )
            report = drain(WorkQueue(store), builtin_catalog(), connection, settings)
            assert report.stopped_by == "done"
            assert {j.state for j in store.list_jobs(batch="cli")} == {JobState.SUCCEEDED}
        ledger = server.simulator.snapshot()
    assert ledger["duplicates"] == {}
    assert sum(ledger["submissions"].values()) == 4
    assert all(ledger["submissions"][digest] == 1 for digest in before)


@pytest.mark.slow
def test_sigint_stops_a_simulated_run_with_130(tmp_path: Path) -> None:
    path = manifest(tmp_path, ("a", "b"))
    process, lines = start(
        [
            "run",
            str(path),
            "--simulate",
            "--sim-time-scale",
            "0.05",
            "--sim-profile",
            profile_file(tmp_path, durations={"default": 40}),
            "--db",
            str(tmp_path / "s.db"),
        ],
        dict(os.environ),
    )
    try:
        wait_for_line(lines, "submitted", time.monotonic() + 30)
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stdout
    assert "batch 'cli': 2 job(s) (interrupted)" in stdout
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.part"))


@pytest.mark.slow
def test_a_hang_up_stops_a_run_like_sigterm_and_keeps_every_paid_job(tmp_path: Path) -> None:
    """A closed terminal or ssh session (SIGHUP): the run stops cleanly with 130, no job is
    left mid-submit, no .part file stays, and the log file has the whole story."""
    path = manifest(tmp_path, ("a", "b", "c", "d"), limits={"max_in_flight": 2})
    db = tmp_path / "s.db"
    profile = make_profile(time_scale=0.05, durations={"default": 20})
    env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN}
    with simulator(profile) as server:
        args = ["run", str(path), "--db", str(db), "--api-base", server.api_base]
        process, lines = start([*args, "--trust-host", "localhost"], env)
        try:
            wait_for_line(lines, "submitted", time.monotonic() + 30)
            process.send_signal(signal.SIGHUP)
            stdout, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 130
        # The terminal is gone: nothing is written to it after the hang-up (the summary).
        assert "(interrupted)" not in stdout
        assert "batch 'cli': 4 new job(s)" in stdout
        with Store.open(str(db)) as store:
            counts = store.counts("cli")
        assert counts["submitting"] == 0
        assert counts["needs_reconcile"] == 0
        assert 1 <= counts["submitted"] + counts["succeeded"] <= 4
        assert not list((tmp_path / "out").rglob("*.part"))
        log = (tmp_path / "out" / "logs" / "cli.jsonl").read_text(encoding="utf-8")
        assert "submitted" in log
        assert TOKEN not in log


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-in-flight", "many"),
        ("--max-in-flight", "0"),
        ("--poll-max", "soon"),
        ("--max-spend", "-1"),
    ],
)
def test_a_bad_number_is_a_usage_error(
    tmp_path: Path, option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.yaml"
    shutil.copy(REPO / "manifests/images/lake.png", tmp_path / "lake.png")
    manifest.write_text(
        "batch: b\nmodel: runwayml/runway-gen-4/turbo/image-to-video\n"
        "jobs:\n  - {prompt: x, image: lake.png}\n",
        encoding="utf-8",
    )
    code = main(
        ["run", str(manifest), "--db", str(tmp_path / "s.db"), "--simulate", option, value],
        out=io.StringIO(),
    )
    assert code == 2
    assert option in capsys.readouterr().err
