"""The account's capacity, discovered: how many jobs RunComfy runs at once for this worker.

RunComfy publishes no concurrency number, so ``max_in_flight`` is only the user's upper
bound (cost, politeness). Within it the engine starts small and grows while every job it
looks at is running (none of its jobs waits in the account's queue: the account has room).
The first look that finds a job ``in_queue`` shows the account full; the jobs seen running
then are its slots. From then on the engine keeps the slots busy plus a few jobs queued
remotely, just enough that a freed slot starts the next job at once (the engine notices a
finish a fraction of a run late, and a fraction of the slots free up meanwhile). A 429
halves the limit; accepted submits regrow it.

Each worker counts its own jobs: workers sharing an account each learn their share.

>>> capacity = Capacity.start(ceiling=200)
>>> capacity.value, capacity.discovering
(8, True)
>>> capacity = capacity.saw_running(8).saw_running(8)
>>> capacity.value
10
>>> full = capacity.saw_queued(running=50)
>>> full.slots, full.target, full.discovering
(50, 60, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

#: Jobs submitted before anything is known of the account.
INITIAL = 8
#: Jobs kept queued beyond the slots: the share of slots freed while a finish goes
#: unnoticed (on average half the poll schedule's overdue fraction of a run, 0.075 by
#: default) twice over, plus two.
AHEAD_SHARE, AHEAD_MIN = 0.15, 2


@dataclass(frozen=True, slots=True)
class Capacity:
    """The number of this worker's jobs to keep in flight (submitted, not yet finished)."""

    ceiling: int
    current: float
    slots: int | None = None
    """Jobs the account was seen running at once while one of ours waited (None: not yet
    seen full)."""

    @classmethod
    def start(cls, ceiling: int, initial: int = INITIAL) -> Capacity:
        ceiling = max(1, ceiling)
        return cls(ceiling, float(min(ceiling, initial)))

    @property
    def ahead(self) -> int:
        """Jobs kept waiting in the account's queue once the slots are known."""
        if self.slots is None:
            return 0
        return AHEAD_MIN + math.ceil(AHEAD_SHARE * self.slots)

    @property
    def target(self) -> int:
        if self.slots is None:
            return self.ceiling
        return min(self.ceiling, self.slots + self.ahead)

    @property
    def value(self) -> int:
        return max(1, min(self.target, int(self.current)))

    @property
    def discovering(self) -> bool:
        """Still looking for the account's limit: first looks come early, to learn it."""
        return self.slots is None and self.value < self.ceiling

    def saw_running(self, running: int) -> Capacity:
        """A look found a job running (or done) with none of ours queued: room to grow,
        one more job per job seen started (doubling per round of looks)."""
        slots = self.slots
        if slots is not None and running > slots:
            slots = running  # the account runs more than we thought
        return replace(self, slots=slots, current=min(float(self.ceiling), self.current + 1))

    def saw_queued(self, running: int) -> Capacity:
        """A look found a job waiting in the account's queue: the account is full, and
        the jobs seen running are what it runs at once."""
        slots = max(1, running, self.slots or 0)
        grown = replace(self, slots=slots)
        current = min(max(self.current, float(running)), float(grown.target))
        return replace(grown, current=max(1.0, current))

    def throttled(self) -> Capacity:
        """A 429: half as many in flight (multiplicative decrease)."""
        return replace(self, current=max(1.0, self.current / 2))

    def accepted(self) -> Capacity:
        """A submit went through: regrow additively toward the target after a throttle."""
        grown = self.current + 1 / max(1.0, self.current)
        return replace(self, current=min(float(self.target), max(self.current, grown)))

    def queue_wait(self, ahead_of_it: int, free_rate: float | None) -> float | None:
        """Expected seconds until a job with ``ahead_of_it`` jobs before it starts, at
        ``free_rate`` places a second (None when the rate is not known yet)."""
        if free_rate is None or free_rate <= 0:
            return None
        return max(0, ahead_of_it) / free_rate


@dataclass(frozen=True, slots=True)
class FreeRate:
    """How fast places free up in the account: an average of the gaps between the
    finishes this worker notices (seconds), while the account is full.

    >>> FreeRate().noticed(10.0).noticed(12.0).noticed(14.0).per_second
    0.5
    """

    last: float | None = None
    gap: float | None = None
    weight: float = 0.1

    def noticed(self, at: float) -> FreeRate:
        if self.last is None:
            return replace(self, last=at)
        step = max(0.0, at - self.last)
        gap = step if self.gap is None else self.gap + self.weight * (step - self.gap)
        return replace(self, last=at, gap=gap)

    @property
    def per_second(self) -> float | None:
        if self.gap is None:
            return None
        return 1.0 / max(self.gap, 1e-3)
