"""The conventions of the command line (issue 16): typed options, one exit-code table,
read-only commands that never create a store, known batches and models listed, hints
that work when pasted, quiet broken pipes, and help that lists only what a command takes."""

from __future__ import annotations

import io
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import BATCH, new_job, seed_store
from model_ids import PRO, RUNWAY

from orchestrator.cli import cli, main
from orchestrator.cli.exits import EXIT_INTERRUPTED
from orchestrator.store import JobState
from orchestrator.store.work import WorkQueue

REPO = Path(__file__).resolve().parent.parent


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(args), out=out), out.getvalue()


def parses(command_line: str) -> None:
    """``command_line`` (what a hint says) is a command of ours that parses as written."""
    words = shlex.split(command_line, comments=True)
    assert words[0] == "orchestrator", command_line
    command = cli.commands[words[1]]
    command.make_context(words[1], words[2:])


# -- typed options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["simulate", "--port", "abc"], "--port"),
        (["simulate", "--port", "70000"], "--port"),
        (["simulate", "--slots", "0"], "--slots"),
        (["status", "--json", "--batch"], "--batch"),
        (["jobs", "--limit", "many"], "--limit"),
        (["jobs", "--state", "lost"], "--state"),
        (["run", "m.yaml", "--max-in-flight", "0"], "--max-in-flight"),
        (["run", "m.yaml", "--poll-min", "soon"], "--poll-min"),
        (["plan", "m.yaml", "--catalog-ttl", "-1"], "--catalog-ttl"),
        (["export", "--batch", "b", "--format", "parquet"], "--format"),
    ],
)
def test_a_bad_option_value_is_a_usage_error_not_a_traceback(
    args: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert option in err
    assert "Traceback" not in err


def test_an_environment_variable_is_checked_like_its_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_SIM_PORT", "abc")
    assert main(["simulate"]) == 2
    assert "ORCHESTRATOR_SIM_PORT" in capsys.readouterr().err


def test_a_flag_has_its_opposite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_store(tmp_path, 1).close()
    db = str(tmp_path / "store.db")
    monkeypatch.setenv("ORCHESTRATOR_JSON", "1")
    code, text = run("status", "--db", db)
    assert code == 0
    assert json.loads(text)["total"] == 1
    code, text = run("status", "--db", db, "--no-json")
    assert code == 0
    assert text.startswith("1 batch(es)")


def test_the_interrupted_status_is_the_engines() -> None:
    from orchestrator.engine.runner import EXIT_INTERRUPTED as ENGINE_INTERRUPTED

    assert EXIT_INTERRUPTED == ENGINE_INTERRUPTED


# -- help --------------------------------------------------------------------------------------


def test_help_imports_neither_rich_nor_the_store() -> None:
    probe = (
        "import sys; from orchestrator.cli import main; code = main(['--help']); "
        "print(code, sorted(m for m in ('rich', 'sqlalchemy', 'httpx', 'structlog') "
        "if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stderr.strip() == "0 []"
    assert "status" in done.stdout
    assert "simulate" in done.stdout


def test_each_command_lists_only_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cancel", "--help"]) == 0
    cancel = capsys.readouterr().out
    assert "--batch" in cancel
    assert "--discard" in cancel
    assert "--api-base" in cancel
    for engine_flag in ("--simulate", "--max-in-flight", "--poll-min", "--lease-seconds"):
        assert engine_flag not in cancel
    assert main(["run", "--help"]) == 0
    assert "--max-in-flight" in capsys.readouterr().out
    assert main(["status", "--help"]) == 0
    status = " ".join(capsys.readouterr().out.split())
    assert "--catalog-ttl" not in status
    assert "env var: ORCHESTRATOR_BATCH" in status


# -- read-only commands never create a store -------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["jobs"],
        ["reconcile"],
        ["reconcile", "--resubmit"],
        ["export", "--batch", "b"],
        ["report", "--batch", "b"],
        ["retry", "--batch", "b", "--failed"],
        ["cancel", "--batch", "b"],
    ],
)
def test_a_command_without_a_store_says_so_and_creates_none(
    args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "night.db").write_bytes(b"")
    code, _ = run(*args, "--db", "missing.db")
    assert code == 2
    err = capsys.readouterr().err
    assert "no store at missing.db" in err
    assert "night.db" in err
    assert not (tmp_path / "missing.db").exists()


def test_no_store_and_no_db_file_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, text = run("jobs", "--json")
    assert code == 2
    assert "orchestrator enqueue MANIFEST" in json.loads(text)["error"]
    assert not (tmp_path / "orchestrator.db").exists()


# -- unknown batches and models --------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["status", "jobs", "reconcile", "retry --failed", "cancel", "export", "report"]
)
def test_an_unknown_batch_lists_the_known_ones(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_store(tmp_path, 1).close()
    code, _ = run(*command.split(), "--batch", "nope", "--db", str(tmp_path / "store.db"))
    assert code == 2
    err = capsys.readouterr().err
    assert "'nope'" in err
    assert BATCH in err


def two_models(tmp_path: Path) -> str:
    seed_store(tmp_path, [new_job("a", model=PRO), new_job("b", model=RUNWAY)]).close()
    return str(tmp_path / "store.db")


@pytest.mark.parametrize("name", [RUNWAY, "runway-gen-4-turbo", "Runway Gen-4 Turbo"])
def test_a_model_filter_takes_the_id_the_slug_or_the_name(tmp_path: Path, name: str) -> None:
    code, text = run("jobs", "--db", two_models(tmp_path), "--model", name, "--json")
    assert code == 0
    assert [job["id"] for job in json.loads(text)] == ["b"]


def test_an_unknown_model_lists_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run("jobs", "--db", two_models(tmp_path), "--model", "sora")
    assert code == 2
    err = capsys.readouterr().err
    assert "'sora'" in err
    assert "runway-gen-4-turbo" in err
    assert "seedance-1-0-pro" in err


# -- hints that work when pasted ---------------------------------------------------------------


def test_the_hints_of_status_name_the_store(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 2, db="night shift.db")
    queue = WorkQueue(store)
    (item,) = queue.claim(BATCH, 1)
    queue.transition(item, JobState.FAILED, "failed", {"error": "no video"})
    store.close()
    db = str(tmp_path / "night shift.db")
    code, text = run("status", "--batch", BATCH, "--db", db)
    assert code == 0
    hints = [line.removeprefix("next: ") for line in text.splitlines() if line.startswith("next:")]
    assert hints, text
    for hint in hints:
        assert f"--db {shlex.quote(db)}" in hint
        parses(hint)


def test_the_hint_of_retry_and_reconcile_paste(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 2, db="other.db")
    queue = WorkQueue(store)
    first, second = queue.claim(BATCH, 2)
    queue.transition(first, JobState.FAILED, "failed", {"error": "no video"})
    queue.transition(second, JobState.NEEDS_RECONCILE, "unknown", {"error": "timed out"})
    store.close()
    db = str(tmp_path / "other.db")
    for args in (("retry", "--batch", BATCH, "--failed"), ("reconcile",)):
        code, text = run(*args, "--db", db)
        assert code == 0, text
        (hint,) = [line for line in text.splitlines() if line.startswith("next:")]
        assert f"--db {db}" in hint
        parses(hint.removeprefix("next: "))


# -- export and report take --out, as run does -----------------------------------------------


def test_export_and_report_take_out_as_run_does(tmp_path: Path) -> None:
    seed_store(tmp_path, 1).close()
    db = str(tmp_path / "store.db")
    elsewhere = tmp_path / "elsewhere"
    code, text = run("export", "--batch", BATCH, "--db", db, "--out", str(elsewhere), "--json")
    assert code == 0, text
    assert Path(json.loads(text)["path"]) == (elsewhere / BATCH / "export.jsonl").resolve()
    code, text = run("report", "--batch", BATCH, "--db", db, "--out", str(elsewhere), "--json")
    assert code == 0, text
    assert Path(json.loads(text)["path"]) == (elsewhere / BATCH / "report.html").absolute()
    # The older spelling still names the file itself; both at once is a usage error.
    page = tmp_path / "page.html"
    assert run("report", "--batch", BATCH, "--db", db, "--dest", str(page))[0] == 0
    assert page.exists()
    both = ("report", "--batch", BATCH, "--db", db, "--dest", str(page), "--out", "x")
    assert run(*both)[0] == 2


# -- broken pipes ------------------------------------------------------------------------------


def test_a_reader_that_goes_away_ends_quietly(tmp_path: Path) -> None:
    seed_store(tmp_path, 3).close()
    read, write = os.pipe()
    os.close(read)  # the reader is gone before a byte is written: every write fails
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", "jobs", "--db", str(tmp_path / "store.db")],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            check=False,
        )
    finally:
        os.close(write)
    assert done.returncode == 141
    assert "Traceback" not in done.stderr
    assert "BrokenPipe" not in done.stderr


class GoneReader(io.StringIO):
    """A stream whose reader went away: every write fails as a closed pipe does."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stream_in_process_ends_quietly(tmp_path: Path) -> None:
    seed_store(tmp_path, 1).close()
    args = ["status", "--db", str(tmp_path / "store.db")]
    assert main(args, out=GoneReader()) == 141


def test_version_and_help_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("orchestrator ")
    assert main([]) == 2  # a command is needed: Click's usage error


# -- the simulator's options -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--port", "9000", "--files-port", "9000"], "must differ from --port"),
        (["--port", "65535"], "past 65535"),
        (["--port", "0", "--profile", "no-such-profile"], "no-such-profile"),
    ],
)
def test_simulator_options_that_cannot_work_are_refused(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", *args]) == 2
    assert said in capsys.readouterr().err


def test_a_simulator_port_in_use_is_said(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["simulate", "--port", str(port), "--files-port", "0"]) == 2
    assert "choose others with --port and --files-port" in capsys.readouterr().err
