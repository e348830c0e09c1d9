"""Polling: one scheduler for every job in flight, aimed at each job's likely finish.

Success is judged from ``/result`` (a success state and a video URL), never from
``/status`` alone, and only from a reply about this job: one naming another request id is
a transient error, asked again (:class:`~orchestrator.api.errors.WrongRequest`). A result
whose output URL cannot be downloaded goes to a person (``needs_reconcile``), never to a
paid re-roll. A 429 (and its ``Retry-After``, capped) holds only the job it was about.

Run times are learned from the engine's own looks, with the server's stamps used only
where they agree (:mod:`.runtimes`); when to look next is :func:`.decisions.poll_delay`,
through :class:`.timing.Timing`.
"""

from __future__ import annotations

import heapq
from dataclasses import replace
from typing import Any

import anyio
from anyio.abc import TaskGroup

from orchestrator import failpoints
from orchestrator.api import (
    AuthError,
    RemoteResult,
    RequestNotFound,
    RunComfyError,
    TransientError,
    WrongRequest,
)
from orchestrator.api.responses import SUCCESS_STATES, shown_reply
from orchestrator.engine.core import POLL_PATIENCE, EngineCore, _after, log
from orchestrator.engine.decisions import Outcome, retry_delay
from orchestrator.engine.paidwork import (
    SHOWN_URL_CHARS,
    UNUSABLE_OUTPUT,
    BreakerKind,
    breaker_for_account,
    unusable_error,
)
from orchestrator.store.prices import raised_estimate_ratio
from orchestrator.store.states import JobState
from orchestrator.store.work import WorkItem


class Polling(EngineCore):
    """The poll scheduler and what a finished remote job means."""

    async def _poller(self, group: TaskGroup) -> None:
        limiter = anyio.CapacityLimiter(self.settings.max_concurrent_polls)
        while True:
            now = self.monotonic()
            while self._schedule and self._schedule[0][0] <= now:
                _due, _seq, row_id = heapq.heappop(self._schedule)
                item = self._watched.get(row_id)
                if item is not None:
                    self._busy += 1
                    group.start_soon(self._poll_one, item, limiter)
            wait = self._schedule[0][0] - now if self._schedule else self.settings.idle_check
            self._wake_poller = anyio.Event()
            with anyio.move_on_after(max(0.0, wait)):
                await self._wake_poller.wait()

    async def _poll_one(self, item: WorkItem, limiter: anyio.CapacityLimiter) -> None:
        # Busy until what the poll found is written (and a finished job handed to the
        # downloaders): "nothing busy, nothing in flight" must never be seen in between.
        try:
            await self._poll_and_apply(item, limiter)
        finally:
            self._busy -= 1

    async def _poll_and_apply(self, item: WorkItem, limiter: anyio.CapacityLimiter) -> None:
        assert item.request_id is not None
        try:
            async with limiter:
                self.report.polls += 1
                status = await self.api.status(item.request_id)
                failpoints.reached("after_status")
                if not status.terminal:
                    # A good look ends a run of failed ones: POLL_PATIENCE counts failures
                    # in a row (a server that mixes replies up now and then is still polled).
                    self._transient.pop(item.row_id, None)
                    await self._still_running(item, status.status, status.queue_position)
                    return
                self.timing.done(item.row_id, at=self.monotonic())
                result = await self.api.result(item.request_id, include_cost=True)
        except RequestNotFound as exc:
            self._unwatch(item.row_id)
            await self._settle(
                item,
                Outcome.REMOTE_LOST,
                error=str(exc),
                attempt={"outcome": "remote_lost", "error": str(exc)},
            )
            return
        except AuthError as exc:
            self.report.auth_error = str(exc)
            await self._trip(breaker_for_account(BreakerKind.AUTH, str(exc)), item.batch)
            return
        except RunComfyError as exc:
            # A 429 here is about polling, and this job's next look waits for it; it does
            # not slow submits (a throttle with this job still in flight could leave no
            # room to submit anything until it was polled again).
            if isinstance(exc, WrongRequest):
                self._wrong_request(item, exc)
            failures = self._transient.get(item.row_id, 0) + 1
            self._transient[item.row_id] = failures
            if not isinstance(exc, TransientError) or failures > POLL_PATIENCE:
                # A reply that will not change (a 4xx on our own request id) or one that
                # keeps failing: the job may still finish remotely, so a person decides.
                self._unwatch(item.row_id)
                await self._settle(
                    item,
                    Outcome.REMOTE_LOST,
                    error=f"gave up polling after {failures} failed tries: {exc}",
                    attempt={"outcome": "remote_lost", "error": str(exc)},
                )
                return
            delay = retry_delay(
                failures,
                base=self.settings.base_delay,
                cap=min(60.0, self.settings.max_delay),
                retry_after=getattr(exc, "retry_after", None),
                retry_after_cap=self.settings.max_delay,
                rng=self.rng,
            )
            self._watch(item, delay)
            return
        self._transient.pop(item.row_id, None)
        await self._finished_remotely(item, result)

    async def _revise_price(self, item: WorkItem, cost: float | None) -> None:
        """RunComfy billed more than estimated: raise the estimates of the model's jobs not
        yet billed, so the spend cap stays a bound for the rest of the batch."""
        # Stored estimates only ever rise, so a bill within this snapshot's estimate needs
        # no write (the store checks again against the estimate as stored now).
        if raised_estimate_ratio(item.estimated_cost_usd, cost) is None:
            return
        assert cost is not None
        raised = await self._db(
            self.prices.raise_estimates, item.batch, item.model_id, item.row_id, cost
        )
        if raised:
            log.warning(
                "billed more than estimated; estimates raised",
                batch=item.batch,
                job=item.name,
                attempt=item.attempts,
                request_id=item.request_id,
                estimate=item.estimated_cost_usd,
                cost=cost,
                jobs=raised,
            )

    async def _still_running(self, item: WorkItem, status: str, position: int | None) -> None:
        if status != item.remote_status:
            fields: dict[str, Any] = {"remote_status": status, "queue_position": position}
            if status == "in_progress":
                fields["started_at"] = self.queue.now()
            if not await self._db(self.queue.note, item, fields):
                # Moved on or taken over (a reply read after a long pause, say): not ours.
                self._unwatch(item.row_id)
                log.warning(
                    "stale status dropped",
                    batch=item.batch,
                    job=item.name,
                    attempt=item.attempts,
                    request_id=item.request_id,
                    remote_status=status,
                    lease=item.lease_token,
                )
                return
            item = _after(item, item.state, remote_status=status)
        room_before = self.timing.room(self._submits_running)
        delay = self.timing.looked(item.row_id, status, at=self.monotonic(), position=position)
        if self.timing.room(self._submits_running) > room_before:
            self._wake_submitter.set()  # the account has room for more: submit them now
        self._watch(item, delay)

    async def _finished_remotely(self, item: WorkItem, result: RemoteResult) -> None:
        if not result.terminal:  # /status ran ahead of /result: look again soon
            self._watch(item, self.settings.poll.minimum)
            return  # (keeping what was seen of the job, to learn its run time)
        evidence = self.timing.finished(
            item.row_id,
            at=self.monotonic(),
            succeeded=result.succeeded,
            stamps=(result.created_at, result.started_at, result.finished_at),
            slack=self.settings.poll.minimum / 2,
        )
        if evidence is not None and self.timing.stamps[evidence.verdict] == 1:
            self._note_stamps(item, evidence.verdict)
        self._watched.pop(item.row_id, None)
        # The cost goes on the attempt; the store sums attempts into the job's cost.
        facts = {
            "remote_status": result.status,
            "finished_at": self.queue.now(),
            "queue_position": None,
        }
        await self._revise_price(item, result.cost)
        if result.unusable and not result.succeeded:
            await self._unusable_result(item, result, facts)
        elif result.status in SUCCESS_STATES:
            if not result.succeeded:
                # Rendered (and billed) but the result shows no output URL: the only way
                # forward is to fetch the result again (the fetch backoff, then a pause a
                # re-run resumes), never an automatic paid re-roll.
                log.warning(
                    "completed without an output URL; asking for the result again",
                    batch=item.batch,
                    job=item.name,
                    attempt=item.attempts,
                    request_id=item.request_id,
                )
            moved = await self._settle(
                item,
                Outcome.REMOTE_SUCCEEDED,
                fields=facts,
                attempt={"outcome": "succeeded", "cost_usd": result.cost},
            )
            if moved:  # no URL (None): the fetch asks /result again
                self._send.send_nowait((_after(item, JobState.DOWNLOADING), result.video_url))
        elif result.status in ("cancelled", "canceled"):
            await self._settle(
                item,
                Outcome.REMOTE_CANCELLED,
                fields=facts,
                attempt={"outcome": "cancelled", "cost_usd": result.cost},
            )
        else:
            reason = result.error or f"remote status {result.status}"
            # max_attempts bounds paid generations: a refused (429) or held submit was
            # counted as an attempt but never billed, so it does not use up a re-roll.
            paid = await self._db(self.queue.paid_attempts, item.row_id)
            await self._retry_later(
                replace(item, attempts=paid),
                Outcome.REMOTE_FAILED,
                paid,
                reason,
                None,
                fields=facts,
                attempt={"outcome": "failed", "error": reason, "cost_usd": result.cost},
            )

    async def _unusable_result(
        self, item: WorkItem, result: RemoteResult, facts: dict[str, Any]
    ) -> None:
        """Rendered and billed, but the output URL cannot be downloaded: a person decides
        (``needs_reconcile``, the URL in the error); paying again is never automatic."""
        assert result.unusable_url is not None
        assert item.request_id is not None
        error = unusable_error(item.request_id, item.name, result.unusable_url)
        log.warning(
            "result holds an output URL that cannot be downloaded; needs a person",
            batch=item.batch,
            job=item.name,
            attempt=item.attempts,
            request_id=item.request_id,
            url=shown_reply(result.unusable_url, SHOWN_URL_CHARS),
        )
        attempt = {"outcome": UNUSABLE_OUTPUT, "error": error, "cost_usd": result.cost}
        await self._settle(
            item, Outcome.RESULT_UNUSABLE, fields=facts, error=error, attempt=attempt
        )

    def _note_stamps(self, item: WorkItem, verdict: str) -> None:
        """Say once per run what the server's timestamps turned out to be worth."""
        where = {
            "batch": item.batch,
            "job": item.name,
            "attempt": item.attempts,
            "request_id": item.request_id,
        }
        if verdict == "contradict":
            log.warning(
                "server timestamps disagree with what the engine saw; ignoring them for "
                "this run (run times come from the engine's own looks)",
                **where,
            )
        elif verdict == "absent":
            log.info(
                "the API sent no usable timestamps; run times come from the engine's own looks",
                **where,
            )
