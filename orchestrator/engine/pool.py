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

import math

import anyio
from anyio.abc import TaskGroup

from orchestrator.api import RunComfyError
from orchestrator.engine.core import EngineCore, EngineReport, _seconds_between, log
from orchestrator.engine.decisions import Outcome
from orchestrator.engine.downloading import Downloading
from orchestrator.engine.polling import Polling
from orchestrator.engine.submitting import Submitting
from orchestrator.store.states import JobState
from orchestrator.store.work import WorkItem

__all__ = ["Engine", "EngineCore", "EngineReport", "_seconds_between"]


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
