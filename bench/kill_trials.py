"""kill -9 trials: random crash points across submit, poll, download and commit, on SQLite.

Each trial enqueues a small batch in a fresh folder and SQLite store, runs ``orchestrator
run`` against an in-process simulator with ``ORCHESTRATOR_CRASH_AT=point:N`` (SIGKILL at
the Nth pass, :mod:`orchestrator.failpoints`), sometimes kills the first re-run too at
another point, then re-runs without a crash point until a run exits normally. It counts
lost jobs, payloads paid twice without a record, partial files, files that do not match
the store, and token leaks. A seeded generator picks the points, so a run is reproducible.

    python bench/kill_trials.py --trials 30 --seed 7 --jobs 8 --write RELIABILITY.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_enqueue import machine, write_section

from orchestrator.simulator import SimulatorServer, load_profile

REPO = Path(__file__).resolve().parent.parent
START, END = "<!-- kill:start -->", "<!-- kill:end -->"
TOKEN = "kill-trial-token-0123456789"
POINTS = (
    "after_claim",
    "after_post",
    "after_accept",
    "after_status",
    "before_download",
    "before_rename",
    "after_rename",
    "before_commit",
)
ENDED = {"succeeded", "failed", "needs_reconcile", "fetch_paused"}
MAX_RERUNS = 3
FIGURES = ("lost", "duplicated", "partial", "bad_files", "token_leaks")


@dataclass
class Trial:
    number: int
    profile: str
    kills: list[str]
    reached: list[bool] = field(default_factory=list)
    runs: int = 0
    exits: list[int] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicated: int = 0
    rerolls: int = 0
    partial: int = 0
    bad_files: int = 0
    token_leaks: int = 0
    paid_failed: int = 0
    seconds: float = 0.0

    @property
    def broken(self) -> bool:
        return any(getattr(self, name) for name in FIGURES)


def plan_trials(trials: int, seed: int, jobs: int) -> list[Trial]:
    """Per trial: one or two kill points (``point:N``) and a profile, from one seeded rng."""
    rng = random.Random(seed)

    def kill(exclude: str | None = None) -> str:
        point = rng.choice([p for p in POINTS if p != exclude])
        return f"{point}:{rng.randint(1, 4 * jobs if point == 'before_commit' else jobs)}"

    planned = []
    for number in range(1, trials + 1):
        kills = [kill()]
        if rng.random() < 1 / 3:
            kills.append(kill(exclude=kills[0].split(":")[0]))
        profile = "flaky" if rng.random() < 0.2 else "calm"
        planned.append(Trial(number, profile, kills))
    return planned


def write_manifest(folder: Path, jobs: int) -> None:
    shutil.copy(REPO / "manifests/images/lake.png", folder / "lake.png")
    seeds = ", ".join(str(s) for s in range(jobs))
    (folder / "m.yaml").write_text(
        "batch: kill\nmodel: runwayml/runway-gen-4/turbo/image-to-video\n"
        f"matrix: {{seed: [{seeds}]}}\n"
        "jobs:\n  - {id: shot, prompt: a slow pan, image: lake.png}\n",
        encoding="utf-8",
    )


def run(folder: Path, api_base: str, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN}
    env.pop("ORCHESTRATOR_CRASH_AT", None)
    if crash_at:
        env["ORCHESTRATOR_CRASH_AT"] = crash_at
    command = [sys.executable, "-m", "orchestrator", "run", str(folder / "m.yaml")]
    command += ["--db", str(folder / "store.db"), "--out", str(folder / "out")]
    command += ["--api-base", api_base, "--trust-host", "localhost", "--max-in-flight", "3"]
    command += ["--poll-min", "0.01", "--poll-max", "0.2"]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def count_duplicates(trial: Trial, ledger: dict[str, Any], db: sqlite3.Connection) -> None:
    """Extra acceptances of one payload. On ``calm`` any is a double payment; on ``flaky``
    a recorded re-roll (an attempt row of the same job) pays again on purpose."""
    attempts = dict(db.execute("select job_id, count(*) from attempts group by job_id"))
    owner: dict[str, int] = {}
    owner.update(
        db.execute(
            "select request_id, job_id from attempts where request_id is not null"
            " union select request_id, id from jobs where request_id is not null"
        )
    )
    by_hash: dict[str, set[int]] = {}
    for rid, job in ledger["jobs"].items():
        if rid in owner:
            by_hash.setdefault(job["payload_hash"], set()).add(owner[rid])
    extra = 0
    for digest, accepted in ledger["duplicates"].items():
        if trial.profile == "calm":
            extra += accepted - 1
        else:
            allowed = max((attempts.get(j, 0) for j in by_hash.get(digest, ())), default=1)
            extra += max(0, accepted - allowed)
            trial.rerolls += min(accepted, allowed) - 1
    submissions = sum(ledger["submissions"].values())
    extra += max(0, submissions - sum(attempts.values()))
    trial.duplicated = extra


def check(trial: Trial, folder: Path, jobs: int, ledger: dict[str, Any], output: str) -> None:
    out = folder / "out"
    rows: list[tuple[str, str, str | None]] = []
    failed: list[tuple[str | None]] = []
    if (folder / "store.db").exists():
        with sqlite3.connect(folder / "store.db") as db:
            rows = db.execute("select state, output_path, sha256 from jobs").fetchall()
            count_duplicates(trial, ledger, db)
            failed = db.execute("select request_id from jobs where state = 'failed'").fetchall()
        db.close()
        remote = ledger["jobs"]
        trial.paid_failed = sum(
            remote.get(rid, {}).get("outcome") == "success" for (rid,) in failed
        )
    trial.states = dict(Counter(state for state, _, _ in rows))
    trial.lost = max(0, jobs - len(rows)) + sum(1 for s, _, _ in rows if s not in ENDED)
    trial.partial = len(list(out.rglob("*.part")))
    owned = set()
    for state, output_path, sha256 in rows:
        if state != "succeeded":
            continue
        video = out / output_path
        owned.add(video)
        try:
            digest = hashlib.sha256(video.read_bytes()).hexdigest()
            sidecar = json.loads(video.with_suffix(".json").read_text(encoding="utf-8"))
            good = digest == sha256 == sidecar["video"]["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            good = False
        trial.bad_files += not good
    # A video under its final name that no succeeded job owns is a bad file too.
    trial.bad_files += sum(1 for p in out.rglob("*.mp4") if p not in owned)
    leaks = [TOKEN in output]
    leaks += [TOKEN.encode() in p.read_bytes() for p in folder.glob("store.db*")]
    leaks += [TOKEN.encode() in p.read_bytes() for p in out.rglob("*") if p.is_file()]
    leaks += [any(k.lower() == "authorization" for k in d["headers"]) for d in ledger["downloads"]]
    trial.token_leaks = sum(leaks)


def run_trial(trial: Trial, jobs: int, seed: int) -> None:
    started = time.perf_counter()
    profile = load_profile(trial.profile).with_overrides(
        time_scale=0.001, slots=2, seed=seed * 1000 + trial.number
    )
    with tempfile.TemporaryDirectory(prefix="kill-") as tmp:
        folder = Path(tmp)
        write_manifest(folder, jobs)
        output = ""
        with SimulatorServer(profile, token=TOKEN) as server:
            for crash_at in [*trial.kills, *[None] * MAX_RERUNS]:
                if crash_at is None and trial.runs > len(trial.kills) and trial.exits[-1] in (0, 1):
                    break  # a clean re-run ended normally
                done = run(folder, server.api_base, crash_at)
                trial.runs += 1
                trial.exits.append(done.returncode)
                output += done.stdout + done.stderr
                if crash_at is not None:
                    trial.reached.append(done.returncode == -9)
            ledger = server.simulator.snapshot()
        check(trial, folder, jobs, ledger, output)
        if trial.exits[-1] not in (0, 1):
            trial.lost = max(trial.lost, 1)  # never ended normally: count as a loss
    trial.seconds = time.perf_counter() - started


def table(trials: list[Trial]) -> str:
    head = "| point | kills | reached | lost | duplicated | partial | bad files |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for point in POINTS:
        planned = [
            (t, r)
            for t in trials
            for k, r in zip(t.kills, t.reached, strict=True)
            if k.startswith(point)
        ]
        if not planned:
            continue
        sums = [sum(getattr(t, f) for t, _ in planned) for f in FIGURES[:4]]
        reached = sum(r for _, r in planned)
        lines.append(
            f"| {point} | {len(planned)} | {reached} | " + " | ".join(map(str, sums)) + " |"
        )
    kills = sum(len(t.kills) for t in trials)
    reached = sum(sum(t.reached) for t in trials)
    sums = [sum(getattr(t, f) for t in trials) for f in FIGURES[:4]]
    lines.append(f"| **all trials** | {kills} | {reached} | " + " | ".join(map(str, sums)) + " |")
    return "\n".join(lines)


def section(trials: list[Trial], args: argparse.Namespace, elapsed: float) -> str:
    states: Counter[str] = Counter()
    for trial in trials:
        states.update(trial.states)
    doubles = sum(len(t.kills) == 2 for t in trials)
    flaky = sum(t.profile == "flaky" for t in trials)
    totals = ", ".join(f"{v} {k}" for k, v in sorted(states.items()))
    sums = {f: sum(getattr(t, f) for t in trials) for f in (*FIGURES, "paid_failed", "rerolls")}
    broken = [
        f"- trial {t.number} ({t.profile}, {' then '.join(t.kills)}): "
        + ", ".join(f"{f} {getattr(t, f)}" for f in (*FIGURES, "paid_failed") if getattr(t, f))
        + f"; final states {t.states}"
        for t in trials
        if t.broken or t.paid_failed
    ]
    return f"""{START}
## kill -9 trials: {len(trials)} random crash points on SQLite

`bench/kill_trials.py --trials {args.trials} --seed {args.seed} --jobs {args.jobs}`
({elapsed:.0f} s). Machine: {machine()}.

Each trial enqueues {args.jobs} jobs in a fresh SQLite store, with an in-process simulator
(time scale 0.001, 2 slots; profile `calm`, or `flaky` in {flaky} of the trials). It
SIGKILLs `orchestrator run` at a random point and pass (`ORCHESTRATOR_CRASH_AT`, pass
1-{args.jobs}, 1-{4 * args.jobs} for `before_commit`); {doubles} trials also kill the
first re-run, at another point. Re-runs without a crash point follow until one exits
normally (at most {MAX_RERUNS}). An unreached kill is counted as such and its trial is still
checked. A trial with two kills counts under both points; the last row counts it once.

{table(trials)}

Totals: lost {sums["lost"]}, paid twice without a record {sums["duplicated"]}, partial
files {sums["partial"]}, bad files {sums["bad_files"]}, token leaks {sums["token_leaks"]}.
Jobs failed although the remote job succeeded (paid): {sums["paid_failed"]}. Recorded
re-rolls (flaky): {sums["rerolls"]}. Final states over all trials: {totals}.
`needs_reconcile` jobs are submits whose outcome a kill made unknown: they wait for a
person instead of being paid for twice.

{chr(10).join(broken) or "No trial found a problem."}
{END}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--write", type=Path, help="update this Markdown file's kill section")
    parser.add_argument("--smoke", action="store_true", help="3 trials, writes nothing (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.trials, args.write = 3, None
    trials = plan_trials(args.trials, args.seed, args.jobs)
    started = time.perf_counter()
    for trial in trials:
        run_trial(trial, args.jobs, args.seed)
        reached = "/".join("hit" if r else "not reached" for r in trial.reached)
        print(
            f"trial {trial.number:2d} {trial.profile:5s} {' then '.join(trial.kills):34s}"
            f" {reached:15s} runs {trial.runs} exits {trial.exits} states {trial.states}"
            f" {'BROKEN ' + str({f: getattr(trial, f) for f in FIGURES}) if trial.broken else ''}"
            f"{' paid-failed ' + str(trial.paid_failed) if trial.paid_failed else ''}"
            f" {trial.seconds:.1f}s",
            flush=True,
        )
    text = section(trials, args, time.perf_counter() - started)
    print(text)
    if args.write:
        write_section(args.write, text)
    return 1 if any(t.broken for t in trials) else 0


if __name__ == "__main__":
    raise SystemExit(main())
