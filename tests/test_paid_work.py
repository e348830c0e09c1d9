"""Paid work is fetched, never paid twice: outages, full disks, config mistakes, retry, cancel.

Every test runs the real engine (or the real CLI) against the simulator over loopback
sockets, then proves with the simulator's ledger that no payload was accepted twice except
by an explicit re-roll, and that every job RunComfy rendered has its verified video on disk
or stays to be fetched (:func:`assert_paid_work_kept`).

Time is the simulator's :class:`ManualClock` wherever an order of events matters: a job
finishes, an outage ends or a record expires when the test advances the clock, never after
a sleep.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import yaml
from engine_helpers import (
    BATCH,
    WAIT_LIMIT,
    attempt_rows,
    by_name,
    check_paid_once,
    fast_settings,
    make_profile,
    new_job,
    run_engine,
    seed_store,
    simulator,
    wait_for,
)
from model_ids import PRO

from orchestrator.cli import main
from orchestrator.engine.paidwork import FetchPolicy
from orchestrator.simulator import ManualClock, SimulatorServer
from orchestrator.store import JobState, Store
from orchestrator.store.money import money
from orchestrator.store.states import TO_FETCH
from orchestrator.store.work import WorkQueue

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from orchestrator.engine.pool import Engine

S = JobState
#: Fetches retried every few milliseconds and never paused: the test ends an outage.
PATIENT = FetchPolicy(base=0.002, cap=0.01, tries=100_000)


# -- the proof every test ends with ------------------------------------------------------


def assert_paid_work_kept(store: Store, server: SimulatorServer, *, rerolls: int = 0) -> None:
    """No payload accepted twice except by ``rerolls`` explicit re-rolls, and every render
    RunComfy finished (so billed) for a job's current attempt is a verified file on disk,
    or the job is still to be fetched."""
    ledger = server.simulator.snapshot()
    jobs = {job.row_id: job for job in store.list_jobs()}
    attempts = [
        (a.job_id, a.number, a.kind, a.request_id, a.outcome)
        for job in jobs.values()
        for a in attempt_rows(store, job.row_id)
    ]
    assert check_paid_once(attempts, ledger) == rerolls
    owner = {rid: job_id for job_id, _n, _kind, rid, _outcome in attempts if rid}
    for request_id, timeline in ledger["jobs"].items():
        rendered = timeline["outcome"] == "success" and timeline["cancelled_at"] is None
        job = jobs[owner[request_id]]
        if not rendered or job.request_id != request_id or timeline["finished_at"] is None:
            continue  # a failed render, an older attempt, or one still running remotely
        if job.state == S.SUCCEEDED:
            video = Path(job_root(store, job.batch)) / job.output_path
            assert hashlib.sha256(video.read_bytes()).hexdigest() == job.sha256
        elif job.state in (S.FAILED, S.CANCELLED):
            # Only RunComfy losing the result, or a user's discard, ends a rendered job
            # without its video, and the job says so.
            assert (job.error or "").startswith(("paid and lost", "discarded by the user"))
        else:
            assert job.state in TO_FETCH, (job.id, job.state, job.error)


def job_root(store: Store, batch: str) -> str:
    return next(view.output_root for view in store.batches() if view.name == batch)


async def when(condition: Any) -> None:
    await wait_for(condition)


def every_job_waited(store: Store) -> Any:
    """Every job of the batch has been in ``fetch_wait`` at least once (they flip between
    it and ``downloading`` as they retry, so the count at one moment proves nothing)."""

    def check() -> bool:
        jobs = store.list_jobs(batch=BATCH)
        return all(
            any(e.to_state == "fetch_wait" for e in store.events(job_id=j.row_id)) for j in jobs
        )

    return check


async def crank(clock: ManualClock, done: Any, step: float = 5.0) -> None:
    """Advance simulated time until ``done()`` holds (bounded, like :func:`wait_for`)."""
    with anyio.fail_after(WAIT_LIMIT):
        while not await anyio.to_thread.run_sync(done):
            clock.advance(step)
            await anyio.sleep(0.005)


def states(store: Store) -> dict[str, int]:
    counts = store.counts(BATCH)
    return {state: number for state, number in counts.items() if number}


@contextmanager
def manual(profile: Any) -> Iterator[tuple[SimulatorServer, ManualClock]]:
    clock = ManualClock()
    with simulator(profile, clock=clock) as server:
        yield server, clock


def all_submitted(store: Store, count: int) -> Any:
    return lambda: sum(1 for j in store.list_jobs(batch=BATCH) if j.request_id) >= count


# -- a file-host outage ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["error", "refuse"])
def test_a_file_host_outage_is_outlasted_and_every_paid_video_delivered(
    tmp_path: Path, kind: str
) -> None:
    store = seed_store(tmp_path, 4)
    with manual(make_profile()) as (server, clock):

        async def night(engine: Engine, stop: anyio.Event) -> None:
            await when(all_submitted(store, 4))
            server.start_file_outage(kind, seconds=1_000)
            clock.advance(10)  # every job renders (2 s each): RunComfy has billed them
            # Every paid job meets the outage and waits, durably, to be fetched again.
            await when(every_job_waited(store))
            clock.advance(2_000)  # the outage ends
            # In a thread: the engine's loop keeps running while the host reopens.
            assert await anyio.to_thread.run_sync(server.wait_files_open, 5)

        run = run_engine(store, server, fast_settings(fetch=PATIENT), during=night)
        assert states(store) == {"succeeded": 4}
        assert run.report.breaker is None
        ledger = server.simulator.snapshot()
        assert [o["kind"] for o in ledger["outages"]] == [kind]
        if kind == "error":  # a refused connection never reaches the server to be counted
            assert ledger["faults"]["file_outage_error"] >= 1
        assert sum(ledger["submissions"].values()) == 4
        assert_paid_work_kept(store, server)
    # The wait is in the store: each job went to fetch_wait with a time to try again.
    for job in by_name(store).values():
        waits = [e for e in store.events(job_id=job.row_id) if e.to_state == "fetch_wait"]
        assert waits
        assert all(e.detail and e.detail["outcome"] == "download_retry" for e in waits)


def test_an_outage_longer_than_the_patience_pauses_and_a_rerun_fetches(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 3)
    brief = FetchPolicy(base=0.002, cap=0.005, tries=3)
    with manual(make_profile()) as (server, clock):

        async def night(engine: Engine, stop: anyio.Event) -> None:
            await when(all_submitted(store, 3))
            server.start_file_outage("refuse", seconds=1_000)
            clock.advance(10)

        first = run_engine(store, server, fast_settings(fetch=brief), during=night)
        # The run ends (nothing it can do), with every paid job waiting for a re-run.
        assert first.report.stopped_by == "done"
        assert states(store) == {"fetch_paused": 3}
        assert_paid_work_kept(store, server)
        clock.advance(2_000)
        assert server.wait_files_open(5)
        second = run_engine(store, server, fast_settings(fetch=brief))
        assert states(store) == {"succeeded": 3}
        assert second.report.submitted == 0  # fetched again, never submitted again
        assert_paid_work_kept(store, server)


# -- a full disk ---------------------------------------------------------------------------


@contextmanager
def small_disk(folder: Path, size: str = "2m") -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``folder`` (root can mount one), unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system holding ``folder`` to the last byte; returns the ballast file."""
    ballast = folder / "ballast.bin"
    with open(ballast, "wb", buffering=0) as handle:
        for chunk in (b"\0" * 65536, b"\0"):
            try:
                while handle.write(chunk):
                    pass
            except OSError:  # ENOSPC: this chunk size no longer fits
                continue
    return ballast


def test_a_full_disk_stops_submitting_and_every_paid_video_arrives_once_it_is_freed(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    with small_disk(out):
        store = seed_store(tmp_path, 8)
        ballast = fill(out)
        with manual(make_profile(slots=2)) as (server, clock):

            async def night(engine: Engine, stop: anyio.Event) -> None:
                await when(all_submitted(store, 2))
                clock.advance(10)  # the first two render; their downloads meet a full disk
                await when(lambda: engine.report.breaker is not None)
                assert engine.report.breaker is not None
                assert engine.report.breaker.kind == "disk_full"
                ballast.unlink()  # someone frees the disk; the next fetch works
                await crank(clock, lambda: store.counts(BATCH)["succeeded"] == 8)

            run = run_engine(
                store, server, fast_settings(fetch=PATIENT, max_in_flight=2), during=night
            )
            assert states(store) == {"succeeded": 8}
            # The breaker closed on the first success after the disk was freed.
            assert run.report.breaker is None
            assert any("submitting resumed: disk_full cleared" in n for n in run.report.notes)
            assert_paid_work_kept(store, server)
            # While the breaker was open, nothing new was claimed (so nothing paid for).
            events = store.events(BATCH)
            tripped = next(e for e in events if e.kind == "breaker_tripped")
            closed = next(e for e in events if e.kind == "breaker_closed")
            assert tripped.detail == {**(tripped.detail or {}), "kind": "disk_full"}
            claims = [e.id for e in events if (e.detail or {}).get("outcome") == "claimed"]
            sent = {e.job_id for e in events if e.to_state == "submitted"}
            assert not [
                e
                for e in events
                if e.id in claims and e.job_id in sent and tripped.id < e.id < closed.id
            ]


@pytest.mark.slow
def test_a_run_on_a_full_disk_ends_with_its_summary_not_a_traceback(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with small_disk(out, "1m"):
        fill(out)
        manifest = write_manifest(tmp_path, [f"j{i}" for i in range(4)], max_in_flight=1)
        code, text = cli(
            "run", str(manifest), "--simulate", "--sim-time-scale", "0.002", "--db", db(tmp_path)
        )
    assert code == 1, text
    assert "Traceback" not in text
    assert "stopped submitting: the disk holding" in text
    assert "is full" in text
    assert "free space on the disk" in text
    assert "money:" in text
    assert "paid, still to fetch" in text
    found = cli_jobs(tmp_path)
    paid = [j for j in found if j["request_id"]]
    assert paid
    assert {j["state"] for j in paid} <= {"fetch_paused", "fetch_wait"}
    assert {j["state"] for j in found if not j["request_id"]} <= {"pending"}


# -- a download host that is not allowed (a config mistake) ----------------------------------


@pytest.mark.slow
def test_a_host_that_is_not_allowed_costs_only_the_jobs_in_flight_and_a_rerun_fetches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "engine-test-token-8f3a")
    names = [f"j{i}" for i in range(10)]
    manifest = write_manifest(tmp_path, names, max_in_flight=2)
    polls = ["--poll-min", "0.01", "--poll-max", "0.05"]
    with simulator(make_profile()) as server:
        # As a new user would: the API base from the banner, no --trust-host.
        code, text = cli(
            "run",
            str(manifest),
            "--api-base",
            server.api_base,
            *polls,
            "--db",
            db(tmp_path),
            "--quiet",
        )
        assert code == 1, text
        assert "host localhost is not on the download allowlist" in text
        assert "--trust-host localhost" in text
        # The printed re-run command works as shown and fetches, never pays again.
        again = next(line for line in text.splitlines() if "free to fetch:" in line)
        command = again.split("free to fetch: ", 1)[1].split()
        assert command[:2] == ["orchestrator", "run"]
        assert "--trust-host" in command
        paid = [j for j in cli_jobs(tmp_path) if j["request_id"]]
        assert paid
        assert {j["state"] for j in paid} == {"fetch_paused"}
        # No claim after the breaker tripped: the mistake cost only the jobs in flight.
        assert claims_before_the_breaker(tmp_path) == len(paid)
        code, retried = cli("retry", "--batch", "paid", "--failed", "--db", db(tmp_path))
        assert code == 0
        assert "0 new paid attempt(s)" in retried
        assert retried.count("fetch again (already paid") == len(paid)
        code, text = cli(*command[1:], *polls, "--quiet")
        assert code == 0, text
        assert {j["state"] for j in cli_jobs(tmp_path)} == {"succeeded"}
        ledger = server.simulator.snapshot()
        assert ledger["duplicates"] == {}
        assert sum(ledger["submissions"].values()) == 10
        with Store.open(db(tmp_path)) as store:
            assert_paid_work_kept(store, server)


def claims_before_the_breaker(tmp_path: Path) -> int:
    """Jobs claimed (and so maybe paid) before the breaker event, proving none after it."""
    with Store.open(db(tmp_path)) as store:
        events = store.events("paid")
    tripped = next(e.id for e in events if e.kind == "breaker_tripped")
    sent = {e.job_id for e in events if e.to_state == "submitted"}
    claimed = [e for e in events if e.detail and e.detail.get("outcome") == "claimed"]
    assert all(e.id < tripped for e in claimed if e.job_id in sent)
    return len(sent)


# -- an unknown model (a typo) ----------------------------------------------------------


def test_an_unknown_model_trips_the_breaker_and_costs_nothing(tmp_path: Path) -> None:
    typo = "bytedance/seedance-9/ultra"
    jobs = [new_job(f"typo{i}", model=typo) for i in range(6)] + [new_job("fine", model=PRO)]
    store = seed_store(tmp_path, jobs)
    with simulator(make_profile()) as server:
        run = run_engine(store, server, fast_settings(max_concurrent_submits=1))
        ledger = server.simulator.snapshot()
    breaker = run.report.breaker
    assert breaker is not None
    assert breaker.kind == "unknown_model"
    assert typo in breaker.problem
    assert "orchestrator models" in breaker.fix
    assert ledger["submissions"] == {}
    # The refused job and the rest wait, unpaid, for a corrected manifest.
    assert states(store) == {"pending": 7}
    assert [a.outcome for a in attempt_rows(store, by_name(store)["typo0"].row_id)] == ["rejected"]


# -- a result that expires ----------------------------------------------------------------


def test_a_result_record_that_expires_is_lost_and_only_reroll_pays_again(
    tmp_path: Path,
) -> None:
    store = seed_store(tmp_path, 2)
    with manual(make_profile({"expired_url": 1.0}, record_ttl=100)) as (server, clock):

        async def night(engine: Engine, stop: anyio.Event) -> None:
            await when(all_submitted(store, 2))
            clock.advance(10)
            await when(every_job_waited(store))
            clock.advance(1_000)  # past record_ttl: /result answers 404001

        run_engine(store, server, fast_settings(fetch=PATIENT), during=night)
        jobs = by_name(store)
        assert states(store) == {"failed": 2}
        assert all("paid and lost" in (j.error or "") for j in jobs.values())
        assert all("--reroll" in (j.error or "") for j in jobs.values())
        assert_paid_work_kept(store, server)
        code, text = cli("retry", "--batch", BATCH, "--failed", "--db", str(tmp_path / "store.db"))
        assert code == 0
        assert text.count("not queued: RunComfy no longer has its result") == 2
        assert states(store) == {"failed": 2}  # nothing was paid for on its own
        code, text = cli(
            "retry",
            "--batch",
            BATCH,
            "--ids",
            "job0",
            "--reroll",
            "--json",
            "--db",
            str(tmp_path / "store.db"),
        )
        report = json.loads(text)
        assert report["rerolls"] == ["job0"]
        assert report["estimated_cost_usd"] is None
        server.simulator.profile = make_profile(record_ttl=100)  # URLs work again

        async def render(engine: Engine, stop: anyio.Event) -> None:
            await crank(clock, lambda: by_name(store)["job0"].state == S.SUCCEEDED)

        run_engine(store, server, fast_settings(fetch=PATIENT), during=render)
        assert by_name(store)["job0"].state == S.SUCCEEDED
        kinds = [a.kind for a in attempt_rows(store, by_name(store)["job0"].row_id)]
        assert kinds == ["submit", "reroll"]
        assert_paid_work_kept(store, server, rerolls=1)


# -- cancel during a run -----------------------------------------------------------------


async def cancel_now(server: SimulatorServer, db_path: str, *extra: str) -> tuple[int, str]:
    """``orchestrator cancel`` from another thread while the engine runs (as a user would
    from another terminal)."""
    command = ("cancel", "--batch", BATCH, "--db", db_path, "--api-base", server.api_base)
    # Its standard output only: the engine, logging in another thread meanwhile, may write
    # to the swapped-in standard error at any moment.
    out = io.StringIO()
    code = await anyio.to_thread.run_sync(lambda: main([*command, *extra], out=out))
    return code, out.getvalue()


def test_cancel_during_a_run_keeps_what_is_running_and_fetches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "engine-test-token-8f3a")
    store = seed_store(tmp_path, 6)
    db_path = str(tmp_path / "store.db")
    with manual(make_profile(slots=2, durations={"default": 10})) as (server, clock):
        told: dict[str, Any] = {}

        async def night(engine: Engine, stop: anyio.Event) -> None:
            await when(all_submitted(store, 6))
            clock.advance(1)  # two run, four wait in RunComfy's queue
            code, text = await cancel_now(server, db_path, "--json")
            told.update(code=code, report=json.loads(text))
            await crank(clock, lambda: store.counts(BATCH)["succeeded"] == 2)

        run = run_engine(store, server, fast_settings(), during=night)
    report = told["report"]
    assert told["code"] == 1  # not everything could be cancelled
    assert len(report["cancelled_remotely"]) == 4
    assert len(report["already_running"]) == 2
    assert states(store) == {"succeeded": 2, "cancelled": 4}
    jobs = by_name(store)
    assert {n for n, j in jobs.items() if j.state == S.SUCCEEDED} == set(report["already_running"])
    # Their cost counts; the cancelled ones were never billed.
    assert all(jobs[n].cost == pytest.approx(0.5) for n in report["already_running"])
    assert store.spend(BATCH) == pytest.approx(1.0)
    assert run.report.stopped_by == "done"
    assert_paid_work_kept(store, server)


def test_cancel_discard_gives_up_running_jobs_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "engine-test-token-8f3a")
    store = seed_store(tmp_path, 3)
    db_path = str(tmp_path / "store.db")
    with manual(make_profile(slots=1, durations={"default": 10})) as (server, clock):
        stop_after: dict[str, str] = {}

        async def night(engine: Engine, stop: anyio.Event) -> None:
            await when(all_submitted(store, 3))
            clock.advance(1)
            _code, text = await cancel_now(server, db_path, "--discard")
            stop_after["text"] = text

        # A short lease: the worker's next heartbeat (0.1 s) sees the discard and stops
        # watching the job RunComfy is still running.
        run_engine(store, server, fast_settings(lease_seconds=0.3), during=night)
    text = stop_after["text"]
    assert "2 cancelled on RunComfy while queued" in text
    assert "1 paid job(s) discarded: RunComfy renders and bills them anyway" in text
    assert states(store) == {"cancelled": 3}
    with Store.open(db_path) as again:
        lost = money(again, BATCH).lost
    assert lost.jobs == 1  # the discarded one is paid and lost, and says so


# -- files the tool did not write --------------------------------------------------------


def test_files_this_store_did_not_write_are_never_overwritten(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "job0.mp4").write_bytes(b"the user's own video")
    (out / "job1.mp4").write_bytes(b"another store's paid video")
    other = {"store": {"id": "f" * 32}, "job": {"key": by_name(store)["job1"].key}}
    (out / "job1.json").write_text(json.dumps(other))
    with simulator(make_profile()) as server:
        run = run_engine(store, server, fast_settings())
        assert_paid_work_kept(store, server)
    assert sorted(run.report.renamed) == [("job0.mp4", "job0-1.mp4"), ("job1.mp4", "job1-1.mp4")]
    jobs = by_name(store)
    assert (out / "job0.mp4").read_bytes() == b"the user's own video"
    assert (out / "job1.mp4").read_bytes() == b"another store's paid video"
    assert json.loads((out / "job1.json").read_text()) == other
    assert [jobs["job0"].output_path, jobs["job1"].output_path] == ["job0-1.mp4", "job1-1.mp4"]
    for name in ("job0", "job1"):
        sidecar = json.loads((out / f"{name}-1.json").read_text())
        assert sidecar["video"]["file"] == f"{name}-1.mp4"
        assert "id" in sidecar["store"]
        renamed = [e for e in store.events(job_id=jobs[name].row_id) if e.to_state == "succeeded"]
        assert renamed[0].detail
        assert renamed[0].detail["renamed_from"] == f"{name}.mp4"


def test_a_video_this_store_wrote_is_replaced_by_its_own_new_attempt(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    with simulator(make_profile()) as server:
        run_engine(store, server, fast_settings())
        first = by_name(store)["job0"]
        # A user's re-roll of a delivered video (a rejected one, say): a new paid attempt.
        queue = WorkQueue(store)
        assert queue.user_action(BATCH, ["job0"], [S.SUCCEEDED], S.PENDING, "reroll_requested")
        run_engine(store, server, fast_settings())
        again = by_name(store)["job0"]
        assert_paid_work_kept(store, server, rerolls=1)
    assert again.state == S.SUCCEEDED
    assert again.request_id != first.request_id
    assert again.output_path == first.output_path == "job0.mp4"  # its own file: replaced
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["job0.json", "job0.mp4"]
    sidecar = json.loads((tmp_path / "out" / "job0.json").read_text())
    assert sidecar["request_id"] == again.request_id


# -- the spend cap ---------------------------------------------------------------------


def test_a_spend_cap_without_any_price_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "engine-test-token-8f3a")
    manifest = write_manifest(tmp_path, ["a", "b"], max_spend=1.0)
    with simulator(make_profile(publish_prices=False)) as server:
        code, text = cli(
            "run", str(manifest), "--api-base", server.api_base, "--db", db(tmp_path), "--quiet"
        )
        assert code == 2
        assert "no price is known for" in text
        assert "--prices FILE" in text
        assert "Nothing was submitted" in text
        assert server.simulator.snapshot()["calls"].get("submit", 0) == 0


def test_a_spend_cap_takes_runcomfys_published_price_and_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "engine-test-token-8f3a")
    # 5 s clips at the simulator's $0.10 per second: $0.50 a job; $1.20 pays for two.
    manifest = write_manifest(tmp_path, ["a", "b", "c", "d"], max_spend=1.2)
    polls = ["--poll-min", "0.01", "--poll-max", "0.05"]
    with simulator(make_profile()) as server:
        code, text = cli(
            "run",
            str(manifest),
            "--api-base",
            server.api_base,
            *polls,
            "--trust-host",
            "localhost",
            "--db",
            db(tmp_path),
            "--quiet",
        )
        ledger = server.simulator.snapshot()
    assert code == 1, text
    # The price comes from the catalog entry the run fetched before enqueuing.
    assert f"catalog: {PRO}: RunComfy API (fetched now); $0.1 per second" in text
    assert "stopped submitting: batch paid: the spend cap of $1.20 would be passed" in text
    billed = sum(job["cost"] for job in ledger["jobs"].values())
    assert billed == pytest.approx(1.0)
    assert billed <= 1.2
    assert "cap $1.20" in text


def test_a_price_that_is_too_low_overruns_the_cap_by_at_most_the_jobs_in_flight(
    tmp_path: Path,
) -> None:
    # The price table says $0.05 a job; RunComfy bills $0.50. Without the correction a $1
    # cap would pay for 20 jobs; estimates are raised at the first bill.
    store = seed_store(tmp_path, 12, cost=0.05)
    with simulator(make_profile()) as server:
        run = run_engine(store, server, fast_settings(max_spend=1.0, max_in_flight=2))
        ledger = server.simulator.snapshot()
    billed = sum(job["cost"] for job in ledger["jobs"].values())
    assert billed <= 1.0 + 2 * 0.5 + 1e-9  # the cap plus what was in flight at the bill
    assert run.report.spend_capped
    pending = [j for j in by_name(store).values() if j.state == S.PENDING]
    assert pending
    assert all(j.estimated_cost == pytest.approx(0.5, rel=0.01) for j in pending)
    assert_paid_work_kept(store, server)


# -- CLI helpers ---------------------------------------------------------------------------


def cli(*args: str) -> tuple[int, str]:
    """Run one command in process: (exit status, stdout and stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(list(args), out=out)
    return code, out.getvalue() + err.getvalue()


def db(tmp_path: Path) -> str:
    return str(tmp_path / "cli.db")


def cli_jobs(tmp_path: Path) -> list[dict[str, Any]]:
    code, text = cli("jobs", "--db", db(tmp_path), "--json")
    assert code == 0
    return list(json.loads(text))


def write_manifest(
    tmp_path: Path, names: list[str], *, max_in_flight: int = 8, max_spend: float | None = None
) -> Path:
    limits: Mapping[str, Any] = {"max_in_flight": max_in_flight} | (
        {"max_spend": max_spend} if max_spend is not None else {}
    )
    document = {
        "batch": "paid",
        "model": PRO,
        "jobs": [
            {
                "id": n,
                "prompt": f"a slow dolly-in over {n}",
                "image": "https://images.example/a.jpg",
            }
            for n in names
        ],
        "retry": {"max_attempts": 1},
        "limits": dict(limits),
        "output": {"dir": "out"},
    }
    path = tmp_path / "paid.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path
