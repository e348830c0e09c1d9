"""The vocabulary of the queue: job states, attempt kinds and event kinds.

A job moves ``pending -> submitting -> submitted -> downloading -> succeeded``; the side
states are ``retry_wait`` (waiting for a durable ``next_attempt_at``), ``needs_reconcile``
(a submit whose outcome is unknown; never resubmitted automatically), ``fetch_wait`` and
``fetch_paused`` (RunComfy rendered the video, so it is paid for, but it is not on disk
yet: it is fetched again, never submitted again) and the terminal ``failed`` and
``cancelled``.

>>> JobState.SUBMITTED in IN_FLIGHT and JobState.SUBMITTED not in TERMINAL
True
>>> JobState.TERMINAL == TERMINAL
True
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Final


class JobState(StrEnum):
    """Where a job is in its lifecycle (stored as its string value)."""

    PENDING = "pending"
    """Waiting to be submitted (never sent, or safe to send again)."""
    SUBMITTING = "submitting"
    """Intent written before the POST; a crash here means the outcome is unknown."""
    SUBMITTED = "submitted"
    """request_id committed; remote status is in_queue or in_progress."""
    DOWNLOADING = "downloading"
    """Remote job finished; fetching and verifying the video."""
    RETRY_WAIT = "retry_wait"
    """Waiting for ``next_attempt_at`` before trying again."""
    NEEDS_RECONCILE = "needs_reconcile"
    """A submit may have reached RunComfy; only an explicit user action resubmits."""
    FETCH_WAIT = "fetch_wait"
    """Rendered (paid) but the download failed: a fresh ``/result`` and the download are
    tried again at ``next_attempt_at`` (a durable backoff that outlasts an outage)."""
    FETCH_PAUSED = "fetch_paused"
    """Rendered (paid) and not fetched: the engine stopped trying (the outage outlasted its
    patience, or a setting must be fixed first). A re-run or ``retry`` fetches it again."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    # Annotation only, so not members; assigned below once the members exist.
    TERMINAL: ClassVar[frozenset[JobState]]
    """Same as the module-level :data:`TERMINAL`."""
    IN_FLIGHT: ClassVar[frozenset[JobState]]
    """Same as the module-level :data:`IN_FLIGHT`."""

    @property
    def is_terminal(self) -> bool:
        """True once the job will never change state on its own again."""
        return self in TERMINAL


TERMINAL: Final[frozenset[JobState]] = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
)
"""States a job never leaves without an explicit user action (retry)."""

IN_FLIGHT: Final[frozenset[JobState]] = frozenset(
    {JobState.SUBMITTING, JobState.SUBMITTED, JobState.DOWNLOADING}
)
"""Submitted (or being submitted) and not terminal: what ``max_in_flight`` counts.

``needs_reconcile`` is deliberately excluded: a parked job must not hold a slot forever.
"""

TO_FETCH: Final[frozenset[JobState]] = frozenset(
    {JobState.DOWNLOADING, JobState.FETCH_WAIT, JobState.FETCH_PAUSED}
)
"""Rendered by RunComfy (so paid for) and not yet a verified file on disk."""

PARKED: Final[frozenset[JobState]] = frozenset({JobState.NEEDS_RECONCILE, JobState.FETCH_PAUSED})
"""Waiting for a person (a decision, a fix, a re-run): a run ends with jobs parked here."""

JobState.TERMINAL = TERMINAL
JobState.IN_FLIGHT = IN_FLIGHT


class AttemptKind(StrEnum):
    """Why a paid submission was made."""

    SUBMIT = "submit"
    """The first submission of a job."""
    REROLL = "reroll"
    """A new paid attempt after RunComfy reported the generation failed."""
    RESUBMIT = "resubmit"
    """An explicit user-approved resubmission of a job in ``needs_reconcile``."""


class EventKind(StrEnum):
    """Well-known event kinds; other kinds are allowed (the column is free text)."""

    ENQUEUED = "enqueued"
    TRANSITION = "transition"
    STALE_WRITE = "stale_write"
    """A write dropped because its lease had moved on (it keeps any request id)."""
    BREAKER_TRIPPED = "breaker_tripped"
    """A failure every new job would meet too stopped submitting (a batch event)."""
    BREAKER_CLOSED = "breaker_closed"
    """That failure cleared (a download worked after a full disk): submitting resumed."""
