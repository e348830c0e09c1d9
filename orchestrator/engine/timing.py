"""The engine's memory of time: what it saw of each job in flight, the run times it
learned per key, the account's discovered capacity, and when to look at a job next.

:class:`Timing` is a plain object (no I/O, no clock of its own): the submitter and the
poller tell it what they saw and when, and ask it for delays and limits. The decisions
themselves are the pure functions of :mod:`.decisions`, :mod:`.runtimes` and
:mod:`.capacity`; this keeps their inputs.

>>> import random
>>> from orchestrator.engine.decisions import PollPolicy
>>> timing = Timing(PollPolicy(minimum=1, jitter=0), ceiling=100, rng=random.Random(0))
>>> timing.submitted(1, "m|5s|-", sent=0.0, accepted=0.1)
1.0
>>> timing.looked(1, "in_progress", at=4.0)
2.0
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.engine.capacity import Capacity, FreeRate
from orchestrator.engine.decisions import PollPolicy, poll_delay
from orchestrator.engine.runtimes import (
    QUEUED,
    Estimate,
    Evidence,
    Sightings,
    evidence_from,
    first_estimate,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Iterable

#: How fast the queue depth follows what probes find.
DEPTH_WEIGHT = 0.2


@dataclass(frozen=True, slots=True)
class Learned:
    """One key's estimate, as the store keeps it."""

    key: str
    model_id: str
    estimate: Estimate


class Timing:
    """Sightings, estimates, capacity and the free rate of one engine run."""

    def __init__(self, policy: PollPolicy, *, ceiling: int, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng
        self.capacity = Capacity.start(ceiling)
        self.free_rate = FreeRate()
        self.estimates: dict[str, Estimate] = {}
        self.stamps: Counter[str] = Counter()
        """How server stamps fared against the engine's brackets (agree/absent/...)."""
        self._seen: dict[int, Sightings] = {}
        self._keys: dict[int, str] = {}
        self._status: dict[int, str] = {}
        self._dirty: set[str] = set()
        self._models: dict[str, str] = {}
        self._stamps_dropped = False
        self._probes: dict[int, int] = {}
        """Jobs given an early look to measure the account: how many were in flight."""
        self._since_probe = 0
        self._done = 0
        self._depth = 0.0
        """Jobs ahead of a new one in the account's queue, as probes found (average)."""
        self._starts: dict[int, float] = {}
        """Jobs submitted behind others: when they were expected to start."""

    # -- estimates ----------------------------------------------------------------------

    def load(self, learned: Iterable[Learned]) -> None:
        """Start from what earlier runs learned (the store's table)."""
        for row in learned:
            self.estimates[row.key] = row.estimate
            self._models[row.key] = row.model_id

    def expected(self, key: str) -> tuple[float, float] | None:
        estimate = self.estimates.get(key)
        return None if estimate is None else (estimate.typical, estimate.high)

    def changed(self) -> list[Learned]:
        """Estimates learned since the last call (for the store)."""
        rows = [
            Learned(key, self._models.get(key, key.split("|", 1)[0]), self.estimates[key])
            for key in sorted(self._dirty)
            if key in self.estimates
        ]
        self._dirty.clear()
        return rows

    # -- what the submitter and the poller saw --------------------------------------------

    def submitted(self, row_id: int, key: str, *, sent: float, accepted: float) -> float:
        """A job was accepted; returns the delay until its first look."""
        # Jobs that may still hold a slot (a finish not yet noticed still counts: the
        # measured room errs high, which only keeps a few more jobs queued).
        in_flight_before = self.in_flight - self._done
        self._keys[row_id] = key
        self._seen[row_id] = Sightings(sent=sent, accepted=accepted)
        self._set_status(row_id, "submitted")
        self.capacity = self.capacity.accepted()
        if self.capacity.probe_due(self._since_probe):
            # An early look measures the account: running (room for this many) or queued.
            self._probes[row_id] = in_flight_before
            self._since_probe = 0
            return float(self.policy.minimum if self.policy.fixed is None else self.policy.fixed)
        self._since_probe += 1
        # Behind as many as probes find queued (the room errs high, so in-flight minus
        # room would undercount them), at the rate places free up.
        wait = None
        if self.capacity.full and self._depth > 0:
            wait = self.free_rate.wait(round(self._depth))
        if wait:
            self._starts[row_id] = accepted + wait
        return poll_delay(
            None,
            elapsed=0.0,
            expected=self.expected(key),
            queue_wait=wait,
            policy=self.policy,
            rng=self.rng,
        )

    def adopted(self, row_id: int, key: str) -> None:
        """A job already in flight (this worker's last run, or a dead worker's)."""
        self._keys[row_id] = key
        self._seen.setdefault(row_id, Sightings.adopted())
        self._set_status(row_id, "submitted")

    def looked(
        self,
        row_id: int,
        status: str,
        *,
        at: float,
        position: int | None = None,
        asked: float | None = None,
    ) -> float:
        """A look (sent at ``asked``, answered at ``at``) said the job is still queued or
        running; returns the next delay."""
        seen = self._seen.get(row_id) or Sightings.adopted()
        first_queued = seen.queued_until is None and status in QUEUED
        seen = self._seen[row_id] = seen.saw(status, at, asked=asked)
        self._set_status(row_id, status)
        self._probed(row_id, queued=status in QUEUED, position=position)
        key = self._keys.get(row_id, "")
        wait = None
        if status in QUEUED and position is not None:
            wait = self.free_rate.wait(position - 1)
        started = seen.sent if math.isfinite(seen.sent) else at
        return poll_delay(
            "in_queue" if status in QUEUED else "in_progress",
            elapsed=max(0.0, at - self._started(row_id, seen, at)),
            expected=self.expected(key),
            queue_wait=wait,
            queued_for=0.0 if first_queued else max(0.0, at - started),
            policy=self.policy,
            rng=self.rng,
        )

    def done(self, row_id: int, *, at: float) -> None:
        """A status look said the job is finished (its /result comes next)."""
        seen = self._seen.get(row_id)
        if seen is not None:
            self._seen[row_id] = seen.saw("completed", at)
        self._set_status(row_id, "done")
        self._probed(row_id, queued=False)

    def finished(
        self,
        row_id: int,
        *,
        at: float,
        succeeded: bool,
        stamps: tuple[object, object, object],
        slack: float,
    ) -> Evidence | None:
        """The job's /result came back terminal: learn its run time (from a success) and
        forget the job. Returns the evidence used, or None when nothing was learned."""
        seen = self._seen.get(row_id)
        key = self._keys.get(row_id)
        if seen is not None and seen.done_at is None:
            seen = seen.saw("completed", at)
        self.free_rate = self.free_rate.noticed(at)
        self.forget(row_id)
        if seen is None or key is None or not succeeded:
            return None
        created, started, finished = (None, None, None) if self._stamps_dropped else stamps
        evidence = evidence_from(seen, created, started, finished, slack=slack)
        self.stamps[evidence.verdict] += 1
        if evidence.verdict == "contradict":
            # One clear contradiction is enough: these stamps mean something else.
            self._stamps_dropped = True
        old = self.estimates.get(key)
        new = first_estimate(evidence) if old is None else old.learn(evidence)
        if new is not None and new != old:
            self.estimates[key] = new
            self._dirty.add(key)
        return evidence

    def _started(self, row_id: int, seen: Sightings, at: float) -> float:
        """When the job's run is counted from: the earliest start its looks allow, or,
        for a job submitted behind others and never seen queued, when it was expected to
        start (its looks would otherwise count the wait as running, and come early; an
        error in the expected wait shifts its looks by at most that wait)."""
        expected = self._starts.get(row_id)
        if expected is None or seen.queued_until is not None:
            return seen.running_since
        return max(seen.running_since, min(expected, at))

    def _probed(self, row_id: int, *, queued: bool, position: int | None = None) -> None:
        before = self._probes.pop(row_id, None)
        if before is not None:
            self.capacity = self.capacity.probed(before, queued=queued)
            # How deep the account's queue is when a job arrives: its place, or none.
            depth = (position if position is not None else self._depth) if queued else 0.0
            self._depth += DEPTH_WEIGHT * (depth - self._depth)

    def forget(self, row_id: int) -> None:
        self._probes.pop(row_id, None)
        self._starts.pop(row_id, None)
        self._set_status(row_id, None)
        self._seen.pop(row_id, None)
        self._keys.pop(row_id, None)

    @property
    def stamps_dropped(self) -> bool:
        return self._stamps_dropped

    # -- counts ---------------------------------------------------------------------------

    @property
    def probes_pending(self) -> int:
        """Probes sent whose job has not been looked at yet."""
        return len(self._probes)

    @property
    def in_flight(self) -> int:
        """Jobs this worker has submitted that have not finished (as far as it knows)."""
        return len(self._status)

    def room(self, submitting: int) -> int:
        """How many more jobs may be submitted now within the discovered capacity."""
        return max(0, self.capacity.value - self.in_flight - submitting)

    def _set_status(self, row_id: int, status: str | None) -> None:
        old = self._status.pop(row_id, None)
        self._done -= old == "done"
        if status is not None:
            self._status[row_id] = status
            self._done += status == "done"
