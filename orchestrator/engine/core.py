"""The engine's shared state and the one place its decisions are applied to the store.

:class:`EngineCore` holds what the submitter, the poller and the downloaders share (the
store, the client, the schedule, and :class:`.timing.Timing` with run times and capacity);
:meth:`EngineCore._settle` turns an outcome into the next state through :mod:`.decisions`
and writes it in one transaction.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from sqlalchemy.exc import DBAPIError

from orchestrator.api import (
    RunComfyClient,
    WrongRequest,
)
from orchestrator.catalog import Catalog
from orchestrator.engine.decisions import (
    Outcome,
    next_state,
    retry_delay,
)
from orchestrator.engine.download import Downloader
from orchestrator.engine.paidwork import CLOSE_ON_SUCCESS, Breaker
from orchestrator.engine.runtimes import timing_key
from orchestrator.engine.settings import EngineSettings
from orchestrator.engine.timing import Timing
from orchestrator.store.database import retry_safe
from orchestrator.store.fetches import FetchQueue
from orchestrator.store.prices import PriceBook
from orchestrator.store.runtimes import RunTimeBook
from orchestrator.store.states import EventKind, JobState
from orchestrator.store.work import REMOTE_ACTIVE, WorkItem, WorkQueue
from orchestrator.store.workers import WorkerRegistry

log = structlog.get_logger("orchestrator.engine")
_T = TypeVar("_T")
#: Consecutive failed polls of one job (about an hour at the capped backoff) before it is
#: handed to a person as needs_reconcile instead of being polled forever.
POLL_PATIENCE = 60
#: Runs of a store call the database rolled back on its own (see ``retry_safe``).
STORE_TRIES = 3
BREAKER_TRIPPED = EventKind.BREAKER_TRIPPED.value
BREAKER_CLOSED = EventKind.BREAKER_CLOSED.value


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


class EngineCore:
    """State shared by the parts of the pool, and the way outcomes are applied."""

    def __init__(
        self,
        queue: WorkQueue,
        api: RunComfyClient,
        downloader: Downloader,
        catalog: Catalog,
        settings: EngineSettings,
        *,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.api = api
        self.downloader = downloader
        self.catalog = catalog
        self.settings = settings
        self.rng = rng or random.Random()
        self.monotonic = monotonic
        self.report = EngineReport()
        self.workers = WorkerRegistry(queue)
        self.fetches = FetchQueue(queue)
        self.prices = PriceBook(queue)
        self.runtimes = RunTimeBook(queue)
        self.worker_id: str | None = None
        """Set by :meth:`Engine.run` once this process is registered as a worker."""
        self.timing = Timing(settings.poll, ceiling=settings.max_in_flight, rng=self.rng)
        """Sightings, learned run times, the discovered capacity: when to look next."""
        self._schedule: list[tuple[float, int, int]] = []
        self._watched: dict[int, WorkItem] = {}
        self._transient: dict[int, int] = {}
        self._adopted: set[int] = set()
        self._wrong_replies: set[int] = set()
        """Jobs a reply for another request was logged for (once per job and run)."""
        self._seq = itertools.count()
        self._wake_submitter = anyio.Event()
        self._wake_poller = anyio.Event()
        self._submitting_allowed = True
        """False once the spend cap is reached (breakers are kept apart: some close)."""
        self._stop = anyio.Event()
        self._busy = 0
        self._submits_running = 0
        self._next_release = 0.0
        self._store_limiter: anyio.CapacityLimiter | None = None
        self._heartbeat_limiter: anyio.CapacityLimiter | None = None
        self._send: MemoryObjectSendStream[tuple[WorkItem, str | None]]
        self._receive: MemoryObjectReceiveStream[tuple[WorkItem, str | None]]

    @property
    def submitting_allowed(self) -> bool:
        """Whether new jobs may be submitted: no spend cap reached, no breaker open."""
        return self._submitting_allowed and self.report.breaker is None

    async def _trip(self, breaker: Breaker, batch: str) -> None:
        """Stop submitting because of a failure every new job would meet too; paid work
        is still polled and fetched. The first breaker's message is kept, and recorded in
        the batch's event log (what stopped it, and when: no claim after it was sent)."""
        if self.report.breaker is not None:
            return
        self.report.breaker = breaker
        self.report.tripped_at = self.report.tripped_at or self.queue.now()
        self.report.notes.append(f"stopped submitting: {breaker}")
        log.error(
            "circuit breaker tripped: submitting stopped",
            batch=batch,
            kind=breaker.kind.value,
            problem=breaker.problem,
            fix=breaker.fix,
        )
        detail = {"kind": breaker.kind.value, "problem": breaker.problem, "fix": breaker.fix}
        await self._db(
            lambda: self.queue.store.record_event(BREAKER_TRIPPED, batch=batch, detail=detail)
        )

    async def _close_breaker(self, batch: str) -> None:
        """A download succeeded: a full disk or an unwritable folder has been fixed."""
        breaker = self.report.breaker
        if breaker is None or breaker.kind not in CLOSE_ON_SUCCESS:
            return
        self.report.breaker = None
        self.report.notes.append(f"submitting resumed: {breaker.kind.value} cleared")
        log.warning("circuit breaker closed: submitting resumed", batch=batch, kind=breaker.kind)
        detail = {"kind": breaker.kind.value}
        await self._db(
            lambda: self.queue.store.record_event(BREAKER_CLOSED, batch=batch, detail=detail)
        )
        self._wake_submitter.set()

    async def _db(self, call: Callable[..., _T], *args: Any) -> _T:
        """Run a store call in a worker thread. SQLite serialises writers anyway, so its
        calls share one thread (several only add lock waits and GIL hand-offs: about a
        fifth more CPU per job); PostgreSQL gets a few, to overlap network round trips."""
        if self._store_limiter is None:
            sqlite = self.queue.store.engine.dialect.name == "sqlite"
            self._store_limiter = anyio.CapacityLimiter(1 if sqlite else 4)
        return await self._in_thread(call, *args, limiter=self._store_limiter)

    async def _in_thread(
        self, call: Callable[..., _T], *args: Any, limiter: anyio.CapacityLimiter | None
    ) -> _T:
        for _ in range(STORE_TRIES - 1):
            try:
                return await anyio.to_thread.run_sync(call, *args, limiter=limiter)
            except DBAPIError as error:
                if not retry_safe(error):
                    raise
                # The database rolled the transaction back (a PostgreSQL deadlock, or this
                # process paused inside it long enough for its session to be ended; SQLite
                # still locked by another process after busy_timeout): nothing was
                # committed, so run it again. If this worker's lease ran out meanwhile, the
                # store's lease checks drop the write.
                log.warning("database transaction rolled back; retrying", error=str(error.orig))
        return await anyio.to_thread.run_sync(call, *args, limiter=limiter)

    def _wrong_request(self, item: WorkItem, exc: WrongRequest) -> None:
        """A reply named another request id: ignored (it is asked for again), and said
        once per job, with both ids, however many times it happens."""
        if item.row_id in self._wrong_replies:
            return
        self._wrong_replies.add(item.row_id)
        log.warning(
            "reply for another request ignored; asking again later",
            batch=item.batch,
            job=item.name,
            attempt=item.attempts,
            request_id=exc.asked,
            answered=exc.answered,
            route=exc.route,
        )

    def _timing_key(self, item: WorkItem) -> str:
        """The key run times are learned under: model, clip length, resolution."""
        model = self.catalog.get(item.model_id)
        clip = model.duration_seconds(item.payload) if model is not None else None
        return timing_key(item.model_id, item.payload, clip)

    def _unwatch(self, row_id: int) -> None:
        """The job is no longer this worker's to poll (finished, moved on, taken over)."""
        self._watched.pop(row_id, None)
        self.timing.forget(row_id)

    def _watch(self, item: WorkItem, delay: float) -> None:
        self._watched[item.row_id] = item
        due = self.monotonic() + delay
        heapq.heappush(self._schedule, (due, next(self._seq), item.row_id))
        self._wake_poller.set()

    async def _settle(
        self,
        item: WorkItem,
        outcome: Outcome,
        *,
        fields: dict[str, Any] | None = None,
        error: str | None = None,
        attempt: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        """Apply the decision for ``outcome`` to the store (one transaction)."""
        target = next_state(
            item.state, outcome, paid_attempts=item.attempts, max_attempts=item.max_attempts
        )
        values = dict(fields or {})
        if error is not None:
            values["error"] = error
        if attempt is not None and target in (JobState.SUCCEEDED, JobState.FAILED):
            attempt = {**attempt, "finished_at": self.queue.now()}
        moved = await self._db(
            lambda: self.queue.transition(item, target, outcome.value, values, detail, attempt)
        )
        if moved:
            if _frees_room(item.state, target):
                self._wake_submitter.set()
            log.debug(
                "transition",
                batch=item.batch,
                job=item.name,
                attempt=item.attempts,
                request_id=values.get("request_id", item.request_id),
                from_state=item.state.value,
                to_state=target.value,
                outcome=outcome.value,
                error=values.get("error"),
            )
        else:
            # Someone else moved the job first (a user command), or took it over while this
            # worker looked dead (its lease token moved on): the store kept their change;
            # this one is dropped, not forced, and the job is no longer ours to watch.
            self._unwatch(item.row_id)
            log.warning(
                "stale transition dropped",
                batch=item.batch,
                job=item.name,
                attempt=item.attempts,
                request_id=item.request_id,
                from_state=item.state.value,
                to_state=target.value,
                lease=item.lease_token,
            )
        return moved

    async def _retry_later(
        self,
        item: WorkItem,
        outcome: Outcome,
        failures: int,
        reason: str,
        retry_after: float | None,
        *,
        fields: dict[str, Any] | None = None,
        attempt: dict[str, Any] | None = None,
    ) -> None:
        delay = retry_delay(
            max(1, failures),
            base=self.settings.base_delay,
            cap=self.settings.max_delay,
            retry_after=retry_after,
            retry_after_cap=self.settings.max_delay,
            rng=self.rng,
        )
        values = {**(fields or {}), "next_attempt_at": self.queue.now() + timedelta(seconds=delay)}
        await self._settle(item, outcome, fields=values, error=reason, attempt=attempt)


def _frees_room(before: JobState, after: JobState) -> bool:
    """Whether a move may let the submitter claim more: a remote slot was given back, or a
    job became claimable again. Other moves need no claim attempt (each is a write
    transaction that would find nothing new)."""
    freed = before in REMOTE_ACTIVE and after not in REMOTE_ACTIVE
    return freed or after == JobState.PENDING


def _after(item: WorkItem, state: JobState, **changes: Any) -> WorkItem:
    return replace(item, state=state, **changes)
