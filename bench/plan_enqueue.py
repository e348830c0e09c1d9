"""Benchmark: plan and enqueue a large matrix manifest through the real command line.

Builds a manifest of ``--jobs`` jobs (distinct prompts x a seed matrix, all over one ~5 MB
image), then times ``orchestrator plan`` and ``orchestrator enqueue`` (twice: the second run
must add nothing) as separate processes and records each one's wall time and peak RSS, plus
the size of the resulting SQLite file (it must not grow with the image size).

    python bench/plan_enqueue.py --jobs 100000 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

SECTION_START = "<!-- bench:plan_enqueue:start -->"
SECTION_END = "<!-- bench:plan_enqueue:end -->"
SEEDS = 100


@dataclass
class Measure:
    name: str
    seconds: float
    peak_rss_mb: float


def make_inputs(folder: Path, jobs: int) -> Path:
    """A 1920x1080 noise PNG (~5 MB) and a manifest of ``jobs`` jobs over it."""
    image = folder / "frame.png"
    Image.frombytes("RGB", (1600, 1000), os.urandom(1600 * 1000 * 3)).save(image)
    prompts = max(1, jobs // SEEDS)
    seeds = jobs // prompts
    lines = [
        "batch: bench",
        "model: runwayml/runway-gen-4/turbo/image-to-video",
        "defaults: {duration: 5, ratio: '16:9'}",
        "matrix:",
        f"  seed: [{', '.join(str(s) for s in range(seeds))}]",
        "jobs:",
    ]
    for number in range(prompts):
        lines.append(f"  - id: shot-{number:05d}")
        lines.append(f"    prompt: a slow pan across scene number {number}, cinematic light")
        lines.append("    image: frame.png")
    manifest = folder / "bench.yaml"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def run_cli(name: str, args: list[str]) -> Measure:
    """Run one CLI command in a fresh process; wait4 gives that process's own peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args], stdout=subprocess.DEVNULL
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{name} failed with exit status {process.returncode}")
    return Measure(name, elapsed, usage.ru_maxrss / 1024)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){mem}, Python {platform.python_version()}"


def report(jobs: int, measures: list[Measure], db_mb: float, image_mb: float) -> str:
    rows = "\n".join(f"| {m.name} | {m.seconds:.2f} s | {m.peak_rss_mb:.0f} MB |" for m in measures)
    return f"""{SECTION_START}
## Plan and enqueue a {jobs:,}-job matrix manifest

`make bench` (`bench/plan_enqueue.py --jobs {jobs}`): {jobs // SEEDS:,} prompts x {SEEDS} seeds
for Runway Gen-4 Turbo over one {image_mb:.1f} MB PNG. Each command runs as its own process
through the real CLI against a fresh SQLite file; peak RSS is the process's maximum
resident set (from wait4). Target: under 10 s and under 300 MB each.

Machine: {machine()}.

| command | wall time | peak RSS |
|---|---|---|
{rows}

SQLite file after enqueue: {db_mb:.1f} MB for {jobs:,} jobs (the store keeps image paths and
hashes, never image bytes: {jobs:,} copies of the image would be {jobs * image_mb / 1024:,.0f} GB).
{SECTION_END}
"""


def write_section(path: Path, section: str) -> None:
    """Replace the section with the same ``<!-- bench:NAME:start/end -->`` markers in
    ``path`` (or append it): each benchmark owns one section of BENCHMARKS.md."""
    lines = section.strip().splitlines()
    start, end = lines[0], lines[-1]
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        text = head + section.strip() + tail
    else:
        text = text.rstrip() + "\n\n" + section.strip() + "\n"
    path.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--write", type=Path, help="update this Markdown file's section")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = make_inputs(folder, args.jobs)
        db = folder / "bench.db"
        common = ["--db", str(db)]
        measures = [
            run_cli("validate", ["validate", str(manifest)]),
            run_cli("plan (empty store)", ["plan", str(manifest), *common]),
            run_cli("enqueue (all new)", ["enqueue", str(manifest), *common]),
            run_cli("enqueue again (nothing new)", ["enqueue", str(manifest), *common]),
            run_cli("plan (all stored)", ["plan", str(manifest), *common]),
        ]
        db_mb = sum(p.stat().st_size for p in folder.glob("bench.db*")) / 1e6
        image_mb = (folder / "frame.png").stat().st_size / 1e6
    section = report(args.jobs, measures, db_mb, image_mb)
    print(section)
    if args.write:
        write_section(args.write, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
