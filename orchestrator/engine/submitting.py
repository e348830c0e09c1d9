"""Submitting: claim only what can be POSTed now, write the intent, record the answer.

A claimed job is ``submitting`` (its attempt counted) before the POST; its request id is
committed before anything waits on it. A submit that may have reached RunComfy without a
clear answer goes to ``needs_reconcile`` and is never resubmitted here.
"""

from __future__ import annotations

from typing import Any

import anyio
from anyio.abc import TaskGroup

from orchestrator.api import (
    AmbiguousSubmission,
    AuthError,
    InsufficientBalance,
    RateLimited,
    RunComfyError,
    TransientError,
    build_request_payload,
)
from orchestrator.engine import failpoints
from orchestrator.engine.core import EngineCore, _after, log
from orchestrator.engine.decisions import (
    Outcome,
    poll_interval,
)
from orchestrator.media import ImageError
from orchestrator.store.states import JobState
from orchestrator.store.work import WorkItem


class Submitting(EngineCore):
    """The submitter loop and one task per POST in flight."""

    async def _submitter(self, group: TaskGroup) -> None:
        limiter = anyio.CapacityLimiter(self.settings.max_concurrent_submits)
        while True:
            claimed: list[WorkItem] = []
            # Claim only as many jobs as can be POSTed right now: a claimed job is marked
            # "submitting", and a crash while it waited would park it as needs_reconcile.
            free = self.settings.max_concurrent_submits - self._submits_running
            allowed = self._submitting_allowed and not self._stop.is_set()  # stop: no new ones
            if allowed and not self.report.auth_error and free > 0:
                await anyio.to_thread.run_sync(self.queue.release_due, self.settings.batch)
                claimed = await self._claim(free)
            for item in claimed:
                self._busy += 1
                self._submits_running += 1
                group.start_soon(self._submit_one, item, limiter)
            if not claimed:
                self._wake_submitter = anyio.Event()
                with anyio.move_on_after(self.settings.idle_check):
                    await self._wake_submitter.wait()

    async def _claim(self, at_most: int) -> list[WorkItem]:
        in_flight = await anyio.to_thread.run_sync(self.queue.in_flight, None)
        room = min(at_most, self.limit.value - sum(in_flight.values()))
        if room <= 0:
            return []
        budget: float | None = None
        if self.settings.max_spend is not None and self.settings.batch is not None:
            committed = await anyio.to_thread.run_sync(
                self.queue.committed_spend, self.settings.batch
            )
            if committed >= self.settings.max_spend:
                self._stop_submitting(spend=True)
                return []
            budget = self.settings.max_spend - committed
        per_model = None
        per_model_cap = self.settings.max_in_flight_per_model
        if per_model_cap is not None:
            per_model = {m: max(0, per_model_cap - n) for m, n in in_flight.items()}
        claimed = await anyio.to_thread.run_sync(
            lambda: self.queue.claim(self.settings.batch, room, per_model, per_model_cap, budget)
        )
        if budget is not None and not claimed:
            # Only claim jobs whose estimate still fits: the cap is never passed, and once
            # the next job does not fit, submitting stops.
            upcoming = await anyio.to_thread.run_sync(
                self.queue.next_pending_cost, self.settings.batch
            )
            if upcoming is not None and upcoming > budget + 1e-9:
                self._stop_submitting(spend=True)
        return claimed

    def _stop_submitting(self, *, spend: bool = False) -> None:
        if self._submitting_allowed:
            self._submitting_allowed = False
            if spend:
                self.report.spend_capped = True
                self.report.notes.append(
                    f"stopped submitting: the spend cap of ${self.settings.max_spend:,.2f} "
                    "would be passed"
                )

    async def _pace(self) -> None:
        """The submit rate limit: at most ``submits_per_second`` POSTs per second."""
        rate = self.settings.submits_per_second
        if not rate:
            return
        now = self.monotonic()
        start = max(now, self._next_submit_at)
        self._next_submit_at = start + 1 / rate
        if start > now:
            await anyio.sleep(start - now)

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
                await self._pace()
                model = self.catalog.get(item.model_id)
                try:
                    body = await anyio.to_thread.run_sync(
                        build_request_payload, item.payload, model
                    )
                except (ImageError, OSError) as exc:
                    await self._settle(
                        item,
                        Outcome.REJECTED,
                        error=f"input image: {exc}",
                        attempt={"outcome": "rejected", "error": str(exc)},
                    )
                    return
                failpoints.reached("after_claim")
                try:
                    submitted = await self.api.submit(item.model_id, body)
                except RunComfyError as exc:
                    await self._submit_failed(item, exc, bound)
                    return
                failpoints.reached("after_post")
            self._transient.pop(item.row_id, None)
            self.limit = self.limit.succeeded()
            now = self.queue.now()
            moved = await self._settle(
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
            self.report.submitted += 1
            failpoints.reached("after_accept")
            bound.info("submitted", request_id=submitted.request_id)
            if moved:
                # First look when the job would finish if it started at once; a queued job
                # shows its place then and is polled accordingly.
                first_look = poll_interval(
                    "in_progress",
                    running_for=0.0,
                    typical_run_time=self.run_times.typical(item.model_id),
                    queue_position=None,
                    policy=self.settings.poll,
                    rng=self.rng,
                )
                self._seen_running[item.row_id] = self.monotonic()
                self._watch(
                    _after(
                        item,
                        JobState.SUBMITTED,
                        request_id=submitted.request_id,
                        remote_status="in_queue",  # as stored; --cancel-on-exit reads it
                    ),
                    delay=first_look,
                )
        finally:
            self._busy -= 1
            self._submits_running -= 1
            self._wake_submitter.set()

    async def _submit_failed(self, item: WorkItem, exc: RunComfyError, bound: Any) -> None:
        if isinstance(exc, AuthError):
            self.report.auth_error = str(exc)
            await self._settle(item, Outcome.HELD, attempt={"outcome": "held"})
            bound.error("authentication failed", error=str(exc))
        elif isinstance(exc, InsufficientBalance):
            self.report.balance_error = str(exc)
            self._stop_submitting()
            self.report.notes.append(f"stopped submitting: {exc}")
            await self._settle(item, Outcome.HELD, attempt={"outcome": "held"})
        elif isinstance(exc, AmbiguousSubmission):
            await self._settle(
                item,
                Outcome.AMBIGUOUS,
                error=str(exc),
                attempt={"outcome": "ambiguous", "error": str(exc)},
            )
            bound.warning("submit outcome unknown; needs reconcile", error=str(exc))
        elif isinstance(exc, TransientError):
            if isinstance(exc, RateLimited):
                self.limit = self.limit.throttled()
            failures = self._transient.get(item.row_id, 0) + 1
            self._transient[item.row_id] = failures
            if failures >= self.settings.max_transient_failures:
                await self._settle(
                    item,
                    Outcome.REJECTED,
                    error=f"gave up after {failures} failed submits: {exc}",
                    attempt={"outcome": "not_sent", "error": str(exc)},
                )
                return
            retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            await self._retry_later(
                item,
                Outcome.NOT_SENT,
                failures,
                str(exc),
                retry_after,
                attempt={"outcome": "not_sent", "error": str(exc)},
            )
        else:  # PermanentError and anything unclassified: the input is wrong
            await self._settle(
                item,
                Outcome.REJECTED,
                error=str(exc),
                attempt={"outcome": "rejected", "error": str(exc)},
            )
            bound.warning("submit rejected", error=str(exc))
