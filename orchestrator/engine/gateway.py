"""The store gateway: every store call of the engine, and the one place decisions are applied.

Store calls are blocking (SQLAlchemy): :meth:`StoreGateway.call` runs each in a worker
thread, and runs again a call the database rolled back on its own (nothing was
committed). :meth:`StoreGateway.settle` turns an outcome into the next state through
:mod:`.decisions` and writes it in one transaction; a move the store refused (someone else
moved the job first) is logged and dropped, never forced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from sqlalchemy.exc import DBAPIError

from orchestrator.engine.core import frees_room, log
from orchestrator.engine.decisions import Outcome, next_state, retry_delay
from orchestrator.store.database import retry_safe
from orchestrator.store.states import JobState

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    from orchestrator.store.work import WorkItem, WorkQueue

_T = TypeVar("_T")
#: Runs of a store call the database rolled back on its own (see ``retry_safe``).
STORE_TRIES = 3


@dataclass(frozen=True)
class Backoff:
    """How long a job waits before its next try (see :func:`.decisions.retry_delay`)."""

    base: float
    cap: float
    rng: random.Random

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """The wait after ``failures`` failed tries (a server's Retry-After, capped)."""
        return retry_delay(
            max(1, failures),
            base=self.base,
            cap=self.cap,
            retry_after=retry_after,
            retry_after_cap=self.cap,
            rng=self.rng,
        )


class StoreGateway:
    """The thread hand-off to the store, the retry of rolled-back calls, and ``settle``.

    ``on_room`` is called when a move may let the submitter claim more; ``on_stale`` with
    the row id of a job whose move the store refused (it is no longer this worker's).
    """

    def __init__(
        self,
        queue: WorkQueue,
        backoff: Backoff,
        *,
        on_room: Callable[[], None],
        on_stale: Callable[[int], None],
    ) -> None:
        self._queue = queue
        self._backoff = backoff
        self._on_room = on_room
        self._on_stale = on_stale
        self._store_limiter: anyio.CapacityLimiter | None = None
        self._own_limiter: anyio.CapacityLimiter | None = None

    async def call(self, call: Callable[..., _T], *args: Any) -> _T:
        """Run a store call in a worker thread. SQLite serialises writers anyway, so its
        calls share one thread (several only add lock waits and GIL hand-offs: about a
        fifth more CPU per job); PostgreSQL gets a few, to overlap network round trips."""
        if self._store_limiter is None:
            sqlite = self._queue.store.engine.dialect.name == "sqlite"
            self._store_limiter = anyio.CapacityLimiter(1 if sqlite else 4)
        return await self._in_thread(call, *args, limiter=self._store_limiter)

    async def call_apart(self, call: Callable[..., _T], *args: Any) -> _T:
        """Run a store call in a thread of its own, never queued behind the others (the
        heartbeat: one waiting behind a burst of writes could miss the lease)."""
        if self._own_limiter is None:
            self._own_limiter = anyio.CapacityLimiter(1)
        return await self._in_thread(call, *args, limiter=self._own_limiter)

    async def _in_thread(
        self, call: Callable[..., _T], *args: Any, limiter: anyio.CapacityLimiter
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

    async def settle(
        self,
        item: WorkItem,
        outcome: Outcome,
        *,
        fields: dict[str, Any] | None = None,
        error: str | None = None,
        attempt: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        """Apply the decision for ``outcome`` to the store (one transaction); whether the
        job moved (False: someone else moved it first, and this move was dropped)."""
        target = next_state(
            item.state, outcome, paid_attempts=item.attempts, max_attempts=item.max_attempts
        )
        values = dict(fields or {})
        if error is not None:
            values["error"] = error
        if attempt is not None and target in (JobState.SUCCEEDED, JobState.FAILED):
            attempt = {**attempt, "finished_at": self._queue.now()}
        moved = await self.call(
            lambda: self._queue.transition(item, target, outcome.value, values, detail, attempt)
        )
        if moved:
            if frees_room(item.state, target):
                self._on_room()
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
            self._on_stale(item.row_id)
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

    async def retry_later(
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
        """Settle ``outcome`` with the job due again after the backoff for ``failures``."""
        delay = self._backoff.delay(failures, retry_after)
        values = {**(fields or {}), "next_attempt_at": self._queue.now() + timedelta(seconds=delay)}
        await self.settle(item, outcome, fields=values, error=reason, attempt=attempt)
