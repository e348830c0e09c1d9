"""What the pool is allowed to do: limits, retries, polling, and when it stops."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.engine.decisions import PollPolicy
from orchestrator.engine.paidwork import FetchPolicy


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Limits and policies for one engine run (from the manifest and the command line)."""

    batch: str | None = None
    """Only this batch's jobs are claimed (``run``); None drains every batch (``work``)."""
    max_in_flight: int = 8
    max_in_flight_per_model: int | None = None
    submits_per_second: float | None = None
    max_concurrent_submits: int = 4
    max_downloads: int = 4
    max_concurrent_polls: int = 8
    max_spend: float | None = None
    base_delay: float = 2.0
    max_delay: float = 300.0
    max_download_tries: int = 3
    """Quick tries of one fetch (same URL, short waits) before the durable fetch backoff."""
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    """The durable backoff of a rendered job whose download failed, and its patience."""
    max_transient_failures: int = 12
    """Consecutive unsent submits (connect errors, 429) before a job is failed."""
    poll: PollPolicy = field(default_factory=PollPolicy)
    idle_check: float = 0.5
    """Seconds between checks for new or due work when nothing else wakes the pool."""
    stop_when_done: bool = True
    """Stop once no job of the batch needs more work (``run``); ``work`` keeps serving."""
    cancel_on_exit: bool = False
    lease_seconds: float = 60.0
    """How long this worker's jobs stay its own without a heartbeat before another worker
    takes them over. Longer is safer (a slow database must not look like a dead worker);
    shorter recovers sooner. A worker on the same machine whose process is gone is taken
    over at the next sweep whatever the lease."""

    @property
    def heartbeat_every(self) -> float:
        """Seconds between heartbeats (and sweeps for dead workers): a few per lease."""
        return min(10.0, self.lease_seconds / 3)
