"""The worker pool: one submitter, one poll scheduler for every job in flight, downloaders.

Each step follows the same rhythm: ask the store (a thread, one short transaction), do the
network call with no transaction open, ask :mod:`.decisions` what it means, write the
answer. The store is the truth; in-memory state (poll schedule, adaptive limit, run-time
averages) is only an optimisation and is rebuilt from the store on start.

Write-ahead: a job is ``submitting`` (attempt counted) before its POST, and its request id
is committed before anything waits on it. A submit that may have reached RunComfy without
a clear answer goes to ``needs_reconcile`` and is never resubmitted here.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestrator.api import (
    AmbiguousSubmission,
    AuthError,
    InsufficientBalance,
    RateLimited,
    RequestNotFound,
    RunComfyClient,
    RunComfyError,
    TransientError,
    build_request_payload,
)
from orchestrator.catalog import Catalog
from orchestrator.engine import failpoints
from orchestrator.engine.decisions import (
    AdaptiveLimit,
    Outcome,
    RunTimes,
    next_state,
    poll_interval,
    retry_delay,
)
from orchestrator.engine.download import Downloader, DownloadError
from orchestrator.engine.settings import EngineSettings
from orchestrator.media import ImageError
from orchestrator.outputs.paths import OutputPathError, resolve_inside
from orchestrator.outputs.sidecar import write_sidecar
from orchestrator.store.states import JobState
from orchestrator.store.work import WorkItem, WorkQueue

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
    notes: list[str] = field(default_factory=list)


class Engine:
    """Drains the queue for one batch (or all of them) against one RunComfy account."""

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
        self.limit = AdaptiveLimit(float(settings.max_in_flight), settings.max_in_flight)
        self.run_times = RunTimes()
        self._schedule: list[tuple[float, int, int]] = []
        self._watched: dict[int, WorkItem] = {}
        self._seen_running: dict[int, float] = {}
        self._transient: dict[int, int] = {}
        self._seq = itertools.count()
        self._wake_submitter = anyio.Event()
        self._wake_poller = anyio.Event()
        self._submitting_allowed = True
        self._stop = anyio.Event()
        self._busy = 0
        self._submits_running = 0
        self._next_submit_at = 0.0
        self._send: MemoryObjectSendStream[tuple[WorkItem, str | None]]
        self._receive: MemoryObjectReceiveStream[tuple[WorkItem, str | None]]

    # -- the run ---------------------------------------------------------------------------

    async def run(self, stop: anyio.Event | None = None) -> EngineReport:
        """Work until the batch is done, a stop is requested, or auth fails."""
        stop = stop or anyio.Event()
        self._stop = stop
        self._send, self._receive = anyio.create_memory_object_stream[tuple[WorkItem, str | None]](
            math.inf
        )
        recovered = await anyio.to_thread.run_sync(self.queue.recover, self.settings.batch)
        if recovered:
            self.report.notes.append(
                f"{recovered} job(s) were interrupted while submitting and need a decision "
                "(orchestrator reconcile)"
            )
        for item in await anyio.to_thread.run_sync(self.queue.active, self.settings.batch):
            if item.state == JobState.DOWNLOADING:
                self._send.send_nowait((item, None))
            else:
                self._watch(item, delay=0.0)
        with self._send, self._receive:
            async with anyio.create_task_group() as group:
                group.start_soon(self._submitter, group)
                group.start_soon(self._poller, group)
                for _ in range(self.settings.max_downloads):
                    group.start_soon(self._downloader)
                group.start_soon(self._watch_for_end, group, stop)
        if self.settings.cancel_on_exit and self.report.stopped_by == "interrupted":
            with anyio.CancelScope(shield=True):
                await self._cancel_queued_remote()
        return self.report

    async def _watch_for_end(self, group: TaskGroup, stop: anyio.Event) -> None:
        while True:
            with anyio.move_on_after(self.settings.idle_check):
                await stop.wait()
            if stop.is_set():
                self.report.stopped_by = "interrupted"
                break
            if self.report.auth_error:
                self.report.stopped_by = "auth"
                break
            if self.settings.stop_when_done and await self._finished():
                break
        group.cancel_scope.cancel()

    async def _finished(self) -> bool:
        if self._busy or self._watched:
            return False
        batch = self.settings.batch
        if self._submitting_allowed:
            return await anyio.to_thread.run_sync(self.queue.unfinished, batch) == 0
        # Submitting has stopped (balance, spend cap): done once nothing is in flight.
        active = await anyio.to_thread.run_sync(self.queue.in_flight, batch)
        return not active and self._receive.statistics().current_buffer_used == 0

    # -- submitting ------------------------------------------------------------------------

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

    # -- polling ---------------------------------------------------------------------------

    def _watch(self, item: WorkItem, delay: float) -> None:
        self._watched[item.row_id] = item
        due = self.monotonic() + delay
        heapq.heappush(self._schedule, (due, next(self._seq), item.row_id))
        self._wake_poller.set()

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
        assert item.request_id is not None
        try:
            async with limiter:
                self.report.polls += 1
                status = await self.api.status(item.request_id)
                if not status.terminal:
                    await self._still_running(item, status.status, status.queue_position)
                    return
                result = await self.api.result(item.request_id, include_cost=True)
        except RequestNotFound as exc:
            self._watched.pop(item.row_id, None)
            await self._settle(
                item,
                Outcome.REMOTE_LOST,
                error=str(exc),
                attempt={"outcome": "remote_lost", "error": str(exc)},
            )
            return
        except AuthError as exc:
            self.report.auth_error = str(exc)
            return
        except RunComfyError as exc:
            if isinstance(exc, RateLimited):
                self.limit = self.limit.throttled()
            failures = self._transient.get(item.row_id, 0) + 1
            self._transient[item.row_id] = failures
            if not isinstance(exc, TransientError) or failures > POLL_PATIENCE:
                # A reply that will not change (a 4xx on our own request id) or one that
                # keeps failing: the job may still finish remotely, so a person decides.
                self._watched.pop(item.row_id, None)
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
                rng=self.rng,
            )
            self._watch(item, delay)
            return
        finally:
            self._busy -= 1
        self._transient.pop(item.row_id, None)
        await self._finished_remotely(item, result)

    async def _still_running(self, item: WorkItem, status: str, position: int | None) -> None:
        now = self.monotonic()
        if status == "in_progress":
            self._seen_running.setdefault(item.row_id, now)
        running_for = now - self._seen_running.get(item.row_id, now)
        if status != item.remote_status:
            fields: dict[str, Any] = {"remote_status": status, "queue_position": position}
            if status == "in_progress":
                fields["started_at"] = self.queue.now()
            await anyio.to_thread.run_sync(self.queue.note, item, fields)
            item = _after(item, item.state, remote_status=status)
        delay = poll_interval(
            status,
            running_for=running_for,
            typical_run_time=self.run_times.typical(item.model_id),
            queue_position=position,
            policy=self.settings.poll,
            rng=self.rng,
        )
        self._watch(item, delay)

    async def _finished_remotely(self, item: WorkItem, result: Any) -> None:
        if not result.terminal:  # /status ran ahead of /result: look again soon
            self._watch(item, self.settings.poll.minimum)
            return  # (keeping when the job was seen starting, to learn its run time)
        started = self._seen_running.pop(item.row_id, None)
        if result.succeeded:
            # The server's own stamps measure the run exactly; our clock only sees when we
            # looked, which would teach the poller its own lateness.
            run_time = _seconds_between(result.created_at, result.finished_at)
            if run_time is None and started is not None:
                run_time = self.monotonic() - started
            if run_time is not None:
                self.run_times = self.run_times.observed(item.model_id, run_time)
        self._watched.pop(item.row_id, None)
        # The cost goes on the attempt; the store sums attempts into the job's cost.
        facts = {
            "remote_status": result.status,
            "finished_at": self.queue.now(),
            "queue_position": None,
        }
        if result.succeeded:
            moved = await self._settle(
                item,
                Outcome.REMOTE_SUCCEEDED,
                fields=facts,
                attempt={"outcome": "succeeded", "cost_usd": result.cost},
            )
            if moved:
                self._send.send_nowait((_after(item, JobState.DOWNLOADING), result.video_url))
        elif result.status in ("cancelled", "canceled"):
            await self._settle(
                item, Outcome.REMOTE_CANCELLED, fields=facts, attempt={"outcome": "cancelled"}
            )
        else:
            reason = result.error or (
                "completed without any output URL"
                if result.status in ("completed", "succeeded")
                else f"remote status {result.status}"
            )
            # max_attempts bounds paid generations: a refused (429) or held submit was
            # counted as an attempt but never billed, so it does not use up a re-roll.
            paid = await anyio.to_thread.run_sync(self.queue.paid_attempts, item.row_id)
            await self._retry_later(
                replace(item, attempts=paid),
                Outcome.REMOTE_FAILED,
                paid,
                reason,
                None,
                fields=facts,
                attempt={"outcome": "failed", "error": reason, "cost_usd": result.cost},
            )

    # -- downloading -----------------------------------------------------------------------

    async def _downloader(self) -> None:
        async for item, url in self._receive:
            self._busy += 1
            try:
                await self._download_one(item, url)
            finally:
                self._busy -= 1

    async def _download_one(self, item: WorkItem, url: str | None) -> None:
        bound = log.bind(
            batch=item.batch, job=item.name, attempt=item.attempts, request_id=item.request_id
        )
        try:
            target = resolve_inside(Path(item.output_root), item.output_path)
        except OutputPathError as exc:
            await self._settle(item, Outcome.DOWNLOAD_FAILED, error=str(exc))
            return
        refreshed = False
        error = "no download URL"
        for attempt in range(1, self.settings.max_download_tries + 1):
            if url is None:
                url = await self._fresh_url(item)
                if url is None:
                    error = "the result has no video URL any more"
                    break
            failpoints.reached("before_download")
            try:
                done = await self.downloader.fetch(url, target)
            except DownloadError as exc:
                error = str(exc)
                bound.warning("download failed", error=error, try_number=attempt)
                if exc.expired and not refreshed:
                    refreshed = True
                    url = None
                    continue
                last = attempt == self.settings.max_download_tries
                if last or not (exc.retryable or exc.expired):
                    break  # no pointless wait after the final try
                # The engine's backoff (not a fixed 1 s base), capped at 30 s.
                delay = retry_delay(
                    attempt,
                    base=self.settings.base_delay,
                    cap=min(30.0, self.settings.max_delay),
                    rng=self.rng,
                )
                await anyio.sleep(delay)
                continue
            self.report.downloads += 1
            failpoints.reached("after_rename")
            await anyio.to_thread.run_sync(self._write_sidecar, item, done)
            await self._settle(
                item,
                Outcome.DOWNLOADED,
                fields={
                    "size_bytes": done.size_bytes,
                    "sha256": done.sha256,
                    "downloaded_at": self.queue.now(),
                    "error": None,
                },
            )
            bound.info("downloaded", path=str(done.path), bytes=done.size_bytes)
            return
        await self._settle(item, Outcome.DOWNLOAD_FAILED, error=f"download failed: {error}")

    async def _fresh_url(self, item: WorkItem) -> str | None:
        assert item.request_id is not None
        try:
            result = await self.api.result(item.request_id, include_cost=True)
        except RunComfyError:
            return None
        return result.video_url if result.succeeded else None

    def _write_sidecar(self, item: WorkItem, done: Any) -> None:
        facts = self.queue.facts(item.row_id)
        write_sidecar(
            done.path,
            {
                "job": {"id": item.name, "key": item.key, "batch": item.batch},
                "model": item.model_id,
                "payload": item.payload,
                "request_id": item.request_id,
                "attempts": item.attempts,
                "cost_usd": facts.get("cost_usd"),
                "timings": {
                    "queued": facts.get("created_at"),
                    "submitted": facts.get("submitted_at"),
                    "started": facts.get("started_at"),
                    "finished": facts.get("finished_at"),
                    "downloaded": self.queue.now().isoformat(),
                },
                "video": {
                    "file": done.path.name,
                    "bytes": done.size_bytes,
                    "sha256": done.sha256,
                    **done.probe.as_dict(),
                },
            },
        )

    # -- shared ----------------------------------------------------------------------------

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
        moved = await anyio.to_thread.run_sync(
            lambda: self.queue.transition(item, target, outcome.value, values, detail, attempt)
        )
        if moved:
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
            # Someone else moved the job first (another worker, a user command): the store
            # kept their change; this one is dropped, not forced.
            log.warning(
                "stale transition dropped",
                batch=item.batch,
                job=item.name,
                attempt=item.attempts,
                request_id=item.request_id,
                from_state=item.state.value,
                to_state=target.value,
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
            rng=self.rng,
        )
        values = {**(fields or {}), "next_attempt_at": self.queue.now() + timedelta(seconds=delay)}
        await self._settle(item, outcome, fields=values, error=reason, attempt=attempt)

    async def _cancel_queued_remote(self) -> None:
        """``--cancel-on-exit``: cancel remote jobs still queued (running ones cannot be)."""
        for item in list(self._watched.values()):
            if item.request_id is None or item.remote_status != "in_queue":
                continue
            try:
                reply = await self.api.cancel(item.request_id)
            except RunComfyError:
                continue
            if reply.cancelled:
                self.report.cancelled_remote += 1
                await self._settle(item, Outcome.CANCELLED, fields={"remote_status": "cancelled"})


def _seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds between two ISO 8601 stamps, or None when either is missing or unreadable."""
    if not start or not end:
        return None
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _after(item: WorkItem, state: JobState, **changes: Any) -> WorkItem:
    return replace(item, state=state, **changes)
