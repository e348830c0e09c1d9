"""Pure decisions: the next state, the retry delay, when to look at a job next.

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

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from orchestrator.store.states import JobState

if TYPE_CHECKING:
    import random


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
    RESULT_UNUSABLE = "result_unusable"  # rendered, but its output URL cannot be downloaded
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
    # Rendered and billed, with an output no client can fetch: a person looks, never a
    # paid re-roll on its own (``reconcile --resubmit`` is that person's choice).
    (S.SUBMITTED, O.RESULT_UNUSABLE): S.NEEDS_RECONCILE,
    (S.SUBMITTED, O.CANCELLED): S.CANCELLED,
    (S.SUBMITTED, O.CRASH_RECOVERED): S.SUBMITTED,
    (S.SUBMITTED, O.DISCARDED): S.CANCELLED,
    (S.DOWNLOADING, O.DOWNLOADED): S.SUCCEEDED,
    # Paid work is fetched, never paid again: a failed download waits, it never fails.
    (S.DOWNLOADING, O.DOWNLOAD_RETRY): S.FETCH_WAIT,
    (S.DOWNLOADING, O.DOWNLOAD_PAUSED): S.FETCH_PAUSED,
    (S.DOWNLOADING, O.REMOTE_LOST): S.FAILED,  # RunComfy no longer has the result
    (S.DOWNLOADING, O.RESULT_UNUSABLE): S.NEEDS_RECONCILE,  # a fresh /result's URL is bad
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


#: The longest ``Retry-After`` honoured (seconds). A 429's usual window is seconds to a
#: minute; five minutes outlasts those with room. A longer one (a day, say, from a
#: confused or hostile server) would hold the job that got it for the whole run.
RETRY_AFTER_CAP = 300.0


def honoured_retry_after(
    retry_after: float | None, *, cap: float = RETRY_AFTER_CAP
) -> float | None:
    """How much of a server's ``Retry-After`` (seconds, None when it gave none) to honour:
    within ``[0, cap]``, whatever it sent (a day, a date long past, infinity, NaN).

    It applies to the one job and the one route (submit, status, result, cancel) whose
    reply carried it: a status poll's ``Retry-After`` never holds another job's submit.

    >>> honoured_retry_after(86_400.0), honoured_retry_after(7.0), honoured_retry_after(None)
    (300.0, 7.0, None)
    """
    if retry_after is None or math.isnan(retry_after):
        return None
    return min(max(0.0, retry_after), max(0.0, cap))


def retry_delay(
    failures: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    retry_after_cap: float = RETRY_AFTER_CAP,
    rng: random.Random,
) -> float:
    """Seconds to wait before try number ``failures + 1``: exponential, full jitter, capped.

    A server's ``Retry-After`` is a floor, even past ``cap``: never retry sooner than it
    asked, up to ``retry_after_cap`` (:func:`honoured_retry_after`). ``failures`` counts
    from 1. The delay is always within ``[0, max(cap, retry_after_cap)]``.

    >>> import random
    >>> retry_delay(3, base=2, cap=300, rng=random.Random(1)) <= 8
    True
    >>> retry_delay(1, base=2, cap=300, retry_after=30, rng=random.Random(1)) >= 30
    True
    >>> retry_delay(1, base=2, cap=60, retry_after=86_400, rng=random.Random(1))
    300.0
    """
    # The exponent is bounded: 2**1024 overflows a float after a night of failed polls.
    ceiling = min(cap, base * 2 ** min(max(0, failures - 1), 64))
    delay = rng.uniform(0, ceiling)
    floor = honoured_retry_after(retry_after, cap=retry_after_cap)
    if floor is not None:
        delay = max(delay, floor)
    return delay


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Bounds for polling, in seconds (see :func:`poll_delay`).

    ``overdue_fraction`` is the promise: once a job is past its expected finish, a finished
    job is noticed within that fraction of its elapsed run time (or ``minimum``, whichever
    is longer; never later than ``maximum``). ``probe_growth`` is the same fraction for a
    job with no run-time history: looks start at ``minimum`` and grow by it. ``fixed``
    replaces the whole schedule with one interval (the comparison poller of the benchmark).

    >>> PollPolicy(minimum=2, maximum=60).scaled(0.5).maximum
    30.0
    """

    minimum: float = 0.5
    maximum: float = 60.0
    overdue_fraction: float = 0.15
    probe_growth: float = 0.5
    jitter: float = 0.1
    fixed: float | None = None

    def scaled(self, factor: float) -> PollPolicy:
        """The same policy for a clock that runs ``factor`` real seconds per second."""
        return PollPolicy(
            minimum=self.minimum * factor,
            maximum=self.maximum * factor,
            overdue_fraction=self.overdue_fraction,
            probe_growth=self.probe_growth,
            jitter=self.jitter,
            fixed=None if self.fixed is None else self.fixed * factor,
        )


def poll_delay(
    status: str | None,
    *,
    elapsed: float,
    expected: tuple[float, float] | None,
    queue_wait: float | None = None,
    queued_for: float = 0.0,
    policy: PollPolicy,
    rng: random.Random,
) -> float:
    """Seconds until a job's next status look.

    ``status`` is what the last look said (None: not looked at yet, just submitted);
    ``elapsed`` counts from the earliest moment the job can have started; ``expected`` is
    its key's (typical, late) run time, None without history; ``queue_wait`` the expected
    seconds until a queued job starts (from its place and the rate places free up), None
    when unknown; ``queued_for`` how long it has been waiting.

    The promise, whatever the estimate (property-tested):

    - without history, looks start at ``minimum`` and grow by ``probe_growth``: a job
      that runs T seconds is noticed within max(minimum, probe_growth x T);
    - with history, the first look comes when its key's runs typically finish, one more at
      the late end of their spread, then every ``overdue_fraction`` of the time elapsed: a
      job that runs past the late end is noticed within max(minimum, overdue_fraction x T);
      one finishing before waits at most until the next of those two looks;
    - never more than ``maximum`` between two looks once a job is late (a first look at a
      key's typical run waits for it, however long). Jitter only shortens a wait.

    >>> import random
    >>> policy = PollPolicy(minimum=1, maximum=60, jitter=0)
    >>> poll_delay("in_progress", elapsed=0, expected=(30, 50), policy=policy,
    ...            rng=random.Random(0))
    30.0
    >>> poll_delay("in_progress", elapsed=60, expected=(30, 50), policy=policy,
    ...            rng=random.Random(0))
    9.0
    >>> poll_delay(None, elapsed=0, expected=None, policy=policy, rng=random.Random(0))
    1.0
    """
    if policy.fixed is not None:
        return policy.fixed
    floor, ceiling = policy.minimum, policy.maximum
    if status == "in_queue":
        if queue_wait is None:  # no rate known yet: back off geometrically while it waits
            wanted = min(ceiling, max(floor, policy.probe_growth * queued_for))
        else:
            wanted = min(ceiling, queue_wait) + _running_delay(0.0, expected, policy)
    else:
        wanted = _running_delay(elapsed, expected, policy)
        if status is None and queue_wait is not None:
            # Submitted into a full account: it starts after the wait.
            wanted += min(ceiling, queue_wait)
    wanted *= 1.0 - policy.jitter * rng.random()
    return float(max(floor, wanted))


def _running_delay(
    elapsed: float, expected: tuple[float, float] | None, policy: PollPolicy
) -> float:
    floor, ceiling = policy.minimum, policy.maximum
    if expected is None:
        return min(ceiling, max(floor, policy.probe_growth * elapsed))
    finish, late = expected
    if elapsed < finish * (1 - policy.jitter):  # (a look jittered early counts as that one)
        # Look when runs of its key usually finish, however long that is (the maximum
        # bounds waits once a job may have finished; an early finisher waits for this).
        return finish - elapsed
    wanted = max(floor, policy.overdue_fraction * elapsed)
    if elapsed < late and late - elapsed >= floor:
        wanted = late - elapsed  # one more look at the late end of the key's spread
    return min(ceiling, wanted)
