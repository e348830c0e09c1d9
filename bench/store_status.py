"""Benchmark: ``status`` and ``jobs --state failed`` on a store of a million jobs.

Fills an SQLite store with N jobs over 10 batches (1% failed, the rest spread over the other
states), then times the real CLI commands as separate processes.

    python bench/store_status.py --jobs 1000000 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from typing import TYPE_CHECKING

from plan_enqueue import machine, write_section

from orchestrator.store import NewJob, Store

if TYPE_CHECKING:
    from collections.abc import Iterator

START, END = "<!-- bench:store_status:start -->", "<!-- bench:store_status:end -->"
BATCHES = 10
STATES = ("succeeded", "succeeded", "succeeded", "pending", "submitted", "retry_wait")


def jobs_for(batch: int, count: int) -> Iterator[NewJob]:
    for number in range(count):
        key = hashlib.sha256(f"{batch}:{number}".encode()).hexdigest()
        yield NewJob(
            key=key,
            name=f"job-{number:07d}",
            model_id="runwayml/runway-gen-4/turbo/image-to-video",
            payload={"promptText": f"shot {number}", "seed": number},
            output_path=f"b{batch}/job-{number:07d}.mp4",
            max_attempts=3,
            estimated_cost_usd=0.25,
        )


def fill(db: Path, total: int) -> float:
    started = time.perf_counter()
    with Store.open(str(db)) as store:
        for batch in range(BATCHES):
            name = f"batch-{batch}"
            store.ensure_batch(name, manifest_path="m.yaml", output_root="out", settings={})
            store.enqueue(name, jobs_for(batch, total // BATCHES))
        with store.write() as connection:
            connection.exec_driver_sql(
                "UPDATE jobs SET state = CASE WHEN id % 100 = 0 THEN 'failed' "
                + " ".join(
                    f"WHEN id % {len(STATES)} = {i} THEN '{s}'" for i, s in enumerate(STATES)
                )
                + " END, error = CASE WHEN id % 100 = 0 THEN 'remote failure' END"
            )
    return time.perf_counter() - started


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "orchestrator", *args], check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "big.db"
        fill_s = fill(db, args.jobs)
        size = sum(p.stat().st_size for p in Path(tmp).glob("big.db*")) / 1e6
        common = ["--db", str(db)]
        figures = [
            ("status (all batches)", timed(["status", *common])),
            ("status --batch batch-3", timed(["status", "--batch", "batch-3", *common])),
            (
                "status --batch batch-3 --json",
                timed(["status", "--batch", "batch-3", "--json", *common]),
            ),
            (
                "jobs --state failed --limit 100",
                timed(["jobs", "--state", "failed", "--limit", "100", *common]),
            ),
            (
                "jobs --batch batch-3 --state failed --json",
                timed(["jobs", "--batch", "batch-3", "--state", "failed", "--json", *common]),
            ),
            ("python -m orchestrator --version (start-up)", timed(["--version"])),
        ]
    rows = "\n".join(f"| `{name}` | {seconds:.2f} s |" for name, seconds in figures)
    section = f"""{START}
## `status` and `jobs` on a store of {args.jobs:,} jobs

`bench/store_status.py --jobs {args.jobs}`: {BATCHES} batches in one SQLite file
({size:,.0f} MB; filled in {fill_s:.0f} s), 1% of jobs failed. Each command runs as its own
process through the real CLI, start-up included (the last row is start-up alone).

Machine: {machine()}.

| command | wall time |
|---|---|
{rows}
{END}
"""
    print(section)
    if args.write:
        write_section(args.write, section)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
