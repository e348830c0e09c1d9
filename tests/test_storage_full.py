"""A store that cannot be written (SQLITE_FULL) ends the run cleanly: a report, no traceback.

SQLite's ``max_page_count`` caps the database file, so the first write that would grow it
fails with "database or disk is full", exactly as on a full disk. The run must stop with
``stopped_by == "storage"`` and a clear message, keep every request id it committed, and
leave nothing a re-run cannot sort out: every job RunComfy accepted is either recorded
with its request id or parked for a decision.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr
from typing import TYPE_CHECKING, Any

from engine_helpers import BATCH, fast_settings, make_profile, run_engine, seed_store, simulator
from sqlalchemy import event, text

from orchestrator.store import JobState, Store
from orchestrator.views import print_run_summary

if TYPE_CHECKING:
    from pathlib import Path


def fill_up(store: Store, spare_pages: int) -> None:
    """Cap the database at its current size plus ``spare_pages`` on every connection."""
    with store.read() as connection:
        pages = int(connection.execute(text("PRAGMA page_count")).scalar_one())

    def cap(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + spare_pages}")

    event.listen(store.engine, "connect", cap)
    store.engine.dispose()  # the pooled connections reconnect, capped


def test_a_full_store_stops_the_run_with_a_clear_report(tmp_path: Path) -> None:
    store = seed_store(tmp_path, jobs=12)
    fill_up(store, spare_pages=1)
    with simulator(make_profile()) as server:
        run = run_engine(store, server, fast_settings(max_in_flight=4))
        ledger = server.simulator.snapshot()
    report = run.report
    assert report.stopped_by == "storage"
    assert report.storage_error is not None
    assert "full" in report.storage_error
    out = io.StringIO()
    print_run_summary(store, BATCH, report, out)  # reading still works on a full disk
    assert "(stopped: the store could not be written)" in out.getvalue()
    assert "error: the store could not be written (database or disk is full)" in out.getvalue()
    store.close()

    with Store.open(str(tmp_path / "store.db")) as reopened:  # uncapped, as after freeing space
        jobs = reopened.list_jobs(batch=BATCH)
    recorded = {job.request_id for job in jobs if job.request_id}
    mid_submit = [job for job in jobs if job.state == JobState.SUBMITTING]
    accepted = set(ledger["jobs"])
    assert accepted, "the run got far enough to submit something"
    # Every request RunComfy accepted is in the store, except at most the ones whose
    # answer could not be written: those jobs stay "submitting" and a re-run parks them.
    assert len(accepted - recorded) <= len(mid_submit)
    assert len(jobs) == 12


def test_a_store_that_cannot_be_opened_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    from orchestrator.cli import main

    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["status", "--db", str(tmp_path)], out=io.StringIO())  # a directory
    assert code == 1
    assert err.getvalue().startswith(f"error: the store {str(tmp_path)!r} could not be used")
    assert "Traceback" not in err.getvalue()
