"""Benchmark: 1, 2 and 4 ``orchestrator work`` processes sharing one PostgreSQL queue.

One throwaway PostgreSQL server (``tests/pg_server.py``: the repository's ``tests/`` folder
is put on ``sys.path`` to import it; it needs the machine's PostgreSQL server binaries)
serves the whole run. For each worker count K: a fresh database, ``orchestrator enqueue``
of N jobs (``limits.max_in_flight`` = the account's slots, so the global limit is the
account's), a fresh simulator process (fixed run time per job), then K ``orchestrator work``
processes started at once. Makespan runs from their start to the last exit; CPU comes from
wait4 (workers), RUSAGE_CHILDREN (the simulator) and /proc (the PostgreSQL postmaster, which
collects its backends' CPU); the split from ``jobs.worker_id``; duplicates from the ledger.

    python bench/workers_scaling.py --jobs 5000 --slots 200 --workers 1,2,4 --write BENCHMARKS.md
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
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg_server import ThrowawayPostgres
from plan_enqueue import machine, write_section

from orchestrator.simulator.process import SimulatorProcess
from orchestrator.store import Store

START, END = "<!-- bench:workers_scaling:start -->", "<!-- bench:workers_scaling:end -->"
TOKEN = "bench-workers-token"
BATCH = "scaling"
TICKS = os.sysconf("SC_CLK_TCK")
HEADER = (
    "| workers | succeeded | makespan s | ideal / makespan | jobs/s | CPU ms/job: workers"
    " | simulator | PostgreSQL | busy | split | duplicates |"
)


@dataclass
class Row:
    workers: int
    succeeded: int
    makespan_s: float
    worker_cpu_s: float
    sim_cpu_s: float
    pg_cpu_s: float
    split: list[int]
    submitted: int
    duplicates: int
    failed_workers: int


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", *args]


def make_inputs(folder: Path, jobs: int, slots: int, run_seconds: float, scale: float) -> Path:
    (folder / "profile.yaml").write_text(
        f"slots: {slots}\ntime_scale: {scale}\n"
        f"durations: {{default: {{distribution: fixed, seconds: {run_seconds}}}}}\n"
        "prices: {default: 0.05}\nurl_ttl: 100000\nvideo_fps: 4\nvideo_max_side: 160\n",
        encoding="utf-8",
    )
    Image.new("RGB", (640, 360), (40, 90, 160)).save(folder / "frame.jpg")
    seeds = ", ".join(str(s) for s in range(jobs))
    manifest = folder / "bench.yaml"
    manifest.write_text(
        f"batch: {BATCH}\nmodel: runwayml/runway-gen-4/turbo/image-to-video\n"
        f"limits: {{max_in_flight: {slots}}}\n"
        "retry: {max_attempts: 3, base_delay: 0.05, max_delay: 1.0}\n"
        f"matrix:\n  seed: [{seeds}]\n"
        "jobs:\n  - {id: shot, prompt: a slow pan, image: frame.jpg, duration: 5}\n",
        encoding="utf-8",
    )
    return manifest


def postmaster_cpu(pg: ThrowawayPostgres) -> float:
    """The postmaster's own CPU plus that of its reaped children (the backends), seconds."""
    folder = getattr(pg, "_folder", None)  # None with ORCHESTRATOR_TEST_POSTGRES set
    if folder is None:
        return float("nan")
    try:
        pid = (Path(folder) / "data" / "postmaster.pid").read_text().split()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS  # utime stime cu cs
    except (OSError, IndexError, ValueError):
        return float("nan")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_workers(
    folder: Path, db: str, api_base: str, count: int, poll: tuple[str, str]
) -> tuple[float, float, int]:
    """Start ``count`` workers at once; wall time to the last exit, their CPU, failures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env["RUNCOMFY_API_TOKEN"] = TOKEN
    command = cli("work", "--batch", BATCH, "--db", db, "--api-base", api_base)
    command += ["--trust-host", "localhost", "--poll-min", poll[0], "--poll-max", poll[1]]
    logs = [folder / f"worker-{count}-{n}.err" for n in range(count)]
    started = time.perf_counter()
    processes = []
    for log in logs:
        with log.open("wb") as err:
            processes.append(
                subprocess.Popen(
                    [*command, "--quiet"],
                    env=env,
                    cwd=folder,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            )
    cpu, failed = 0.0, 0
    for process, log in zip(processes, logs, strict=True):
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        if process.returncode != 0:
            failed += 1
            tail = log.read_text(errors="replace").splitlines()[-20:]
            print(f"worker {process.pid} exited {process.returncode}:", *tail, sep="\n  ")
    return time.perf_counter() - started, cpu, failed


def measure(
    pg: ThrowawayPostgres,
    folder: Path,
    manifest: Path,
    jobs: int,
    count: int,
    poll: tuple[str, str],
) -> Row:
    db = pg.new_database()
    out = folder / f"out-{count}"
    done = subprocess.run(
        cli("enqueue", str(manifest), "--db", db, "--out", str(out)),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"enqueue failed: {done.stderr}")
    profile = ["--profile", str(folder / "profile.yaml"), "--token", TOKEN]
    before_sim = children_cpu()
    with SimulatorProcess(profile) as sim:
        pg_before = postmaster_cpu(pg)
        makespan, worker_cpu, failed = run_workers(folder, db, sim.api_base, count, poll)
        request = urllib.request.Request(
            f"{sim.api_base}/_sim/ledger", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request) as reply:
            ledger = json.load(reply)
    time.sleep(0.5)  # let the postmaster reap the workers' backends
    sim_cpu = children_cpu() - before_sim - worker_cpu
    pg_cpu = postmaster_cpu(pg) - pg_before
    with Store.open(db) as store, store.read() as connection:
        succeeded = connection.execute(
            text("SELECT count(*) FROM jobs WHERE batch = :b AND state = 'succeeded'"), {"b": BATCH}
        ).scalar_one()
        split = connection.execute(
            text("SELECT count(*) FROM jobs WHERE batch = :b GROUP BY worker_id"), {"b": BATCH}
        ).scalars()
        counts = sorted((int(n) for n in split), reverse=True)
    pg.drop_database(db)
    return Row(
        workers=count,
        succeeded=int(succeeded),
        makespan_s=makespan,
        worker_cpu_s=worker_cpu,
        sim_cpu_s=sim_cpu,
        pg_cpu_s=pg_cpu,
        split=counts,
        submitted=sum(ledger["submissions"].values()),
        duplicates=len(ledger["duplicates"]),
        failed_workers=failed,
    )


def section(rows: list[Row], jobs: int, slots: int, run_seconds: float, scale: float) -> str:
    real = run_seconds * scale
    ideal = math.ceil(jobs / slots) * real
    table = "\n".join(
        f"| {r.workers} | {r.succeeded:,} | {r.makespan_s:.1f} | {100 * ideal / r.makespan_s:.1f}%"
        f" | {r.succeeded / r.makespan_s:.1f} | {1000 * r.worker_cpu_s / jobs:.1f}"
        f" | {1000 * r.sim_cpu_s / jobs:.1f} | {1000 * r.pg_cpu_s / jobs:.1f}"
        f" | {100 * (r.worker_cpu_s + r.sim_cpu_s + r.pg_cpu_s) / r.makespan_s:.0f}%"
        f" | {' / '.join(f'{n:,}' for n in r.split)} | {r.duplicates} |"
        for r in rows
    )
    one = rows[0]
    best = max(rows, key=lambda r: r.succeeded / r.makespan_s)
    speedup = one.makespan_s / best.makespan_s
    cores = os.cpu_count() or 1
    busy = 100 * (best.worker_cpu_s + best.sim_cpu_s + best.pg_cpu_s) / best.makespan_s
    bound = (
        f"the {cores} cores are saturated ({busy:.0f}% busy), shared by the workers, the"
        " simulator and PostgreSQL, so the machine's CPU, not the queue or the account's"
        " slots, bounds the scaling; more workers than cores only add contention"
        if busy >= 80 * cores
        else f"the cores are not saturated ({busy:.0f}% busy of {100 * cores}%), so waits"
        " (polling, the queue's locks, the run time) bound it"
    )
    verdict = (
        f"One worker alone spends {1000 * one.worker_cpu_s / jobs:.0f} ms of CPU per job and"
        f" keeps {100 * one.worker_cpu_s / one.makespan_s:.0f}% of one core busy: it is"
        f" CPU-bound. The best throughput is with {best.workers} worker(s), {speedup:.2f}x"
        f" that of one; there {bound}."
    )
    if not any(r.duplicates for r in rows):
        verdict += " No payload was submitted twice."
    return f"""{START}
## Several workers sharing one PostgreSQL queue

`make bench-workers` (`bench/workers_scaling.py --jobs {jobs} --slots {slots} --workers
{",".join(str(r.workers) for r in rows)}`): {jobs:,} Runway jobs enqueued into a fresh
database on a throwaway local PostgreSQL server (fsync off), then K `orchestrator work`
processes started at once (`limits.max_in_flight: {slots}`, shared by all of them). A fresh
simulator process per K has {slots} slots and a fixed run time of {run_seconds:g} simulated
seconds at time scale {scale:g} ({real:g} s real); ideal = ceil(N / slots) x run time =
{ideal:.1f} s. Makespan runs from the workers' start to the last exit. CPU per job: the
workers (wait4), the simulator (RUSAGE_CHILDREN) and PostgreSQL (the postmaster's own and
reaped children's CPU from /proc); "busy" is their sum over the makespan ({cores} cores =
{100 * cores}%). Split is jobs per worker (`jobs.worker_id`); duplicates are payloads the
simulator accepted more than once.

Machine: {machine()}.

{HEADER}
|---|---|---|---|---|---|---|---|---|---|---|
{table}

{verdict}
{END}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--slots", type=int, default=200)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--run-seconds", type=float, default=60.0)
    parser.add_argument("--time-scale", type=float, default=0.05)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI (no figures kept)")
    args = parser.parse_args()
    if args.smoke:
        args.jobs, args.slots, args.workers, args.time_scale = 40, 8, "1,2", 0.005
    counts = [int(n) for n in args.workers.split(",")]
    real = args.run_seconds * args.time_scale
    poll = (f"{max(0.02, real / 10):g}", f"{max(0.2, 2 * real):g}")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    started = time.perf_counter()
    pg = ThrowawayPostgres()
    pg.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            manifest = make_inputs(folder, args.jobs, args.slots, args.run_seconds, args.time_scale)
            rows = []
            for count in counts:
                rows.append(measure(pg, folder, manifest, args.jobs, count, poll))
                print(f"{count} worker(s): {rows[-1]}", file=sys.stderr)
    finally:
        pg.stop()
    text_ = section(rows, args.jobs, args.slots, args.run_seconds, args.time_scale)
    print(text_)
    print(f"total run time {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.write and not args.smoke:
        write_section(args.write, text_)
    ok = all(r.succeeded == args.jobs and not r.duplicates and not r.failed_workers for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
