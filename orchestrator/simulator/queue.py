"""The account queue: a fixed number of slots, a FIFO queue beyond them, exact positions.

Nothing runs in the background. The queue is advanced lazily to the current simulated time
on every call, replaying each finish in order and starting the next queued job at the
moment a slot frees. The result is the same whatever the polling pattern, so a test that
advances a :class:`~orchestrator.simulator.clock.ManualClock` sees exact transitions.

>>> queue = AccountQueue(slots=1)
>>> a, b = SimJob.new("a", run_time=10), SimJob.new("b", run_time=10)
>>> queue.submit(a, now=0); queue.submit(b, now=0)
>>> (a.status_at(0), b.status_at(0), queue.position(b))
('in_progress', 'in_queue', 1)
>>> queue.advance(15)
>>> (a.status_at(15), b.status_at(15), b.started_at)
('completed', 'in_progress', 10)
"""

from __future__ import annotations

import bisect
import heapq
import threading
from collections import deque
from dataclasses import dataclass, field

#: How a finished job reports itself. ``failed`` shows on /status and /result;
#: ``failed_result_only`` shows ``completed`` on /status and ``failed`` only on /result
#: (the Serverless-style variant); ``no_output`` completes without any output URL.
OUTCOMES = ("success", "failed", "failed_result_only", "no_output")


@dataclass(eq=False)
class SimJob:
    """One submitted request."""

    request_id: str
    model_id: str = ""
    owner: str = ""
    payload_hash: str = ""
    run_time: float = 60.0
    video_seconds: float = 5.0
    cost: float = 0.0
    outcome: str = "success"
    image_key: str = ""
    submitted_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    cancelled_at: float | None = None
    seq: int = -1
    #: Download URL signatures issued so far (a fresh /result may issue a new one).
    url_versions: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def new(cls, request_id: str, *, run_time: float) -> SimJob:
        return cls(request_id=request_id, run_time=run_time)

    def status_at(self, now: float) -> str:
        """The job's state at simulated time ``now`` (call after the queue advanced)."""
        if self.cancelled_at is not None:
            return "cancelled"
        if self.started_at is None or self.started_at > now:
            return "in_queue"
        if self.finished_at is None or self.finished_at > now:
            return "in_progress"
        return "failed" if self.outcome == "failed" else "completed"

    def result_status_at(self, now: float) -> str:
        """What /result says: failures show here even when /status says completed."""
        status = self.status_at(now)
        if status == "completed" and self.outcome == "failed_result_only":
            return "failed"
        return status


class AccountQueue:
    """``slots`` jobs run at once; the rest wait in submission order."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self._running: list[tuple[float, int, SimJob]] = []
        self._waiting: deque[SimJob] = deque()
        self._cancelled_seqs: list[int] = []
        self._next_seq = 0
        self._clock_seen = 0.0
        self._lock = threading.Lock()

    # -- time ------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Replay every finish up to ``now``, starting queued jobs as slots free up."""
        with self._lock:
            self._advance(now)

    def _advance(self, now: float) -> None:
        now = max(now, self._clock_seen)  # simulated time never runs backwards
        self._clock_seen = now
        while self._running and self._running[0][0] <= now:
            finished_at, _seq, _job = heapq.heappop(self._running)
            self._start_next(at=finished_at)

    def _start_next(self, at: float) -> None:
        self._drop_cancelled_head()
        if self._waiting and len(self._running) < self.slots:
            self._start(self._waiting.popleft(), at)
            self._drop_cancelled_head()

    def _start(self, job: SimJob, at: float) -> None:
        job.started_at = at
        job.finished_at = at + job.run_time
        heapq.heappush(self._running, (job.finished_at, job.seq, job))

    def _drop_cancelled_head(self) -> None:
        while self._waiting and self._waiting[0].cancelled_at is not None:
            self._waiting.popleft()
            self._cancelled_seqs.pop(0)

    # -- operations --------------------------------------------------------------------------

    def submit(self, job: SimJob, now: float) -> None:
        """Accept a job at ``now``: it runs at once if a slot is free, else it queues."""
        with self._lock:
            self._advance(now)
            job.submitted_at = now
            job.seq = self._next_seq
            self._next_seq += 1
            if len(self._running) < self.slots and not self._waiting:
                self._start(job, now)
            else:
                self._waiting.append(job)

    def cancel(self, job: SimJob, now: float) -> bool:
        """Cancel a queued job; running and finished jobs cannot be cancelled."""
        with self._lock:
            self._advance(now)
            if job.cancelled_at is not None:
                return True
            if job.started_at is not None:
                return False
            job.cancelled_at = now
            bisect.insort(self._cancelled_seqs, job.seq)
            self._drop_cancelled_head()
            return True

    def position(self, job: SimJob, base: int = 1) -> int | None:
        """Place in the queue (``base`` for the next to run), or None if not waiting."""
        with self._lock:
            if job.started_at is not None or job.cancelled_at is not None or not self._waiting:
                return None
            head = self._waiting[0].seq
            ahead = job.seq - head
            ahead -= bisect.bisect_left(self._cancelled_seqs, job.seq)
            ahead += bisect.bisect_left(self._cancelled_seqs, head)
            return ahead + base

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting) - len(self._cancelled_seqs)
