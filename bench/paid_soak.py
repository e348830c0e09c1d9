"""Paid-work soak: file-host outages and one full disk; every billed job kept, none paid twice.

An in-process simulator (the ``outages`` profile scaled up, outages of both kinds spread
over the run) serves ``orchestrator run`` (a subprocess) writing to a small real tmpfs.
Once some hundreds of videos are down the tmpfs is filled to the last byte until the
disk-full breaker has tripped and a while longer. Paused jobs are fetched by running the
same command again. Then the ledger and the store are checked render by render: no payload
paid twice, every billed render a verified video on disk or still to be fetched.

    python bench/paid_soak.py --write RELIABILITY.md      # 2,000 jobs, about 10 minutes
    python bench/paid_soak.py --smoke                     # 40 jobs, well under a minute
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_enqueue import machine, write_section

from orchestrator.simulator import SimulatorServer, load_profile
from orchestrator.simulator.profile import Duration, FileOutage, Profile

if TYPE_CHECKING:
    from collections.abc import Iterator

START, END = "<!-- paid-soak:start -->", "<!-- paid-soak:end -->"
TOKEN = "paid-soak-token-5c1e9a"
BATCH = "paid-soak"
MODEL = "runwayml/runway-gen-4/turbo/image-to-video"
TO_FETCH = ("downloading", "fetch_wait", "fetch_paused")
#: Rendered jobs the store has not seen finish yet: a re-run re-attaches to them.
UNSEEN = ("submitting", "submitted", "needs_reconcile")
UNFINISHED = (
    "select name, state, request_id, remote_status from jobs where state not in "
    "('succeeded', 'failed', 'cancelled', 'needs_reconcile')"
)
TARGETS = (
    "billed jobs delivered or waiting to be fetched = all",
    "paid twice without --reroll = 0",
    "billed videos thrown away = 0",
    "every run ends on its own (no stall)",
)


@dataclass(frozen=True)
class Plan:
    jobs: int
    slots: int
    time_scale: float  # real seconds per simulated second
    runs: tuple[float, float]  # uniform run time, simulated seconds
    outages: tuple[tuple[float, float, str], ...]  # (after, lasting): real seconds; kind
    full_after: int  # videos on disk before the disk is filled
    full_for: float  # real seconds the disk stays full (at least, and until the breaker trips)
    patience: float  # --fetch-patience, real seconds
    disk: str  # tmpfs size
    timeout: float  # real seconds a run may take before it counts as a hang


# Runs of 6-14 s real: 2,000 jobs over 50 slots take about 7 minutes, plus the full disk.
# The disk fills at about 90 s, between the second outage and the third.
OUTAGES = (
    *((20, 6, "error"), (50, 15, "refuse"), (240, 30, "error")),
    *((320, 20, "refuse"), (400, 10, "error"), (450, 25, "refuse")),
)
FULL = Plan(2000, 50, 0.05, (120, 280), OUTAGES, 400, 90.0, 300.0, "64m", 3600.0)
BRIEF = ((0, 2, "error"), (5, 2, "refuse"))
SMOKE = Plan(40, 10, 0.01, (100, 200), BRIEF, 15, 3.0, 60.0, "16m", 300.0)


def profile(plan: Plan, seed: int) -> Profile:
    scale, (low, high) = plan.time_scale, plan.runs
    return load_profile("outages").with_overrides(
        slots=plan.slots,
        time_scale=scale,
        seed=seed,
        durations={"default": Duration("uniform", low=low, high=high)},
        video_fps=4,
        video_max_side=64,
        file_outages=tuple(FileOutage(s / scale, a / scale, k) for a, s, k in plan.outages),
    )


def manifest(folder: Path, plan: Plan) -> Path:
    Image.new("RGB", (640, 360), (40, 120, 90)).save(folder / "frame.jpg")
    seeds = ", ".join(str(s) for s in range(plan.jobs))
    path = folder / "paid.yaml"
    path.write_text(
        f"batch: {BATCH}\nmodel: {MODEL}\nmatrix:\n  seed: [{seeds}]\n"
        f"retry: {{max_attempts: 1}}\nlimits: {{max_in_flight: {plan.slots + 10}}}\n"
        "jobs:\n  - {id: shot, prompt: a slow pan over a lake, image: frame.jpg}\n",
        encoding="utf-8",
    )
    return path


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[bool]:
    """A real tmpfs at ``folder`` (True), or an ordinary folder when mounting fails (as
    tests' ``small_disk``, which skips instead); unmounted afterwards, also on errors."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    done = subprocess.run(mount, capture_output=True, check=False)
    if done.returncode != 0:
        print(f"cannot mount a tmpfs ({done.stderr.decode().strip()}): no real full disk")
    try:
        yield done.returncode == 0
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def top_up(handle: BinaryIO) -> None:
    """Write until the file system has not one byte left (tests' ``fill``, on an open
    file, so the disk stays full when the engine removes a part file)."""
    for chunk in (b"\0" * 65536, b"\0"):
        with contextlib.suppress(OSError):  # ENOSPC: this chunk size no longer fits
            while handle.write(chunk):
                pass


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    # mode=rw: never create the store before the orchestrator does.
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30)) as c:
        return c.execute(sql, args).fetchall()


def count(db: Path, sql: str) -> int:
    with contextlib.suppress(sqlite3.OperationalError):  # no store (or no tables) yet
        return int(query(db, f"select count(*) from {sql}")[0][0])
    return 0


def full_disk(out: Path, db: Path, plan: Plan, real: bool, stop: threading.Event) -> dict[str, Any]:
    """Once ``full_after`` videos are down, fill the disk and keep it full for ``full_for``
    seconds and until the breaker has tripped (at most 5x as long); then free it."""
    while count(db, "jobs where state = 'succeeded'") < plan.full_after:
        if stop.wait(0.2):
            return {}
    if not real:
        return {}
    ballast = out / "ballast.bin"
    facts: dict[str, Any] = {"videos": count(db, "jobs where state = 'succeeded'")}
    with open(ballast, "wb", buffering=0) as handle:
        top_up(handle)
        facts["full_at"] = full_at = time.time()
        facts["ballast_mb"] = round(ballast.stat().st_size / 2**20, 1)
        while not stop.wait(0.2):
            waited = time.time() - full_at
            tripped = count(db, "events where kind = 'breaker_tripped'")
            if waited >= plan.full_for and (tripped or waited >= 5 * plan.full_for):
                break
            top_up(handle)
    ballast.unlink()
    return {**facts, "freed_at": time.time()}


@dataclass
class Run:
    code: int | None  # None: killed after SIGINT did not end it
    wall: float
    output: str
    stalled: list[tuple[Any, ...]] | None = None  # unfinished jobs when it stopped moving
    quiet: float = 0.0  # seconds without progress when the stall was declared


def run(command: list[str], plan: Plan, log: Path, server: SimulatorServer, db: Path) -> Run:
    """One ``orchestrator run``. A run with no store event and no API or file request for
    ``patience / 4 + 30`` s (longer than any fetch backoff) or past ``plan.timeout`` has
    stalled: it is interrupted as a user would (SIGINT), its unfinished jobs recorded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env["RUNCOMFY_API_TOKEN"] = TOKEN
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        moved, last, stalled, quiet = started, None, None, 0.0
        try:
            while process.poll() is None:
                time.sleep(5)
                calls = sum(server.simulator.snapshot()["calls"].values())
                seen = (count(db, "events"), calls)
                moved, last = (moved, last) if seen == last else (time.monotonic(), seen)
                quiet, now = time.monotonic() - moved, time.monotonic()
                if quiet > plan.patience / 4 + 30 or now - started > plan.timeout:
                    stalled = query(db, UNFINISHED)
                    process.send_signal(signal.SIGINT)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(60)
                    break
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
    code = None if process.returncode == -signal.SIGKILL else process.returncode
    text = log.read_text(encoding="utf-8")
    return Run(code, time.monotonic() - started, text, stalled, round(quiet))


def soak(plan: Plan, seed: int, folder: Path) -> dict[str, Any]:
    out, db, path = folder / "out", folder / "paid.db", manifest(folder, plan)
    simulator = SimulatorServer(profile(plan, seed), token=TOKEN)
    with small_disk(out, plan.disk) as real, simulator as server:
        command = [
            *(sys.executable, "-m", "orchestrator", "run", str(path), "--db", str(db)),
            *("--out", str(out), "--api-base", server.api_base, "--trust-host", "localhost"),
            *("--poll-min", "0.2", "--poll-max", "3", "--quiet"),
            *("--fetch-patience", str(plan.patience)),
        ]
        stop, disk = threading.Event(), {}
        filler = threading.Thread(target=lambda: disk.update(full_disk(out, db, plan, real, stop)))
        filler.start()
        try:
            runs = [run(command, plan, folder / "run-1.log", server, db)]
        finally:
            stop.set()
            filler.join()
        # Paused jobs, or a run that stalled: run the same command again, as a user would.
        paused = "jobs where state = 'fetch_paused'"
        while len(runs) < 3 and (runs[-1].stalled is not None or count(db, paused)):
            runs.append(run(command, plan, folder / f"run-{len(runs) + 1}.log", server, db))
        figures = check(db, server.simulator.snapshot(), server.simulator.clock.now(), plan)
        figures["partial_files"] = sum(1 for _ in out.rglob("*.part"))
    figures.update(
        real_tmpfs=real,
        exit_codes=[r.code for r in runs],
        wall_s=round(sum(r.wall for r in runs), 1),
        stalls=[(n, r.quiet, r.stalled) for n, r in enumerate(runs, 1) if r.stalled is not None],
        tracebacks=sum(r.output.count("Traceback") for r in runs),
        last_output=runs[-1].output[-3000:],
        disk=breaker(db, disk),
    )
    return figures


def breaker(db: Path, disk: dict[str, Any]) -> dict[str, Any]:
    """The full-disk episode against the batch's breaker events, and claims while open."""
    if not disk:
        return {}
    sql = "select id, kind, at, json_extract(detail, '$.kind') from events where kind in "
    sql += "('breaker_tripped', 'breaker_closed')"
    events = [(i, k, datetime.fromisoformat(at), why) for i, k, at, why in query(db, sql)]
    times = {
        i: (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() for i, _k, at, _w in events
    }
    trips = [i for i, kind, _at, _why in events if kind == "breaker_tripped"]
    closes = [i for i, kind, _at, _why in events if kind == "breaker_closed"]
    opened = [(i, min([c for c in closes if c > i], default=2**62)) for i in trips]
    sql = "select id from events where json_extract(detail, '$.outcome') = 'claimed'"
    claims = [c for (c,) in query(db, sql)]
    return {
        **disk,
        "full_s": round(disk["freed_at"] - disk["full_at"], 1),
        "trips": len(trips),
        "kinds": ", ".join(sorted({why for i, _k, _at, why in events if i in trips})),
        "closes": len(closes),
        "tripped_after": round(times[trips[0]] - disk["full_at"], 1) if trips else None,
        "closed_after": round(times[closes[-1]] - disk["freed_at"], 1) if closes else None,
        "claims": len(claims),
        "claims_while_open": sum(1 for c in claims if any(a < c < b for a, b in opened)),
    }


def check(db: Path, ledger: dict[str, Any], now: float, plan: Plan) -> dict[str, Any]:
    """Ledger against store, render by render (as tests' ``assert_paid_work_kept``)."""
    (root,) = query(db, "select output_root from batches where name = ?", BATCH)[0]
    sql = "select id, state, request_id, output_path, sha256, error from jobs where batch = ?"
    jobs = {row[0]: row for row in query(db, sql, BATCH)}
    attempts = query(db, "select job_id, kind, request_id from attempts")
    owner = {rid: job for job, _kind, rid in attempts if rid}
    tally: Counter[str] = Counter()
    for rid, timeline in ledger["jobs"].items():
        finished = timeline["finished_at"]
        if timeline["cancelled_at"] is not None or finished is None or finished > now:
            tally["not rendered"] += 1
        elif timeline["outcome"] != "success":
            tally["render failed remotely"] += 1
        elif (job := jobs.get(owner.get(rid, -1))) is None or job[2] != rid:
            tally["thrown away: not the current request of a job"] += 1
        elif job[1] == "succeeded":
            video = Path(root) / job[3]
            ok = video.is_file() and hashlib.sha256(video.read_bytes()).hexdigest() == job[4]
            tally["delivered" if ok else "thrown away: file missing or not the one recorded"] += 1
        elif job[1] in UNSEEN:  # not delivered, and not seen finished: a re-run fetches it
            tally[f"not fetched, still {job[1]}"] += 1
        else:
            tally["waiting" if job[1] in TO_FETCH else f"thrown away: {job[1]}"] += 1
    failed = [(e or "no reason").split(":")[0] for _i, s, *_r, e in jobs.values() if s == "failed"]
    sql = "select count(*), count(distinct job_id) from events where to_state = 'fetch_wait'"
    waits = query(db, sql)[0]
    unbilled = ("not rendered", "render failed remotely")
    return {
        "jobs": len(jobs),
        "states": dict(Counter(row[1] for row in jobs.values())),
        "failed": dict(Counter(failed)),
        "accepted": sum(ledger["submissions"].values()),
        "twice": len(ledger["duplicates"]),
        "rerolls": sum(1 for _job, kind, _rid in attempts if kind == "reroll"),
        "unrecorded": sum(1 for rid in ledger["jobs"] if rid not in owner),
        "billed": sum(n for k, n in tally.items() if k not in unbilled),
        "renders": dict(tally),
        "thrown_away": sum(n for k, n in tally.items() if k.startswith("thrown away")),
        "outages": [
            (w["kind"], round((w["closes_at"] - w["opened_at"]) * plan.time_scale, 1))
            for w in ledger["outages"]
        ],
        "outage_faults": {k: v for k, v in ledger["faults"].items() if k.startswith("file_outage")},
        "fetch_retries": waits[0],
        "jobs_that_waited": waits[1],
        "fetch_pauses": count(db, "events where to_state = 'fetch_paused'"),
    }


def verdicts(f: dict[str, Any]) -> list[tuple[str, str, bool]]:
    kept = f["renders"].get("delivered", 0) + f["renders"].get("waiting", 0)
    twice = f["twice"] + f["rerolls"]
    values = (f"{kept:,} of {f['billed']:,}", str(twice), str(f["thrown_away"]))
    values += (f"{len(f['stalls'])} stall(s) in {len(f['exit_codes'])} run(s)",)
    met = (kept == f["billed"], twice == 0, not f["thrown_away"], not f["stalls"])
    return list(zip(TARGETS, values, met, strict=True))


def rows(f: dict[str, Any]) -> list[tuple[str, object]]:
    d, r = f["disk"], f["renders"]
    thrown = {k: v for k, v in r.items() if k.startswith("thrown")}
    unseen = {k: v for k, v in r.items() if k.startswith("not fetched")}
    stalls = "; ".join(
        f"run {n}: no progress for {quiet} s, {len(jobs)} job(s) unfinished: "
        + ", ".join(
            f"{name} {state} (remote {remote}, request {rid})"
            for name, state, rid, remote in jobs[:5]
        )
        for n, quiet, jobs in f["stalls"]
    )
    disk = breaker_row = "no real full disk (no tmpfs, or the run ended first)"
    if d:
        disk = f"{d['full_s']} s, after {d['videos']:,} videos (ballast {d['ballast_mb']} MB)"
        breaker_row = (
            f"{d['trips']} trip(s) ({d['kinds']}), {d['closes']} close(s); tripped "
            f"{d['tripped_after']} s after the disk filled, closed {d['closed_after']} s after "
            "it was freed"
        )
    outages = f"{f['outages']}; {f['outage_faults']}"
    fetches = f"{f['fetch_retries']:,}; {f['jobs_that_waited']:,}; {f['fetch_pauses']}"
    runs = f"{len(f['exit_codes'])}; {f['exit_codes']}"
    claims = f"{d['claims_while_open']} (of {d['claims']})" if d else "no full disk"
    return [
        ("jobs; final states", f"{f['jobs']:,}; {f['states']}"),
        ("failed, by reason", f["failed"] or "none"),
        ("submits the simulator accepted", f"{f['accepted']:,}"),
        ("payloads accepted more than once; re-roll attempts", f"{f['twice']}; {f['rerolls']}"),
        ("accepted requests the store never recorded", f["unrecorded"]),
        ("renders billed", f"{f['billed']:,}"),
        ("delivered (file on disk, sha256 as recorded)", f"{r.get('delivered', 0):,}"),
        ("waiting to be fetched (downloading, fetch_wait, fetch_paused)", r.get("waiting", 0)),
        ("not fetched, not seen finished by a run (a re-run fetches them)", unseen or 0),
        ("thrown away", f"{f['thrown_away']} {thrown or ''}".strip()),
        ("file-host outages that opened (kind, real s); replies spoiled", outages),
        ("fetch retries (to fetch_wait); jobs that waited; pauses", fetches),
        ("disk full", disk),
        ("breaker", breaker_row),
        ("claims while the breaker was open (of all claims)", claims),
        ("runs (re-runs after pauses or a stall); exit codes", runs),
        ("stalls (interrupted with SIGINT, then run again)", stalls or "none"),
        ("wall time of the runs", f"{f['wall_s']} s"),
        ("tracebacks; partial files left", f"{f['tracebacks']}; {f['partial_files']}"),
    ]


def section(f: dict[str, Any], plan: Plan, seed: int, smoke: bool) -> str:
    checks = "\n".join(f"| {t} | {v} | {'met' if ok else 'FAILED'} |" for t, v, ok in verdicts(f))
    table = "\n".join(f"| {label} | {value} |" for label, value in rows(f))
    planned = ", ".join(f"{k} at {a:g} s for {s:g} s" for a, s, k in plan.outages)
    how = "`bench/paid_soak.py --smoke`" if smoke else "`make soak-paid` (`bench/paid_soak.py`)"
    low, high = plan.runs
    tmpfs = "tmpfs" if f["real_tmpfs"] else "tmpfs (NOT mounted: an ordinary folder)"
    setup = textwrap.fill(
        f"{how}, {plan.jobs:,} jobs, seed {seed}: the `outages` profile with {plan.slots} "
        f"slots, run times of {low:g}-{high:g} simulated s at time scale {plan.time_scale:g}, "
        f"64-pixel videos, and file-host outages planned at (real seconds from the start) "
        f"{planned}. `orchestrator run --fetch-patience {plan.patience:g}` (max_in_flight "
        f"{plan.slots + 10}, retry.max_attempts 1, no spend cap) writes to a {plan.disk} "
        f"{tmpfs}, filled once {plan.full_after:,} videos are down. Machine: {machine()}.",
        92,
    )
    return f"""{START}
{setup}

| target | figure | verdict |
|---|---|---|
{checks}

| figure | value |
|---|---|
{table}
{END}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="40 jobs, short outages")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write", type=Path, help="update this Markdown file's section")
    args = parser.parse_args()
    plan = SMOKE if args.smoke else FULL
    with tempfile.TemporaryDirectory(prefix="paid-soak-") as tmp:
        figures = soak(plan, args.seed, Path(tmp))
    text = section(figures, plan, args.seed, args.smoke)
    print(text)
    problems = [target for target, _value, ok in verdicts(figures) if not ok]
    problems += ["a run did not end on SIGINT"] * (None in figures["exit_codes"])
    problems += ["a traceback"] * bool(figures["tracebacks"])
    problems += ["partial files left"] * bool(figures["partial_files"])
    if problems:
        print(f"FAILED: {'; '.join(problems)}\n--- last run's output ---\n{figures['last_output']}")
    if args.write:
        write_section(args.write, text)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
