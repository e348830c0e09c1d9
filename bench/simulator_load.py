"""Benchmark: how many status and result polls per second the local simulator answers.

Starts ``orchestrator simulate`` as its own process (calm profile, time scale 1000 so the
queue stays put), submits ``--requests`` jobs, then drives ``GET /v1/requests/{id}/status``
and ``GET /v1/requests/{id}/result`` for random ids from separate load-generator processes
(asyncio + httpx, HTTP/1.1 keep-alive) for a fixed time after a warm-up. Only 200 replies
count. If ``wrk`` is installed it measures one status URL too, as a second opinion from a
native client. Target: at least 2,000 requests/s, so the simulator is never the bottleneck
of the engine's benchmarks.

    python bench/simulator_load.py --seconds 5 --write BENCHMARKS.md
    python bench/simulator_load.py --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import multiprocessing
import os
import random
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

from orchestrator.simulator.process import SimulatorProcess

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_enqueue import machine, write_section

SECTION_START = "<!-- bench:simulator_load:start -->"
SECTION_END = "<!-- bench:simulator_load:end -->"
TARGET = 2000.0
MODEL = "bytedance/seedance-v1.5-pro/image-to-video"
HEADERS = {"Authorization": "Bearer bench"}
API_LINE = re.compile(r"API:\s+(http://\S+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")
CLIENTS = ("raw", "httpx")


@dataclass
class Result:
    """One measured load: a route hammered by one client for ``seconds``."""

    name: str
    client: str
    connections: int
    seconds: float
    ok: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None
    server_cpu: float | None  # share of one core the server process used

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


# -- the simulator process ----------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def small_jpeg_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 320), (40, 90, 160)).save(buffer, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def submit_requests(api: str, count: int) -> list[str]:
    image = small_jpeg_uri()
    ids: list[str] = []
    with httpx.Client(base_url=api, headers=HEADERS, timeout=30) as client:
        for number in range(count):
            body = {"prompt": f"a slow pan, shot {number}", "first_frame_image_url": image}
            reply = client.post(f"/v1/models/{MODEL}", json=body)
            if reply.status_code != 200:
                raise SystemExit(f"submit failed: {reply.status_code} {reply.text[:300]}")
            ids.append(reply.json()["request_id"])
    return ids


# -- the Python load generators (run in worker processes) --------------------------------
#
# "raw" is a minimal asyncio-streams HTTP/1.1 client (one request in flight per keep-alive
# connection, Content-Length bodies): cheap enough per request that the server, not the
# client, is what it measures. "httpx" is the engine's own client library; each connection
# gets its own AsyncClient because one shared pool of 64 connections collapses to a few
# hundred requests/s (httpcore's pool bookkeeping), which would measure httpx, not the server.


class Window:
    """Counts replies that start after the warm-up and end before the deadline."""

    def __init__(self, measure_from: float, end: float) -> None:
        self.measure_from, self.end = measure_from, end
        self.ok = self.failed = 0
        self.latencies: list[float] = []

    def record(self, began: float, finished: float, good: bool) -> None:
        if began >= self.measure_from and finished <= self.end:
            if good:
                self.ok += 1
                self.latencies.append(finished - began)
            else:
                self.failed += 1


def load_worker(
    kind: str,
    api: str,
    ids: list[str],
    route: str,
    connections: int,
    start: float,
    warmup: float,
    end: float,
) -> tuple[int, int, list[float]]:
    """Poll ``route`` for random ids until ``end`` (time.time()); counts after the warm-up."""
    window = Window(start + warmup, end)
    paths = [f"/v1/requests/{rid}/{route}" for rid in ids]

    async def run() -> None:
        seed = os.getpid() * 1000
        if kind == "raw":
            await asyncio.sleep(max(0.0, start - time.time()))
            await asyncio.gather(
                *(_raw_poller(api, paths, window, seed + n) for n in range(connections))
            )
            return
        # Clients are built before the start: each one costs an SSL context otherwise.
        tls = ssl.create_default_context()
        clients = [
            httpx.AsyncClient(
                base_url=api,
                headers=HEADERS,
                limits=httpx.Limits(max_connections=1),
                timeout=10,
                verify=tls,
            )
            for _ in range(connections)
        ]
        try:
            await asyncio.sleep(max(0.0, start - time.time()))
            await asyncio.gather(
                *(_httpx_poller(c, paths, window, seed + n) for n, c in enumerate(clients))
            )
        finally:
            for client in clients:
                await client.aclose()

    asyncio.run(run())
    return window.ok, window.failed, window.latencies


async def _raw_poller(api: str, paths: list[str], window: Window, seed: int) -> None:
    rng = random.Random(seed)
    host, port = httpx.URL(api).host, httpx.URL(api).port or 80
    auth = HEADERS["Authorization"]
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {auth}\r\n\r\n".encode()
        for path in paths
    ]
    writer: asyncio.StreamWriter | None = None
    while time.time() < window.end:
        began = time.time()
        good = False
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(rng.choice(requests))
            head = await reader.readuntil(b"\r\n\r\n")
            length = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length is None:
                raise ConnectionError("reply without Content-Length")
            await reader.readexactly(length)
            good = head[9:12] == b"200"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            if writer is not None:
                writer.close()
            writer = None
        window.record(began, time.time(), good)
    if writer is not None:
        writer.close()


async def _httpx_poller(
    client: httpx.AsyncClient, paths: list[str], window: Window, seed: int
) -> None:
    rng = random.Random(seed)
    while time.time() < window.end:
        began = time.time()
        try:
            good = (await client.get(rng.choice(paths))).status_code == 200
        except httpx.HTTPError:
            good = False
        window.record(began, time.time(), good)


def run_python_load(
    pool: ProcessPoolExecutor,
    kind: str,
    server_pid: int,
    api: str,
    ids: list[str],
    route: str,
    workers: int,
    connections: int,
    warmup: float,
    seconds: float,
) -> Result:
    per_worker = max(1, connections // workers)
    start = time.time() + 0.4  # time for every worker to get going (they are already up)
    end = start + warmup + seconds
    futures = [
        pool.submit(load_worker, kind, api, ids, route, per_worker, start, warmup, end)
        for _ in range(workers)
    ]
    time.sleep(max(0.0, start + warmup - time.time()))
    cpu_before = cpu_seconds(server_pid)
    time.sleep(max(0.0, end - time.time()))
    cpu_after = cpu_seconds(server_pid)
    ok = failed = 0
    latencies: list[float] = []
    for future in futures:
        w_ok, w_failed, w_latencies = future.result(timeout=warmup + seconds + 30)
        ok, failed = ok + w_ok, failed + w_failed
        latencies.extend(w_latencies)
    server_cpu = (
        (cpu_after - cpu_before) / seconds
        if cpu_before is not None and cpu_after is not None
        else None
    )
    p50 = p99 = None
    if len(latencies) >= 2:
        cuts = statistics.quantiles(latencies, n=100)
        p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    client = f"{kind}, {workers} process{'es' if workers > 1 else ''}"
    return Result(
        f"/{route}", client, per_worker * workers, seconds, ok, failed, p50, p99, server_cpu
    )


# -- wrk (optional second opinion) --------------------------------------------------------


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(wrk: str, server_pid: int, url: str, route: str, seconds: float) -> Result | str:
    """``wrk -t2 -c64`` against one URL; a string explains why there is no figure."""
    duration = max(1, round(seconds))
    command = [wrk, "-t2", "-c64", f"-d{duration}s", "--latency"]
    command += ["-H", f"Authorization: {HEADERS['Authorization']}", url]
    cpu_before = cpu_seconds(server_pid)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 30, check=False
        )
    except subprocess.TimeoutExpired:
        return "wrk did not finish in time"
    cpu_after = cpu_seconds(server_pid)
    output = done.stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", output)
    if done.returncode != 0 or total is None:
        return f"wrk failed: {(done.stderr or output).strip()[:200]}"
    elapsed = _ms(total.group(2) + total.group(3)) / 1000
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    failed = int(bad.group(1)) if bad else 0
    failed += sum(int(n) for n in errors.groups()) if errors else 0
    ok = int(total.group(1)) - (int(bad.group(1)) if bad else 0)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    server_cpu = (
        (cpu_after - cpu_before) / elapsed
        if cpu_before is not None and cpu_after is not None
        else None
    )
    return Result(
        f"/{route}",
        "wrk -t2 (native)",
        64,
        elapsed,
        ok,
        failed,
        _ms(p50.group(1)) if p50 else None,
        _ms(p99.group(1)) if p99 else None,
        server_cpu,
    )


# -- report -------------------------------------------------------------------------------


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else format(value, pattern)


def report(results: list[Result], wrk_note: str, args: argparse.Namespace, ids: int) -> str:
    rows = "\n".join(
        f"| {r.name} | {r.client} | {r.connections} | {r.rate:,.0f} | {r.failed} "
        f"| {_fmt(r.p50_ms, '.1f')} | {_fmt(r.p99_ms, '.1f')} "
        f"| {_fmt(None if r.server_cpu is None else r.server_cpu * 100, '.0f')}% "
        f"| {_fmt(r.rate / r.server_cpu if r.server_cpu else None, ',.0f')} |"
        for r in results
    )
    best = max((r.rate for r in results if r.name == "/status"), default=0.0)
    verdict = "meets" if best >= TARGET else "misses"
    return f"""{SECTION_START}
## Simulator: status and result polls per second

`bench/simulator_load.py --seconds {args.seconds:g}`: the simulator runs as its own process
(`orchestrator simulate --profile calm --time-scale 1000`: uvicorn + httptools, one event
loop) with {ids} submitted jobs. The load generators run in {args.workers} other process(es),
{args.connections} HTTP/1.1 keep-alive connections in all, one request in flight per
connection, polling random ids for {args.seconds:g} s after a {args.warmup:g} s warm-up; only 200
replies count. `raw` is a minimal asyncio-streams client (cheap per request, so it measures
the server); `httpx` is the engine's client library, one AsyncClient per connection (a single
shared 64-connection pool measures httpcore's pool, not the server). Server CPU is the
simulator process's CPU time over the window (100% = one core saturated); "per core"
is requests/s divided by that share, the rate one saturated core would give, which is less
sensitive to the clients competing with the server for the two cores. Target: at least
{TARGET:,.0f} status polls/s on loopback.
{wrk_note}

Machine: {machine()}.

| route | client | connections | requests/s | failed | p50 ms | p99 ms | server CPU | per core |
|---|---|---|---|---|---|---|---|---|
{rows}

Best /status figure: {best:,.0f} requests/s, which {verdict} the {TARGET:,.0f}/s target.
{SECTION_END}
"""


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so the finally blocks stop the processes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--requests", type=int, default=200, help="jobs to submit first")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--write", type=Path, help="update this Markdown file's section")
    parser.add_argument("--smoke", action="store_true", help="1 s, 8 connections, no wrk")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.warmup, args.requests = 1.0, 0.2, 20
        args.connections, args.workers, args.write = 8, 1, None

    signal.signal(signal.SIGTERM, _interrupt)
    results: list[Result] = []
    wrk = None if args.smoke else shutil.which("wrk")
    with tempfile.TemporaryFile() as log:
        simulator = SimulatorProcess(
            ["--profile", "calm", "--time-scale", "1000"], stderr=log
        ).start()
        server, api = simulator.process, simulator.api_base
        assert server is not None
        pool = ProcessPoolExecutor(
            args.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=signal.signal,  # Ctrl-C is the parent's business: it stops everything
            initargs=(signal.SIGINT, signal.SIG_IGN),
        )
        try:
            ids = submit_requests(api, args.requests)
            list(pool.map(abs, range(args.workers)))  # spawn the workers before any timing
            print(f"simulator at {api} (pid {server.pid}), {len(ids)} jobs submitted")
            for kind, route in [(k, r) for k in CLIENTS for r in ("status", "result")]:
                result = run_python_load(
                    pool,
                    kind,
                    server.pid,
                    api,
                    ids,
                    route,
                    args.workers,
                    args.connections,
                    args.warmup,
                    args.seconds,
                )
                results.append(result)
                print(f"  {result.name} via {result.client}: {result.rate:,.0f} requests/s")
            if args.smoke:
                wrk_note = "Smoke run: wrk skipped."
            elif wrk is None:
                wrk_note = "`wrk` is not installed: no native second opinion in this run."
            else:
                wrk_note = (
                    "Second opinion from `wrk -t2 -c64 --latency` (native, no Lua) "
                    "against one URL per route."
                )
                for route in ("status", "result"):
                    outcome = run_wrk(
                        wrk, server.pid, f"{api}/v1/requests/{ids[0]}/{route}", route, args.seconds
                    )
                    if isinstance(outcome, str):
                        wrk_note += f" {outcome}."
                        print(f"  wrk /{route}: {outcome}")
                    else:
                        results.append(outcome)
                        print(f"  {outcome.name} via wrk: {outcome.rate:,.0f} requests/s")
            if server.poll() is not None:
                raise SystemExit("the simulator exited during the benchmark")
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode("utf-8", "replace")[-2000:])
            raise
        finally:
            simulator.stop()
            # Workers stop at their deadline on their own; this waits seconds at most.
            pool.shutdown(wait=True, cancel_futures=True)

    section = report(results, wrk_note, args, len(ids))
    print(section)
    if args.write:
        write_section(args.write, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
