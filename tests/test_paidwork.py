"""The pure decisions about paid work: fetch steps, their bound, breakers, retry paths."""

from __future__ import annotations

import errno
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.engine.decisions import Outcome
from orchestrator.engine.paidwork import (
    CLOSE_ON_SUCCESS,
    NEEDS_A_FIX,
    BreakerKind,
    FetchPolicy,
    FetchProblem,
    RetryPath,
    after_fetch_failure,
    breaker_for_account,
    breaker_for_fetch,
    breaker_for_unknown_model,
    fetch_patience,
    problem_of_os_error,
    retry_path,
)
from orchestrator.store.prices import raised_estimate_ratio
from orchestrator.store.states import JobState

P = FetchProblem
#: Problems that wait: all but those that need a fix, a lost result and an unusable URL
#: (a person's, see tests/test_hostile_decisions.py).
WAITS = [
    p for p in FetchProblem if p not in NEEDS_A_FIX and p not in (P.RESULT_LOST, P.UNUSABLE_URL)
]


@pytest.mark.parametrize("problem", WAITS)
def test_a_passing_problem_waits_with_a_growing_delay(problem: FetchProblem) -> None:
    policy = FetchPolicy(base=5, cap=300, tries=14)
    rng = random.Random(3)
    delays = []
    for failures in range(1, 14):
        step = after_fetch_failure(problem, failures=failures, policy=policy, rng=rng)
        assert step.outcome is Outcome.DOWNLOAD_RETRY
        assert step.delay is not None
        ceiling = min(300.0, 5.0 * 2 ** (failures - 1))
        assert ceiling / 2 <= step.delay <= ceiling  # equal jitter: never a short wait
        delays.append(step.delay)
    last = after_fetch_failure(problem, failures=14, policy=policy, rng=rng)
    assert last.outcome is Outcome.DOWNLOAD_PAUSED
    assert last.delay is None
    assert sum(delays) >= fetch_patience(policy) >= 20 * 60


@pytest.mark.parametrize("problem", sorted(NEEDS_A_FIX))
def test_a_problem_that_needs_a_fix_pauses_at_once(problem: FetchProblem) -> None:
    step = after_fetch_failure(problem, failures=1, policy=FetchPolicy(), rng=random.Random(0))
    assert step == after_fetch_failure(
        problem, failures=1, policy=FetchPolicy(), rng=random.Random(9)
    )
    assert step.outcome is Outcome.DOWNLOAD_PAUSED


def test_a_lost_result_fails_the_job_whatever_the_count() -> None:
    for failures in (1, 7, 99):
        step = after_fetch_failure(
            P.RESULT_LOST, failures=failures, policy=FetchPolicy(), rng=random.Random(0)
        )
        assert step.outcome is Outcome.REMOTE_LOST


@given(
    patience=st.floats(min_value=0.05, max_value=86_400),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_the_total_wait_before_a_pause_is_at_least_the_patience(patience: float, seed: int) -> None:
    """The bound a user relies on: an outage shorter than --fetch-patience never pauses a
    paid job, and no single wait is longer than a quarter of the patience."""
    policy = FetchPolicy.lasting(patience)
    rng = random.Random(seed)
    waited, failures = 0.0, 0
    while True:
        failures += 1
        step = after_fetch_failure(P.HOST_DOWN, failures=failures, policy=policy, rng=rng)
        if step.outcome is Outcome.DOWNLOAD_PAUSED:
            break
        assert step.delay is not None
        assert step.delay <= patience / 4 + 1e-9
        waited += step.delay
    assert waited >= patience * (1 - 1e-9)
    assert failures == policy.tries


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        (errno.ENOSPC, P.DISK_FULL),
        (errno.EDQUOT, P.DISK_FULL),
        (errno.EACCES, P.NOT_WRITABLE),
        (errno.EROFS, P.NOT_WRITABLE),
        (errno.ENOTDIR, P.NOT_WRITABLE),
        (errno.EEXIST, P.NOT_WRITABLE),
        (errno.ENAMETOOLONG, P.NAME_TOO_LONG),
        (errno.EIO, P.WRITE_FAILED),
    ],
)
def test_os_errors_are_classified(code: int, problem: FetchProblem) -> None:
    assert problem_of_os_error(OSError(code, "x")) is problem


@pytest.mark.parametrize(
    ("problem", "kind"),
    [
        (P.HOST_NOT_ALLOWED, BreakerKind.HOST_NOT_ALLOWED),
        (P.DISK_FULL, BreakerKind.DISK_FULL),
        (P.NOT_WRITABLE, BreakerKind.NOT_WRITABLE),
        (P.HOST_DOWN, None),
        (P.BAD_FILE, None),
        (P.TOO_BIG, None),
        (P.EXPIRED, None),
        (P.RESULT_LOST, None),
    ],
)
def test_which_fetch_problems_trip_a_breaker(problem: FetchProblem, kind: str | None) -> None:
    breaker = breaker_for_fetch(problem, "why", host="files.example", folder="out/b")
    assert (breaker.kind if breaker else None) == kind
    if breaker is not None:
        assert breaker.fix
        assert str(breaker).startswith(breaker.problem + ". Fix: ")


def test_breaker_messages_say_what_to_fix() -> None:
    host = breaker_for_fetch(P.HOST_NOT_ALLOWED, "not allowed", host="localhost", folder="o")
    assert host is not None
    assert host.host == "localhost"
    assert "--trust-host localhost" in host.fix
    assert "ORCHESTRATOR_TRUST_HOST=localhost" in host.fix
    disk = breaker_for_fetch(P.DISK_FULL, "[Errno 28]", host=None, folder="out/b")
    assert disk is not None
    assert "free space on the disk holding out/b" in disk.fix
    model = breaker_for_unknown_model("a/b", "HTTP 400 (400001)")
    assert model.kind is BreakerKind.UNKNOWN_MODEL
    assert "a/b" in model.problem
    assert "RUNCOMFY_API_TOKEN" in breaker_for_account(BreakerKind.AUTH, "401").fix
    assert "funds" in breaker_for_account(BreakerKind.BALANCE, "402").fix
    assert {BreakerKind.DISK_FULL, BreakerKind.NOT_WRITABLE} == CLOSE_ON_SUCCESS


@pytest.mark.parametrize(
    ("state", "outcome", "reroll", "path"),
    [
        (JobState.FETCH_PAUSED, "succeeded", False, RetryPath.FETCH_AGAIN),
        (JobState.FETCH_WAIT, "succeeded", False, RetryPath.FETCH_AGAIN),
        (JobState.FETCH_PAUSED, "succeeded", True, RetryPath.REROLL),
        (JobState.FAILED, "succeeded", False, RetryPath.FETCH_AGAIN),  # an older version
        (JobState.FAILED, "result_lost", False, RetryPath.NEEDS_REROLL),
        (JobState.FAILED, "result_lost", True, RetryPath.REROLL),
        (JobState.FAILED, "failed", False, RetryPath.NEW_ATTEMPT),
        (JobState.FAILED, "failed", True, RetryPath.NEW_ATTEMPT),
        (JobState.FAILED, None, False, RetryPath.NEW_ATTEMPT),  # never sent
        (JobState.CANCELLED, "cancelled", False, RetryPath.NEW_ATTEMPT),
    ],
)
def test_retry_paths(state: JobState, outcome: str | None, reroll: bool, path: RetryPath) -> None:
    assert retry_path(state, outcome, reroll=reroll) is path


@pytest.mark.parametrize(
    ("estimate", "actual", "ratio"),
    [
        (0.5, 0.75, 1.5),
        (0.05, 0.5, 10.0),
        (0.5, 0.5, None),
        (0.5, 0.3, None),
        (None, 1, None),
        (0.0, 1.0, None),
        (0.5, None, None),
    ],
)
def test_estimates_are_only_ever_raised(
    estimate: float | None, actual: float | None, ratio: float | None
) -> None:
    assert raised_estimate_ratio(estimate, actual) == (
        pytest.approx(ratio) if ratio is not None else None
    )
