"""The worker pool against a real simulator socket: the happy path and every fault.

Each test starts a :class:`SimulatorServer` with a seeded profile (tiny time scale), drains
a real SQLite store with :class:`Engine`, then checks the store, the files and the
simulator's ledger (what RunComfy would have billed).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import time
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from engine_helpers import (
    BATCH,
    TOKEN,
    attempt_rows,
    body_of,
    by_name,
    digest_of,
    fast_settings,
    key_of,
    make_profile,
    new_job,
    part_files,
    run_engine,
    seed_store,
    simulator,
    stop_when,
)
from model_ids import LITE, PRO
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from test_engine_download import ok, tiny_video

from orchestrator.api import RateLimited, RemoteResult, RunComfyClient
from orchestrator.catalog import builtin_catalog
from orchestrator.cli import main
from orchestrator.engine.capacity import Capacity
from orchestrator.engine.decisions import PollPolicy
from orchestrator.engine.download import Downloader
from orchestrator.engine.pool import Engine
from orchestrator.store import JobState, NewJob, Store
from orchestrator.store.tables import PACERS
from orchestrator.store.work import WorkQueue

if TYPE_CHECKING:
    from pathlib import Path

    from orchestrator.engine.settings import EngineSettings

S = JobState
REMOTE_FAILURE = "the model failed to generate a video for this input"


def submissions(server: Any, store: Store) -> dict[str, int]:
    """Job name -> how many times the simulator accepted its payload."""
    ledger = server.simulator.snapshot()["submissions"]
    return {name: ledger.get(digest_of(job), 0) for name, job in by_name(store).items()}


def kinds(store: Store, name: str) -> list[tuple[str, str | None]]:
    job = by_name(store)[name]
    return [(a.kind, a.outcome) for a in attempt_rows(store, job.row_id)]


def outcomes(store: Store, name: str) -> list[str]:
    job = by_name(store)[name]
    return [
        e.detail["outcome"]
        for e in store.events(job_id=job.row_id)
        if e.kind == "transition" and e.detail
    ]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals [start, end) open at one moment."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _moment, step in points:
        current += step
        best = max(best, current)
    return best


# -- the happy path ---------------------------------------------------------------------------


def test_every_job_is_submitted_once_downloaded_and_verified(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 4)
    with simulator(make_profile()) as server:
        run = run_engine(store, server, fast_settings())
        ledger = server.simulator.snapshot()
        counts = submissions(server, store)
    report = run.report
    assert (report.stopped_by, report.submitted, report.downloads) == ("done", 4, 4)
    assert report.auth_error is None
    assert report.balance_error is None
    assert report.notes == []
    assert counts == {f"job{i}": 1 for i in range(4)}
    for name, job in by_name(store).items():
        assert job.state == S.SUCCEEDED
        assert job.error is None
        video = tmp_path / "out" / f"{name}.mp4"
        data = video.read_bytes()
        assert job.sha256 == hashlib.sha256(data).hexdigest()
        assert job.size_bytes == len(data)
        assert job.cost == pytest.approx(0.5)  # 0.1 USD/s x 5 s, from /result?include_cost
        assert job.request_id in ledger["jobs"]
        assert job.attempts == 1
        assert job.downloaded_at is not None
        assert kinds(store, name) == [("submit", "succeeded")]
        assert outcomes(store, name) == ["claimed", "accepted", "remote_succeeded", "downloaded"]
        sidecar_text = video.with_suffix(".json").read_text()
        assert TOKEN not in sidecar_text
        sidecar = json.loads(sidecar_text)
        assert sidecar["request_id"] == job.request_id
        assert sidecar["job"] == {"id": name, "key": key_of(name), "batch": BATCH}
        assert sidecar["payload"] == body_of(name)
        assert sidecar["video"]["sha256"] == job.sha256
        assert sidecar["video"]["codec"] == "h264"
        assert sidecar["cost_usd"] == pytest.approx(0.5)
    assert ledger["duplicates"] == {}
    assert {d["status"] for d in ledger["downloads"]} == {200}
    for download in ledger["downloads"]:
        assert "authorization" not in download["headers"]
        assert download["host"].startswith("localhost")
    assert part_files(tmp_path) == []
    assert store.spend(BATCH) == pytest.approx(2.0)


# -- submits whose outcome is unknown ---------------------------------------------------------


def test_an_accepted_submit_answered_with_a_500_is_parked_and_never_resubmitted(
    tmp_path: Path,
) -> None:
    store = seed_store(tmp_path, 3, max_attempts=3)
    with simulator(make_profile({"submit_accepted_then_error": 1.0})) as server:
        run = run_engine(store, server, fast_settings())
        counts = submissions(server, store)
        ledger = server.simulator.snapshot()
    assert run.report.stopped_by == "done"
    assert run.report.submitted == 0
    assert counts == {"job0": 1, "job1": 1, "job2": 1}  # paid once, never again
    assert ledger["faults"]["submit_accepted_then_error"] == 3
    for name, job in by_name(store).items():
        assert job.state == S.NEEDS_RECONCILE
        assert "the job may have been created" in (job.error or "")
        assert job.request_id is None
        assert kinds(store, name) == [("submit", "ambiguous")]
    # A second run leaves them alone too.
    with simulator(make_profile()) as calm:
        run_engine(store, calm, fast_settings())
        assert calm.simulator.snapshot()["submissions"] == {}
    assert {j.state for j in by_name(store).values()} == {S.NEEDS_RECONCILE}


def test_reconcile_resubmit_queues_a_new_paid_attempt(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 3)
    with simulator(make_profile({"submit_accepted_then_error": 1.0})) as server:
        run_engine(store, server, fast_settings())
    assert {j.state for j in by_name(store).values()} == {S.NEEDS_RECONCILE}
    out = io.StringIO()
    db = str(tmp_path / "store.db")
    assert main(["reconcile", "--db", db, "--resubmit", "--ids", "job0,job2"], out=out) == 0
    assert "2 job(s) queued again as new paid attempts" in out.getvalue()
    with simulator(make_profile()) as calm:
        run = run_engine(store, calm, fast_settings())
        counts = submissions(calm, store)
    assert run.report.submitted == 2
    assert counts == {"job0": 1, "job1": 0, "job2": 1}
    jobs = by_name(store)
    assert (jobs["job0"].state, jobs["job1"].state, jobs["job2"].state) == (
        S.SUCCEEDED,
        S.NEEDS_RECONCILE,
        S.SUCCEEDED,
    )
    assert jobs["job0"].attempts == 2
    assert kinds(store, "job0") == [("submit", "ambiguous"), ("resubmit", "succeeded")]
    assert "resubmit" in outcomes(store, "job0")


def test_a_job_caught_submitting_by_a_crash_is_parked_not_resent(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 2)
    (stuck,) = WorkQueue(store).claim(BATCH, 1)  # the intent was written, then the crash
    with simulator(make_profile()) as server:
        run = run_engine(store, server, fast_settings())
        counts = submissions(server, store)
    assert counts == {"job0": 0, "job1": 1}
    assert by_name(store)[stuck.name].state == S.NEEDS_RECONCILE
    assert by_name(store)["job1"].state == S.SUCCEEDED
    assert run.report.notes == [
        "1 job(s) were interrupted while submitting and need a decision (orchestrator reconcile)"
    ]
    assert kinds(store, stuck.name) == [("submit", "crash_recovered")]


# -- throttling and flaky reads ---------------------------------------------------------------


def test_rate_limits_are_retried_and_every_job_still_succeeds(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 4)
    faults = {"rate_limit": 0.35, "rate_limit_bare": 0.15, "retry_after_seconds": 0}
    with simulator(make_profile(faults, seed=3)) as server:
        run = run_engine(store, server, fast_settings())
        ledger = server.simulator.snapshot()
        counts = submissions(server, store)
    assert ledger["faults"].get("rate_limit", 0) + ledger["faults"].get("rate_limit_bare", 0) > 0
    assert ledger["replies"].get("submit 429", 0) > 0  # some submits were refused ...
    assert counts == {f"job{i}": 1 for i in range(4)}  # ... and each was paid once
    assert {j.state for j in by_name(store).values()} == {S.SUCCEEDED}
    assert run.report.submitted == 4
    refused = [n for n in by_name(store) if ("submit", "not_sent") in kinds(store, n)]
    assert refused, "a refused submit is recorded as not sent"
    for name in refused:
        assert outcomes(store, name)[:3] == ["claimed", "not_sent", "retry_due"]


def test_too_many_refused_submits_fail_the_job(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    faults = {"rate_limit": 1.0, "retry_after_seconds": 0}
    with simulator(make_profile(faults)) as server:
        run_engine(store, server, fast_settings(max_transient_failures=3))
        assert server.simulator.snapshot()["submissions"] == {}
    job = by_name(store)["job0"]
    assert job.state == S.FAILED
    assert job.error is not None
    assert job.error.startswith("gave up after 3 failed submits")
    assert [k for k, _ in kinds(store, "job0")] == ["submit"] * 3


def test_server_errors_on_reads_are_retried(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 3)
    # Seed 10 gives no 5xx on the three submits (a 5xx there would be ambiguous) and several
    # on status and result reads.
    with simulator(make_profile({"server_error": 0.4}, seed=10)) as server:
        run_engine(store, server, fast_settings())
        ledger = server.simulator.snapshot()
        counts = submissions(server, store)
    read_errors = sum(
        n
        for reply, n in ledger["replies"].items()
        if reply.split()[0] in ("status", "result") and reply.split()[1].startswith("5")
    )
    assert read_errors > 0
    assert not [r for r in ledger["replies"] if r.startswith("submit 5")]
    assert counts == {"job0": 1, "job1": 1, "job2": 1}
    assert {j.state for j in by_name(store).values()} == {S.SUCCEEDED}


# -- remote failures --------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["job_failed", "job_failed_result_only"])
def test_a_remote_failure_is_rerolled_up_to_max_attempts(tmp_path: Path, fault: str) -> None:
    store = seed_store(tmp_path, 2, max_attempts=2)
    with simulator(make_profile({fault: 1.0})) as server:
        run = run_engine(store, server, fast_settings())
        counts = submissions(server, store)
    assert counts == {"job0": 2, "job1": 2}  # the first try and one paid re-roll
    assert run.report.submitted == 4
    assert run.report.downloads == 0
    for name, job in by_name(store).items():
        assert job.state == S.FAILED
        assert job.error == REMOTE_FAILURE
        assert job.attempts == 2
        assert kinds(store, name) == [("submit", "failed"), ("reroll", "failed")]
        assert outcomes(store, name) == [
            "claimed",
            "accepted",
            "remote_failed",
            "retry_due",
            "claimed",
            "accepted",
            "remote_failed",
        ]
        costs = [a.cost_usd for a in attempt_rows(store, job.row_id)]
        assert costs == [pytest.approx(0.5), pytest.approx(0.5)]  # each failed try was billed
        assert job.cost == pytest.approx(1.0)  # and the job's cost keeps both
    assert part_files(tmp_path) == []


def test_a_result_without_any_output_url_is_fetched_again_never_rerolled(
    tmp_path: Path,
) -> None:
    store = seed_store(tmp_path, 2, max_attempts=3)
    with simulator(make_profile({"no_output": 1.0})) as server:
        run_engine(store, server, fast_settings())
        counts = submissions(server, store)
    assert counts == {"job0": 1, "job1": 1}  # paid once each, whatever max_attempts allows
    for job in by_name(store).values():
        assert job.state == S.FETCH_PAUSED  # a re-run asks again; --reroll pays again
        assert "shows no video URL" in (job.error or "")
        assert job.remote_status == "completed"


def test_a_request_the_api_forgot_is_parked(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    with simulator(make_profile(record_ttl=0)) as server:
        run_engine(store, server, fast_settings())
        counts = submissions(server, store)
    job = by_name(store)["job0"]
    assert counts == {"job0": 1}
    assert job.state == S.NEEDS_RECONCILE
    assert "404001" in (job.error or "")
    assert kinds(store, "job0") == [("submit", "remote_lost")]


# -- downloads --------------------------------------------------------------------------------


def test_an_expired_url_is_refreshed_from_result(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 4)
    # Seed 4: three of the first URLs answer 403 as expired; every fresh URL works.
    with simulator(make_profile({"expired_url": 0.5}, seed=4)) as server:
        run_engine(store, server, fast_settings())
        ledger = server.simulator.snapshot()
    assert {j.state for j in by_name(store).values()} == {S.SUCCEEDED}
    by_request: dict[str, list[tuple[str, int]]] = {}
    for download in ledger["downloads"]:
        _files, request_id, version, _name = download["path"].strip("/").split("/")
        by_request.setdefault(request_id, []).append((version, download["status"]))
    refreshed = [seen for seen in by_request.values() if seen[0] == ("1", 403)]
    assert len(refreshed) == 3
    assert all(seen == [("1", 403), ("2", 200)] for seen in refreshed)
    assert ledger["faults"]["expired_url"] == len(refreshed)
    assert part_files(tmp_path) == []


def test_urls_that_stay_expired_pause_the_job_and_never_pay_again(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 2)
    with simulator(make_profile({"expired_url": 1.0})) as server:
        run = run_engine(store, server, fast_settings(max_download_tries=3))
        ledger = server.simulator.snapshot()
    for job in by_name(store).values():
        assert job.state == S.FETCH_PAUSED
        assert job.error == (
            "paid, not fetched: HTTP 403: the URL has expired or is gone; running the batch "
            "again fetches it"
        )
    # Three durable fetches per job (FAST_FETCH.tries), each a fresh /result and one
    # more refresh when that URL is expired too: six URL versions per job, never a submit.
    versions = sorted(d["path"].split("/")[3] for d in ledger["downloads"])
    assert versions == sorted([str(v) for v in range(1, 7)] * 2)
    assert ledger["calls"]["result"] == 2 * 6  # the finish, then five refreshes per job
    assert sum(ledger["submissions"].values()) == 2
    assert ledger["duplicates"] == {}
    assert run.report.stopped_by == "done"
    assert not list((tmp_path / "out").glob("*.mp4")) if (tmp_path / "out").exists() else True


def test_truncated_downloads_are_retried_and_leave_no_partial_file(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 4)
    # Seed 6: seven bodies cut short, none of them five times in a row.
    with simulator(make_profile({"truncated_download": 0.5}, seed=6)) as server:
        run = run_engine(store, server, fast_settings())
        ledger = server.simulator.snapshot()
    assert ledger["faults"]["truncated_download"] == 7
    assert len(ledger["downloads"]) == 4 + 7
    assert {j.state for j in by_name(store).values()} == {S.SUCCEEDED}
    assert run.report.downloads == 4
    assert part_files(tmp_path) == []
    for name, job in by_name(store).items():
        data = (tmp_path / "out" / f"{name}.mp4").read_bytes()
        assert hashlib.sha256(data).hexdigest() == job.sha256


def test_a_job_found_downloading_after_a_restart_fetches_a_fresh_url(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    queue = WorkQueue(store)
    with simulator(make_profile()) as server:
        stop_once_submitted = stop_when(lambda: bool(queue.active(BATCH)))

        slow = fast_settings(poll=PollPolicy(minimum=5, maximum=5))
        run_engine(store, server, slow, during=stop_once_submitted)
        (item,) = queue.active(BATCH)
        assert queue.transition(item, S.DOWNLOADING, "remote_succeeded")  # then a crash
        run = run_engine(store, server, fast_settings())
        ledger = server.simulator.snapshot()
    assert by_name(store)["job0"].state == S.SUCCEEDED
    assert run.report.submitted == 0
    assert run.report.downloads == 1
    assert ledger["calls"]["result"] == 1
    assert ledger["calls"].get("status", 0) == 0
    assert sum(ledger["submissions"].values()) == 1


# -- money and authentication -----------------------------------------------------------------


def test_an_empty_balance_stops_submitting_and_leaves_the_rest_pending(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 5)
    with simulator(make_profile(balance_usd=1.2)) as server:
        run = run_engine(store, server, fast_settings())
        ledger = server.simulator.snapshot()
    states = [j.state for j in by_name(store).values()]
    assert states.count(S.SUCCEEDED) == 2
    assert states.count(S.PENDING) == 3
    assert run.report.balance_error is not None
    assert "Insufficient balance" in run.report.balance_error
    assert any(note.startswith("stopped submitting") for note in run.report.notes)
    assert run.report.stopped_by == "done"
    assert sum(ledger["submissions"].values()) == 2
    assert ledger["balance_usd"] == pytest.approx(0.2)
    for job in by_name(store).values():
        if job.state == S.PENDING:
            assert job.request_id is None


def test_a_wrong_token_stops_everything_quickly(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 4)
    with simulator(make_profile()) as server:
        run = run_engine(store, server, fast_settings(), token="not-the-token")
        ledger = server.simulator.snapshot()
    assert run.report.stopped_by == "auth"
    assert run.report.auth_error is not None
    assert "401" in run.report.auth_error
    # Quickly means without retrying: no request is sent twice after a 401, and every
    # request sent was answered 401.
    assert 1 <= sum(ledger["calls"].values()) <= 4
    assert all(reply.endswith(" 401") for reply in ledger["replies"]), ledger["replies"]
    assert ledger["submissions"] == {}
    assert {j.state for j in by_name(store).values()} == {S.PENDING}
    assert TOKEN not in run.report.auth_error


def test_a_token_revoked_between_runs_stops_polling(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 2)
    queue = WorkQueue(store)
    with simulator(make_profile()) as server:
        stop_once_submitted = stop_when(lambda: len(queue.active(BATCH)) >= 2)

        slow = fast_settings(poll=PollPolicy(minimum=5, maximum=5))
        run_engine(store, server, slow, during=stop_once_submitted)
        run = run_engine(store, server, fast_settings(), token="revoked")
    assert run.report.stopped_by == "auth"
    assert run.report.auth_error is not None
    assert {j.state for j in by_name(store).values()} == {S.SUBMITTED}  # kept, not lost


@pytest.mark.parametrize("cap", [1.0, 1.2])
def test_the_spend_cap_stops_submitting_before_it_is_passed(tmp_path: Path, cap: float) -> None:
    store = seed_store(tmp_path, 5, cost=0.5)
    with simulator(make_profile()) as server:
        run = run_engine(store, server, fast_settings(max_spend=cap))
        ledger = server.simulator.snapshot()
    assert run.report.spend_capped
    assert any(f"spend cap of ${cap:.2f}" in note for note in run.report.notes)
    assert sum(ledger["submissions"].values()) == 2
    states = [j.state for j in by_name(store).values()]
    assert states.count(S.SUCCEEDED) == 2
    assert states.count(S.PENDING) == 3
    assert store.spend(BATCH) <= 1.0


# -- concurrency ------------------------------------------------------------------------------


def test_max_in_flight_bounds_the_remote_work(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 6)
    # 50 simulated seconds = 0.1 s: two jobs submitted together surely overlap.
    with simulator(make_profile(slots=16, durations={"default": 50})) as server:
        run_engine(store, server, fast_settings(max_in_flight=2))
        jobs = server.simulator.snapshot()["jobs"]
    assert {j.state for j in by_name(store).values()} == {S.SUCCEEDED}
    assert len(jobs) == 6
    intervals = [(j["submitted_at"], j["finished_at"]) for j in jobs.values()]
    assert max_overlap(intervals) == 2


def test_max_in_flight_per_model(tmp_path: Path) -> None:
    rows: list[NewJob] = [new_job(f"p{i}") for i in range(3)]
    rows += [new_job(f"l{i}", model=LITE) for i in range(3)]
    store = seed_store(tmp_path, rows)
    with simulator(make_profile(slots=16)) as server:
        run_engine(store, server, fast_settings(max_in_flight=8, max_in_flight_per_model=1))
        jobs = server.simulator.snapshot()["jobs"]
    assert {j.state for j in by_name(store).values()} == {S.SUCCEEDED}
    for model in (PRO, LITE):
        intervals = [
            (j["submitted_at"], j["finished_at"]) for j in jobs.values() if j["model_id"] == model
        ]
        assert len(intervals) == 3
        assert max_overlap(intervals) == 1


def test_submits_are_paced(tmp_path: Path) -> None:
    """Each submit reserves the next slot of the shared pace, 1/rate apart, and waits for
    it. Checked by lower bounds only (a sleep never ends early), not by measured gaps,
    which a busy machine blurs either way."""
    rate, jobs = 10.0, 6
    store = seed_store(tmp_path, jobs)
    began = store.now()
    started = time.monotonic()
    with simulator(make_profile()) as server:
        run_engine(store, server, fast_settings(submits_per_second=rate))
    elapsed = time.monotonic() - started
    with store.read() as connection:
        (next_free,) = connection.execute(select(PACERS.c.next_at)).one()
    assert next_free >= began + timedelta(seconds=jobs / rate)  # six slots were reserved
    assert elapsed >= (jobs - 1) / rate  # and the last POST waited for its slot
    assert {j.state for j in by_name(store).values()} == {S.SUCCEEDED}


# -- stopping ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cancel", [True, False])
def test_cancel_on_exit_cancels_jobs_still_queued(tmp_path: Path, cancel: bool) -> None:
    store = seed_store(tmp_path, 3)
    queue = WorkQueue(store)
    # One slot, long jobs: one runs, two wait in RunComfy's queue when the stop comes.
    profile = make_profile(slots=1, durations={"default": 2000})

    stop_once_submitted = stop_when(lambda: len(queue.active(BATCH)) >= 3)

    settings = fast_settings(cancel_on_exit=cancel, poll=PollPolicy(minimum=5, maximum=5))
    with simulator(profile) as server:
        run = run_engine(store, server, settings, during=stop_once_submitted)
        jobs = server.simulator.snapshot()["jobs"]
    assert run.report.stopped_by == "interrupted"
    states = sorted(j.state for j in by_name(store).values())
    cancelled_remote = [rid for rid, j in jobs.items() if j["cancelled_at"] is not None]
    if cancel:
        assert run.report.cancelled_remote == 2
        assert states == [S.CANCELLED, S.CANCELLED, S.SUBMITTED]
        assert len(cancelled_remote) == 2
        for job in by_name(store).values():
            if job.state == S.CANCELLED:
                assert job.request_id in cancelled_remote
                assert job.remote_status == "cancelled"
    else:
        assert run.report.cancelled_remote == 0
        assert cancelled_remote == []
        assert states == [S.SUBMITTED] * 3


def test_a_stopped_run_resumes_without_submitting_twice(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 4)
    queue = WorkQueue(store)

    stop_after_two = stop_when(lambda: len(queue.active(BATCH)) >= 2)

    with simulator(make_profile(durations={"default": 100})) as server:
        first = run_engine(store, server, fast_settings(max_in_flight=2), during=stop_after_two)
        assert first.report.stopped_by == "interrupted"
        assert [j.state for j in by_name(store).values()].count(S.PENDING) == 2
        second = run_engine(store, server, fast_settings())
        counts = submissions(server, store)
    assert second.report.stopped_by == "done"
    assert counts == {f"job{i}": 1 for i in range(4)}
    assert {j.state for j in by_name(store).values()} == {S.SUCCEEDED}


# -- refused inputs ---------------------------------------------------------------------------


def test_a_rejected_payload_fails_with_the_validation_detail(tmp_path: Path) -> None:
    bad = NewJob(
        key=key_of("bad"),
        name="bad",
        model_id=PRO,
        payload={"prompt": "no image at all"},
        output_path="bad.mp4",
        max_attempts=3,
    )
    store = seed_store(tmp_path, [bad, new_job("good")])
    with simulator(make_profile()) as server:
        run_engine(store, server, fast_settings())
        ledger = server.simulator.snapshot()
    jobs = by_name(store)
    assert jobs["good"].state == S.SUCCEEDED
    assert jobs["bad"].state == S.FAILED
    assert jobs["bad"].error is not None
    assert "HTTP 422" in jobs["bad"].error
    assert "first_frame_image_url" in jobs["bad"].error
    assert sum(ledger["rejected_submissions"].values()) == 1
    assert kinds(store, "bad") == [("submit", "rejected")]


def test_an_image_changed_since_enqueue_is_rejected_before_sending(
    tmp_path: Path, make_image: Any
) -> None:
    image = make_image("in/beach.png", (64, 64))
    changed = NewJob(
        key=key_of("changed"),
        name="changed",
        model_id=PRO,
        payload={
            "prompt": "x",
            "first_frame_image_url": {"$image": {"path": str(image), "sha256": "0" * 64}},
        },
        output_path="changed.mp4",
        max_attempts=1,
    )
    store = seed_store(tmp_path, [changed])
    with simulator(make_profile()) as server:
        run_engine(store, server, fast_settings())
        calls = server.simulator.snapshot()["calls"]
    job = by_name(store)["changed"]
    assert job.state == S.FAILED
    assert job.error is not None
    assert job.error.startswith("input image: ")
    assert calls.get("submit", 0) == 0


def test_refused_submits_do_not_use_up_paid_attempts(tmp_path: Path) -> None:
    """max_attempts bounds paid generations: a 429'd submit was never paid for."""
    store = seed_store(tmp_path, 3, max_attempts=2)
    faults = {"rate_limit": 0.5, "job_failed": 1.0, "retry_after_seconds": 0}
    with simulator(make_profile(faults, seed=2)) as server:
        run_engine(store, server, fast_settings())
        counts = submissions(server, store)
        ledger = server.simulator.snapshot()
    assert ledger["replies"].get("submit 429", 0) > 0
    assert counts == {"job0": 2, "job1": 2, "job2": 2}  # a first try and one re-roll each
    for name, job in by_name(store).items():
        assert job.state == S.FAILED
        assert job.error == REMOTE_FAILURE
        paid = [kind for kind, outcome in kinds(store, name) if outcome != "not_sent"]
        assert paid == ["submit", "reroll"]


def test_a_stop_lets_submits_in_flight_finish_and_records_their_ids(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 3)

    # Stop when every POST is on the wire, each reply 0.2 s away.
    stop_while_posting = stop_when(lambda: store.counts(BATCH)["submitting"] >= 3)

    slow = make_profile({"slow_reply": 1.0, "slow_seconds": 0.2})
    with simulator(slow) as server:
        first = run_engine(store, server, fast_settings(), during=stop_while_posting)
        assert first.report.stopped_by == "interrupted"
        assert first.report.submitted == 3
        assert store.counts(BATCH)["submitted"] == 3  # not left in "submitting"
        second = run_engine(store, server, fast_settings())
        counts = submissions(server, store)
    assert second.report.submitted == 0
    assert second.report.notes == []
    assert counts == {"job0": 1, "job1": 1, "job2": 1}
    assert {j.state for j in by_name(store).values()} == {S.SUCCEEDED}


# -- replies no simulator profile produces, over httpx.MockTransport --------------------------

API = "https://model-api.runcomfy.test"
VIDEO_URL = "https://files.runcomfy.net/req/output.mp4"
Reply = httpx.Response | Exception


class Scripted:
    """A RunComfy whose replies are scripted per route; the last reply of a route repeats."""

    def __init__(self, **routes: list[Reply]) -> None:
        self.routes = {name: list(replies) for name, replies in routes.items()}
        self.calls: dict[str, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/v1/models/"):
            route = "submit"
        elif path.startswith("/v1/requests/"):
            route = path.rsplit("/", 1)[1]
        else:
            route = "file"
        self.calls[route] = self.calls.get(route, 0) + 1
        replies = self.routes[route]
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


def ok_json(body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=body)


SUBMITTED = ok_json({"request_id": "req-1"})
DONE = ok_json({"status": "completed", "output": {"video": VIDEO_URL}, "cost": 0.3})


def video() -> httpx.Response:
    return ok(tiny_video())


def run_scripted(
    store: Store,
    script: Scripted,
    settings: EngineSettings,
    *,
    during: Any = None,
) -> Engine:
    async def main() -> Engine:
        stop = anyio.Event()
        transport = httpx.MockTransport(script)
        async with (
            RunComfyClient(API, token=TOKEN, transport=transport) as api,
            Downloader(transport=transport) as downloader,
        ):
            engine = Engine(
                WorkQueue(store), api, downloader, builtin_catalog(), settings, rng=random.Random(1)
            )
            async with anyio.create_task_group() as group:
                if during is not None:
                    group.start_soon(during, engine, stop)
                await engine.run(stop)
                group.cancel_scope.cancel()
        return engine

    return anyio.run(main)


def test_a_result_lagging_behind_status_is_asked_again(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    script = Scripted(
        submit=[SUBMITTED],
        status=[ok_json({"status": "completed"})],
        result=[ok_json({"status": "in_progress"}), DONE],
        file=[video()],
    )
    engine = run_scripted(store, script, fast_settings())
    job = by_name(store)["job0"]
    assert job.state == S.SUCCEEDED
    assert job.cost == pytest.approx(0.3)
    assert script.calls["result"] == 2
    # No server stamps: the run time is measured locally, still learnt.
    assert [key.split("|")[0] for key in engine.timing.estimates] == [PRO]


def test_a_job_cancelled_on_runcomfy_is_cancelled_here(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    script = Scripted(
        submit=[SUBMITTED],
        status=[ok_json({"status": "cancelled"})],
        result=[ok_json({"status": "cancelled", "cost": 0})],
    )
    run_scripted(store, script, fast_settings())
    job = by_name(store)["job0"]
    assert (job.state, job.remote_status) == (S.CANCELLED, "cancelled")
    assert kinds(store, "job0") == [("submit", "cancelled")]


def test_an_unknown_failure_state_names_the_remote_status(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    script = Scripted(
        submit=[SUBMITTED],
        status=[httpx.Response(429, headers={"Retry-After": "0"}), ok_json({"status": "error"})],
        result=[ok_json({"status": "error"})],
    )
    engine = run_scripted(store, script, fast_settings())
    job = by_name(store)["job0"]
    assert (job.state, job.error) == (S.FAILED, "remote status error")
    assert script.calls["status"] == 2  # the 429 was retried
    # A 429 on a status poll holds that job's next look, not submits (issue 15: a poll's
    # throttle, with the job still in flight, could leave no room to submit anything).
    start = Capacity.start(fast_settings().max_in_flight)
    assert engine.timing.capacity.value == start.value


def test_an_expired_url_without_a_fresh_one_waits_then_pauses(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    script = Scripted(
        submit=[SUBMITTED],
        status=[ok_json({"status": "completed"})],
        result=[DONE, ok_json({"status": "completed", "output": {}})],
        file=[httpx.Response(403)],
    )
    run_scripted(store, script, fast_settings())
    job = by_name(store)["job0"]
    assert job.state == S.FETCH_PAUSED
    assert job.error is not None
    assert "shows no video URL right now" in job.error
    # One download, then a fresh /result per durable try (FAST_FETCH.tries), never a submit.
    assert script.calls["file"] == 1
    assert script.calls["result"] == 1 + 3
    assert script.calls["submit"] == 1


def test_a_result_that_keeps_failing_while_refreshing_waits_then_pauses(
    tmp_path: Path,
) -> None:
    # The paid video may still be there: a 503 on the refresh is a wait (quick tries, then
    # the durable fetch backoff), and the job pauses for a re-run; it never fails.
    store = seed_store(tmp_path, 1)
    script = Scripted(
        submit=[SUBMITTED],
        status=[ok_json({"status": "completed"})],
        result=[DONE, httpx.Response(503)],
        file=[httpx.Response(403)],
    )
    run_scripted(store, script, fast_settings(max_download_tries=2))
    job = by_name(store)["job0"]
    assert job.state == S.FETCH_PAUSED
    assert job.error is not None
    assert "asking for a fresh URL" in job.error
    # 3 durable tries of 2 quick tries each (the first spends one on the expired file):
    # a /result each after the one that finished the job; one submit only.
    assert script.calls["file"] == 1
    assert script.calls["result"] == 1 + 1 + 2 * 2
    assert script.calls["submit"] == 1


def test_submits_that_cannot_connect_are_retried_then_given_up(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 1)
    script = Scripted(submit=[httpx.ConnectError("refused")])
    run_scripted(store, script, fast_settings(max_transient_failures=3))
    job = by_name(store)["job0"]
    assert job.state == S.FAILED
    assert job.error is not None
    assert job.error.startswith("gave up after 3 failed submits")
    assert "could not connect" in job.error
    assert script.calls["submit"] == 3


def test_an_output_path_leaving_the_output_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(outside)
    store = seed_store(tmp_path, [new_job("job0", output_path="link/job0.mp4")])
    script = Scripted(submit=[SUBMITTED], status=[ok_json({"status": "completed"})], result=[DONE])
    run_scripted(store, script, fast_settings())
    job = by_name(store)["job0"]
    assert job.state == S.FETCH_PAUSED
    assert "resolves outside the output folder" in (job.error or "")
    assert "file" not in script.calls
    assert list(outside.iterdir()) == []


def test_cancel_on_exit_skips_jobs_it_cannot_cancel(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 2)
    queue = WorkQueue(store)

    stop_once_submitted = stop_when(lambda: len(queue.active(BATCH)) >= 2)

    script = Scripted(
        submit=[ok_json({"request_id": "req-1"}), ok_json({"request_id": "req-2"})],
        cancel=[
            httpx.Response(503),
            ok_json({"outcome": "not_cancellable", "status": "in_progress"}),
        ],
    )
    slow = fast_settings(cancel_on_exit=True, poll=PollPolicy(minimum=5, maximum=5))
    engine = run_scripted(store, script, slow, during=stop_once_submitted)
    assert engine.report.stopped_by == "interrupted"
    assert engine.report.cancelled_remote == 0
    assert script.calls["cancel"] == 2
    assert {j.state for j in by_name(store).values()} == {S.SUBMITTED}


def test_queued_jobs_are_watched_until_a_slot_frees(tmp_path: Path) -> None:
    store = seed_store(tmp_path, 3)
    # One slot, 100 simulated seconds (200 ms) each: two jobs wait in RunComfy's queue,
    # the last for 400 ms, far longer than the longest poll interval (200 ms).
    with simulator(make_profile(slots=1, durations={"default": 100})) as server:
        run = run_engine(store, server, fast_settings())
        jobs = server.simulator.snapshot()["jobs"]
    assert {j.state for j in by_name(store).values()} == {S.SUCCEEDED}
    assert max_overlap([(j["started_at"], j["finished_at"]) for j in jobs.values()]) == 1
    assert run.report.polls > 3
    # Learnt from the engine's own looks (the stamps, submit to finish, include the wait).
    assert [key.split("|")[0] for key in run.engine.timing.estimates] == [PRO]


def test_an_output_folder_that_cannot_be_written_pauses_paid_jobs_and_trips(
    tmp_path: Path,
) -> None:
    store = seed_store(tmp_path, 6)
    (tmp_path / "out").write_text("a file where the output folder should be")
    with simulator(make_profile()) as server:
        run = run_engine(store, server, fast_settings(max_in_flight=1))
        ledger = server.simulator.snapshot()
    jobs = by_name(store)
    breaker = run.report.breaker
    assert breaker is not None
    assert breaker.kind == "not_writable"
    assert "make " in breaker.fix
    assert "writable" in breaker.fix
    assert run.report.tripped_at is not None
    # Every paid job waits to be fetched; no job was claimed after the breaker tripped:
    # a misconfiguration costs at most the jobs already in flight, never the batch.
    paid = [j for j in jobs.values() if j.request_id]
    assert paid
    assert {j.state for j in paid} == {S.FETCH_PAUSED}
    assert all("could not write the file" in (j.error or "") for j in paid)
    assert {j.state for j in jobs.values() if not j.request_id} <= {S.PENDING}
    attempts = [a for j in jobs.values() for a in attempt_rows(store, j.row_id)]
    sent = [a for a in attempts if a.outcome != "held"]  # held: claimed, then given back
    assert max(a.started_at for a in sent) <= run.report.tripped_at
    assert sum(ledger["submissions"].values()) == len(paid) == len(sent)
    assert run.report.stopped_by == "done"


class _ResultAfterA429:
    """An API whose ``/result`` answers 429 once, then a finished video (a takeover's
    first look at a job left in ``downloading``)."""

    def __init__(self) -> None:
        self.calls = 0

    async def result(self, request_id: str, include_cost: bool = False) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise RateLimited("HTTP 429: slow down", retry_after=0.0)
        return RemoteResult(status="completed", video_url="https://files.test/v.mp4")


def test_a_transient_error_while_refreshing_the_url_is_retried_not_failed(
    tmp_path: Path,
) -> None:
    store = seed_store(tmp_path, 1)
    queue = WorkQueue(store)
    (item,) = queue.claim(BATCH, 1)  # claimed by no worker: the engine adopts it
    assert queue.transition(item, S.SUBMITTED, "accepted", {"request_id": "req-1"})
    item = replace(item, state=S.SUBMITTED, request_id="req-1")
    assert queue.transition(item, S.DOWNLOADING, "remote_succeeded")
    stale = tmp_path / "out" / f".{item.output_path}.dead.part"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by a kill -9")
    api = _ResultAfterA429()

    async def main() -> None:
        transport = httpx.MockTransport(lambda request: ok(tiny_video()))
        async with Downloader(trusted_hosts=["files.test"], transport=transport) as files:
            engine = Engine(queue, api, files, builtin_catalog(), fast_settings())  # type: ignore[arg-type]
            await engine.run()

    anyio.run(main)
    (job,) = by_name(store).values()
    assert (job.state, api.calls) == (S.SUCCEEDED, 2)
    assert part_files(tmp_path) == []


def test_a_store_call_the_database_rolled_back_is_run_again(tmp_path: Path) -> None:
    """PostgreSQL rolls a transaction back on its own after a deadlock, or when it ends a
    session left idle inside it (a paused worker): nothing was committed, so the call runs
    again, up to three times; any other database error is raised at once."""
    store = seed_store(tmp_path, 1)

    def error(sqlstate: str) -> DBAPIError:
        return DBAPIError("UPDATE jobs", None, SimpleNamespace(sqlstate=sqlstate))  # type: ignore[arg-type]

    calls: list[str] = []

    def fails(errors: list[DBAPIError]) -> str:
        calls.append("call")
        if errors:
            raise errors.pop(0)
        return "committed"

    async def main() -> None:
        async with Downloader(trusted_hosts=["files.test"]) as files:
            engine = Engine(WorkQueue(store), None, files, builtin_catalog(), fast_settings())  # type: ignore[arg-type]
            assert await engine.gateway.call(fails, [error("25P03"), error("40P01")]) == "committed"
            assert len(calls) == 3
            calls.clear()
            with pytest.raises(DBAPIError):
                await engine.gateway.call(fails, [error("40P01")] * 3)
            assert len(calls) == 3
            calls.clear()
            with pytest.raises(DBAPIError):
                await engine.gateway.call(fails, [error("23505")])
            assert len(calls) == 1

    anyio.run(main)
