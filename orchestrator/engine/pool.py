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

import random
import time
from typing import TYPE_CHECKING

import anyio
from sqlalchemy.exc import DBAPIError

from orchestrator.api import RunComfyClient, RunComfyError
from orchestrator.engine.core import EngineReport, WrongReplies, log, timing_key_of
from orchestrator.engine.decisions import Outcome
from orchestrator.engine.downloading import DownloadPool
from orchestrator.engine.gate import SubmitGate
from orchestrator.engine.gateway import Backoff, StoreGateway
from orchestrator.engine.ledger import InFlight
from orchestrator.engine.polling import Poller
from orchestrator.engine.runtimes import Estimate
from orchestrator.engine.schedule import PollSchedule
from orchestrator.engine.submitting import Submitter
from orchestrator.engine.timing import Learned, Timing
from orchestrator.store.fetches import FetchQueue
from orchestrator.store.runtimes import RunTimeBook, StoredRunTime
from orchestrator.store.states import JobState
from orchestrator.store.workers import WorkerRegistry

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskGroup

    from orchestrator.catalog import Catalog
    from orchestrator.engine.download import Downloader
    from orchestrator.engine.settings import EngineSettings
    from orchestrator.store.work import WorkQueue

__all__ = ["Engine", "EngineReport"]


class Engine:
    """Drains the queue for one batch (or all of them) against one RunComfy account.

    It builds the parts (see :mod:`.core`), registers this process as a worker, keeps its
    lease, and decides when the run ends.
    """

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
        self.catalog = catalog
        self.settings = settings
        rng = rng or random.Random()
        self.report = EngineReport()
        self.worker_id: str | None = None
        """Set by :meth:`run` once this process is registered as a worker."""
        self.timing = Timing(settings.poll, ceiling=settings.max_in_flight, rng=rng)
        """Sightings, learned run times, the discovered capacity: when to look next."""
        self.ledger = InFlight()
        """What this worker has in hand (watched jobs, work running)."""
        self._workers = WorkerRegistry(queue)
        self._fetches = FetchQueue(queue)
        self._runtimes = RunTimeBook(queue)
        self.schedule = PollSchedule(self.ledger, self.timing, monotonic)
        self.gateway = StoreGateway(
            queue,
            Backoff(settings.base_delay, settings.max_delay, rng),
            on_room=lambda: self.submitter.wake(),
            on_stale=self.schedule.unwatch,
        )
        """Every store call of the run goes through it (and every decision applied)."""
        self.gate = SubmitGate(
            self.report, self.gateway, queue, on_open=lambda: self.submitter.wake()
        )
        wrong_replies = WrongReplies()
        self.downloads = DownloadPool(
            self.gateway,
            queue,
            api,
            downloader,
            settings,
            ledger=self.ledger,
            gate=self.gate,
            report=self.report,
            wrong_replies=wrong_replies,
            rng=rng,
        )
        self.submitter = Submitter(
            self.gateway,
            queue,
            api,
            catalog,
            settings,
            ledger=self.ledger,
            schedule=self.schedule,
            timing=self.timing,
            gate=self.gate,
            report=self.report,
            monotonic=monotonic,
        )
        self.poller = Poller(
            self.gateway,
            queue,
            api,
            settings,
            ledger=self.ledger,
            schedule=self.schedule,
            timing=self.timing,
            gate=self.gate,
            report=self.report,
            wrong_replies=wrong_replies,
            hand_over=self.downloads.hand,
            on_room=self.submitter.wake,
            monotonic=monotonic,
            rng=rng,
        )

    # -- the run ---------------------------------------------------------------------------

    async def run(self, stop: anyio.Event | None = None) -> EngineReport:
        """Work until the batch is done, a stop is requested, or auth fails."""
        stop = stop or anyio.Event()
        settings = self.settings
        reason = "exited"
        try:
            with self.downloads.channel():
                worker_id = await self.gateway.call(
                    lambda: self._workers.register(
                        batch=settings.batch, lease_seconds=settings.lease_seconds
                    )
                )
                self.worker_id = worker_id
                # Run times learned by earlier runs (this batch's, or last night's).
                stored = await self.gateway.call(self._runtimes.load)
                self.timing.load(
                    Learned(r.key, r.model_id, Estimate(r.typical_s, r.spread_s, r.samples))
                    for r in stored.values()
                )
                # What a dead or stopped worker (this one's previous run, say) left in flight.
                await self._take_over()
                # A re-run is the way to ask again for paid videos that could not be fetched.
                resumed = await self.gateway.call(self._fetches.resume, settings.batch)
                if resumed:
                    log.info("fetching paid videos again", batch=settings.batch, jobs=len(resumed))
                async with anyio.create_task_group() as group:
                    group.start_soon(
                        lambda: self.submitter.run(group, worker_id=worker_id, stop=stop)
                    )
                    group.start_soon(self.poller.run, group)
                    self.downloads.start(group, worker_id=worker_id)
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
        taken = await self.gateway.call(
            self._workers.take_over, self.worker_id, self.settings.batch
        )
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
                self.downloads.hand(item, None, adopted=True)
            else:
                self.timing.adopted(item.row_id, timing_key_of(self.catalog, item))
                self.schedule.watch(item, delay=0.0)

    async def _keep_lease(self) -> None:
        """Heartbeat, and take over workers that stopped beating; stop if presumed dead."""
        assert self.worker_id is not None
        while True:
            await anyio.sleep(self.settings.heartbeat_every)
            # Its own thread: a heartbeat queued behind a burst of store writes could miss
            # the lease on a busy machine and get this live worker taken over.
            beat = await self.gateway.call_apart(self._workers.heartbeat, self.worker_id)
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
            await self.gateway.call(self._runtimes.save, rows)
        except (DBAPIError, OSError) as error:  # a full disk must not end the run here
            log.warning("could not keep the learned run times", error=str(error))

    async def _forget_moved(self) -> None:
        """Stop watching jobs a user (or another worker) moved since this worker last
        wrote them: a cancelled or discarded job that is still running remotely would
        otherwise be polled until RunComfy finishes it, and would keep the run open."""
        # Only the items read are compared: a job watched (or re-watched) while the read
        # ran is newer than what was read, and must not be dropped for it.
        seen = self.ledger.all_watched()
        if not seen:
            return
        held = await self.gateway.call(self.queue.leases, list(seen))
        for row_id, item in seen.items():
            if self.ledger.watched(row_id) is not item:
                continue
            if held.get(row_id) != (item.state.value, item.lease_token):
                log.info(
                    "stopped watching a job moved by someone else",
                    batch=item.batch,
                    job=item.name,
                    attempt=item.attempts,
                    request_id=item.request_id,
                )
                self.schedule.unwatch(row_id)

    async def _leave(self, reason: str) -> None:
        if self.worker_id is None:
            return
        try:
            await self.gateway.call(self._workers.stop, self.worker_id, reason)
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
        if not self.ledger.empty:
            return False
        batch = self.settings.batch
        if self.gate.open:
            return await self.gateway.call(self.queue.unfinished, batch) == 0
        # Submitting has stopped (spend cap, a breaker): done once nothing paid is left to
        # poll or fetch (jobs waiting to be fetched again included).
        left = await self.gateway.call(self._fetches.paid_work_left, batch)
        return not left and self.downloads.queued == 0

    async def _cancel_queued_remote(self) -> None:
        """``--cancel-on-exit``: cancel remote jobs still queued (running ones cannot be)."""
        for item in list(self.ledger.all_watched().values()):
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
                cancelled = {"remote_status": "cancelled"}
                await self.gateway.settle(item, Outcome.CANCELLED, fields=cancelled)
