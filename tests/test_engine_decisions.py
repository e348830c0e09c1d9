"""The engine's pure decisions: the transition table and retry delays (poll schedule:
test_poll_schedule.py; capacity: test_capacity.py)."""

from __future__ import annotations

import itertools
import random

import pytest

from orchestrator.engine.decisions import (
    TABLE,
    InvalidTransition,
    Outcome,
    next_state,
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
    # Rendered, with an output URL nothing can download: a person looks (issue 15).
    (S.SUBMITTED, O.RESULT_UNUSABLE): S.NEEDS_RECONCILE,
    (S.SUBMITTED, O.CANCELLED): S.CANCELLED,
    (S.SUBMITTED, O.CRASH_RECOVERED): S.SUBMITTED,
    (S.SUBMITTED, O.DISCARDED): S.CANCELLED,
    (S.DOWNLOADING, O.DOWNLOADED): S.SUCCEEDED,
    # A rendered job is paid for: a failed download waits or pauses, it never fails.
    (S.DOWNLOADING, O.DOWNLOAD_RETRY): S.FETCH_WAIT,
    (S.DOWNLOADING, O.DOWNLOAD_PAUSED): S.FETCH_PAUSED,
    (S.DOWNLOADING, O.REMOTE_LOST): S.FAILED,
    (S.DOWNLOADING, O.RESULT_UNUSABLE): S.NEEDS_RECONCILE,
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
    lost result fails it, only a user's discard gives it up, and only an output URL that
    cannot be downloaded hands it to a person (whose ``reconcile --resubmit`` alone
    queues it again)."""
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
        if target == S.NEEDS_RECONCILE:
            assert outcome == O.RESULT_UNUSABLE
        allowed = {S.SUCCEEDED, S.PENDING, S.FAILED, S.CANCELLED, S.NEEDS_RECONCILE}
        assert target in rendered | allowed
    # A rendered result is never re-rolled on its own, however unusable its output.
    assert EXPECTED[(S.SUBMITTED, O.RESULT_UNUSABLE)] == S.NEEDS_RECONCILE
    assert {o for (s, o), t in EXPECTED.items() if s == S.NEEDS_RECONCILE and t == S.PENDING} == {
        O.RESUBMIT
    }


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


def test_retry_after_is_a_floor_even_past_the_cap_up_to_its_own_cap() -> None:
    for seed in range(100):
        rng = random.Random(seed)
        assert retry_delay(1, base=2, cap=300, retry_after=30, rng=rng) >= 30
        assert retry_delay(3, base=2, cap=5, retry_after=200, rng=rng) == 200
        # A Retry-After past its cap (300 s unless told) waits the cap, no longer.
        assert retry_delay(3, base=2, cap=5, retry_after=500, rng=rng) == 300
        assert retry_delay(3, base=2, cap=5, retry_after=500, retry_after_cap=50, rng=rng) == 50
        # A Retry-After shorter than the jittered delay does not shorten it: the delay is
        # the one drawn without any Retry-After, from the same seed, within the cap.
        jittered = retry_delay(6, base=100, cap=100, rng=random.Random(seed))
        floored = retry_delay(6, base=100, cap=100, retry_after=0, rng=random.Random(seed))
        assert floored == jittered
        assert 0.0 <= floored <= 100


def test_retry_delay_survives_very_many_failures() -> None:
    """A request that keeps failing for a whole night must not overflow the exponent."""
    for failures in (64, 1100, 10**6):
        delay = retry_delay(failures, base=2.0, cap=60.0, rng=random.Random(failures))
        assert 0.0 <= delay <= 60.0
