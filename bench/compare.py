"""Benchmark: the orchestrator against what a user would script otherwise (issue 7).

For each (N, slots), each tool runs as a subprocess against a FRESH simulator process
(fixed run time, small videos; the profile of bench/engine_makespan.py) on N seeds of one
image for Runway Gen-4 Turbo:

* ``sequential``: bench/baseline_sequential.py, the official CLI's flow one job at a time
  (polls every 2 s x time scale). Linear in N: measured at N <= 100 only, larger N are
  projected from its N = 100 run and labelled so.
* ``gather``: bench/baseline_gather.py, asyncio.gather over every job, fixed 2 s x time
  scale polls, no limit, no retries.
* ``orchestrator``: ``orchestrator run`` with default limits (max in flight 8, ...); only
  ``--poll-min/--poll-max`` are the defaults (2 s / 60 s) x time scale, so every tool polls
  on the same scaled clock. ``orchestrator-tuned`` (``--tools``) adds
  ``--max-in-flight SLOTS``, what a user who knows the account's slot count would pass.

Figures: makespan (tool start to the last video's mtime), ideal / makespan with
ideal = ceil(N / slots) x run time, API calls per job (submit + status + result, from the
simulator ledger), the tool's CPU per job and peak RSS (``os.wait4``), the simulator's CPU
per job, completion -> disk latency (ledger finish time converted to wall clock, versus
the video file's mtime), jobs succeeded and payloads submitted twice.

    python bench/compare.py --jobs 100,1000 --slots 50,500 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_makespan import TOKEN, make_manifest, simulator
from plan_enqueue import machine, write_section

HERE = Path(__file__).resolve().parent
SEQUENTIAL_MAX = 100
DEFAULT_TOOLS = "sequential,gather,orchestrator"


@dataclass(frozen=True)
class Row:
    tool: str
    jobs: int
    slots: int
    ideal_s: float
    makespan_s: float
    calls_per_job: float
    status_per_job: float
    cpu_ms_per_job: float
    rss_mb: float
    sim_cpu_ms_per_job: float
    latency_p50_ms: float
    latency_p99_ms: float
    succeeded: int
    duplicates: int
    projected: bool = False
    killed_after: float | None = None
    """Seconds after which the tool was stopped (still running at the cap)."""

    @property
    def ratio(self) -> float:
        return self.ideal_s / self.makespan_s if self.makespan_s > 0 else 0.0


def command(tool: str, folder: Path, api: str, jobs: int, slots: int, scale: float) -> list[str]:
    py = sys.executable
    common = ["--api-base", api, "--image", str(folder / "frame.jpg"), "--jobs", str(jobs)]
    common += ["--out", str(folder / "out"), "--time-scale", f"{scale:g}"]
    if tool == "sequential":
        return [py, str(HERE / "baseline_sequential.py"), *common]
    if tool == "gather":
        return [py, str(HERE / "baseline_gather.py"), *common]
    run = [py, "-m", "orchestrator", "run", str(folder / "bench.yaml")]
    run += ["--db", str(folder / "orchestrator.db"), "--out", str(folder / "out")]
    run += ["--api-base", api, "--trust-host", "localhost", "--quiet"]
    # The CLI defaults (2 s / 60 s) on the simulator's clock, like the baselines' 2 s.
    run += ["--poll-min", f"{2 * scale:g}", "--poll-max", f"{60 * scale:g}"]
    if tool == "orchestrator-tuned":
        run += ["--max-in-flight", str(slots)]
    return run


def videos(tool: str, out: Path) -> dict[str, float]:
    """request id -> the video's mtime (wall clock, seconds since the epoch)."""
    found: dict[str, float] = {}
    for video in out.rglob("*.mp4"):
        if video.stat().st_size == 0:
            continue
        if tool.startswith("orchestrator"):  # named after the job: the sidecar has the id
            sidecar = video.with_suffix(".json")
            if not sidecar.exists():
                continue
            request_id = str(json.loads(sidecar.read_text(encoding="utf-8"))["request_id"])
        else:
            request_id = video.stem
        found[request_id] = video.stat().st_mtime
    return found


def fetch(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.load(reply)


def wall_offset(api: str, ledger: dict[str, Any], request_id: str, scale: float) -> float:
    """Wall-clock epoch seconds at simulated time 0.

    The ledger stamps simulated seconds on the simulator's monotonic clock; /result stamps
    the same moment as wall-clock ISO 8601 (start + simulated x scale). One /result call
    (after the ledger was read, so it is not counted) gives the offset for every job.
    """
    result = fetch(f"{api}/v1/requests/{request_id}/result")
    wall = datetime.fromisoformat(result["finished_at"]).timestamp()
    return wall - ledger["jobs"][request_id]["finished_at"] * scale


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


BASELINES = frozenset({"sequential", "gather"})


def measure(tool: str, jobs: int, slots: int, run_seconds: float, scale: float, cap: float) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_manifest(folder, jobs)
        sim = simulator(folder, slots, run_seconds, scale).start()
        try:
            env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN, "PYTHONWARNINGS": "ignore"}
            cmd = command(tool, folder, sim.api_base, jobs, slots, scale)
            started = time.time()
            with open(folder / "tool.log", "wb") as log:
                process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
                # A tool still running at the cap is stopped and reported as such: the
                # naive script at N = 10,000 spins in its own connection pool for many
                # minutes.
                stopped: list[bool] = []

                def stop() -> None:
                    stopped.append(True)
                    process.kill()

                timer = threading.Timer(cap, stop)
                if tool in BASELINES:
                    timer.start()
                _pid, status, usage = os.wait4(process.pid, 0)
                timer.cancel()
                killed = bool(stopped)
            ended = time.time()
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0 and not killed:
                tail = (folder / "tool.log").read_text(errors="replace")[-1500:]
                print(f"{tool} N={jobs} exited {process.returncode}:\n{tail}", file=sys.stderr)
            ledger = fetch(f"{sim.api_base}/_sim/ledger")
            done = videos(tool, folder / "out")
            offset = wall_offset(sim.api_base, ledger, next(iter(done)), scale) if done else 0.0
        finally:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            sim.stop()  # reaped now, so its CPU time lands in RUSAGE_CHILDREN
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sim_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    calls = ledger["calls"]
    latencies = [
        1000 * (mtime - (offset + ledger["jobs"][rid]["finished_at"] * scale))
        for rid, mtime in done.items()
        if rid in ledger["jobs"] and ledger["jobs"][rid]["finished_at"] is not None
    ]
    return Row(
        tool=tool,
        jobs=jobs,
        slots=slots,
        ideal_s=math.ceil(jobs / slots) * run_seconds * scale,
        makespan_s=(max(done.values()) if done else ended) - started,
        calls_per_job=sum(calls.get(r, 0) for r in ("submit", "status", "result")) / jobs,
        status_per_job=calls.get("status", 0) / jobs,
        cpu_ms_per_job=1000 * (usage.ru_utime + usage.ru_stime) / jobs,
        rss_mb=usage.ru_maxrss / 1024,
        sim_cpu_ms_per_job=1000 * sim_cpu / jobs,
        latency_p50_ms=percentile(latencies, 0.5),
        latency_p99_ms=percentile(latencies, 0.99),
        succeeded=len(done),
        duplicates=len(ledger["duplicates"]),
        killed_after=cap if killed else None,
    )


def project(measured: Row, jobs: int, slots: int, run_seconds: float, scale: float) -> Row:
    """The sequential baseline at ``jobs`` and ``slots``: one job at a time uses one slot
    whatever the account has, so its makespan per job is constant; scale it."""
    return replace(
        measured,
        jobs=jobs,
        slots=slots,
        ideal_s=math.ceil(jobs / slots) * run_seconds * scale,
        makespan_s=measured.makespan_s * jobs / measured.jobs,
        projected=(jobs, slots) != (measured.jobs, measured.slots),
    )


def table(rows: list[Row]) -> str:
    lines = [
        "| N | slots | tool | makespan | ideal / makespan | API calls / job (status) "
        "| tool CPU / job | tool peak RSS | simulator CPU / job | completion -> disk p50 / p99 "
        "| succeeded | paid twice |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = f"{r.tool} (projected)" if r.projected else r.tool
        latency = (  # no video, no latency
            "-"
            if math.isnan(r.latency_p50_ms)
            else f"{r.latency_p50_ms:.0f} / {r.latency_p99_ms:.0f} ms"
        )
        if r.killed_after is not None:
            name = f"{r.tool} (stopped after {r.killed_after:.0f} s)"
        done = "-" if r.projected else f"{r.succeeded:,}"
        # With nothing delivered there is no makespan to compare, only the time to fail.
        ratio = "-" if r.succeeded == 0 and not r.projected else f"{100 * r.ratio:.1f}%"
        lines.append(
            f"| {r.jobs:,} | {r.slots} | {name} | {r.makespan_s:.1f} s | {ratio} "
            f"| {r.calls_per_job:.1f} ({r.status_per_job:.1f}) | {r.cpu_ms_per_job:.1f} ms "
            f"| {r.rss_mb:.0f} MB | {r.sim_cpu_ms_per_job:.1f} ms "
            f"| {latency} | {done} | {r.duplicates} |"
        )
    return "\n".join(lines)


def section(rows: list[Row], args: argparse.Namespace) -> str:
    real = args.run_seconds * args.time_scale
    # Each size set owns its section: `make bench` keeps the quick sizes, `make bench-large`
    # the 10,000-job ones, and neither run erases the other's table.
    name = "compare" if args.section == "default" else f"compare_{args.section}"
    sizes = " and ".join(f"{int(n):,}" for n in args.jobs.split(","))
    return f"""<!-- bench:{name}:start -->
## Orchestrator versus a hand-written script, N = {sizes} (issue 7)

`bench/compare.py --jobs {args.jobs} --slots {args.slots} --run-seconds {args.run_seconds:g}
--time-scale {args.time_scale:g}`: N Runway jobs over one image; each tool runs as a
subprocess against a fresh simulator process with the given slots and a fixed run time of
{args.run_seconds:g} simulated seconds ({real:g} s real). Every tool polls on the scaled
clock: the baselines every 2 s x time scale, the orchestrator with its default `--poll-min 2
--poll-max 60` x time scale; otherwise the orchestrator keeps its default limits (max in
flight 8, so at most 8 / slots of the account is used). `sequential` is the official CLI's
flow one job at a time, measured once at N = min(first N, {SEQUENTIAL_MAX}) and projected
linearly to the other rows (it holds one slot, whatever the account has);
`gather` a naive `asyncio.gather` script on one default `httpx.AsyncClient` (pool of 100
connections, 5 s timeouts), no limit, no retries: any error fails the job.
A baseline still running after {args.cap:g} s is stopped, and labelled so.
Ideal = ceil(N / slots) x run time. Makespan: tool start to the last video's mtime.
Completion -> disk: the simulator's finish time (ledger, converted to wall clock through
/result's `finished_at`) to the video file's mtime. API calls = submit + status + result.
Time is compressed, CPU is not: a request costs the same real milliseconds while a 2 s poll
lasts {2 * args.time_scale * 1000:g} ms, so where tool CPU x N exceeds the ideal the makespan
measures client CPU rather than scheduling.

Machine: {machine()}.

{table(rows)}
<!-- bench:{name}:end -->
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="100,1000", help="comma-separated N values")
    parser.add_argument("--slots", default="50,500", help="comma-separated slot counts")
    parser.add_argument("--run-seconds", type=float, default=60.0)
    parser.add_argument("--time-scale", type=float, default=0.005)
    parser.add_argument("--tools", default=DEFAULT_TOOLS, help="also: orchestrator-tuned")
    parser.add_argument("--write", type=Path)
    parser.add_argument(
        "--cap", type=float, default=300.0, help="stop a baseline still running after this (s)"
    )
    parser.add_argument(
        "--section", default="default", help="BENCHMARKS.md section to own (e.g. large)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI (writes nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.jobs, args.slots, args.time_scale, args.write = "20", "4", 0.002, None
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    rows: list[Row] = []
    sequential: Row | None = None  # measured once: it never uses more than one slot
    for slots in (int(s) for s in args.slots.split(",")):
        for jobs in (int(n) for n in args.jobs.split(",")):
            for tool in tools:
                t0 = time.perf_counter()
                if tool == "sequential":
                    if sequential is None:
                        size = min(jobs, SEQUENTIAL_MAX)
                        sequential = measure(
                            tool, size, slots, args.run_seconds, args.time_scale, args.cap
                        )
                    row = project(sequential, jobs, slots, args.run_seconds, args.time_scale)
                else:
                    row = measure(tool, jobs, slots, args.run_seconds, args.time_scale, args.cap)
                rows.append(row)
                print(
                    f"# {tool} N={jobs} slots={slots}: {row.makespan_s:.1f} s "
                    f"({time.perf_counter() - t0:.0f} s to measure)",
                    file=sys.stderr,
                    flush=True,
                )
    text = section(rows, args)
    print(text)
    if args.write:
        write_section(args.write, text)
    ok = all(r.succeeded == r.jobs for r in rows if not r.projected and r.tool != "gather")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
