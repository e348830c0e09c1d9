"""The engine's pure decisions: the transition table, retry delays, poll intervals, limits."""

from __future__ import annotations

import itertools
import random

import pytest

from orchestrator.engine.decisions import (
    TABLE,
    AdaptiveLimit,
    InvalidTransition,
    Outcome,
    PollPolicy,
    RunTimes,
    next_state,
    poll_interval,
    retry_delay,
)
from orchestrator.store.states import TERMINAL, JobState

S, O = JobState, Outcome  # noqa: E741 - a table reads better with short names
REROLL = "reroll"  # RETRY_WAIT while paid attempts remain, else FAILED
#: Written out independently of the module's TABLE: the lifecycle of design.md section 4.
EXPECTED: dict[tuple[JobState, Outcome], JobState | str] = {
    (S.PENDING, O.CLAIMED): S.SUBMITTING,
    (S.PENDING, O.CANCELLED): S.CANCELLED,
    (S.SUBMITTING, O.ACCEPTED): S.SUBMITTED,
    (S.SUBMITTING, O.NOT_SENT): S.RETRY_WAIT,
    (S.SUBMITTING, O.REJECTED): S.FAILED,
    (S.SUBMITTING, O.AMBIGUOUS): S.NEEDS_RECONCILE,
    (S.SUBMITTING, O.HELD): S.PENDING,
    (S.SUBMITTING, O.CRASH_RECOVERED): S.NEEDS_RECONCILE,
    (S.SUBMITTED, O.RUNNING): S.SUBMITTED,
    (S.SUBMITTED, O.REMOTE_SUCCEEDED): S.DOWNLOADING,
    (S.SUBMITTED, O.REMOTE_FAILED): REROLL,
    (S.SUBMITTED, O.REMOTE_CANCELLED): S.CANCELLED,
    (S.SUBMITTED, O.REMOTE_LOST): S.NEEDS_RECONCILE,
    (S.SUBMITTED, O.CANCELLED): S.CANCELLED,
    (S.SUBMITTED, O.CRASH_RECOVERED): S.SUBMITTED,
    (S.SUBMITTED, O.DISCARDED): S.CANCELLED,
    (S.DOWNLOADING, O.DOWNLOADED): S.SUCCEEDED,
    # A rendered job is paid for: a failed download waits or pauses, it never fails.
    (S.DOWNLOADING, O.DOWNLOAD_RETRY): S.FETCH_WAIT,
    (S.DOWNLOADING, O.DOWNLOAD_PAUSED): S.FETCH_PAUSED,
    (S.DOWNLOADING, O.REMOTE_LOST): S.FAILED,
    (S.DOWNLOADING, O.CRASH_RECOVERED): S.DOWNLOADING,
    (S.FETCH_WAIT, O.FETCH_DUE): S.DOWNLOADING,
    (S.FETCH_WAIT, O.FETCH_RESUMED): S.FETCH_WAIT,
    (S.FETCH_WAIT, O.REROLL_REQUESTED): S.PENDING,
    (S.FETCH_WAIT, O.DISCARDED): S.CANCELLED,
    (S.FETCH_PAUSED, O.FETCH_RESUMED): S.FETCH_WAIT,
    (S.FETCH_PAUSED, O.REROLL_REQUESTED): S.PENDING,
    (S.FETCH_PAUSED, O.DISCARDED): S.CANCELLED,
    (S.RETRY_WAIT, O.RETRY_DUE): S.PENDING,
    (S.RETRY_WAIT, O.CANCELLED): S.CANCELLED,
    (S.NEEDS_RECONCILE, O.RESUBMIT): S.PENDING,
    (S.NEEDS_RECONCILE, O.CANCELLED): S.CANCELLED,
    (S.FAILED, O.RETRY_REQUESTED): S.PENDING,
    (S.FAILED, O.FETCH_RESUMED): S.FETCH_WAIT,
    (S.FAILED, O.REROLL_REQUESTED): S.PENDING,
    (S.CANCELLED, O.RETRY_REQUESTED): S.PENDING,
}
PAIRS = list(itertools.product(JobState, Outcome))
USER_REQUESTS = {O.RETRY_REQUESTED, O.FETCH_RESUMED, O.REROLL_REQUESTED}


def test_the_table_holds_exactly_the_expected_pairs() -> None:
    assert set(TABLE) == set(EXPECTED)


@pytest.mark.parametrize(("state", "outcome"), PAIRS, ids=[f"{s}-{o}" for s, o in PAIRS])
def test_every_state_outcome_pair(state: JobState, outcome: Outcome) -> None:
    expected = EXPECTED.get((state, outcome))
    if expected is None:
        with pytest.raises(InvalidTransition, match=f"from '{state.value}' on '{outcome.value}'"):
            next_state(state, outcome, paid_attempts=1, max_attempts=3)
    elif expected == REROLL:
        assert next_state(state, outcome, paid_attempts=1, max_attempts=3) == S.RETRY_WAIT
        assert next_state(state, outcome, paid_attempts=3, max_attempts=3) == S.FAILED
    else:
        # Plain rules ignore the attempt counts.
        for paid, most in ((0, 1), (5, 5), (9, 2)):
            assert next_state(state, outcome, paid_attempts=paid, max_attempts=most) == expected


@pytest.mark.parametrize(
    ("paid", "most", "state"),
    [
        (1, 1, S.FAILED),
        (1, 2, S.RETRY_WAIT),
        (2, 2, S.FAILED),
        (3, 2, S.FAILED),
        (0, 1, S.RETRY_WAIT),
    ],
)
def test_a_remote_failure_is_rerolled_until_max_attempts(
    paid: int, most: int, state: JobState
) -> None:
    assert next_state(S.SUBMITTED, O.REMOTE_FAILED, paid_attempts=paid, max_attempts=most) == state


def test_guarantees_of_the_table() -> None:
    """No silent double payment: an uncertain submit never goes back to the queue by itself;
    terminal states only leave on a user's request; succeeded never leaves."""
    for (state, outcome), target in EXPECTED.items():
        if outcome in (O.AMBIGUOUS, O.CRASH_RECOVERED) and state == S.SUBMITTING:
            assert target == S.NEEDS_RECONCILE
        if state in TERMINAL:
            assert outcome in USER_REQUESTS
        if state == S.NEEDS_RECONCILE and target == S.PENDING:
            assert outcome == O.RESUBMIT
    assert not [pair for pair in EXPECTED if pair[0] == S.SUCCEEDED]


def test_a_rendered_job_is_only_fetched_never_paid_again_by_itself() -> None:
    """Rule 1: once RunComfy rendered a job, only a user's re-roll submits it again, only a
    lost result fails it, and only a user's discard gives it up."""
    rendered = {S.DOWNLOADING, S.FETCH_WAIT, S.FETCH_PAUSED}
    for (state, outcome), target in EXPECTED.items():
        if state not in rendered:
            continue
        if target == S.PENDING:
            assert outcome == O.REROLL_REQUESTED
        if target == S.FAILED:
            assert outcome == O.REMOTE_LOST
        if target == S.CANCELLED:
            assert outcome == O.DISCARDED
        assert target in rendered | {S.SUCCEEDED, S.PENDING, S.FAILED, S.CANCELLED}


# -- retry delays -----------------------------------------------------------------------------


@pytest.mark.parametrize("failures", [1, 2, 3, 5, 8, 12])
def test_retry_delay_is_full_jitter_within_the_exponential_ceiling(failures: int) -> None:
    base, cap = 2.0, 60.0
    ceiling = min(cap, base * 2 ** (failures - 1))
    delays = [retry_delay(failures, base=base, cap=cap, rng=random.Random(s)) for s in range(300)]
    assert all(0.0 <= d <= ceiling for d in delays)
    # Full jitter: spread over the whole range, not clustered at the ceiling.
    assert min(delays) < ceiling * 0.05
    assert max(delays) > ceiling * 0.95
    assert len(set(delays)) == len(delays)


def test_retry_delay_counts_from_one() -> None:
    for seed in range(50):
        assert retry_delay(0, base=1.0, cap=10, rng=random.Random(seed)) <= 1.0
        assert retry_delay(1, base=1.0, cap=10, rng=random.Random(seed)) <= 1.0


def test_retry_delay_is_reproducible_with_a_seeded_rng() -> None:
    first = retry_delay(4, base=2, cap=300, rng=random.Random(42))
    assert first == retry_delay(4, base=2, cap=300, rng=random.Random(42))


def test_retry_after_is_a_floor_even_past_the_cap() -> None:
    for seed in range(100):
        rng = random.Random(seed)
        assert retry_delay(1, base=2, cap=300, retry_after=30, rng=rng) >= 30
        assert retry_delay(3, base=2, cap=5, retry_after=500, rng=rng) == 500
        # A Retry-After shorter than the jittered delay does not shorten it.
        assert retry_delay(6, base=100, cap=100, retry_after=0, rng=rng) >= 0


def test_retry_delay_survives_very_many_failures() -> None:
    """A request that keeps failing for a whole night must not overflow the exponent."""
    for failures in (64, 1100, 10**6):
        delay = retry_delay(failures, base=2.0, cap=60.0, rng=random.Random(failures))
        assert 0.0 <= delay <= 60.0


# -- poll intervals ---------------------------------------------------------------------------


def interval(
    status: str | None,
    *,
    running_for: float = 0.0,
    typical: float | None = 40.0,
    position: int | None = None,
    policy: PollPolicy | None = None,
    seed: int = 0,
) -> float:
    return poll_interval(
        status,
        running_for=running_for,
        typical_run_time=typical,
        queue_position=position,
        policy=policy or PollPolicy(minimum=1, maximum=60, first_guess=60, jitter=0.0),
        rng=random.Random(seed),
    )


def test_queued_jobs_are_polled_less_often_than_running_ones() -> None:
    fresh = interval("in_progress", running_for=0)
    late = interval("in_progress", running_for=30)
    overdue = interval("in_progress", running_for=80)
    for position in (2, 3, 4, 9):
        assert interval("in_queue", position=position) >= fresh
    assert interval("in_queue", position=1) > late > overdue
    assert interval("in_queue", position=3) > interval("in_queue", position=2)
    assert interval("in_queue", position=2) > interval("in_queue", position=1)
    # The place in the queue counts up to four places; an unknown place counts as one.
    assert interval("in_queue", position=4) == interval("in_queue", position=40)
    assert interval("in_queue", position=None) == interval("in_queue", position=1)


def test_running_jobs_are_polled_by_their_expected_end_then_often() -> None:
    typical = 40.0
    previous = None
    for running_for in (0, 10, 20, 30, 38, 40, 60, 400):
        value = interval("in_progress", running_for=running_for, typical=typical)
        # Never later than the expected finish, and polled often once overdue.
        assert value <= max(typical - running_for, typical / 10)
        if running_for >= typical:
            assert value <= typical / 10
        if previous is not None:
            assert value <= previous
        previous = value
    # A model never seen finishing is assumed to take first_guess seconds.
    assert interval("in_progress", typical=None) == interval("in_progress", typical=60)
    assert interval(None, typical=None) == interval("in_progress", typical=60)
    assert interval("in_progress", typical=None) > interval("in_progress", typical=10)


def test_poll_intervals_respect_the_policy_bounds() -> None:
    policy = PollPolicy(minimum=2, maximum=10, first_guess=60, jitter=0.0)
    assert interval("in_progress", typical=1000, policy=policy) == 10
    assert interval("in_progress", typical=1, running_for=5, policy=policy) == 2
    assert interval("in_queue", position=4, typical=1000, policy=policy) == 10


@pytest.mark.parametrize("status", ["in_queue", "in_progress", "unknown"])
def test_jittered_poll_intervals_stay_within_the_bounds(status: str) -> None:
    policy = PollPolicy(minimum=0.5, maximum=8.0, first_guess=20, jitter=0.2)
    seen = set()
    for seed, (typical, running_for, position) in enumerate(
        itertools.product((None, 0.1, 5, 20, 500), (0, 3, 50), (None, 1, 2, 9))
    ):
        value = interval(
            status,
            typical=typical,
            running_for=running_for,
            position=position,
            policy=policy,
            seed=seed,
        )
        assert policy.minimum <= value <= policy.maximum
        seen.add(round(value, 6))
    assert len(seen) > 10


@pytest.mark.parametrize(("status", "position"), [("in_progress", None), ("in_queue", 2)])
def test_jitter_spreads_polls_of_jobs_submitted_together(status: str, position: int | None) -> None:
    steady = interval(status, typical=40, position=position)
    policy = PollPolicy(minimum=1, maximum=60, first_guess=60, jitter=0.2)
    values = [
        interval(status, typical=40, position=position, policy=policy, seed=s) for s in range(200)
    ]
    assert all(abs(v - steady) <= steady * 0.2 for v in values)  # at most the jitter share
    assert len({round(v, 9) for v in values}) == len(values)
    assert min(values) < steady < max(values)


# -- the adaptive limit -----------------------------------------------------------------------


def test_a_throttle_halves_the_limit_down_to_the_floor() -> None:
    limit = AdaptiveLimit(8.0, 8)
    values = []
    for _ in range(6):
        limit = limit.throttled()
        values.append(limit.value)
    assert values == [4, 2, 1, 1, 1, 1]
    assert limit.current >= limit.floor
    floored = AdaptiveLimit(10.0, 10, floor=3)
    for _ in range(5):
        floored = floored.throttled()
    assert floored.value == 3 and floored.current == 3.0


def test_successes_grow_the_limit_additively_up_to_the_ceiling() -> None:
    limit = AdaptiveLimit(1.0, 6)
    history = [limit.value]
    for _ in range(60):
        before = limit.current
        limit = limit.succeeded()
        assert 0 < limit.current - before <= 1.0 or limit.current == 6.0
        history.append(limit.value)
    assert history == sorted(history)  # never shrinks on success
    assert history[1] == 2  # from 1: one success regrows one slot
    assert max(history) == 6 and limit.current == 6.0
    # Additive: growing from 4 to 5 takes about four successes, not one.
    four = AdaptiveLimit(4.0, 8)
    steps = 0
    while four.value < 5:
        four = four.succeeded()
        steps += 1
    assert steps >= 4


def test_the_limit_value_is_clamped() -> None:
    assert AdaptiveLimit(100.0, 8).value == 8
    assert AdaptiveLimit(0.2, 8).value == 1
    assert AdaptiveLimit(5.9, 8).value == 5


# -- run times --------------------------------------------------------------------------------


def test_run_times_are_an_exponentially_weighted_average_per_model() -> None:
    times = RunTimes()
    assert times.typical("a") is None
    first = times.observed("a", 100.0)
    assert first.typical("a") == 100.0
    assert times.typical("a") is None  # immutable
    second = first.observed("a", 200.0)
    assert second.typical("a") == pytest.approx(130.0)  # 100 + 0.3 * (200 - 100)
    both = second.observed("b", 10.0)
    assert both.typical("b") == 10.0 and both.typical("a") == pytest.approx(130.0)
    assert [model for model, _ in both.averages] == ["a", "b"]
    heavy = RunTimes(weight=1.0).observed("a", 5.0).observed("a", 9.0)
    assert heavy.typical("a") == 9.0
