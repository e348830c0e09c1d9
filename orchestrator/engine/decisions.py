"""Pure decisions: the next state, the retry delay, the poll interval, the concurrency limit.

Nothing here awaits, reads a clock or touches the store; the pool asks, then applies the
answer in one short transaction.

>>> next_state(JobState.SUBMITTING, Outcome.AMBIGUOUS)
<JobState.NEEDS_RECONCILE: 'needs_reconcile'>
>>> next_state(JobState.SUBMITTED, Outcome.REMOTE_FAILED, paid_attempts=1, max_attempts=3)
<JobState.RETRY_WAIT: 'retry_wait'>
>>> next_state(JobState.SUBMITTED, Outcome.REMOTE_FAILED, paid_attempts=3, max_attempts=3)
<JobState.FAILED: 'failed'>
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from orchestrator.store.states import JobState


class Outcome(StrEnum):
    """What just happened to a job."""

    CLAIMED = "claimed"  # the submitter took it (intent written before the POST)
    ACCEPTED = "accepted"  # the POST answered with a request id
    NOT_SENT = "not_sent"  # connect error or 429: provably not submitted, safe to retry
    REJECTED = "rejected"  # a clean 4xx: the input is wrong, retrying cannot help
    AMBIGUOUS = "ambiguous"  # the POST may have created the job: never resubmit blindly
    HELD = "held"  # auth failure, empty balance or spend cap: back to the queue, unpaid
    RUNNING = "running"  # /status says in_queue or in_progress
    REMOTE_SUCCEEDED = "remote_succeeded"  # /result: completed with a video URL
    REMOTE_FAILED = "remote_failed"  # /result: failed, or completed without output
    REMOTE_CANCELLED = "remote_cancelled"
    REMOTE_LOST = "remote_lost"  # 404001 for our request id: expired or unknown
    DOWNLOADED = "downloaded"  # file verified and renamed into place
    DOWNLOAD_RETRY = "download_retry"  # file host down, disk full ...: fetch again later
    DOWNLOAD_PAUSED = "download_paused"  # patience ran out, or a setting must change first
    FETCH_DUE = "fetch_due"  # a fetch_wait job's next_attempt_at has passed: fetch it now
    FETCH_RESUMED = "fetch_resumed"  # a re-run or a user's retry: fetch again, free
    REROLL_REQUESTED = "reroll_requested"  # a user pays again for a rendered job (--reroll)
    DISCARDED = "discarded"  # a user gave up a paid job (cancel --discard)
    RETRY_DUE = "retry_due"  # next_attempt_at has passed
    CANCELLED = "cancelled"  # a user cancelled it (locally, or remotely while queued)
    CRASH_RECOVERED = "crash_recovered"  # found mid-flight after a restart
    RESUBMIT = "resubmit"  # a user approved a new paid attempt of a needs_reconcile job
    RETRY_REQUESTED = "retry_requested"  # a user re-queued a failed job


class InvalidTransition(ValueError):
    """An outcome that makes no sense for the job's state (a bug, never user input)."""


Rule = JobState | Callable[[int, int], JobState]


def _reroll(paid_attempts: int, max_attempts: int) -> JobState:
    """A remote failure is re-rolled while paid attempts remain, then it is final."""
    return JobState.RETRY_WAIT if paid_attempts < max_attempts else JobState.FAILED


S = JobState
O = Outcome  # noqa: E741 - a table reads better with short names
TABLE: dict[tuple[JobState, Outcome], Rule] = {
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
    (S.SUBMITTED, O.REMOTE_FAILED): _reroll,
    (S.SUBMITTED, O.REMOTE_CANCELLED): S.CANCELLED,
    (S.SUBMITTED, O.REMOTE_LOST): S.NEEDS_RECONCILE,
    (S.SUBMITTED, O.CANCELLED): S.CANCELLED,
    (S.SUBMITTED, O.CRASH_RECOVERED): S.SUBMITTED,
    (S.SUBMITTED, O.DISCARDED): S.CANCELLED,
    (S.DOWNLOADING, O.DOWNLOADED): S.SUCCEEDED,
    # Paid work is fetched, never paid again: a failed download waits, it never fails.
    (S.DOWNLOADING, O.DOWNLOAD_RETRY): S.FETCH_WAIT,
    (S.DOWNLOADING, O.DOWNLOAD_PAUSED): S.FETCH_PAUSED,
    (S.DOWNLOADING, O.REMOTE_LOST): S.FAILED,  # RunComfy no longer has the result
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
    (S.FAILED, O.FETCH_RESUMED): S.FETCH_WAIT,  # a rendered job an older version failed
    (S.FAILED, O.REROLL_REQUESTED): S.PENDING,
    (S.CANCELLED, O.RETRY_REQUESTED): S.PENDING,
}


def next_state(
    state: JobState, outcome: Outcome, *, paid_attempts: int = 0, max_attempts: int = 1
) -> JobState:
    """The state a job moves to; raises :class:`InvalidTransition` for an unknown pair."""
    rule = TABLE.get((state, outcome))
    if rule is None:
        raise InvalidTransition(f"no transition from {state.value!r} on {outcome.value!r}")
    if isinstance(rule, JobState):
        return rule
    return rule(paid_attempts, max_attempts)


def retry_delay(
    failures: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random,
) -> float:
    """Seconds to wait before try number ``failures + 1``: exponential, full jitter, capped.

    A server's ``Retry-After`` is a floor: never retry sooner than it asked, even past the
    cap. ``failures`` counts from 1.

    >>> retry_delay(3, base=2, cap=300, rng=random.Random(1)) <= 8
    True
    >>> retry_delay(1, base=2, cap=300, retry_after=30, rng=random.Random(1)) >= 30
    True
    """
    # The exponent is bounded: 2**1024 overflows a float after a night of failed polls.
    ceiling = min(cap, base * 2 ** min(max(0, failures - 1), 64))
    delay = rng.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Bounds for polling, in seconds."""

    minimum: float = 2.0
    maximum: float = 60.0
    first_guess: float = 60.0  # run time assumed for a model never seen finishing
    jitter: float = 0.2


def poll_interval(
    remote_status: str | None,
    *,
    running_for: float,
    typical_run_time: float | None,
    queue_position: int | None,
    policy: PollPolicy,
    rng: random.Random,
) -> float:
    """How long until a job's next status poll.

    While running, poll when the model usually finishes, then often once it is overdue;
    while queued, slower, scaled by the place in the queue. Jitter spreads polls of jobs
    submitted together.

    >>> policy = PollPolicy(minimum=1, maximum=60)
    >>> poll_interval("in_progress", running_for=0, typical_run_time=40,
    ...               queue_position=None, policy=policy, rng=random.Random(0)) > 10
    True
    """
    typical = typical_run_time or policy.first_guess
    if remote_status == "in_queue":
        places = max(1, queue_position or 1)
        wanted = typical * min(places, 4) / 2
        spread = wanted * policy.jitter
    else:
        # Aim at the expected finish; once overdue, look often (a twentieth of a run) so
        # a finished job waits little for its download and its slot is reused at once.
        remaining = typical - running_for
        overdue_step = typical / 20
        wanted = remaining if remaining > overdue_step else overdue_step
        spread = overdue_step * policy.jitter
    wanted = min(policy.maximum, max(policy.minimum, wanted))
    return min(policy.maximum, max(policy.minimum, wanted + rng.uniform(-spread, spread)))


@dataclass(frozen=True, slots=True)
class AdaptiveLimit:
    """The effective number of jobs in flight: halved on a 429, regrown by one per success
    window (additive increase, multiplicative decrease), never above the configured limit.

    >>> AdaptiveLimit(8.0, 8).throttled().value
    4
    >>> AdaptiveLimit(4.0, 8).succeeded().current > 4
    True
    """

    current: float
    ceiling: int
    floor: int = 1

    @property
    def value(self) -> int:
        return max(self.floor, min(self.ceiling, int(self.current)))

    def throttled(self) -> AdaptiveLimit:
        return AdaptiveLimit(max(float(self.floor), self.current / 2), self.ceiling, self.floor)

    def succeeded(self) -> AdaptiveLimit:
        grown = self.current + 1 / max(1.0, self.current)
        return AdaptiveLimit(min(float(self.ceiling), grown), self.ceiling, self.floor)


@dataclass(frozen=True, slots=True)
class RunTimes:
    """Observed run times per model (exponentially weighted), for poll scheduling."""

    averages: tuple[tuple[str, float], ...] = ()
    weight: float = 0.3

    def typical(self, model_id: str) -> float | None:
        return dict(self.averages).get(model_id)

    def observed(self, model_id: str, seconds: float) -> RunTimes:
        table = dict(self.averages)
        old = table.get(model_id)
        table[model_id] = seconds if old is None else old + self.weight * (seconds - old)
        return RunTimes(tuple(sorted(table.items())), self.weight)
