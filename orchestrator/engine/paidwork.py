"""Pure decisions about paid work: a failed fetch, a tripped breaker, a retry.

Once RunComfy has accepted a job its money is spent, and the job's only way forward is to
fetch its result. These functions say what a failure on that way means; the engine applies
the answer. Nothing here awaits, reads a clock or touches the store.

>>> import random
>>> step = after_fetch_failure(FetchProblem.HOST_DOWN, failures=1, policy=FetchPolicy(),
...                            rng=random.Random(0))
>>> step.outcome, 2.5 <= step.delay <= 5.0
(<Outcome.DOWNLOAD_RETRY: 'download_retry'>, True)
>>> after_fetch_failure(FetchProblem.HOST_NOT_ALLOWED, failures=1, policy=FetchPolicy(),
...                     rng=random.Random(0)).outcome
<Outcome.DOWNLOAD_PAUSED: 'download_paused'>
>>> retry_path(JobState.FETCH_PAUSED, "succeeded", reroll=False)
<RetryPath.FETCH_AGAIN: 'fetch_again'>
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from orchestrator.api.responses import shown_reply
from orchestrator.engine.decisions import Outcome
from orchestrator.store.states import JobState

if TYPE_CHECKING:
    import random


class FetchProblem(StrEnum):
    """Why a paid video did not reach the disk this time."""

    EXPIRED = "expired"  # 403/404/410 on the file URL: a fresh /result gives a new one
    HOST_DOWN = "host_down"  # 5xx, refused or reset connections, timeouts, cut transfers
    BAD_FILE = "bad_file"  # the bytes are not a playable video
    NO_URL = "no_url"  # /result says completed but shows no video URL right now
    HOST_NOT_ALLOWED = "host_not_allowed"  # the URL's host is not on the download allowlist
    TOO_BIG = "too_big"  # over the download size cap
    DISK_FULL = "disk_full"  # ENOSPC / EDQUOT
    NOT_WRITABLE = "not_writable"  # EACCES / EPERM / EROFS on the output folder
    NAME_TOO_LONG = "name_too_long"  # ENAMETOOLONG (pre-flight should have caught it)
    BAD_PATH = "bad_path"  # the output path leaves the output folder (a symlink, say)
    WRITE_FAILED = "write_failed"  # any other error writing the file
    RESULT_LOST = "result_lost"  # /result answers 404: RunComfy no longer has the request
    UNUSABLE_URL = "unusable_url"  # /result's output URL cannot be downloaded (ftp:, a path)


#: Problems that trying again in this run cannot fix: a setting must change first.
NEEDS_A_FIX = frozenset(
    {
        FetchProblem.HOST_NOT_ALLOWED,
        FetchProblem.TOO_BIG,
        FetchProblem.NAME_TOO_LONG,
        FetchProblem.BAD_PATH,
    }
)


def problem_of_os_error(error: OSError) -> FetchProblem:
    """What an error writing a video to disk means.

    >>> problem_of_os_error(OSError(errno.ENOSPC, "No space left on device"))
    <FetchProblem.DISK_FULL: 'disk_full'>
    """
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return FetchProblem.DISK_FULL
    # A file (or a dangling name) where the output folder should be blocks it as surely.
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
        return FetchProblem.NOT_WRITABLE
    if error.errno == errno.ENAMETOOLONG:
        return FetchProblem.NAME_TOO_LONG
    return FetchProblem.WRITE_FAILED


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """How long a paid video is fetched again before the job pauses (seconds).

    The defaults (:meth:`lasting` 20 minutes) outlast a file-host outage or a full disk
    of at least 20 minutes (see :func:`fetch_patience`) before the job pauses in
    ``fetch_paused``, where a re-run picks it up: a wrong guess about an outage's length
    costs a re-run, never money.
    """

    base: float = 5.0
    cap: float = 300.0
    tries: int = 14
    """Durable tries (each a fresh ``/result`` and a download) before pausing."""

    @classmethod
    def lasting(cls, seconds: float) -> FetchPolicy:
        """A policy that keeps trying for at least ``seconds`` (the default: 1,200).

        >>> FetchPolicy.lasting(1200) == FetchPolicy()
        True
        >>> fetch_patience(FetchPolicy.lasting(60)) >= 60
        True
        """
        return cls(base=seconds / 240, cap=seconds / 4, tries=14)


@dataclass(frozen=True, slots=True)
class FetchStep:
    """What to do after a failed fetch: the outcome to apply and, for a retry, the wait."""

    outcome: Outcome
    delay: float | None = None


def after_fetch_failure(
    problem: FetchProblem, *, failures: int, policy: FetchPolicy, rng: random.Random
) -> FetchStep:
    """The next step for a rendered job whose fetch failed for the ``failures``-th time
    in a row (counting from 1).

    A lost result fails the job (only a paid re-roll can replace it, and only a user asks
    for one); an output URL that cannot be downloaded goes to a person; a problem that
    needs a fix pauses it at once; anything else waits, with an
    exponential backoff (equal jitter, so the total wait is predictable), until the tries
    run out and the job pauses.
    """
    if problem is FetchProblem.RESULT_LOST:
        return FetchStep(Outcome.REMOTE_LOST)
    if problem is FetchProblem.UNUSABLE_URL:
        return FetchStep(Outcome.RESULT_UNUSABLE)  # a person looks (needs_reconcile)
    if problem in NEEDS_A_FIX or failures >= policy.tries:
        return FetchStep(Outcome.DOWNLOAD_PAUSED)
    ceiling = _ceiling(failures, policy)
    return FetchStep(Outcome.DOWNLOAD_RETRY, rng.uniform(ceiling / 2, ceiling))


def fetch_patience(policy: FetchPolicy) -> float:
    """The shortest total wait between a job's first failed fetch and its pause.

    >>> round(fetch_patience(FetchPolicy()) / 60)
    20
    """
    return sum(_ceiling(n, policy) / 2 for n in range(1, policy.tries))


def _ceiling(failures: int, policy: FetchPolicy) -> float:
    return float(min(policy.cap, policy.base * 2.0 ** min(max(0, failures - 1), 64)))


# -- circuit breakers ---------------------------------------------------------------------


class BreakerKind(StrEnum):
    """Failures that are not about one job: every new submit would meet them too."""

    AUTH = "auth"
    BALANCE = "balance"
    UNKNOWN_MODEL = "unknown_model"
    HOST_NOT_ALLOWED = "host_not_allowed"
    DISK_FULL = "disk_full"
    NOT_WRITABLE = "not_writable"


#: Breakers a later successful download closes again (the disk was freed, say).
CLOSE_ON_SUCCESS = frozenset({BreakerKind.DISK_FULL, BreakerKind.NOT_WRITABLE})


@dataclass(frozen=True, slots=True)
class Breaker:
    """A tripped circuit breaker: submitting stops; paid work is still polled and fetched."""

    kind: BreakerKind
    problem: str
    """What happened, in the words of the failure."""
    fix: str
    """Exactly what the user has to change."""
    host: str | None = None
    """The download host to trust, for a host that is not allowed."""

    def __str__(self) -> str:
        return f"{self.problem}. Fix: {self.fix}"


def breaker_for_fetch(
    problem: FetchProblem, detail: str, *, host: str | None, folder: str
) -> Breaker | None:
    """The breaker a failed fetch trips, or None when it is about this one job.

    >>> print(breaker_for_fetch(FetchProblem.HOST_NOT_ALLOWED, "host localhost is not on "
    ...       "the download allowlist", host="localhost", folder="out"))  # doctest: +ELLIPSIS
    host localhost is not on the download allowlist. Fix: run again with --trust-host ...
    """
    if problem is FetchProblem.HOST_NOT_ALLOWED:
        name = host or "HOST"
        return Breaker(
            BreakerKind.HOST_NOT_ALLOWED,
            detail,
            f"run again with --trust-host {name} (or ORCHESTRATOR_TRUST_HOST={name}) if you "
            "trust that host: the paid videos are then fetched, not paid for again",
            host=host,
        )
    if problem is FetchProblem.DISK_FULL:
        return Breaker(
            BreakerKind.DISK_FULL,
            f"the disk holding {folder} is full ({detail})",
            f"free space on the disk holding {folder}; the paid videos are fetched again on "
            "their own while this run lasts, and by running the same command again after",
        )
    if problem is FetchProblem.NOT_WRITABLE:
        return Breaker(
            BreakerKind.NOT_WRITABLE,
            f"the output folder {folder} is not writable ({detail})",
            f"make {folder} writable (or choose another with --out); the paid videos are "
            "fetched again on their own, and by running the same command again",
        )
    return None


def breaker_for_unknown_model(model_id: str, detail: str) -> Breaker:
    """A submit refused because RunComfy does not know the model."""
    return Breaker(
        BreakerKind.UNKNOWN_MODEL,
        f"RunComfy does not know the model {model_id} ({detail})",
        "correct the model id in the manifest ('orchestrator models' lists the known ones), "
        "then run the same command again; the jobs not yet submitted cost nothing",
    )


def breaker_for_account(kind: BreakerKind, detail: str) -> Breaker:
    """An authentication or balance failure: nothing new can be submitted on this account."""
    if kind is BreakerKind.AUTH:
        fix = "set a valid token in RUNCOMFY_API_TOKEN (or RUNCOMFY_TOKEN) and run again"
    else:
        fix = "add funds to the RunComfy account, then run the same command again"
    return Breaker(kind, detail, fix)


# -- what a user's retry does -------------------------------------------------------------


class RetryPath(StrEnum):
    """What ``retry`` does with one job."""

    FETCH_AGAIN = "fetch_again"  # rendered and paid: a fresh /result and the download, free
    NEW_ATTEMPT = "new_attempt"  # it never rendered: a new submit (paid)
    REROLL = "reroll"  # rendered, paid for again on the user's --reroll
    NEEDS_REROLL = "needs_reroll"  # rendered, but RunComfy lost the result: only --reroll


#: The attempt outcome of a render whose output URL cannot be downloaded (billed).
UNUSABLE_OUTPUT = "unusable_output"
#: Attempt outcomes of a render that RunComfy finished (and billed) for us.
RENDERED = frozenset({"succeeded", "result_lost", UNUSABLE_OUTPUT})
#: Characters of a server-sent URL shown in a job's error and the logs.
SHOWN_URL_CHARS = 200


def unusable_error(request_id: str, job: str, url: str) -> str:
    """The error of a rendered job whose output URL cannot be downloaded: the URL (cut
    short, quoted, control characters escaped) and what a person can do.

    >>> print(unusable_error("r-1", "beach", "ftp://x/v.mp4"))  # doctest: +ELLIPSIS
    paid, not fetched: ... cannot be downloaded: 'ftp://x/v.mp4'; look the job up ...
    """
    return (
        f"paid, not fetched: RunComfy's result for request {request_id} holds an output "
        f"URL that cannot be downloaded: {shown_reply(url, SHOWN_URL_CHARS)}; look the job up "
        f"on RunComfy; 'orchestrator reconcile --resubmit --ids {job}' pays for a new render"
    )


def retry_path(state: JobState, last_paid_outcome: str | None, *, reroll: bool) -> RetryPath:
    """Which way a user's ``retry`` takes a job (``last_paid_outcome``: the outcome of its
    newest attempt that may have been billed).

    >>> retry_path(JobState.FAILED, "failed", reroll=False)
    <RetryPath.NEW_ATTEMPT: 'new_attempt'>
    >>> retry_path(JobState.FAILED, "result_lost", reroll=False)
    <RetryPath.NEEDS_REROLL: 'needs_reroll'>
    """
    rendered = state in (JobState.FETCH_WAIT, JobState.FETCH_PAUSED) or (
        last_paid_outcome in RENDERED
    )
    if not rendered:
        return RetryPath.NEW_ATTEMPT
    if reroll:
        return RetryPath.REROLL
    if last_paid_outcome == "result_lost":
        return RetryPath.NEEDS_REROLL
    return RetryPath.FETCH_AGAIN
