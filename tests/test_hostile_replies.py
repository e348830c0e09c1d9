"""Hostile replies over sockets: the real engine, a real SQLite store and the simulator's
hostile faults (orchestrator/simulator/hostile.py). Each test ends with the ledger's proof
that nothing was paid twice (``assert_paid_work_kept``), and shows what was tried cannot
make the engine keep the wrong video, re-roll a rendered job, or hold other jobs.

Where an order of events matters, the simulator's ManualClock moves when the test says;
nothing here sleeps or times anything (``wait_for`` only bounds a wait that would hang).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio
from engine_helpers import (
    BATCH,
    attempt_rows,
    by_name,
    fast_settings,
    make_profile,
    run_engine,
    seed_store,
    simulator,
    wait_for,
)
from structlog.testing import capture_logs
from test_paid_work import PATIENT, all_submitted, assert_paid_work_kept, every_job_waited, manual

from orchestrator.cli import main
from orchestrator.engine.core import POLL_PATIENCE
from orchestrator.engine.decisions import PollPolicy
from orchestrator.simulator.faults import bad_url
from orchestrator.store import JobState, Store

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from orchestrator.engine.pool import Engine
    from orchestrator.simulator import SimulatorServer

S = JobState
WRONG_REPLY = "reply for another request ignored; asking again later"


def downloads_by_request(server: SimulatorServer) -> Counter[str]:
    """How many videos the file host served for each request id (``/files/{id}/...``)."""
    ledger = server.simulator.snapshot()
    return Counter(d["path"].split("/")[2] for d in ledger["downloads"] if d["status"] == 200)


def reconcile_text(tmp_path: Path) -> str:
    """``orchestrator reconcile`` as a user runs it."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["reconcile", "--db", str(tmp_path / "store.db")], out=out)
    assert code == 0, err.getvalue()
    return out.getvalue()


# -- another job's reply --------------------------------------------------------------------


def test_another_jobs_result_is_never_saved_for_this_one(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 6)
    with simulator(make_profile({"result_wrong_request_id": 0.5})) as server:
        with capture_logs() as logs:
            run_engine(store, server, fast_settings())
        ledger = server.simulator.snapshot()
        assert ledger["faults"]["result_wrong_request_id"] >= 2  # it was tried
        assert {j.state for j in by_name(store).values()} == {S.SUCCEEDED}
        # Each job's video came from its own request, once; no other job's was fetched.
        jobs = by_name(store).values()
        assert downloads_by_request(server) == Counter({j.request_id: 1 for j in jobs})
        for job in jobs:
            sidecar = json.loads((tmp_path / "out" / f"{job.id}.json").read_text())
            assert sidecar["request_id"] == job.request_id
        assert_paid_work_kept(store, server)
    # Said once per job that met it, with both ids.
    warned = [e for e in logs if e["event"] == WRONG_REPLY]
    hit = {rid for rid, t in ledger["jobs"].items() if t.get("faults")}
    assert sorted(e["request_id"] for e in warned) == sorted(hit)
    assert all(e["answered"].strip("'") in ledger["jobs"] for e in warned)
    assert all(e["answered"].strip("'") != e["request_id"] for e in warned)


def test_another_jobs_status_is_not_taken_for_this_ones(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 4)
    profile = make_profile({"status_wrong_request_id": 0.5}, slots=2)
    with manual(profile) as (server, clock):

        def faults_of_running() -> dict[str, int]:
            jobs = server.simulator.snapshot()["jobs"]
            return {
                rid: t.get("faults", {}).get("status_wrong_request_id", 0)
                for rid, t in jobs.items()
                if t["started_at"] is not None and t["finished_at"] > clock.now()
            }

        async def night(engine: Engine, stop: anyio.Event) -> None:
            await wait_for(all_submitted(store, 4))
            clock.advance(3)  # two finished (2 s each), two running: impostors say done
            before = faults_of_running()
            assert len(before) == 2
            await wait_for(lambda: all(n >= before[r] + 3 for r, n in faults_of_running().items()))
            clock.advance(10)

        run_engine(store, server, fast_settings(), during=night)
        assert {j.state for j in by_name(store).values()} == {S.SUCCEEDED}
        # /result was asked once per job, when it really was done: a "completed" that
        # belonged to another job never sent this one to fetch its result.
        assert server.simulator.snapshot()["calls"]["result"] == 4
        assert_paid_work_kept(store, server)


def test_a_server_that_mixes_replies_up_now_and_then_is_polled_to_the_end(
    tmp_path: Path,
) -> None:
    # More wrong replies than POLL_PATIENCE (60) over one job's run, never many in a row:
    # the patience counts failures in a row, so the job is still polled, and fetched.
    store = seed_store(tmp_path, 1)
    fast = PollPolicy(minimum=0.001, maximum=0.004)
    with manual(make_profile({"status_wrong_request_id": 0.5})) as (server, clock):

        def wrong_replies() -> int:
            return int(server.simulator.snapshot()["faults"].get("status_wrong_request_id", 0))

        async def night(engine: Engine, stop: anyio.Event) -> None:
            await wait_for(all_submitted(store, 1))
            await wait_for(lambda: wrong_replies() > POLL_PATIENCE + 5)
            clock.advance(10)

        run_engine(store, server, fast_settings(poll=fast), during=night)
        assert by_name(store)["job0"].state == S.SUCCEEDED
        assert_paid_work_kept(store, server)


# -- an output URL that cannot be downloaded ------------------------------------------------


def test_an_undownloadable_output_url_needs_a_person_and_is_never_rerolled(
    tmp_path: Path,
) -> None:
    # Three attempts allowed: an automatic re-roll would have room to pay twice more.
    store = seed_store(tmp_path, 5, max_attempts=3)
    with simulator(make_profile({"result_bad_url": 1.0}, seed=4)) as server:
        run = run_engine(store, server, fast_settings())
        ledger = server.simulator.snapshot()
        assert run.report.stopped_by == "done"  # parked for a person; the run ends
        assert sum(ledger["submissions"].values()) == 5
        assert ledger["duplicates"] == {}
        assert ledger["calls"].get("download", 0) == 0  # nothing to fetch from
        forms = set()
        for job in by_name(store).values():
            assert job.state == S.NEEDS_RECONCILE
            url = bad_url(4, job.request_id or "")
            forms.add(url.split(":", 1)[0] if ":" in url else url[:1])
            assert repr(url) in (job.error or "")
            assert (job.request_id or "") in (job.error or "")
            assert "reconcile --resubmit" in (job.error or "")
            attempts = attempt_rows(store, job.row_id)
            assert [(a.kind, a.outcome) for a in attempts] == [("submit", "unusable_output")]
            assert attempts[0].cost_usd == 0.5  # billed, and counted
        assert len(forms) >= 3  # ftp, file, data, relative ... (seeded)
        assert_paid_work_kept(store, server)
    shown = reconcile_text(tmp_path)
    for job in by_name(store).values():
        assert job.id in shown
        assert bad_url(4, job.request_id or "")[:30] in shown


def test_a_fresh_result_with_an_undownloadable_url_needs_a_person(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 2)
    with manual(make_profile()) as (server, clock):

        async def night(engine: Engine, stop: anyio.Event) -> None:
            await wait_for(all_submitted(store, 2))
            server.start_file_outage("refuse", seconds=1_000)
            clock.advance(10)  # both render; their downloads meet the outage
            await wait_for(every_job_waited(store))
            # RunComfy's next /result for job0 holds a URL no client can fetch.
            server.simulator.jobs[by_name(store)["job0"].request_id or ""].outcome = "bad_url"
            clock.advance(2_000)  # the outage ends: each fetch asks for a fresh URL
            # In a thread: the engine's loop keeps running while the host reopens.
            assert await anyio.to_thread.run_sync(server.wait_files_open, 5)
            await wait_for(lambda: by_name(store)["job0"].state == S.NEEDS_RECONCILE)

        run_engine(store, server, fast_settings(fetch=PATIENT), during=night)
        jobs = by_name(store)
        assert jobs["job1"].state == S.SUCCEEDED
        assert jobs["job0"].state == S.NEEDS_RECONCILE
        assert repr(bad_url(1, jobs["job0"].request_id or "")) in (jobs["job0"].error or "")
        assert sum(server.simulator.snapshot()["submissions"].values()) == 2
        outcomes = [a.outcome for a in attempt_rows(store, jobs["job0"].row_id)]
        assert outcomes == ["unusable_output"]


def test_a_result_with_no_output_at_all_is_fetched_again_never_rerolled(tmp_path: Path) -> None:
    # "completed" with an empty output was once a failed render, re-rolled (and billed)
    # while attempts remained. It is a paid render whose result is asked for again.
    store = seed_store(tmp_path, 1, max_attempts=2)
    with simulator(make_profile({"no_output": 1.0})) as server:
        run_engine(store, server, fast_settings())
        job = by_name(store)["job0"]
        assert job.state == S.FETCH_PAUSED
        assert "shows no video URL" in (job.error or "")
        kinds = [(a.kind, a.outcome) for a in attempt_rows(store, job.row_id)]
        assert kinds == [("submit", "succeeded")]
        assert_paid_work_kept(store, server, rerolls=0)


# -- Retry-After, per job and per route ---------------------------------------------------


def hit_by_huge_retry_after(server: SimulatorServer) -> set[str]:
    jobs = server.simulator.snapshot()["jobs"]
    return {rid for rid, t in jobs.items() if t.get("faults", {}).get("status_retry_after_huge")}


def test_a_huge_retry_after_on_one_jobs_poll_holds_only_that_job(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 8)
    # Seed 1 and 0.25 give two of the eight jobs a 429 + Retry-After: 86400 on their
    # first poll. They wait the cap (300 s here); the other six must not wait with them.
    profile = make_profile({"status_retry_after_huge": 0.25})
    with simulator(profile) as server:
        held: set[str] = set()

        def others_done() -> bool:
            if len(server.simulator.snapshot()["jobs"]) < 8:
                return False  # (not all submitted, so not all first-polled yet)
            held.update(hit_by_huge_retry_after(server))
            done = {j.request_id for j in by_name(store).values() if j.state == S.SUCCEEDED}
            return len(done) == 8 - len(held)

        async def night(engine: Engine, stop: anyio.Event) -> None:
            await wait_for(others_done)
            stop.set()

        settings = fast_settings(max_in_flight=3, max_delay=300.0)
        run = run_engine(store, server, settings, during=night)
        assert 1 <= len(held) <= 2
        assert run.report.stopped_by == "interrupted"
        jobs = server.simulator.snapshot()["jobs"]
        for rid in held:  # still waiting out their own Retry-After: not polled again
            assert jobs[rid]["looks"] == {}
        waiting = {j.request_id: j.state for j in by_name(store).values()}
        assert {waiting[rid] for rid in held} == {S.SUBMITTED}
        # Run again (as after Ctrl-C): the held jobs are polled and fetched, not paid again.
        again = run_engine(store, server, fast_settings(max_in_flight=3))
        assert again.report.submitted == 0
        assert {j.state for j in by_name(store).values()} == {S.SUCCEEDED}
        assert_paid_work_kept(store, server)


def test_a_huge_retry_after_is_capped_and_every_job_finishes(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 8)
    with simulator(make_profile({"status_retry_after_huge": 0.25})) as server:
        run = run_engine(
            store, server, fast_settings(max_in_flight=3), during=until(store, succeeded=8)
        )
        assert run.report.stopped_by == "done"
        held = hit_by_huge_retry_after(server)
        assert 1 <= len(held) <= 2
        jobs = server.simulator.snapshot()["jobs"]
        assert all(jobs[rid]["looks"] for rid in held)  # polled again, after the cap
        assert_paid_work_kept(store, server)


def test_a_huge_retry_after_on_a_submit_is_capped_for_that_job(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 4)
    with simulator(make_profile({"submit_retry_after_huge": 1.0})) as server:
        run = run_engine(store, server, fast_settings(), during=until(store, succeeded=4))
        ledger = server.simulator.snapshot()
        assert run.report.stopped_by == "done"
        assert ledger["faults"] == {"submit_retry_after_huge": 4}
        assert ledger["calls"]["submit"] == 8
        assert sum(ledger["submissions"].values()) == 4
        for job in by_name(store).values():
            kinds = [(a.kind, a.outcome) for a in attempt_rows(store, job.row_id)]
            assert kinds == [("submit", "not_sent"), ("submit", "succeeded")]
        assert_paid_work_kept(store, server)


def until(store: Store, *, succeeded: int) -> Callable[[Engine, anyio.Event], Any]:
    """A ``during`` that only bounds the run: it fails the test (after ``wait_for``'s
    limit) if ``succeeded`` jobs are not done by then; the engine ends on its own."""

    async def bound(engine: Engine, stop: anyio.Event) -> None:
        await wait_for(lambda: store.counts(BATCH)["succeeded"] == succeeded)

    return bound
