"""Benchmark: the poll schedule and slot discovery across simulator timing profiles.

One invocation runs a table of scenarios. Each gets a fresh folder, a generated simulator
profile (YAML) in a process of its own, a manifest of N jobs over the five models, a fresh
store, ``enqueue`` and ``drain``. The engine settings are the same for every scenario but
the time scale: ``max_in_flight`` = 4 x slots is only the user's upper bound, the engine is
told nothing else about the account. Every figure comes from the simulator's ledger
(``GET /_sim/ledger``: each job's start and finish in simulated seconds, calls per route)
and from the files on disk.

    python bench/poll_profiles.py --write BENCHMARKS.md
    python bench/poll_profiles.py --scenarios iso,fixed-iso --jobs 300 --slots 20
    python bench/poll_profiles.py --smoke
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
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
from orchestrator.simulator.profile import ProfileError, parse_profile
from orchestrator.simulator.timing import REFERENCE_CLIP_SECONDS
from orchestrator.store import Store
from orchestrator.store.work import WorkQueue

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

START, END = "<!-- bench:poll_profiles:start -->", "<!-- bench:poll_profiles:end -->"
TOKEN = "bench-token"
BATCH = "poll-profiles"
SEED = 13
SIGMA = 0.2
FIXED_POLL = 2.0  # seconds: the official CLI's poll interval
TARGET_RATIO = 0.95  # ideal / makespan
TARGET_CALLS = 4.0  # status + result calls per job

# What each model accepts (orchestrator/catalog/schemas), and the median run time in
# simulated seconds of a 5 s clip at 720p. With run_time_scale (clip_seconds, resolutions)
# the runs of the manifest below spread over about 5-35 s.
MODELS: dict[str, dict[str, Any]] = {
    "runwayml/runway-gen-4/turbo/image-to-video": {
        "median": 6.0,
        "durations": [5, 10],
        "resolutions": [None],
    },
    "bytedance/dreamina-3-0/pro/image-to-video": {
        "median": 14.0,
        "durations": [5, 10],
        "resolutions": [None],
    },
    "bytedance/seedance-1-0/lite/image-to-video": {
        "median": 9.0,
        "durations": [5, 10],
        "resolutions": ["480p", "720p", "1080p"],
    },
    "bytedance/seedance-1-0/pro/image-to-video": {
        "median": 10.0,
        "durations": [4, 6, 8],
        "resolutions": ["480p", "720p", "1080p"],
    },
    "bytedance/seedance-v1.5-pro/image-to-video": {
        "median": 12.0,
        "durations": [4, 8, 12],
        "resolutions": ["480p", "720p"],
    },
}
RESOLUTION_SCALE = {"480p": 0.6, "720p": 1.0, "1080p": 1.8}
LONG_RUN = 600.0  # the "10 min runs" median
SHORT_RUN = 3.0  # the "3 s runs" fixed run time


@dataclass(frozen=True)
class Scenario:
    name: str  # short name for --scenarios
    title: str
    runs: str  # mixed | short | long
    stamps: Mapping[str, Any] = field(default_factory=lambda: {"timestamps": "iso"})
    fixed: bool = False  # the fixed 2 s poller
    one_wave: bool = False  # N = slots (the fixed poller of 10-minute runs)


SCENARIOS = (
    Scenario("iso", "iso stamps", "mixed"),
    Scenario("absent", "stamps absent", "mixed", {"timestamps": "absent"}),
    Scenario(
        "constant",
        "stamps constant (60 s)",
        "mixed",
        {"timestamps": "constant", "constant_run_seconds": 60},
    ),
    Scenario(
        "skew",
        "stamps skewed +3 h",
        "mixed",
        {"timestamps": "iso", "timestamp_skew_seconds": 10800},
    ),
    Scenario(
        "naive",
        "naive local time -5 h",
        "mixed",
        {"timestamps": "naive", "timestamp_skew_seconds": -18000},
    ),
    Scenario("epoch-ms", "epoch ms", "mixed", {"timestamps": "epoch_ms"}),
    Scenario(
        "created-start", "created_at = start", "mixed", {"timestamps": "iso", "created_at": "start"}
    ),
    Scenario("3s", "3 s runs", "short"),
    Scenario("10min", "10 min runs", "long"),
    Scenario("fixed-iso", "iso stamps", "mixed", fixed=True),
    Scenario("fixed-3s", "3 s runs", "short", fixed=True),
    Scenario("fixed-10min", "10 min runs", "long", fixed=True, one_wave=True),
)
SMOKE = ("iso", "fixed-3s")


# -- inputs ---------------------------------------------------------------------------------


def manifest_jobs(count: int) -> list[dict[str, Any]]:
    """``count`` jobs: the models in turn, each through its durations x resolutions."""
    combos = {
        model: [(d, r) for d in spec["durations"] for r in spec["resolutions"]]
        for model, spec in MODELS.items()
    }
    models = list(MODELS)
    jobs = []
    for index in range(count):
        model = models[index % len(models)]
        duration, resolution = combos[model][(index // len(models)) % len(combos[model])]
        job: dict[str, Any] = {
            "id": f"j{index:05d}",
            "model": model,
            "prompt": f"shot {index}: a slow pan across the harbour",
            "image": "frame.jpg",
            "duration": duration,
        }
        if resolution is not None:
            job["resolution"] = resolution
        jobs.append(job)
    return jobs


def write_manifest(folder: Path, jobs: list[dict[str, Any]]) -> Path:
    Image.new("RGB", (640, 360), (40, 90, 160)).save(folder / "frame.jpg")
    manifest = folder / "bench.yaml"
    data = {"batch": BATCH, "jobs": jobs, "output": {"dir": "out"}}
    manifest.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return manifest


def durations(runs: str) -> dict[str, Any]:
    if runs == "short":
        return {"default": {"distribution": "fixed", "seconds": SHORT_RUN}}
    if runs == "long":
        return {"default": {"distribution": "lognormal", "seconds": LONG_RUN, "sigma": SIGMA}}
    return {
        model: {"distribution": "lognormal", "seconds": spec["median"], "sigma": SIGMA}
        for model, spec in MODELS.items()
    }


def expected_run(runs: str, job: Mapping[str, Any]) -> float:
    """The mean simulated run time of one job (to pick the time scale; the figures use the
    ledger's true run times): run_time_scale multiplies by clip / 5 s and the resolution's
    factor (1 without one)."""
    if runs == "short":
        return SHORT_RUN
    mean = math.exp(SIGMA**2 / 2)
    if runs == "long":
        return LONG_RUN * mean
    run = MODELS[job["model"]]["median"] * mean * job["duration"] / REFERENCE_CLIP_SECONDS
    return run * RESOLUTION_SCALE.get(job.get("resolution") or "720p", 1.0)


def profile_for(scenario: Scenario, slots: int) -> dict[str, Any]:
    """The scenario's simulator profile, before the time scale is set."""
    profile: dict[str, Any] = {
        "slots": slots,
        "seed": SEED,
        "durations": durations(scenario.runs),
        "prices": {"default": 0.05},
        "url_ttl": 10_000_000,
        "video_fps": 4,
        "video_max_side": 160,
        **scenario.stamps,
    }
    if scenario.runs == "mixed":
        profile["run_time_scale"] = {"clip_seconds": True, "resolutions": RESOLUTION_SCALE}
    return profile


# -- one scenario ---------------------------------------------------------------------------


@dataclass
class Row:
    scenario: Scenario
    jobs: int
    slots: int
    time_scale: float = 0.0
    skipped: str = ""
    notes: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0

    def misses(self) -> list[str]:
        f = self.figures
        if not f:
            return []
        missed = []
        if f["ratio"] < TARGET_RATIO:
            missed.append("ideal/makespan")
        if f["calls_per_job"] > TARGET_CALLS:
            missed.append("calls")
        if f["succeeded"] < self.jobs:
            missed.append("succeeded")
        if f["duplicates"]:
            missed.append("twice")
        if f["peak_running"] > self.slots:
            missed.append("peak running")
        return missed


def run_scenario(scenario: Scenario, jobs: int, slots: int, ideal_seconds: float) -> Row:
    count = slots if scenario.one_wave else jobs
    row = Row(scenario, count, slots)
    profile = profile_for(scenario, slots)
    job_list = manifest_jobs(count)
    runs = [expected_run(scenario.runs, job) for job in job_list]
    ideal_simulated = max(sum(runs) / slots, max(runs))
    row.time_scale = float(f"{ideal_seconds / ideal_simulated:.3g}")
    profile["time_scale"] = row.time_scale
    try:
        parse_profile(profile)
    except ProfileError as exc:  # a simulator without these timing keys, or a bad value
        row.skipped = str(exc)
        return row
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="poll-profiles-") as tmp:
        folder = Path(tmp)
        (folder / "profile.yaml").write_text(yaml.safe_dump(profile), encoding="utf-8")
        expansion = load_manifest(write_manifest(folder, job_list))
        if len(expansion.jobs) != count:
            raise SystemExit(f"the manifest expanded to {len(expansion.jobs)} jobs, not {count}")
        args = ["--profile", str(folder / "profile.yaml"), "--token", TOKEN]
        with SimulatorProcess(args) as sim:
            row.figures = measure(sim.api_base, folder, expansion, row)
    if row.figures["to_file_min"] < -0.01:
        row.notes.append(
            f"{scenario.name}: a video is {-row.figures['to_file_min']:.3f} s older than its "
            "remote finish (the simulated-to-wall mapping is off by that much)"
        )
    row.elapsed = time.perf_counter() - began
    return row


def settings_for(scenario: Scenario, slots: int, time_scale: float) -> EngineSettings:
    """The same for every scenario but the time scale (and the comparison poller)."""
    policy = PollPolicy(fixed=FIXED_POLL) if scenario.fixed else PollPolicy()
    return EngineSettings(
        batch=BATCH,
        max_in_flight=4 * slots,
        max_downloads=8,
        max_concurrent_submits=4,
        base_delay=0.05,
        max_delay=1.0,
        idle_check=0.05,
        poll=policy.scaled(time_scale),
    )


def measure(api_base: str, folder: Path, expansion: Any, row: Row) -> dict[str, float]:
    scale = row.time_scale
    out = folder / "out"
    with Store.open(str(folder / "bench.db")) as store:
        started = time.time()
        cpu_before = time.process_time()
        enqueue(store, expansion, out)
        settings = settings_for(row.scenario, row.slots, scale)
        connection = Connection(api_base, TOKEN, ["localhost"])
        with open(os.devnull, "w", encoding="utf-8") as console:
            configure_logging(console, json_file=folder / "engine.jsonl")
            try:
                drain(WorkQueue(store), builtin_catalog(), connection, settings)
            finally:
                configure_logging()
        drained = time.time()
        cpu = time.process_time() - cpu_before
        succeeded = store.counts(BATCH)["succeeded"]
        views = store.list_jobs(BATCH)
    asked = time.time()
    with urllib.request.urlopen(f"{api_base}/_sim/ledger") as reply:
        ledger = json.load(reply)
    # The ledger's `now` was read as the request arrived: simulated second s happened at
    # wall time asked - (now - s) x scale (loopback latency, well under a millisecond).

    def wall(simulated: float) -> float:
        return asked - (ledger["now"] - simulated) * scale

    remote = ledger["jobs"]
    run_times, to_file, to_file_share, in_flight, files = [], [], [], [], []
    for view in views:
        job = remote.get(view.request_id or "")
        if job is None or job["started_at"] is None or job["finished_at"] is None:
            continue
        run = (job["finished_at"] - job["started_at"]) * scale
        run_times.append(run)
        path = out / view.output_path
        if view.state != "succeeded" or not path.exists():
            continue
        mtime = path.stat().st_mtime
        files.append(mtime)
        lag = mtime - wall(job["finished_at"])
        to_file.append(lag)
        to_file_share.append(lag / run if run > 0 else math.nan)
        in_flight.append((wall(job["submitted_at"]), mtime))
    calls = ledger["calls"]
    count = row.jobs
    ideal = max(sum(run_times) / row.slots, max(run_times, default=0.0))
    makespan = (max(files) if files else drained) - started
    return {
        "succeeded": succeeded,
        "ideal_s": ideal,
        "makespan_s": makespan,
        "ratio": ideal / makespan if makespan > 0 else 0.0,
        "calls_per_job": (calls.get("status", 0) + calls.get("result", 0)) / count,
        "calls_per_second": (calls.get("status", 0) + calls.get("result", 0))
        / max(drained - started, 1e-9),
        "submits_per_job": calls.get("submit", 0) / count,
        "to_file_min": min(to_file, default=math.nan),
        "to_file_p50": percentile(to_file, 50),
        "to_file_p99": percentile(to_file, 99),
        "share_p50": percentile(to_file_share, 50),
        "share_p99": percentile(to_file_share, 99),
        "duplicates": len(ledger["duplicates"]),
        "peak_running": peak(
            (job["started_at"], job["finished_at"])
            for job in remote.values()
            if job["started_at"] is not None
        ),
        "peak_in_flight": peak(in_flight),
        "cpu_ms_per_job": 1000 * cpu / count,
        "drain_s": drained - started,
        **looks_by_phase(remote.values(), count),
        **slot_use(remote.values(), row.slots, scale),
    }


def looks_by_phase(jobs: Iterable[dict[str, Any]], count: int) -> dict[str, float]:
    """Status looks per job by what they found (the simulator counts them per job)."""
    totals: dict[str, int] = {}
    for job in jobs:
        for status, looks in (job.get("looks") or {}).items():
            totals[status] = totals.get(status, 0) + looks
    return {
        "looks_queued": totals.get("in_queue", 0) / count,
        "looks_running": totals.get("in_progress", 0) / count,
        "looks_done": sum(v for k, v in totals.items() if k not in ("in_queue", "in_progress"))
        / count,
    }


def slot_use(jobs: Iterable[dict[str, Any]], slots: int, scale: float) -> dict[str, float]:
    """Where the makespan went: slot-seconds left idle while jobs were still to start (from
    the first start to the last), and the tail after the last start (real seconds)."""
    spans = [(j["started_at"], j["finished_at"]) for j in jobs if j["started_at"] is not None]
    if not spans:
        return {"idle_slot_s": 0.0, "tail_s": 0.0, "ramp_s": 0.0}
    first = min(start for start, _ in spans)
    last = max(start for start, _ in spans)
    edges = sorted(e for a, b in spans for e in ((a, 1), (b if b is not None else math.inf, -1)))
    idle, running, at, full_at = 0.0, 0, first, None
    for moment, step in edges:
        if moment > last:
            break
        idle += max(0, slots - running) * (moment - at)
        running += step
        at = moment
        if full_at is None and running >= slots:
            full_at = moment
    tail = max(b for _, b in spans if b is not None) - last
    return {
        "idle_slot_s": idle * scale / slots,
        "tail_s": tail * scale,
        "ramp_s": ((full_at if full_at is not None else last) - first) * scale,
    }


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (nan for no values)."""
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def peak(intervals: Iterable[tuple[float, float | None]]) -> int:
    """The most intervals open at one moment (an open end never closes)."""
    edges = sorted(
        edge
        for begin, end in intervals
        for edge in ((begin, 1), (math.inf if end is None else end, -1))
    )
    running = highest = 0
    for _at, step in edges:
        running += step
        highest = max(highest, running)
    return highest


# -- the report -----------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    head = (
        "| scenario | N | poller | time scale | ideal | makespan | ideal / makespan "
        "| status + result per job | per real s | finish to file p50 / p99 "
        "| as share of the run p50 / p99 | succeeded | paid twice | peak running "
        "| peak in flight | engine CPU per job | took | verdict |\n"
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n"
        f"| **target** | | | | | | >= {100 * TARGET_RATIO:.0f}% | <= {TARGET_CALLS:g} | | | "
        "| N / N | 0 | <= slots | | | | |\n"
    )
    lines = []
    for row in rows:
        s = row.scenario
        poller = f"fixed {FIXED_POLL:g} s" if s.fixed else "adaptive"
        if row.skipped:
            lines.append(
                f"| {s.title} | {row.jobs:,} | {poller} |"
                + " |" * 14
                + f" skipped: {row.skipped} |"
            )
            continue
        f = row.figures
        misses = row.misses()
        verdict = "missed: " + ", ".join(misses) if misses else "ok"
        lines.append(
            f"| {s.title} | {row.jobs:,} | {poller} | {row.time_scale:g} "
            f"| {f['ideal_s']:.1f} s | {f['makespan_s']:.1f} s | {100 * f['ratio']:.1f}% "
            f"| {f['calls_per_job']:.2f} | {f['calls_per_second']:.0f} "
            f"| {f['to_file_p50']:.2f} / {f['to_file_p99']:.2f} s "
            f"| {100 * f['share_p50']:.0f}% / {100 * f['share_p99']:.0f}% "
            f"| {f['succeeded']:,.0f} / {row.jobs:,} | {f['duplicates']:.0f} "
            f"| {f['peak_running']:.0f} / {row.slots} | {f['peak_in_flight']:.0f} "
            f"| {f['cpu_ms_per_job']:.1f} ms | {row.elapsed:.0f} s | {verdict} |"
        )
    return head + "\n".join(lines)


def section(rows: list[Row], command: str, ideal_seconds: float, total: float) -> str:
    slots = rows[0].slots if rows else 0
    notes = sorted({note for row in rows for note in row.notes})
    noted = "".join(f"\nNote: {note}." for note in notes)
    return f"""{START}
## Poll schedule and slot discovery across simulator timing profiles

`{command}` ({total / 60:.1f} minutes in all).

Each row: a fresh simulator process with {slots} slots, a fresh store, N jobs. The timestamp
rows share one workload, the five models with the durations and resolutions each accepts and
lognormal run times (sigma {SIGMA:g}) around a median per model, scaled by clip length and
resolution (about 5-35 simulated s); they differ only in how `/result` stamps times: ISO, none,
a constant 60 s run, 3 h ahead, naive local time 5 h behind, epoch milliseconds, created_at at
the start. "3 s runs" are fixed, "10 min runs" lognormal around 600 s. The engine settings are
the same in every row: `max_in_flight` = 4 x slots is only an upper bound, the engine is told
nothing else about the account, and `PollPolicy()` is scaled by the row's time scale (picked
for an ideal of about {ideal_seconds:g} real s). The "fixed" rows poll every 2 simulated s
instead (the official CLI's interval), the 10-minute one with N = slots: polling queued
10-minute jobs every 2 s as well would only measure CPU. Ideal = max(sum of the jobs' true
run times / slots, the longest run) from the simulator's ledger, in real s; makespan =
enqueue to the last video's mtime; finish to file = remote finish to the video's mtime; peak
in flight = jobs submitted and not yet on disk.{noted}

Machine: {machine()}.

{table(rows)}
{END}
"""


def pick(names: str | None, smoke: bool) -> list[Scenario]:
    by_name = {s.name: s for s in SCENARIOS}
    if names is None:
        return [by_name[n] for n in SMOKE] if smoke else list(SCENARIOS)
    chosen = []
    for name in (n.strip() for n in names.split(",")):
        if name not in by_name:
            raise SystemExit(f"unknown scenario {name!r}; known: {', '.join(by_name)}")
        chosen.append(by_name[name])
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenarios",
        help="comma-separated short names (default: all): " + ", ".join(s.name for s in SCENARIOS),
    )
    parser.add_argument("--jobs", type=int, help="jobs per scenario (default 2000)")
    parser.add_argument("--slots", type=int, help="the simulated account's slots (default 50)")
    parser.add_argument(
        "--ideal-seconds",
        type=float,
        help="real seconds the ideal makespan should last; sets each row's time scale (default 75)",
    )
    parser.add_argument("--write", type=Path, help="replace the section in this file")
    parser.add_argument(
        "--smoke", action="store_true", help="two tiny scenarios for CI; writes nothing"
    )
    args = parser.parse_args()
    scenarios = pick(args.scenarios, args.smoke)
    jobs = args.jobs or (20 if args.smoke else 2000)
    slots = args.slots or (5 if args.smoke else 50)
    ideal_seconds = args.ideal_seconds or (1.5 if args.smoke else 75.0)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    began = time.perf_counter()
    rows = []
    for scenario in scenarios:
        row = run_scenario(scenario, jobs, slots, ideal_seconds)
        rows.append(row)
        if row.skipped:
            print(f"{scenario.name}: skipped ({row.skipped})", flush=True)
            continue
        f = row.figures
        print(
            f"{scenario.name}: {row.elapsed:.1f} s; {f['succeeded']:.0f} / {row.jobs} done, "
            f"{100 * f['ratio']:.1f}% of ideal, {f['calls_per_job']:.2f} status + result "
            f"per job{' (' + ', '.join(row.misses()) + ' missed)' if row.misses() else ''}; "
            f"looks queued/running/done {f['looks_queued']:.2f}/{f['looks_running']:.2f}/"
            f"{f['looks_done']:.2f}; slots idle {f['idle_slot_s']:.1f} s (ramp "
            f"{f['ramp_s']:.1f} s), tail {f['tail_s']:.1f} s",
            flush=True,
        )
    total = time.perf_counter() - began
    command = "python bench/poll_profiles.py " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("--write") and a != str(args.write)
    )
    text = section(rows, command.strip(), ideal_seconds, total)
    print(text)
    print(f"all scenarios: {total:.0f} s")
    if args.write and not args.smoke:
        write_section(args.write, text)
    failed = [r for r in rows if r.figures and r.figures["succeeded"] < r.jobs]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
