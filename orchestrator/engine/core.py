"""The engine's design, and the few small things its parts share.

:class:`~.pool.Engine` is a set of small parts, each with narrow inputs, wired together by
the engine; no part reaches into another's attributes:

- :class:`~.gateway.StoreGateway`: every store call goes through it (a worker thread,
  the retry of a call the database rolled back), and :meth:`~.gateway.StoreGateway.settle`
  is the one place a decision (:mod:`.decisions`) is applied to the store.
- :class:`~.ledger.InFlight`: what this worker has in hand (jobs watched, polls, submits
  and downloads running); the run is over only when it is empty.
- :class:`~.schedule.PollSchedule`: when each watched job is looked at next.
- :class:`~.gate.SubmitGate`: whether new jobs may be submitted (spend cap, breakers).
- :class:`~.submitting.Submitter`, :class:`~.polling.Poller` and
  :class:`~.downloading.DownloadPool`: the three kinds of work, fed by the store, by the
  schedule and by a memory channel.
- :class:`~.pool.Engine`: builds them, registers the worker, keeps its lease (heartbeat,
  take-over of dead workers, forgetting jobs moved by someone else) and decides when the
  run stops.

The pure decisions (:mod:`.decisions`, :mod:`.capacity`, :mod:`.timing`, :mod:`.paidwork`,
:mod:`.runtimes`) do no I/O. This module holds the report, the logger and the helpers
every part uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from orchestrator.engine.runtimes import timing_key
from orchestrator.store.states import JobState
from orchestrator.store.work import REMOTE_ACTIVE, WorkItem

if TYPE_CHECKING:
    from datetime import datetime

    from orchestrator.api import WrongRequest
    from orchestrator.catalog import Catalog
    from orchestrator.engine.paidwork import Breaker

log = structlog.get_logger("orchestrator.engine")
#: Consecutive failed polls of one job (about an hour at the capped backoff) before it is
#: handed to a person as needs_reconcile instead of being polled forever.
POLL_PATIENCE = 60


@dataclass
class EngineReport:
    """Why the pool stopped and what it did."""

    stopped_by: str = "done"
    submitted: int = 0
    polls: int = 0
    downloads: int = 0
    auth_error: str | None = None
    balance_error: str | None = None
    spend_capped: bool = False
    cancelled_remote: int = 0
    adopted: int = 0
    """Jobs taken over from workers that died or stopped."""
    lease_lost: bool = False
    storage_error: str | None = None
    """The store could not be written (a full disk, SQLITE_FULL, a read-only file): the
    run stopped there, with every request id committed before it kept."""
    breaker: Breaker | None = None
    """The circuit breaker that stopped submitting, if one did (and is still open)."""
    tripped_at: datetime | None = None
    """When (store time) the first breaker tripped: nothing was claimed after it."""
    renamed: list[tuple[str, str]] = field(default_factory=list)
    """(wanted, saved as): output names taken by files this store did not write."""
    notes: list[str] = field(default_factory=list)


class Wakeup:
    """A loop's doorbell: :meth:`set` rings it; :meth:`wait` sleeps until it rings or
    ``seconds`` pass. A ring before :meth:`wait` starts is not kept (the loop has just
    looked at everything a ring could be about)."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        """Wake the loop (now, or in its next wait)."""
        self._event.set()

    async def wait(self, seconds: float) -> None:
        """Sleep until the next ring, at most ``seconds``."""
        self._event = anyio.Event()
        with anyio.move_on_after(max(0.0, seconds)):
            await self._event.wait()


class WrongReplies:
    """Replies for another request id, said once per job and run (they are asked again)."""

    def __init__(self) -> None:
        self._logged: set[int] = set()

    def note(self, item: WorkItem, exc: WrongRequest) -> None:
        """A reply named another request id: ignored (it is asked for again), and said
        once per job, with both ids, however many times it happens."""
        if item.row_id in self._logged:
            return
        self._logged.add(item.row_id)
        log.warning(
            "reply for another request ignored; asking again later",
            batch=item.batch,
            job=item.name,
            attempt=item.attempts,
            request_id=exc.asked,
            answered=exc.answered,
            route=exc.route,
        )


def timing_key_of(catalog: Catalog, item: WorkItem) -> str:
    """The key run times are learned under: model, clip length, resolution."""
    model = catalog.get(item.model_id)
    clip = model.duration_seconds(item.payload) if model is not None else None
    return timing_key(item.model_id, item.payload, clip)


def frees_room(before: JobState, after: JobState) -> bool:
    """Whether a move may let the submitter claim more: a remote slot was given back, or a
    job became claimable again. Other moves need no claim attempt (each is a write
    transaction that would find nothing new)."""
    freed = before in REMOTE_ACTIVE and after not in REMOTE_ACTIVE
    return freed or after == JobState.PENDING


def moved_to(item: WorkItem, state: JobState, **changes: Any) -> WorkItem:
    """The item as it is in the store after a move to ``state`` (with ``changes``)."""
    return replace(item, state=state, **changes)
