"""Benchmark: the engine against a simulator with fixed slots and durations.

N jobs (one image, N distinct seeds for Runway Gen-4 Turbo) run against a simulator in its
own process with ``--slots`` slots and a fixed run time. The physical limit of the account
is ceil(N / slots) x run time; the figure of merit is the makespan (enqueue to the last
verified file on disk) divided by that ideal. The ledger gives API calls per job.

    python bench/engine_makespan.py --jobs 2000 --slots 50 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_enqueue import machine, write_section

from orchestrator.catalog import builtin_catalog
from orchestrator.engine.decisions import PollPolicy
from orchestrator.engine.runner import Connection, drain
from orchestrator.engine.settings import EngineSettings
from orchestrator.logs import configure_logging
from orchestrator.manifest import load_manifest
from orchestrator.planning import enqueue
from orchestrator.simulator.process import SimulatorProcess
from orchestrator.store import Store
from orchestrator.store.work import WorkQueue

START, END = "<!-- bench:engine_makespan:start -->", "<!-- bench:engine_makespan:end -->"
WIDE_START, WIDE_END = "<!-- bench:in_flight:start -->", "<!-- bench:in_flight:end -->"
TOKEN = "bench-token"


def simulator(folder: Path, slots: int, run_seconds: float, time_scale: float) -> SimulatorProcess:
    profile = folder / "profile.yaml"
    profile.write_text(
        f"slots: {slots}\ntime_scale: {time_scale}\n"
        f"durations: {{default: {{distribution: fixed, seconds: {run_seconds}}}}}\n"
        "prices: {default: 0.05}\nurl_ttl: 100000\nvideo_fps: 4\nvideo_max_side: 160\n",
        encoding="utf-8",
    )
    return SimulatorProcess(["--profile", str(profile), "--token", TOKEN])


def make_manifest(folder: Path, jobs: int) -> Path:
    Image.new("RGB", (640, 360), (40, 90, 160)).save(folder / "frame.jpg")
    seeds = ", ".join(str(s) for s in range(jobs))
    manifest = folder / "bench.yaml"
    manifest.write_text(
        "batch: makespan\nmodel: runwayml/runway-gen-4/turbo/image-to-video\n"
        f"matrix:\n  seed: [{seeds}]\n"
        "jobs:\n  - {id: shot, prompt: a slow pan, image: frame.jpg, duration: 5}\n"
        "output: {dir: out}\n",
        encoding="utf-8",
    )
    return manifest


def measure(
    jobs: int, slots: int, run_seconds: float, time_scale: float, ahead: int = 0
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with simulator(folder, slots, run_seconds, time_scale) as sim:
            api_base = sim.api_base
            expansion = load_manifest(make_manifest(folder, jobs))
            with Store.open(str(folder / "bench.db")) as store:
                started = time.perf_counter()
                cpu_before = time.process_time()
                enqueue(store, expansion, folder / "out")
                settings = EngineSettings(
                    batch="makespan",
                    # The user's bound only: the engine discovers the account's slots.
                    max_in_flight=4 * slots if ahead == 0 else slots + ahead,
                    max_downloads=8,
                    max_concurrent_submits=4,
                    base_delay=0.05,
                    max_delay=1.0,
                    poll=PollPolicy().scaled(time_scale),
                    idle_check=0.05,
                )
                connection = Connection(api_base, TOKEN, ["localhost"])
                # Logged as `orchestrator run` logs: every line to the batch's JSON file,
                # info lines to the console (here a discarded one).
                with open(os.devnull, "w", encoding="utf-8") as console:
                    configure_logging(console, json_file=folder / "makespan.jsonl")
                    try:
                        report = drain(WorkQueue(store), builtin_catalog(), connection, settings)
                    finally:
                        configure_logging()
                makespan = time.perf_counter() - started
                cpu = time.process_time() - cpu_before
                succeeded = store.counts("makespan")["succeeded"]
            with urllib.request.urlopen(f"{api_base}/_sim/ledger") as reply:
                ledger = json.load(reply)
    calls = ledger["calls"]
    api_calls = sum(calls.get(route, 0) for route in ("submit", "status", "result"))
    ideal = math.ceil(jobs / slots) * run_seconds * time_scale
    return {
        "jobs": jobs,
        "succeeded": succeeded,
        "slots": slots,
        "ahead": ahead,
        "ideal_s": ideal,
        "makespan_s": makespan,
        "ratio": ideal / makespan,
        "api_calls_per_job": api_calls / jobs,
        "status_per_job": calls.get("status", 0) / jobs,
        "downloads_per_job": calls.get("download", 0) / jobs,
        "cpu_ms_per_job": 1000 * cpu / jobs,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "polls": report.polls,
        "duplicates": len(ledger["duplicates"]),
        "peak_running": peak_running(ledger["jobs"].values()),
    }


def peak_running(jobs: Any) -> int:
    """The most remote jobs running at one moment (from the ledger's start/finish times)."""
    edges = sorted(
        edge
        for job in jobs
        if job["started_at"] is not None
        for edge in (
            (job["started_at"], 1),
            (job["finished_at"] if job["finished_at"] is not None else math.inf, -1),
        )
    )
    running = peak = 0
    for _at, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def section(figures: dict[str, float], run_seconds: float, time_scale: float) -> str:
    f = figures
    return f"""{START}
## Engine makespan against the simulator

`make bench` (`bench/engine_makespan.py --jobs {f["jobs"]} --slots {f["slots"]}`):
{f["jobs"]:,} Runway jobs over one image; the simulator runs in its own process with
{f["slots"]} slots and a fixed run time of {run_seconds:g} simulated seconds at time scale
{time_scale:g} ({run_seconds * time_scale:g} s real). `max_in_flight` is 4 x slots, an
upper bound only: the engine discovers the slots and keeps a few jobs waiting in the
account's queue, so a freed slot starts the next job at once (see also the timing
profiles below). The poll policy is the default, scaled to the time scale.
Ideal = ceil(N / slots) x run time = {f["ideal_s"]:.1f} s.
Makespan runs from enqueue to the last verified video on disk. Target: >= 90% of ideal
(issue 4), >= 95% (issue 7).

Machine: {machine()}.

| figure | value |
|---|---|
| jobs succeeded | {f["succeeded"]:,} / {f["jobs"]:,} |
| makespan | {f["makespan_s"]:.1f} s |
| ideal / makespan | {100 * f["ratio"]:.1f}% |
| API calls per job (submit + status + result) | {f["api_calls_per_job"]:.2f} |
| status polls per job | {f["status_per_job"]:.2f} |
| engine CPU per job | {f["cpu_ms_per_job"]:.1f} ms |
| engine peak RSS | {f["peak_rss_mb"]:.0f} MB |
| payloads submitted twice | {f["duplicates"]} |
{END}
"""


def wide_section(f: dict[str, float], run_seconds: float, time_scale: float) -> str:
    return f"""{WIDE_START}
## Engine memory with {f["jobs"]:,} jobs in flight at once

`bench/engine_makespan.py --all-in-flight --jobs {f["jobs"]} --run-seconds {run_seconds:g}`
(`make bench-large`): the simulator gets as many slots as there are jobs and a fixed
run time of {run_seconds:g} simulated seconds ({run_seconds * time_scale:g} s real), long
enough for every job to be submitted before the first one finishes;
`max_in_flight` = {f["jobs"]:,}. Peak running is read from the simulator's ledger
(the most jobs between their start and finish at one moment). Target (issue 7): RSS under
300 MB at 10,000 in flight.

Machine: {machine()}.

| figure | value |
|---|---|
| jobs succeeded | {f["succeeded"]:,} / {f["jobs"]:,} |
| peak jobs running remotely at once | {f["peak_running"]:,} |
| engine peak RSS (store, enqueue and run, one process) | {f["peak_rss_mb"]:.0f} MB |
| engine CPU per job | {f["cpu_ms_per_job"]:.1f} ms |
| API calls per job (submit + status + result) | {f["api_calls_per_job"]:.2f} |
| makespan | {f["makespan_s"]:.1f} s (ideal {f["ideal_s"]:.1f} s) |
| payloads submitted twice | {f["duplicates"]} |
{WIDE_END}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=50)
    parser.add_argument(
        "--ahead",
        type=int,
        default=0,
        help="max_in_flight = slots + AHEAD instead of 4 x slots (0: 4 x slots)",
    )
    parser.add_argument("--run-seconds", type=float, default=60.0)
    parser.add_argument("--time-scale", type=float, default=0.05)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI (no figures kept)")
    parser.add_argument(
        "--all-in-flight",
        action="store_true",
        help="slots = jobs: measure memory with every job in flight at once",
    )
    args = parser.parse_args()
    if args.smoke:
        args.jobs, args.slots, args.time_scale = 20, 5, 0.002
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    if args.all_in_flight:
        args.slots = args.jobs
    figures = measure(args.jobs, args.slots, args.run_seconds, args.time_scale, args.ahead)
    write = wide_section if args.all_in_flight else section
    text = write(figures, args.run_seconds, args.time_scale)
    print(text)
    if args.write and not args.smoke:
        write_section(args.write, text)
    return 0 if figures["succeeded"] == figures["jobs"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
