"""Run times from the engine's own looks (engine/runtimes.py): stamps in every form, the
brackets, when server stamps are believed, and how estimates learn and unlearn."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.engine.runtimes import (
    Estimate,
    Evidence,
    Sightings,
    evidence_from,
    first_estimate,
    parse_stamp,
    timing_key,
)

MOMENT = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
EPOCH = MOMENT.timestamp()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2026-12-01T10:00:00.123456+00:00", EPOCH),
        ("2026-12-01T10:00:00.123456Z", EPOCH),
        ("2026-12-01T12:00:00.123456+02:00", EPOCH),
        ("2026-12-01T10:00:00.123456", EPOCH),  # naive: read as UTC (only differences count)
        ("2026-12-01 10:00:00.123456", EPOCH),
        (EPOCH, EPOCH),
        (int(EPOCH * 1000), int(EPOCH * 1000) / 1000),  # epoch milliseconds
        (str(EPOCH), EPOCH),
        (str(int(EPOCH * 1000)), int(EPOCH * 1000) / 1000),
        ("yesterday", None),
        ("", None),
        ("9" * 80, None),  # longer than any stamp: not parsed at all
        (None, None),
        (True, None),
        (-5, None),
        (0, None),
        (math.nan, None),
        (math.inf, None),
        ({"at": 1}, None),
    ],
)
def test_stamps_in_every_common_form(value: object, seconds: float | None) -> None:
    parsed = parse_stamp(value)
    if seconds is None:
        assert parsed is None
    else:
        assert parsed == pytest.approx(seconds, abs=1e-3)


def test_keys_separate_models_clip_lengths_and_resolutions() -> None:
    keys = {
        timing_key("m", {"resolution": "1080p"}, 5.0),
        timing_key("m", {"resolution": "1080p"}, 10.0),
        timing_key("m", {"resolution": "480p"}, 5.0),
        timing_key("n", {"resolution": "1080p"}, 5.0),
        timing_key("m", {}, 5.0),
    }
    assert len(keys) == 5
    assert timing_key("m", {"resolution": "x" * 500}, None).endswith("x" * 40)


def seen_running(sent: float = 0.0, *looks: tuple[str, float]) -> Sightings:
    seen = Sightings(sent=sent, accepted=sent + 0.05)
    for status, at in looks:
        seen = seen.saw(status, at)
    return seen


def test_brackets_from_the_looks() -> None:
    seen = seen_running(0.0, ("in_queue", 4.0), ("in_progress", 6.0), ("in_progress", 30.0))
    done = seen.saw("completed", 33.0).saw("completed", 40.0)  # the first done look counts
    assert done.started_between() == (4.0, 6.0)
    assert done.finished_between() == (30.0, 33.0)
    assert done.run_between() == (24.0, 29.0)
    assert done.running_since == 4.0
    # Never seen running: it started and finished between the POST and the done look.
    quick = seen_running(0.0, ("completed", 2.0))
    assert quick.run_between() == (0.0, 2.0)
    # Adopted after a restart: no lower bound on the start.
    adopted = Sightings.adopted().saw("in_progress", 100.0).saw("completed", 110.0)
    assert adopted.run_between()[1] == math.inf
    assert adopted.running_since == 100.0


def stamps(created: float, finished: float, form: str = "iso") -> tuple[object, object]:
    if form == "iso":
        return (
            (MOMENT + timedelta(seconds=created)).isoformat(),
            (MOMENT + timedelta(seconds=finished)).isoformat(),
        )
    if form == "naive":
        moment = MOMENT.replace(tzinfo=None) - timedelta(hours=5)
        return (
            (moment + timedelta(seconds=created)).isoformat(),
            (moment + timedelta(seconds=finished)).isoformat(),
        )
    if form == "skewed":
        moment = MOMENT + timedelta(hours=3)
        return (
            (moment + timedelta(seconds=created)).isoformat(),
            (moment + timedelta(seconds=finished)).isoformat(),
        )
    assert form == "epoch_ms"
    return int((EPOCH + created) * 1000), int((EPOCH + finished) * 1000)


@pytest.mark.parametrize("form", ["iso", "naive", "skewed", "epoch_ms"])
def test_stamps_inside_the_bracket_give_the_run_time(form: str) -> None:
    seen = seen_running(0.0, ("in_progress", 1.0), ("in_progress", 25.0), ("completed", 28.0))
    created, finished = stamps(0.5, 26.5, form)
    evidence = evidence_from(seen, created, None, finished, slack=0.1)
    assert evidence.verdict == "agree"
    assert evidence.exact == pytest.approx(26.0, abs=0.01)


def test_constant_stamps_that_contradict_the_looks_are_dropped() -> None:
    # Every job "took 60 s" by the stamps; the engine saw this one done within 4 s.
    seen = seen_running(0.0, ("in_progress", 1.0), ("in_progress", 2.5), ("completed", 3.5))
    created, finished = stamps(0.0, 60.0)
    evidence = evidence_from(seen, created, None, finished, slack=0.1)
    assert evidence.verdict == "contradict"
    assert evidence.exact is None
    assert (evidence.low, evidence.high) == (1.5, 3.5)


def test_absent_or_unreadable_stamps_leave_the_bracket() -> None:
    seen = seen_running(0.0, ("in_progress", 1.0), ("completed", 9.0))
    for created, finished in [(None, None), ("soon", "later"), ("2026-12-01T10:00:00", None)]:
        evidence = evidence_from(seen, created, None, finished, slack=0.1)
        assert (evidence.verdict, evidence.exact) == ("absent", None)
        assert (evidence.low, evidence.high) == seen.run_between()


def test_a_started_at_stamp_is_checked_against_the_run_bracket() -> None:
    seen = seen_running(0.0, ("in_progress", 1.0), ("in_progress", 19.0), ("completed", 21.0))
    good = evidence_from(seen, EPOCH, EPOCH + 1, EPOCH + 20.5, slack=0.1)
    assert (good.verdict, good.exact) == ("agree", pytest.approx(19.5))
    bad = evidence_from(seen, EPOCH, EPOCH + 1, EPOCH + 90, slack=0.1)
    assert bad.verdict == "contradict"


@settings(max_examples=300, deadline=None)
@given(
    start=st.floats(0.0, 100.0),
    run=st.floats(0.5, 500.0),
    looks=st.lists(
        st.tuples(st.floats(0.0, 700.0), st.floats(0.0, 60.0), st.floats(0.0, 60.0)),
        min_size=1,
        max_size=12,
    ),
)
def test_true_stamps_are_never_contradicted_by_late_replies(
    start: float, run: float, looks: list[tuple[float, float, float]]
) -> None:
    """The server answers a look at some moment between its request and its reply; a reply
    read late (a slow link, a busy event loop) must not make true stamps look wrong."""
    finish = start + run
    seen = Sightings(sent=0.0, accepted=0.0)
    for observed, before, after in sorted(looks):
        asked, answered = max(0.0, observed - before), observed + after
        status = "in_queue" if observed < start else "in_progress" if observed < finish else ""
        seen = seen.saw(status or "completed", answered, asked=asked)
    seen = seen.saw("completed", finish + 1.0, asked=finish)  # the last look sees it done
    evidence = evidence_from(seen, EPOCH + start, EPOCH + start, EPOCH + finish, slack=0.0)
    assert evidence.verdict == "agree"
    low, high = seen.run_between()
    assert low <= run <= high


def test_created_at_as_the_submit_only_narrows_the_finish_of_a_queued_job() -> None:
    # Queued until 10 s, running from 12 s, done by 50 s; the stamps say submit to finish
    # took 45 s: the finish was at 45 s, so the run took 33-35 s (not 45).
    seen = seen_running(
        0.0, ("in_queue", 10.0), ("in_progress", 12.0), ("in_progress", 40.0), ("completed", 50.0)
    )
    evidence = evidence_from(seen, EPOCH, None, EPOCH + 45.0, slack=0.1)
    assert evidence.verdict == "agree"
    assert evidence.exact is None
    assert evidence.low == pytest.approx(33.0)
    assert evidence.high == pytest.approx(35.05)
    assert evidence.tight


def test_a_first_estimate_comes_from_any_finite_bracket() -> None:
    assert first_estimate(Evidence(8.0, 12.0)) == Estimate.first(10.0)
    assert first_estimate(Evidence(0.0, 100.0)) == Estimate.first(50.0)  # wide: still a start
    assert first_estimate(Evidence(5.0, math.inf)) is None
    assert first_estimate(Evidence(0.0, 1.0, exact=0.7)) == Estimate.first(0.7)


def test_a_wide_bracket_consistent_with_the_estimate_teaches_nothing() -> None:
    estimate = Estimate(30.0, 5.0, 10)
    same = estimate.learn(Evidence(0.0, 45.0))
    assert (same.typical, same.spread, same.samples) == (30.0, 5.0, 10)
    assert same.early < estimate.early  # (not done by the typical look: counted)
    # ... but one wholly below or above proves it wrong.
    assert estimate.learn(Evidence(0.0, 20.0)).typical < 30.0
    assert estimate.learn(Evidence(40.0, 100.0)).typical > 30.0


def test_the_spread_stays_a_share_of_the_typical_run() -> None:
    estimate = Estimate.first(10.0)
    for _ in range(50):
        estimate = estimate.learn(Evidence(10.0, 10.0, exact=10.0))
    assert estimate.spread == pytest.approx(0.5)  # the 5% floor: never a point guess
    assert estimate.samples == 51
    for sample in (1.0, 100.0) * 10:
        estimate = estimate.learn(Evidence(sample, sample, exact=sample))
        assert 0.05 * estimate.typical <= estimate.spread <= 0.5 * estimate.typical + 1e-9


@settings(max_examples=200, deadline=None)
@given(
    truth=st.floats(min_value=2.0, max_value=1200.0),
    start=st.floats(min_value=0.5, max_value=5000.0),
)
def test_a_wrong_estimate_is_unlearned_from_brackets_alone(truth: float, start: float) -> None:
    # No stamps: each finished job only says it ran between the last look that saw it
    # running and the look that saw it done, looks as the schedule would place them.
    estimate = Estimate.first(start)
    for _ in range(40):
        first_look = estimate.typical
        if truth <= first_look:
            evidence = Evidence(0.0, first_look)  # done at its first look
        else:
            step = max(0.5, 0.15 * truth, estimate.spread)
            evidence = Evidence(truth - step, truth + step)
        estimate = estimate.learn(evidence)
    assert truth / 2.5 <= estimate.typical <= truth * 2.5


def test_an_estimate_far_too_high_is_unlearned_within_a_few_dozen_runs() -> None:
    # Every run is done at its first look (10 s when the estimate said 1,000 s).
    estimate = Estimate(1000.0, 50.0, 30)
    runs = 0
    while estimate.typical > 20.0:
        estimate = estimate.learn(Evidence(0.0, estimate.typical))
        runs += 1
    assert runs <= 25
    assert estimate.too_high
    # A right estimate is done by its first look about half the time: never "too high".
    right = Estimate(10.0, 1.0, 30)
    for index in range(200):
        low = 8.5 if index % 2 else 10.2
        right = right.learn(Evidence(0.0, 10.0) if index % 2 else Evidence(low, low + 1.0))
        assert not right.too_high
    assert 8.0 <= right.typical <= 12.0
