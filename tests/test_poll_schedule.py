"""The poll schedule (engine/decisions.py poll_delay): a table of situations, and the
promised bound on how late a finished job is noticed, whatever the estimate."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.engine.decisions import PollPolicy, poll_delay

POLICY = PollPolicy(minimum=2.0, maximum=60.0, jitter=0.0)
ALPHA, BETA = POLICY.overdue_fraction, POLICY.probe_growth


def delay(
    status: str | None,
    *,
    elapsed: float = 0.0,
    expected: tuple[float, float] | None = None,
    queue_wait: float | None = None,
    queued_for: float = 0.0,
    policy: PollPolicy = POLICY,
    seed: int = 0,
) -> float:
    return poll_delay(
        status,
        elapsed=elapsed,
        expected=expected,
        queue_wait=queue_wait,
        queued_for=queued_for,
        policy=policy,
        rng=random.Random(seed),
    )


@pytest.mark.parametrize(
    ("situation", "kwargs", "wanted"),
    [
        # A model never seen finishing: a short first look, then growing by half.
        ("no history, just submitted", {"status": None}, 2.0),
        ("no history, running 10 s", {"status": "in_progress", "elapsed": 10.0}, 5.0),
        ("no history, running 1 s", {"status": "in_progress", "elapsed": 1.0}, 2.0),
        ("no history, running 400 s", {"status": "in_progress", "elapsed": 400.0}, 60.0),
        (
            "history of long runs: one first look",
            {"status": None, "expected": (450.0, 750.0)},
            450.0,
        ),
        # With history: the first look when the key's runs typically finish.
        ("history, just submitted", {"status": None, "expected": (30.0, 50.0)}, 30.0),
        (
            "history, running 10 s",
            {"status": "in_progress", "elapsed": 10.0, "expected": (30.0, 50.0)},
            20.0,
        ),
        # Past the low end: every overdue fraction of the elapsed time, hitting the high end.
        (
            "still running when typical: a look at the late end",
            {"status": "in_progress", "elapsed": 30.0, "expected": (30.0, 50.0)},
            20.0,
        ),
        (
            "a narrow spread",
            {"status": "in_progress", "elapsed": 30.0, "expected": (30.0, 32.0)},
            2.0,
        ),
        (
            "just before the high end",
            {"status": "in_progress", "elapsed": 47.0, "expected": (30.0, 50.0)},
            3.0,
        ),
        (
            "overdue",
            {"status": "in_progress", "elapsed": 100.0, "expected": (30.0, 50.0)},
            ALPHA * 100.0,
        ),
        (
            "long overdue: capped",
            {"status": "in_progress", "elapsed": 1000.0, "expected": (30.0, 50.0)},
            60.0,
        ),
        (
            "a tiny estimate: the floor",
            {"status": "in_progress", "elapsed": 3.0, "expected": (1.0, 2.0)},
            2.0,
        ),
        # Queued: the wait from its place and the free rate, then the first run look.
        (
            "queued, rate known",
            {"status": "in_queue", "queue_wait": 12.0, "expected": (30.0, 50.0)},
            42.0,
        ),
        ("queued, rate known, no history", {"status": "in_queue", "queue_wait": 12.0}, 14.0),
        ("queued, no rate yet", {"status": "in_queue", "queued_for": 20.0}, 10.0),
        ("queued, no rate, first look", {"status": "in_queue"}, 2.0),
        ("queued a long wait: capped", {"status": "in_queue", "queue_wait": 500.0}, 62.0),
        # Submitted into a full account: it starts after the expected wait.
        (
            "submitted behind others",
            {"status": None, "queue_wait": 8.0, "expected": (30.0, 50.0)},
            38.0,
        ),
    ],
)
def test_the_schedule_in_each_situation(
    situation: str, kwargs: dict[str, object], wanted: float
) -> None:
    status = kwargs.pop("status")
    assert delay(status, **kwargs) == pytest.approx(wanted), situation  # type: ignore[arg-type]


def test_a_fixed_policy_ignores_everything_else() -> None:
    fixed = PollPolicy(fixed=2.0)
    for status in (None, "in_queue", "in_progress"):
        assert delay(status, elapsed=500, expected=(1, 2), policy=fixed) == 2.0
    assert fixed.scaled(0.5).fixed == 1.0
    assert PollPolicy().scaled(0.5).fixed is None


def test_jitter_only_shortens_a_wait_and_spreads_jobs_submitted_together() -> None:
    jittered = PollPolicy(minimum=2.0, maximum=60.0, jitter=0.2)
    steady = delay("in_progress", expected=(30.0, 50.0))
    values = [
        delay("in_progress", expected=(30.0, 50.0), policy=jittered, seed=s) for s in range(200)
    ]
    assert all(0.8 * steady <= v <= steady for v in values)
    assert len({round(v, 9) for v in values}) == len(values)


def looks_until_noticed(
    run_time: float, expected: tuple[float, float] | None, policy: PollPolicy, seed: int
) -> tuple[float, int]:
    """Replay one job's looks against a true run time: (latency, looks)."""
    rng = random.Random(seed)
    at = poll_delay(None, elapsed=0.0, expected=expected, policy=policy, rng=rng)
    looks = 1
    while at < run_time:
        at += poll_delay("in_progress", elapsed=at, expected=expected, policy=policy, rng=rng)
        looks += 1
        assert looks < 10_000
    return at - run_time, looks


def look_bound(start: float, end: float, growth: float, policy: PollPolicy) -> float:
    """Looks needed to get from ``start`` to ``end`` when each step is at least the floor
    and ``growth`` of the time so far (jitter shrinks a step by up to its share), and at
    most ``maximum``: the floor phase, the geometric phase, the capped phase."""
    shrunk = growth * (1 - policy.jitter)
    floor_phase = policy.minimum / shrunk / policy.minimum + 1
    geometric = math.log(max(end, start) / max(start, 1e-9)) / math.log(1 + shrunk) + 1
    capped = end / policy.maximum + 1
    return floor_phase + geometric + capped + 1


REAL = PollPolicy(minimum=2.0, maximum=60.0, jitter=0.1)


@settings(max_examples=400, deadline=None)
@given(
    run_time=st.floats(min_value=2.0, max_value=1200.0),
    estimate=st.one_of(st.none(), st.floats(min_value=0.5, max_value=5000.0)),
    spread=st.floats(min_value=0.0, max_value=0.5),
    seed=st.integers(min_value=0, max_value=2**16),
)
@pytest.mark.slow
def test_a_finished_job_is_noticed_within_the_bound_whatever_the_estimate(
    run_time: float, estimate: float | None, spread: float, seed: int
) -> None:
    policy = REAL
    expected = None if estimate is None else (estimate * (1 - spread), estimate * (1 + spread))
    latency, looks = looks_until_noticed(run_time, expected, policy, seed)
    assert latency >= 0
    if expected is None:
        # Probing: within max(floor, probe_growth x T), never more than the poll maximum.
        assert latency <= min(policy.maximum, max(policy.minimum, BETA * run_time)) + 1e-6
        assert looks <= look_bound(policy.minimum, run_time, BETA, policy)
        return
    finish, late = expected
    # A job done before the first look waits for it (the cost of an estimate that was too
    # high); one done before the late end waits at most the spread; later ones at most
    # max(floor, overdue_fraction x T); never more than the poll maximum once late.
    after = min(policy.maximum, max(policy.minimum, ALPHA * run_time))
    spacing = late - finish * (1 - policy.jitter)  # the first look to the late end
    assert latency <= max(finish - run_time, spacing, after) + 1e-6
    if run_time <= finish * (1 - policy.jitter):
        assert looks == 1
    else:
        first = max(policy.minimum, finish * (1 - policy.jitter))
        assert looks <= 2 + look_bound(first, run_time, ALPHA, policy)


@settings(max_examples=200, deadline=None)
@given(
    run_time=st.floats(min_value=2.0, max_value=1200.0),
    error=st.floats(min_value=0.9, max_value=1.1),
    seed=st.integers(min_value=0, max_value=2**16),
)
@pytest.mark.slow
def test_a_good_estimate_costs_few_looks(run_time: float, error: float, seed: int) -> None:
    # An estimate within 10% of the truth, with the spread a key starts with (25%):
    # a handful of looks, and a small share of the run waited.
    typical = run_time * error
    expected = (typical, 1.25 * typical)
    latency, looks = looks_until_noticed(run_time, expected, REAL, seed)
    # The typical finish, the late end, and a jittered look or two (steps are never longer
    # than the poll maximum, so a wide spread of long runs takes a few more).
    assert looks <= 3 + math.ceil((expected[1] - expected[0]) / REAL.maximum)
    spacing = expected[1] - typical * (1 - REAL.jitter)  # first look to the late end
    assert latency <= max(REAL.minimum, spacing, ALPHA * run_time) + 1e-6
