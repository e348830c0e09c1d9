"""The worker pool: one submitter, one poll scheduler for every job in flight, downloaders.

Each step follows the same rhythm: ask the store (a thread, one short transaction), do the
network call with no transaction open, ask :mod:`.decisions` what it means, write the
answer. The store is the truth; in-memory state (poll schedule, discovered capacity) is
only an optimisation and is rebuilt on start; learned run times are kept in the store.

Write-ahead: a job is ``submitting`` (attempt counted) before its POST, and its request id
is committed before anything waits on it. A submit that may have reached RunComfy without
a clear answer goes to ``needs_reconcile`` and is never resubmitted here.
"""

from __future__ import annotations

import math

import anyio
from anyio.abc import TaskGroup
from sqlalchemy.exc import DBAPIError

from orchestrator.api import RunComfyError
from orchestrator.engine.core import EngineCore, EngineReport, log
from orchestrator.engine.decisions import Outcome
from orchestrator.engine.downloading import Downloading
from orchestrator.engine.polling import Polling
from orchestrator.engine.runtimes import Estimate
from orchestrator.engine.submitting import Submitting
from orchestrator.engine.timing import Learned
from orchestrator.store.runtimes import StoredRunTime
from orchestrator.store.states import JobState
from orchestrator.store.work import WorkItem

__all__ = ["Engine", "EngineCore", "EngineReport"]


class Engine(Submitting, Polling, Downloading):
    """Drains the queue for one batch (or all of them) against one RunComfy account."""

    # -- the run ---------------------------------------------------------------------------

    async def run(self, stop: anyio.Event | None = None) -> EngineReport:
        """Work until the batch is done, a stop is requested, or auth fails."""
        stop = stop or anyio.Event()
        self._stop = stop
        self._send, self._receive = anyio.create_memory_object_stream[tuple[WorkItem, str | None]](
            math.inf
        )
        settings = self.settings
        self._heartbeat_limiter = anyio.CapacityLimiter(1)
        reason = "exited"
        try:
            self.worker_id = await self._db(
                lambda: self.workers.register(
                    batch=settings.batch, lease_seconds=settings.lease_seconds
                )
            )
            # Run times learned by earlier runs (this batch's, or last night's).
            stored = await self._db(self.runtimes.load)
            self.timing.load(
                Learned(r.key, r.model_id, Estimate(r.typical_s, r.spread_s, r.samples))
                for r in stored.values()
            )
            # What a dead or stopped worker (this one's previous run, say) left in flight.
            await self._take_over()
            # A re-run is the way to ask again for paid videos that could not be fetched.
            resumed = await self._db(self.fetches.resume, settings.batch)
            if resumed:
                log.info("fetching paid videos again", batch=settings.batch, jobs=len(resumed))
            with self._send, self._receive:
                async with anyio.create_task_group() as group:
                    group.start_soon(self._submitter, group)
                    group.start_soon(self._poller, group)
                    group.start_soon(self._fetcher)
                    for _ in range(settings.max_downloads):
                        group.start_soon(self._downloader)
                    group.start_soon(self._keep_lease)
                    group.start_soon(self._watch_for_end, group, stop)
            if settings.cancel_on_exit and self.report.stopped_by == "interrupted":
                with anyio.CancelScope(shield=True):
                    await self._cancel_queued_remote()
            reason = self.report.stopped_by
        except* DBAPIError as failed:  # not retry-safe: a full disk, a read-only file ...
            self._stopped_by_storage(failed.exceptions[0])
            reason = "storage"
        finally:
            with anyio.CancelScope(shield=True):
                await self._save_run_times()
                await self._leave(reason)
        return self.report

    def _stopped_by_storage(self, error: BaseException) -> None:
        """A write the store refused and that retrying cannot help (a full disk,
        SQLITE_FULL, a read-only file): stop at once, since nothing more can be recorded
        (a submit whose request id cannot be committed must not be sent). What was
        committed stays; a job caught mid-submit is parked as needs_reconcile next run."""
        detail = getattr(error, "orig", None) or error
        self.report.stopped_by = "storage"
        self.report.storage_error = (
            f"the store could not be written ({str(detail)[:200]}): the run stopped; every "
            "request id committed before it is kept. Free space (or fix the database), "
            "then run the same command again"
        )
        log.error("the store could not be written; stopping", error=str(detail)[:200])

    async def _take_over(self) -> None:
        """Adopt the jobs of dead workers: poll or download them; park their submits."""
        assert self.worker_id is not None
        taken = await self._db(self.workers.take_over, self.worker_id, self.settings.batch)
        for worker, why in taken.dead.items():
            log.warning("worker taken over", worker=worker, reason=why, by=self.worker_id)
        if taken.parked:
            self.report.notes.append(
                f"{taken.parked} job(s) were interrupted while submitting and need a decision "
                "(orchestrator reconcile)"
            )
        self.report.adopted += len(taken.adopted)
        for item in taken.adopted:
            if item.state == JobState.DOWNLOADING:
                self._adopted.add(item.row_id)
                self._send.send_nowait((item, None))
            else:
                self.timing.adopted(item.row_id, self._timing_key(item))
                self._watch(item, delay=0.0)

    async def _keep_lease(self) -> None:
        """Heartbeat, and take over workers that stopped beating; stop if presumed dead."""
        assert self.worker_id is not None
        while True:
            await anyio.sleep(self.settings.heartbeat_every)
            # Its own thread: a heartbeat queued behind a burst of store writes could miss
            # the lease on a busy machine and get this live worker taken over.
            beat = await self._in_thread(
                self.workers.heartbeat, self.worker_id, limiter=self._heartbeat_limiter
            )
            if not beat:
                # Another worker declared this one dead (a pause longer than the lease) and
                # took its jobs: every write it would make is fenced off anyway. Stop.
                self.report.lease_lost = True
                self.report.notes.append(
                    "this worker was presumed dead (no heartbeat within its lease) and its "
                    "jobs were taken over by another worker; it stopped"
                )
                log.error("lease lost: this worker was taken over", worker=self.worker_id)
                return
            await self._take_over()
            await self._forget_moved()
            await self._save_run_times()

    async def _save_run_times(self) -> None:
        """Keep what this run learned for the next one (a few rows, upserted at once).
        Losing them is harmless: the next run learns again, with a bounded schedule."""
        rows = [
            StoredRunTime(
                r.key, r.model_id, r.estimate.typical, r.estimate.spread, r.estimate.samples
            )
            for r in self.timing.changed()
        ]
        if not rows:
            return
        try:
            await self._db(self.runtimes.save, rows)
        except (DBAPIError, OSError) as error:  # a full disk must not end the run here
            log.warning("could not keep the learned run times", error=str(error))

    async def _forget_moved(self) -> None:
        """Stop watching jobs a user (or another worker) moved since this worker last
        wrote them: a cancelled or discarded job that is still running remotely would
        otherwise be polled until RunComfy finishes it, and would keep the run open."""
        if not self._watched:
            return
        # Only the items read are compared: a job watched (or re-watched) while the read
        # ran is newer than what was read, and must not be dropped for it.
        seen = dict(self._watched)
        held = await self._db(self.queue.leases, list(seen))
        for row_id, item in seen.items():
            if self._watched.get(row_id) is not item:
                continue
            if held.get(row_id) != (item.state.value, item.lease_token):
                log.info(
                    "stopped watching a job moved by someone else",
                    batch=item.batch,
                    job=item.name,
                    attempt=item.attempts,
                    request_id=item.request_id,
                )
                self._unwatch(row_id)

    async def _leave(self, reason: str) -> None:
        if self.worker_id is None:
            return
        try:
            await self._db(self.workers.stop, self.worker_id, reason)
        except Exception as exc:  # the lease then expires on its own
            log.warning("could not deregister the worker", worker=self.worker_id, error=str(exc))

    async def _watch_for_end(self, group: TaskGroup, stop: anyio.Event) -> None:
        while True:
            with anyio.move_on_after(self.settings.idle_check):
                await stop.wait()
            if self.report.lease_lost:
                self.report.stopped_by = "lease_lost"
                break
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
        if self.submitting_allowed:
            return await self._db(self.queue.unfinished, batch) == 0
        # Submitting has stopped (spend cap, a breaker): done once nothing paid is left to
        # poll or fetch (jobs waiting to be fetched again included).
        left = await self._db(self.fetches.paid_work_left, batch)
        return not left and self._receive.statistics().current_buffer_used == 0

    async def _cancel_queued_remote(self) -> None:
        """``--cancel-on-exit``: cancel remote jobs still queued (running ones cannot be)."""
        for item in list(self._watched.values()):
            if item.request_id is None or item.remote_status != "in_queue":
                continue
            try:
                reply = await self.api.cancel(item.request_id)
            except RunComfyError as exc:  # best effort: the job stays watched next run
                log.warning(
                    "cancel on exit failed",
                    batch=item.batch,
                    job=item.name,
                    request_id=item.request_id,
                    error=str(exc),
                )
                continue
            if reply.cancelled:
                self.report.cancelled_remote += 1
                await self._settle(item, Outcome.CANCELLED, fields={"remote_status": "cancelled"})
