"""The account's capacity, discovered: how many jobs RunComfy runs at once for this worker.

RunComfy publishes no concurrency number, so ``max_in_flight`` is only the user's upper
bound (cost, politeness). Within it the engine measures the account with probes: a job
submitted while ``F`` others were in flight gets an early first look. If it is already
running, the account ran ``F + 1`` at once; if it waits in the queue, the account was full.
The limit is the most seen running at once plus a few to keep queued remotely, just enough
that a freed slot starts the next job at once (the engine notices a finish a fraction of a
run late, and some slots free up meanwhile). Until a probe first finds the account full,
the limit is twice the most seen running (slow start) and every new job is probed; after
that, one job in :data:`PROBE_EVERY` is, to notice an account that grew (a probe that
finds room again resumes probing every job).
A 429 on a submit halves the limit; accepted submits regrow it, and the throttle is lifted
whole once its time is up (the Retry-After cap after the last 429), so a 429 slows submits
for at most that long. A 429 on another route (a status poll) holds only the job it hit.

Each worker counts its own jobs: workers sharing an account each learn their share.

>>> capacity = Capacity.start(ceiling=200)
>>> capacity.value, capacity.probe_due(submits_since_probe=0)
(8, True)
>>> capacity = capacity.probed(in_flight_before=7, queued=False)
>>> capacity.room, capacity.value
(8, 16)
>>> full = capacity.probed(in_flight_before=10, queued=True)
>>> full.full, full.probe_due(submits_since_probe=3)
(True, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

#: Jobs submitted before anything is known of the account.
INITIAL = 8
#: Jobs kept queued beyond the most seen running: the share of slots freed while a
#: finish goes unnoticed (on average under a tenth of a run with the default schedule)
#: and while its download and the next submit run, with room for a busy event loop, plus
#: two. Queued jobs cost few looks: their first comes after their expected wait.
AHEAD_SHARE, AHEAD_MIN = 0.25, 2
#: Once the account was seen full, one new job in this many is still probed.
PROBE_EVERY = 8


@dataclass(frozen=True, slots=True)
class Capacity:
    """The number of this worker's jobs to keep in flight (submitted, not yet finished)."""

    ceiling: int
    room: int = 0
    """The most jobs the account was seen running at once (by a probe)."""
    full: bool = False
    """The last probe found the account full (its job waited in the queue)."""
    seen_full: bool = False
    """A probe has found the account full at least once (slow start is over)."""
    throttled_to: float | None = None
    """After a 429: the reduced limit, regrowing with each accepted submit."""
    throttle_ends: float | None = None
    """When (the engine's monotonic seconds) the throttle is lifted, regrown or not."""

    @classmethod
    def start(cls, ceiling: int) -> Capacity:
        return cls(max(1, ceiling))

    @property
    def ahead(self) -> int:
        """Jobs kept beyond the most seen running (waiting in the account's queue)."""
        return AHEAD_MIN + math.ceil(AHEAD_SHARE * self.room)

    @property
    def target(self) -> int:
        if not self.seen_full and self.room:
            # Never seen full: double what was seen running (slow start, as TCP does).
            return min(self.ceiling, max(INITIAL, 2 * self.room, self.room + self.ahead))
        return min(self.ceiling, max(INITIAL, self.room + self.ahead))

    @property
    def value(self) -> int:
        if self.throttled_to is None:
            return self.target
        return max(1, min(self.target, int(self.throttled_to)))

    def probe_due(self, submits_since_probe: int) -> bool:
        """Whether the job being submitted gets an early first look, to measure the
        account: always while it keeps showing room, else one in PROBE_EVERY; never when
        the user's bound is already reached (there is nothing to learn)."""
        if max(INITIAL, self.room + self.ahead) >= self.ceiling:
            return False  # the user's bound is the limit already
        return not self.full or submits_since_probe + 1 >= PROBE_EVERY

    def probed(self, in_flight_before: int, *, queued: bool) -> Capacity:
        """What a probe found: its job waiting (the account is full), or running or done
        (the account ran it and the ``in_flight_before`` others at once)."""
        if queued:
            return replace(self, full=True, seen_full=True)
        return replace(self, room=max(self.room, in_flight_before + 1), full=False)

    def throttled(self, *, until: float | None = None) -> Capacity:
        """A 429 on a submit: half as many in flight (multiplicative decrease), until
        ``until`` at the latest (None: until regrown).

        >>> capacity = Capacity.start(ceiling=16).throttled(until=100.0)
        >>> capacity.value, capacity.lifted(99.0).value, capacity.lifted(100.0).value
        (4, 4, 8)
        """
        return replace(self, throttled_to=max(1.0, self.value / 2), throttle_ends=until)

    def lifted(self, now: float) -> Capacity:
        """The throttle gone once its time is up: however few submits were accepted since
        (the jobs in flight may take an hour), a 429 never slows submits for longer."""
        if self.throttle_ends is None or now < self.throttle_ends:
            return self
        return replace(self, throttled_to=None, throttle_ends=None)

    def accepted(self) -> Capacity:
        """A submit went through: regrow additively toward the target after a throttle."""
        if self.throttled_to is None:
            return self
        grown = self.throttled_to + 1 / max(1.0, self.throttled_to)
        if grown >= self.target:
            return replace(self, throttled_to=None, throttle_ends=None)
        return replace(self, throttled_to=grown)


@dataclass(frozen=True, slots=True)
class FreeRate:
    """How fast places free up in the account: an average of the gaps between the
    finishes this worker notices (seconds).

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

    def wait(self, ahead_of_it: int) -> float | None:
        """Expected seconds until a job with ``ahead_of_it`` jobs before it starts (None
        while the rate is not known yet)."""
        rate = self.per_second
        return None if rate is None else max(0, ahead_of_it) / rate
