"""Submitting: claim only what can be POSTed now, write the intent, record the answer.

A claimed job is ``submitting`` (its attempt counted) before the POST; its request id is
committed before anything waits on it. A submit that may have reached RunComfy without a
clear answer goes to ``needs_reconcile`` and is never resubmitted here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from orchestrator import failpoints
from orchestrator.api import (
    AmbiguousSubmission,
    AuthError,
    InsufficientBalance,
    RateLimited,
    RunComfyClient,
    RunComfyError,
    TransientError,
    UnknownModel,
    build_request_payload,
)
from orchestrator.engine.core import EngineReport, Wakeup, log, moved_to, timing_key_of
from orchestrator.engine.decisions import Outcome
from orchestrator.engine.paidwork import (
    BreakerKind,
    breaker_for_account,
    breaker_for_unknown_model,
)
from orchestrator.media import ImageError
from orchestrator.store.prices import PriceBook
from orchestrator.store.states import JobState
from orchestrator.store.workers import SUBMIT_PACER, WorkerRegistry

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskGroup

    from orchestrator.catalog import Catalog
    from orchestrator.engine.gate import SubmitGate
    from orchestrator.engine.gateway import StoreGateway
    from orchestrator.engine.ledger import InFlight
    from orchestrator.engine.schedule import PollSchedule
    from orchestrator.engine.settings import EngineSettings
    from orchestrator.engine.timing import Timing
    from orchestrator.store.work import WorkItem, WorkQueue


class Submitter:
    """The submitter loop and one task per POST in flight.

    It claims from ``queue`` (through ``gateway``), POSTs with ``api``, settles the answer,
    and hands an accepted job to ``schedule``; ``gate`` says whether it may submit at all.
    """

    def __init__(
        self,
        gateway: StoreGateway,
        queue: WorkQueue,
        api: RunComfyClient,
        catalog: Catalog,
        settings: EngineSettings,
        *,
        ledger: InFlight,
        schedule: PollSchedule,
        timing: Timing,
        gate: SubmitGate,
        report: EngineReport,
        monotonic: Callable[[], float],
    ) -> None:
        self._gateway = gateway
        self._queue = queue
        self._prices = PriceBook(queue)
        self._workers = WorkerRegistry(queue)
        self._api = api
        self._catalog = catalog
        self._settings = settings
        self._ledger = ledger
        self._schedule = schedule
        self._timing = timing
        self._gate = gate
        self._report = report
        self._monotonic = monotonic
        self._wakeup = Wakeup()
        self._transient: dict[int, int] = {}
        """Failed submits in a row, by row id (reset when one is accepted)."""
        self._next_release = 0.0
        self._worker_id: str | None = None
        self._stop = anyio.Event()

    def wake(self) -> None:
        """Room may have been freed (or submitting resumed): try to claim now."""
        self._wakeup.set()

    async def run(self, group: TaskGroup, *, worker_id: str, stop: anyio.Event) -> None:
        """Claim and submit until cancelled; nothing new once ``stop`` is set."""
        self._worker_id = worker_id
        self._stop = stop
        limiter = anyio.CapacityLimiter(self._settings.max_concurrent_submits)
        while True:
            claimed: list[WorkItem] = []
            # Claim only as many jobs as can be POSTed right now: a claimed job is marked
            # "submitting", and a crash while it waited would park it as needs_reconcile.
            free = self._settings.max_concurrent_submits - self._ledger.submits
            # Within the user's max_in_flight, only as many as the account was found to
            # run, plus a few queued (see engine/capacity.py).
            # A 429's throttle ends on time, accepted submits or not (see capacity.py).
            self._timing.capacity = self._timing.capacity.lifted(self._monotonic())
            free = min(free, self._timing.room(self._ledger.submits))
            allowed = self._gate.open and not self._stop.is_set()  # stop: no new ones
            if allowed and not self._report.auth_error and free > 0:
                now = self._monotonic()
                if now >= self._next_release:  # retries come due on a clock, not on events
                    self._next_release = now + self._settings.idle_check
                    await self._gateway.call(self._queue.release_due, self._settings.batch)
                claimed = await self._claim(free)
            for item in claimed:
                self._ledger.submit_started()
                group.start_soon(self._submit_one, item, limiter)
            if not claimed:
                await self._wakeup.wait(self._settings.idle_check)

    async def _claim(self, at_most: int) -> list[WorkItem]:
        settings = self._settings
        # Without --batch (``work``), each batch's own stored cap holds (see claim).
        spend_cap = settings.max_spend if settings.batch is not None else None
        # The limits are counted inside the claim's transaction, over every worker sharing
        # the store: max_in_flight holds for all of them together, not per process.
        claimed = await self._gateway.call(
            lambda: self._queue.claim(
                settings.batch,
                at_most,
                worker_id=self._worker_id,
                max_in_flight=settings.max_in_flight,
                per_model_cap=settings.max_in_flight_per_model,
                max_spend=spend_cap,
            )
        )
        if not claimed:
            # Only jobs whose estimate still fits are claimed: a cap is never passed, and
            # once nothing pending can fit (or be priced), submitting stops.
            stalled = await self._gateway.call(
                self._prices.spend_stalled, settings.batch, spend_cap
            )
            if stalled is not None:
                self._gate.cap_reached(stalled)
        return claimed

    async def _pace(self) -> None:
        """The submit rate limit: at most ``submits_per_second`` POSTs per second, shared by
        every worker on the store (each submit reserves the next slot in the database)."""
        rate = self._settings.submits_per_second
        if not rate:
            return
        wait = await self._gateway.call(self._workers.reserve, SUBMIT_PACER, 1 / rate)
        if wait > 0:
            await anyio.sleep(wait)

    async def _submit_one(self, item: WorkItem, limiter: anyio.CapacityLimiter) -> None:
        """Submit a claimed job and record the answer, even when the run is being stopped:
        cancelling the POST halfway would leave a job that may exist remotely in
        ``submitting`` (parked as needs_reconcile). The client's timeouts bound the wait."""
        with anyio.CancelScope(shield=True):
            await self._submit_claimed(item, limiter)

    async def _submit_claimed(self, item: WorkItem, limiter: anyio.CapacityLimiter) -> None:
        bound = log.bind(
            batch=item.batch, job=item.name, attempt=item.attempts, model=item.model_id
        )
        try:
            async with limiter:
                model = self._catalog.get(item.model_id)
                try:
                    body = await anyio.to_thread.run_sync(
                        build_request_payload, item.payload, model
                    )
                except (ImageError, OSError) as exc:
                    await self._gateway.settle(
                        item,
                        Outcome.REJECTED,
                        error=f"input image: {exc}",
                        attempt={"outcome": "rejected", "error": str(exc)},
                    )
                    return
                failpoints.reached("after_claim")
                await self._pace()  # last, so nothing between the slot and the POST
                if not self._gate.open:
                    # A breaker tripped (or the cap was reached) since the claim: this job
                    # goes back unpaid. Nothing is POSTed after a breaker trips.
                    await self._gateway.settle(item, Outcome.HELD, attempt={"outcome": "held"})
                    return
                try:
                    sent = self._monotonic()
                    submitted = await self._api.submit(item.model_id, body)
                except RunComfyError as exc:
                    await self._submit_failed(item, exc, bound)
                    return
                failpoints.reached("after_post")
            self._transient.pop(item.row_id, None)
            accepted = self._monotonic()
            now = self._queue.now()
            moved = await self._gateway.settle(
                item,
                Outcome.ACCEPTED,
                fields={
                    "request_id": submitted.request_id,
                    "submitted_at": now,
                    "remote_status": "in_queue",
                    "error": None,
                },
                attempt={"request_id": submitted.request_id},
                detail={"request_id": submitted.request_id},
            )
            self._report.submitted += 1
            failpoints.reached("after_accept")
            bound.info("submitted", request_id=submitted.request_id)
            if moved:
                # First look at the earliest likely finish, after the expected queue wait
                # (or soon, while the account's capacity is still being discovered).
                first_look = self._timing.submitted(
                    item.row_id, timing_key_of(self._catalog, item), sent=sent, accepted=accepted
                )
                self._schedule.watch(
                    moved_to(
                        item,
                        JobState.SUBMITTED,
                        request_id=submitted.request_id,
                        remote_status="in_queue",  # as stored; --cancel-on-exit reads it
                    ),
                    delay=first_look,
                )
        finally:
            self._ledger.submit_ended()
            self._wakeup.set()

    async def _submit_failed(self, item: WorkItem, exc: RunComfyError, bound: Any) -> None:
        if isinstance(exc, AuthError):
            self._report.auth_error = str(exc)
            await self._gate.trip(breaker_for_account(BreakerKind.AUTH, str(exc)), item.batch)
            await self._gateway.settle(item, Outcome.HELD, attempt={"outcome": "held"})
            bound.error("authentication failed", error=str(exc))
        elif isinstance(exc, InsufficientBalance):
            self._report.balance_error = str(exc)
            await self._gate.trip(breaker_for_account(BreakerKind.BALANCE, str(exc)), item.batch)
            await self._gateway.settle(item, Outcome.HELD, attempt={"outcome": "held"})
        elif isinstance(exc, UnknownModel):
            # Every other job of this model would be refused the same way (free, but the
            # batch is wrong): stop submitting and say what to fix. The job stays pending.
            await self._gate.trip(breaker_for_unknown_model(item.model_id, str(exc)), item.batch)
            refused = {"outcome": "rejected", "error": str(exc)}
            await self._gateway.settle(item, Outcome.HELD, error=str(exc), attempt=refused)
        elif isinstance(exc, AmbiguousSubmission):
            await self._gateway.settle(
                item,
                Outcome.AMBIGUOUS,
                error=str(exc),
                attempt={"outcome": "ambiguous", "error": str(exc)},
            )
            bound.warning("submit outcome unknown; needs reconcile", error=str(exc))
        elif isinstance(exc, TransientError):
            if isinstance(exc, RateLimited):
                # Fewer in flight for a while: the submit pace slows, for at most the
                # Retry-After cap. The job itself waits for its own (capped) Retry-After.
                ends = self._monotonic() + self._settings.max_delay
                self._timing.capacity = self._timing.capacity.throttled(until=ends)
            failures = self._transient.get(item.row_id, 0) + 1
            self._transient[item.row_id] = failures
            if failures >= self._settings.max_transient_failures:
                await self._gateway.settle(
                    item,
                    Outcome.REJECTED,
                    error=f"gave up after {failures} failed submits: {exc}",
                    attempt={"outcome": "not_sent", "error": str(exc)},
                )
                return
            retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            await self._gateway.retry_later(
                item,
                Outcome.NOT_SENT,
                failures,
                str(exc),
                retry_after,
                attempt={"outcome": "not_sent", "error": str(exc)},
            )
        else:  # PermanentError and anything unclassified: the input is wrong
            await self._gateway.settle(
                item,
                Outcome.REJECTED,
                error=str(exc),
                attempt={"outcome": "rejected", "error": str(exc)},
            )
            bound.warning("submit rejected", error=str(exc))
