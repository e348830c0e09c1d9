"""Live progress: plain lines off a terminal, a rich panel on one, both read from the store."""

from __future__ import annotations

import io

import anyio
from engine_helpers import by_name, fast_settings, make_profile, run_engine, seed_store, simulator

from orchestrator.engine.progress import (
    ProgressReporter,
    Snapshot,
    plain_line,
    rate_and_eta,
    rich_panel,
    take_snapshot,
)
from orchestrator.store import JobState


def test_plain_line_names_counts_rate_eta_and_spend() -> None:
    snap = Snapshot({"succeeded": 3, "failed": 1, "submitted": 2, "pending": 4}, {}, 1.5, [], 0)
    line = plain_line(snap, 6.0, 90.0)
    assert line == (
        "4/10 done | 4 pending, 2 submitted, 3 succeeded, 1 failed | 6.0/min, ETA 2m | $1.50 spent"
    )
    assert "ETA" not in plain_line(snap, None, None)


def test_rate_needs_progress_and_time() -> None:
    first = Snapshot({"pending": 2}, {}, 0, [], at=5.0)
    assert rate_and_eta(first, first) == (None, None)
    later = Snapshot({"succeeded": 1, "needs_reconcile": 1}, {}, 0, [], at=35.0)
    assert rate_and_eta(first, later) == (2.0, 0.0)  # the parked job is not waited for


def test_progress_lines_and_panel_from_a_real_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = seed_store(tmp_path, 3)
    stream = io.StringIO()
    reporter = ProgressReporter(store, "eng", stream, interval=0.01, live=False)

    async def during(_engine, _stop) -> None:  # type: ignore[no-untyped-def]
        await reporter.run()

    with simulator(make_profile({"job_failed": 0.5}, seed=3)) as server:
        run_engine(store, server, fast_settings(), during=during)
    assert "progress: " in stream.getvalue()
    snapshot = take_snapshot(store, "eng", 0.0)
    assert snapshot.total == 3
    assert snapshot.finished == 3
    failed = [j for j in by_name(store).values() if j.state == JobState.FAILED]
    assert len(snapshot.failures) == len(failed)
    from rich.console import Console

    console = Console(file=io.StringIO(), width=120)
    console.print(rich_panel(snapshot, 3.0, 0.0))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "3/3 done" in text
    assert "succeeded" in text


def test_live_panel_redraws_until_cancelled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = seed_store(tmp_path, 2)
    stream = io.StringIO()
    reporter = ProgressReporter(store, "eng", stream, interval=0.01, live=True)

    async def main() -> None:
        with anyio.move_on_after(0.3):
            await reporter.run()

    anyio.run(main)
    assert "0/2 done" in stream.getvalue()


def test_spend_shows_the_estimated_total_when_prices_are_known() -> None:
    snap = Snapshot({"succeeded": 1, "pending": 1}, {}, 0.5, [], 0.0, estimated_total=1.0)
    assert plain_line(snap, None, None).endswith("$0.50 spent of ~$1.00")


def test_estimated_total_sums_costs_and_estimates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = seed_store(tmp_path, 3, cost=0.25)
    assert store.estimated_total("eng") == 0.75
    assert seed_store(tmp_path, 1, db="none.db").estimated_total("eng") is None
