"""Soak: the hostile profile, many jobs, several kill -9 restarts, then a full report.

A simulator process with the ``hostile`` profile (a fifth of everything fails) serves a
batch of N jobs. ``orchestrator run`` is started, SIGKILLed after a random while, started
again, several times; the last run goes to the end. Then the store, the files and the
simulator's ledger are checked: every job ended (succeeded, failed with a reason, or
needs_reconcile), nothing was paid twice without a record, no partial file was left.

    python bench/soak.py --jobs 2000 --restarts 4 --write RELIABILITY.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_enqueue import machine, write_section

from orchestrator.simulator.process import SimulatorProcess

START, END = "<!-- soak:start -->", "<!-- soak:end -->"
TOKEN = "soak-token"


SLOTS = 16


def manifest(folder: Path, jobs: int) -> Path:
    Image.new("RGB", (640, 360), (90, 40, 160)).save(folder / "frame.jpg")
    seeds = ", ".join(str(s) for s in range(jobs))
    path = folder / "soak.yaml"
    path.write_text(
        "batch: soak\nmodel: runwayml/runway-gen-4/turbo/image-to-video\n"
        f"matrix:\n  seed: [{seeds}]\nretry: {{max_attempts: 3}}\n"
        "limits: {max_in_flight: 32}\n"
        "jobs:\n  - {id: shot, prompt: a slow pan, image: frame.jpg}\n",
        encoding="utf-8",
    )
    return path


def run_command(folder: Path, api_base: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "orchestrator",
        "run",
        str(folder / "soak.yaml"),
        "--db",
        str(folder / "soak.db"),
        "--out",
        str(folder / "out"),
        "--api-base",
        api_base,
        "--trust-host",
        "localhost",
        "--poll-min",
        "0.02",
        "--poll-max",
        "1",
        # As many in flight as the simulated account has slots (the default, 8, would
        # leave half of them idle and double the soak's hour).
        "--max-in-flight",
        str(SLOTS),
        "--quiet",
    ]


def soak(jobs: int, restarts: int, seed: int, final_timeout: float) -> dict[str, object]:
    rng = random.Random(seed)
    env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest(folder, jobs)
        profile = [
            "--profile",
            "hostile",
            "--time-scale",
            "0.002",
            "--slots",
            str(SLOTS),
            "--seed",
            str(seed),
            "--token",
            TOKEN,
        ]
        started = time.perf_counter()
        with SimulatorProcess(profile) as sim:
            kills = 0
            for _ in range(restarts):
                process = subprocess.Popen(
                    run_command(folder, sim.api_base),
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    process.wait(timeout=rng.uniform(2.0, 8.0))
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    kills += 1
            final = subprocess.run(
                run_command(folder, sim.api_base),
                env=env,
                timeout=final_timeout,
                capture_output=True,
                text=True,
                check=False,
            )
            with urllib.request.urlopen(f"{sim.api_base}/_sim/ledger") as reply:
                ledger = json.load(reply)
        elapsed = time.perf_counter() - started
        with sqlite3.connect(folder / "soak.db") as db:
            states = dict(db.execute("select state, count(*) from jobs group by state"))
            silent = db.execute(
                "select count(*) from jobs where state = 'failed' and coalesce(error, '') = ''"
            ).fetchone()[0]
            attempts = db.execute("select count(*) from attempts").fetchone()[0]
            rerolls = db.execute("select count(*) from attempts where kind = 'reroll'").fetchone()[
                0
            ]
        partial = len(list((folder / "out").rglob("*.part")))
    duplicates = sum(n - 1 for n in ledger["duplicates"].values())
    return {
        "jobs": jobs,
        "restarts": restarts,
        "kills": kills,
        "elapsed_s": round(elapsed, 1),
        "final_exit": final.returncode,
        "states": states,
        "failed_without_reason": silent,
        "submissions": sum(ledger["submissions"].values()),
        "attempt_rows": attempts,
        "rerolls": rerolls,
        "extra_accepts_of_one_payload": duplicates,
        "partial_files": partial,
        "faults": ledger["faults"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--restarts", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write", type=Path)
    parser.add_argument(
        "--final-timeout",
        type=float,
        default=4 * 3600.0,
        help="seconds the last run may take (about 21 jobs a minute against this profile)",
    )
    args = parser.parse_args()
    figures = soak(args.jobs, args.restarts, args.seed, args.final_timeout)
    unfinished = {
        k: v
        for k, v in figures["states"].items()  # type: ignore[union-attr]
        if k not in ("succeeded", "failed", "needs_reconcile", "fetch_paused", "cancelled")
    }
    rows = "\n".join(f"| {k} | {v} |" for k, v in figures.items() if k != "faults")
    faults = ", ".join(f"{k} {v}" for k, v in sorted(figures["faults"].items()))  # type: ignore[union-attr]
    section = f"""{START}
## Soak: hostile profile, {args.jobs:,} jobs, {figures["kills"]} kill -9 restarts

`make soak` (`bench/soak.py --jobs {args.jobs} --restarts {args.restarts}`): the simulator's
`hostile` profile ({SLOTS} slots, time scale 0.002) and `orchestrator run --max-in-flight
{SLOTS}`, killed with SIGKILL at a random moment {args.restarts} times (2-8 s into each run),
then run to the end. Retry waits are real seconds, as against the real API. Machine:
{machine()}. Faults the simulator injected: {faults}.

| figure | value |
|---|---|
{rows}

Unfinished jobs after the last run: {unfinished or "none"}. Re-rolls are recorded paid
attempts after a remote failure; any other payload accepted twice would be a double payment.
{END}
"""
    print(section)
    if args.write:
        write_section(args.write, section)
    return 0 if not unfinished and not figures["partial_files"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
