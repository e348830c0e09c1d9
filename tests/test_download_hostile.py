"""Hostile file-host replies over real sockets: the engine, a SQLite store, the simulator.

Each test serves one of the profile's ``file_tricks`` (a faststart file cut to 60 %,
redirects among trusted hosts or to an untrusted one, a gzip body, a host dripping a byte
every 2 s) to the real engine, and ends with the ledger's proof that no payload was paid
for twice (:func:`check_paid_once`) and with what is on disk. The same cases in process,
without sockets, are in ``tests/test_download_replies.py``.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import TYPE_CHECKING, Any

import anyio
from engine_helpers import (
    BATCH,
    TOKEN,
    Run,
    attempt_rows,
    by_name,
    check_paid_once,
    fast_settings,
    make_profile,
    run_engine,
    seed_store,
    simulator,
    wait_for,
)

from orchestrator.api import RunComfyClient
from orchestrator.catalog import builtin_catalog
from orchestrator.engine.download import Downloader
from orchestrator.engine.pool import Engine
from orchestrator.media.video import inspect_video
from orchestrator.simulator import ManualClock, Profile, SimulatorServer
from orchestrator.simulator.tricks import UNTRUSTED_HOST
from orchestrator.store import JobState, Store
from orchestrator.store.fetches import FetchQueue
from orchestrator.store.work import WorkQueue

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from pathlib import Path

    import pytest

    from orchestrator.engine.settings import EngineSettings
    from orchestrator.simulator.filetricks import TrickedDownload, TrickedFiles

S = JobState
#: Six seconds at 8 fps: 48 frames, the clip of the issue that found the faststart cut.
CLIP: dict[str, Any] = {"video_seconds": 6, "video_fps": 8}


def tricked(**tricks: Any) -> Profile:
    return make_profile(None, **CLIP, file_tricks=tricks)


def tricks_of(server: SimulatorServer) -> TrickedFiles:
    assert server.files.tricks is not None
    return server.files.tricks


def paid_once(store: Store, server: SimulatorServer) -> None:
    """Every payload accepted once, and each job's one attempt recorded (no re-roll)."""
    ledger = server.simulator.snapshot()
    attempts = [
        (a.job_id, a.number, a.kind, a.request_id, a.outcome)
        for job in store.list_jobs(batch=BATCH)
        for a in attempt_rows(store, job.row_id)
    ]
    assert check_paid_once(attempts, ledger) == 0
    assert set(ledger["submissions"].values()) == {1}


def kept(tmp_path: Path, store: Store) -> dict[str, bytes]:
    """Each succeeded job's video, checked against its store row and its sidecar."""
    videos = {}
    for name, job in by_name(store).items():
        assert job.state == S.SUCCEEDED, (name, job.state, job.error)
        path = tmp_path / "out" / f"{name}.mp4"
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == job.sha256
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert sidecar["video"]["frames"] == inspect_video(path).frames == 48
        videos[name] = data
    return videos


def no_token_on_the_file_host(server: SimulatorServer) -> None:
    for download in server.simulator.snapshot()["downloads"]:
        assert "authorization" not in download["headers"]
        assert TOKEN not in json.dumps(download)


# -- a faststart file cut to 60 % with a matching Content-Length ---------------------------------


def test_a_truncated_faststart_file_is_not_kept_and_is_fetched_again(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 2)
    # One download per try: the cut file's failure is durable (fetch_wait), and the next
    # fetch asks /result for a fresh URL before downloading again.
    with simulator(tricked(truncate_faststart=True, first_downloads=1)) as server:
        run = run_engine(store, server, fast_settings(max_download_tries=1))
        ledger = server.simulator.snapshot()
        served = tricks_of(server).records()
    assert run.report.downloads == 2
    videos = kept(tmp_path, store)
    assert [record.tricks for record in served] == [("truncate_faststart",)] * 2
    for record in served:  # the cut was never what stands on disk
        assert all(len(data) > record.total for data in videos.values())
        assert record.sha256 not in {job.sha256 for job in by_name(store).values()}
    for job in by_name(store).values():
        waits = [e.to_state for e in store.events(job_id=job.row_id)]
        assert "fetch_wait" in waits  # the cut file was a failed download, nothing more
    versions = sorted(d["path"].split("/")[3] for d in ledger["downloads"])
    assert versions == ["1", "1", "2", "2"]  # each: the first URL cut, a fresh one whole
    assert ledger["calls"]["result"] == 2 * 2  # the finish, then one fresh URL per job
    paid_once(store, server)


# -- redirects -------------------------------------------------------------------------------


def test_redirects_among_trusted_hosts_are_followed_and_the_video_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy of the environment is not used either: it would see every hop's URL and get
    # the credentials in its own URL (a closed port, so using it would fail the run).
    proxy = f"http://user:{TOKEN}@127.0.0.1:9"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    store = seed_store(tmp_path, 2)
    with simulator(tricked(redirect_hops=3)) as server:
        run = run_engine(store, server, fast_settings())
        ledger = server.simulator.snapshot()
        no_token_on_the_file_host(server)
    assert run.report.downloads == 2
    kept(tmp_path, store)
    statuses = [d["status"] for d in ledger["downloads"]]
    assert sorted(statuses) == [200] * 2 + [302] * 6
    hosts = {d["host"].rsplit(":", 1)[0] for d in ledger["downloads"]}
    assert hosts == {"localhost", "127.0.0.1"}  # the hops went between both names
    assert ledger["faults"]["redirect"] == 2
    paid_once(store, server)


def test_a_redirect_to_an_untrusted_host_is_refused_and_the_job_stays_fetchable(
    tmp_path: Path,
) -> None:
    store = seed_store(tmp_path, 1)
    profile = tricked(redirect_hops=2, redirect_untrusted=True, first_downloads=1)
    with simulator(profile) as server:
        run = run_engine(store, server, fast_settings())
        job = by_name(store)["job0"]
        # Refused at once (a setting must change), never re-rolled: it waits, paid.
        assert job.state == S.FETCH_PAUSED
        assert f"host {UNTRUSTED_HOST} is not on the download allowlist" in (job.error or "")
        assert "refused a redirect (HTTP 302) from 127.0.0.1" in (job.error or "")
        breaker = run.report.breaker
        assert breaker is not None
        assert breaker.host == UNTRUSTED_HOST
        assert f"--trust-host {UNTRUSTED_HOST}" in breaker.fix  # the host to trust, named
        downloads = server.simulator.snapshot()["downloads"]
        assert [d["status"] for d in downloads] == [302, 302]  # the untrusted one never asked
        no_token_on_the_file_host(server)
        paid_once(store, server)
        # A re-run (or `retry --failed`) fetches it again: free, the same request.
        assert FetchQueue(WorkQueue(store)).resume(BATCH) == ["job0"]
        again = run_engine(store, server, fast_settings())
        no_token_on_the_file_host(server)
        paid_once(store, server)
    assert again.report.submitted == 0
    assert again.report.downloads == 1
    assert by_name(store)["job0"].request_id == job.request_id
    kept(tmp_path, store)


# -- a gzip-encoded body ---------------------------------------------------------------------


def test_a_gzip_body_is_decoded_and_the_original_bytes_kept(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 2)
    with simulator(tricked(gzip_videos=True)) as server:
        run = run_engine(store, server, fast_settings())
        # The host marks a record after its last send returns: wait for the marks.
        assert tricks_of(server).wait_for(lambda rs: all(r.finished for r in rs), 10)
        served = tricks_of(server).records()
        ledger = server.simulator.snapshot()
    assert run.report.downloads == 2
    videos = kept(tmp_path, store)
    assert ledger["faults"]["gzip_video"] == 2
    assert len(ledger["downloads"]) == 2
    originals = {record.original_sha256 for record in served}
    assert {hashlib.sha256(data).hexdigest() for data in videos.values()} == originals
    assert all(record.finished and record.tricks == ("gzip_video",) for record in served)
    paid_once(store, server)


# -- a host that drips one byte every 2 s ------------------------------------------------------


def run_on_the_simulators_clock(
    store: Store,
    server: SimulatorServer,
    settings: EngineSettings,
    during: Callable[[Engine, anyio.Event], Coroutine[Any, Any, None]],
) -> Run:
    """:func:`run_engine`, with the downloader reading the simulator's (manual) clock."""

    async def main() -> Run:
        stop = anyio.Event()
        async with (
            RunComfyClient(server.api_base, token=TOKEN) as api,
            Downloader(
                trusted_hosts=["localhost", "127.0.0.1"], clock=server.simulator.clock.now
            ) as downloader,
        ):
            engine = Engine(
                WorkQueue(store), api, downloader, builtin_catalog(), settings, rng=random.Random(7)
            )
            async with anyio.create_task_group() as group:
                group.start_soon(during, engine, stop)
                report = await engine.run(stop)
                group.cancel_scope.cancel()
        return Run(report, engine)

    return anyio.run(main)


def dripped(count: int) -> Callable[[list[TrickedDownload]], bool]:
    return lambda records: bool(records) and records[0].sent >= count


def test_a_dripping_host_fails_by_the_deadline_and_is_fetched_again(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    clock = ManualClock()
    with simulator(tricked(drip_seconds=2, first_downloads=1), clock=clock) as server:
        tricks = tricks_of(server)

        async def night(engine: Engine, stop: anyio.Event) -> None:
            await wait_for(lambda: bool(by_name(store)["job0"].request_id))
            clock.advance(10)  # the job renders (2 s): RunComfy has billed it
            assert await anyio.to_thread.run_sync(tricks.wait_for, dripped(1), 10)
            # 50 s into the download: 2 bytes in, within its 60 s, so it goes on.
            clock.advance(50)
            assert await anyio.to_thread.run_sync(tricks.wait_for, dripped(2), 10)
            assert not tricks.records()[0].ended
            # 61 s: whatever it reads next is past the deadline, and the downloader leaves.
            clock.advance(11)
            ended = lambda records: records[0].ended  # noqa: E731
            assert await anyio.to_thread.run_sync(tricks.wait_for, ended, 10)

        run = run_on_the_simulators_clock(store, server, fast_settings(), night)
        ledger = server.simulator.snapshot()
        first = tricks.records()[0]
    # The downloader left at its first read past the deadline: of byte 2 if it read that
    # one after the clock moved on, else of byte 3.
    assert first.tricks == ("drip",)
    assert first.sent in (2, 3)
    assert not first.finished
    assert run.report.downloads == 1
    kept(tmp_path, store)
    # The dripped download failed by its deadline; a second, whole one was kept.
    assert [d["status"] for d in ledger["downloads"]] == [200, 200]
    assert len(tricks.records()) == 1
    paid_once(store, server)
