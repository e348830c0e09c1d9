"""Downloading: fetch, verify and place each finished video, then write its sidecar.

A job that reaches the downloaders was rendered by RunComfy: it is paid for, and its only
way forward is its video. A failed fetch never fails the job: it waits in ``fetch_wait``
with a durable backoff (a fresh ``/result``, then the download, when it comes due), pauses
in ``fetch_paused`` once the patience runs out or a setting must change, and trips a
circuit breaker when every new job would meet the same failure (:mod:`.paidwork`). A fresh
``/result`` that names another request is asked for again later; one whose output URL
cannot be downloaded sends the job to a person (``needs_reconcile``).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio

from orchestrator import failpoints
from orchestrator.api import RequestNotFound, RunComfyClient, RunComfyError, WrongRequest
from orchestrator.engine.core import EngineReport, WrongReplies, log
from orchestrator.engine.decisions import Outcome, retry_delay
from orchestrator.engine.download import Downloaded, Downloader, DownloadError, Placer, Verified
from orchestrator.engine.paidwork import (
    UNUSABLE_OUTPUT,
    FetchProblem,
    after_fetch_failure,
    breaker_for_fetch,
    unusable_error,
)
from orchestrator.outputs.ownership import owned_by
from orchestrator.outputs.paths import OutputPathError, check_relative, resolve_inside
from orchestrator.outputs.placing import place_video
from orchestrator.store.fetches import FetchQueue
from orchestrator.store.work import WorkItem, WorkQueue

if TYPE_CHECKING:
    import random
    from collections.abc import Iterator

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from orchestrator.engine.gate import SubmitGate
    from orchestrator.engine.gateway import StoreGateway
    from orchestrator.engine.ledger import InFlight
    from orchestrator.engine.settings import EngineSettings

#: What the downloaders are handed: a rendered job, and its video URL if known (None: ask
#: ``/result`` for a fresh one).
Handed = tuple[WorkItem, str | None]


class DownloadPool:
    """Download workers fed by the poller (and by due fetches) through a memory channel.

    :meth:`hand` queues a rendered job; the downloaders fetch it with ``downloader``
    (asking ``api`` for a fresh URL when needed), place it, and settle the outcome.
    """

    def __init__(
        self,
        gateway: StoreGateway,
        queue: WorkQueue,
        api: RunComfyClient,
        downloader: Downloader,
        settings: EngineSettings,
        *,
        ledger: InFlight,
        gate: SubmitGate,
        report: EngineReport,
        wrong_replies: WrongReplies,
        rng: random.Random,
    ) -> None:
        self._gateway = gateway
        self._queue = queue
        self._fetches = FetchQueue(queue)
        self._api = api
        self._downloader = downloader
        self._settings = settings
        self._ledger = ledger
        self._gate = gate
        self._report = report
        self._wrong_replies = wrong_replies
        self._rng = rng
        self._adopted: set[int] = set()
        """Jobs taken over mid-download: their dead worker may have left a part file."""
        self._worker_id: str | None = None
        self._send: MemoryObjectSendStream[Handed]
        self._receive: MemoryObjectReceiveStream[Handed]

    @contextmanager
    def channel(self) -> Iterator[None]:
        """Open the hand-over channel for one run (closed when the block ends)."""
        self._send, self._receive = anyio.create_memory_object_stream[Handed](math.inf)
        with self._send, self._receive:
            yield

    def hand(self, item: WorkItem, url: str | None, *, adopted: bool = False) -> None:
        """Queue a rendered job for the downloaders; ``adopted``: taken over from a dead
        worker (leftovers are looked for again)."""
        if adopted:
            self._adopted.add(item.row_id)
        self._send.send_nowait((item, url))

    @property
    def queued(self) -> int:
        """Jobs handed over and not yet picked up by a downloader."""
        return self._receive.statistics().current_buffer_used

    def start(self, group: TaskGroup, *, worker_id: str) -> None:
        """Start the fetcher of due fetches and the downloaders in ``group``."""
        self._worker_id = worker_id
        group.start_soon(self._fetcher)
        for _ in range(self._settings.max_downloads):
            group.start_soon(self._download_loop)

    async def _download_loop(self) -> None:
        async for item, url in self._receive:
            with self._ledger.downloading():
                try:
                    await self._download_one(item, url)
                except Exception as exc:  # one odd file must not stop the whole worker
                    log.exception(
                        "download crashed",
                        batch=item.batch,
                        job=item.name,
                        attempt=item.attempts,
                        request_id=item.request_id,
                    )
                    await self._fetch_failed(
                        item, FetchProblem.WRITE_FAILED, f"download crashed: {exc!r}", None
                    )

    async def _fetcher(self) -> None:
        """Hand ``fetch_wait`` jobs to the downloaders as they come due (from this worker
        or any other sharing the store); keeps going when submitting has stopped."""
        batch = self._settings.batch
        while True:
            if not self._report.auth_error:
                due = await self._gateway.call(self._fetches.next_due, batch)
                if due is not None and due <= self._queue.now():
                    queued = self.queued
                    claimed = await self._gateway.call(
                        self._claim_fetches, batch, 2 * self._settings.max_downloads - queued
                    )
                    for item in claimed:
                        self.hand(item, None)
                    if claimed:
                        continue
            # Due times are in the store (any worker may have set them): look again soon.
            await anyio.sleep(self._settings.idle_check)

    def _claim_fetches(self, batch: str | None, room: int) -> list[WorkItem]:
        return self._fetches.claim(batch, worker_id=self._worker_id, limit=room)

    async def _download_one(self, item: WorkItem, url: str | None) -> None:
        bound = log.bind(
            batch=item.batch, job=item.name, attempt=item.attempts, request_id=item.request_id
        )
        try:
            target = resolve_inside(Path(item.output_root), item.output_path)
        except OutputPathError as exc:
            await self._fetch_failed(item, FetchProblem.BAD_PATH, str(exc), None)
            return
        # Leftovers of a run killed mid-download go now, whatever happens next.
        rescan = item.row_id in self._adopted  # its dead worker may have left a part since
        self._adopted.discard(item.row_id)
        await anyio.to_thread.run_sync(
            lambda: self._downloader.leftovers.remove(target, rescan=rescan)
        )
        facts = await self._gateway.call(self._queue.facts, item.row_id)
        store_id = await self._gateway.call(self._fetches.store_id)
        refreshed = False
        for quick_try in range(1, self._settings.max_download_tries + 1):
            try:
                if url is None:
                    url = await self._fresh_url(item)
                failpoints.reached("before_download")
                placer = self._placer(item, facts, store_id, target)
                done = await self._downloader.fetch(url, target, placer)
            except DownloadError as exc:
                bound.warning("download failed", error=str(exc), try_number=quick_try)
                if exc.expired and not refreshed:
                    refreshed, url = True, None
                    continue
                quick = exc.problem in (FetchProblem.HOST_DOWN, FetchProblem.BAD_FILE)
                if not quick or quick_try == self._settings.max_download_tries:
                    # A refused redirect names its target: that is the host to trust.
                    host = exc.host or (urlsplit(url).hostname if url else None)
                    await self._fetch_failed(item, exc.problem, str(exc), host)
                    return
                # A cut transfer or a blip: a few quick tries before the durable backoff.
                delay = retry_delay(
                    quick_try,
                    base=self._settings.base_delay,
                    cap=min(30.0, self._settings.max_delay),
                    rng=self._rng,
                )
                await anyio.sleep(delay)
                continue
            await self._delivered(item, done, target)
            bound.info("downloaded", path=str(done.path), bytes=done.size_bytes)
            return

    async def _delivered(self, item: WorkItem, done: Downloaded, target: Path) -> None:
        self._report.downloads += 1
        failpoints.reached("after_rename")
        fields: dict[str, Any] = {
            "size_bytes": done.size_bytes,
            "sha256": done.sha256,
            "downloaded_at": self._queue.now(),
            "fetch_failures": 0,
            "error": None,
        }
        if done.path != target:
            # The name was taken by a file this store did not write: it was kept, and the
            # video went to the first free name beside it.
            fields["output_path"] = check_relative(
                (Path(item.output_path).parent / done.path.name).as_posix()
            )
            self._report.renamed.append((item.output_path, fields["output_path"]))
            log.warning(
                "output name taken by a file this store did not write; kept it",
                batch=item.batch,
                job=item.name,
                attempt=item.attempts,
                request_id=item.request_id,
                wanted=item.output_path,
                saved_as=fields["output_path"],
            )
        await self._gateway.settle(
            item,
            Outcome.DOWNLOADED,
            fields=fields,
            detail={"renamed_from": item.output_path} if "output_path" in fields else None,
        )
        await self._gate.download_succeeded(item.batch)

    async def _fetch_failed(
        self, item: WorkItem, problem: FetchProblem, detail: str, host: str | None
    ) -> None:
        """A rendered job's fetch failed: wait, pause, or (result lost) fail; maybe trip."""
        failures = item.fetch_failures + 1
        policy = self._settings.fetch
        step = after_fetch_failure(problem, failures=failures, policy=policy, rng=self._rng)
        folder = str(Path(item.output_root) / Path(item.output_path).parent)
        breaker = breaker_for_fetch(problem, detail, host=host, folder=folder)
        if breaker is not None:
            await self._gate.trip(breaker, item.batch)
        fix = f"; fix: {breaker.fix}" if breaker is not None else ""
        log.warning(
            "paid video not fetched",
            batch=item.batch,
            job=item.name,
            attempt=item.attempts,
            request_id=item.request_id,
            problem=problem.value,
            next=step.outcome.value,
            error=detail,
        )
        fields: dict[str, Any] = {"fetch_failures": failures, "next_attempt_at": None}
        if step.outcome is Outcome.REMOTE_LOST:
            error = (
                f"paid and lost: RunComfy no longer has the result of request "
                f"{item.request_id} ({detail}); 'orchestrator retry --batch {item.batch} "
                f"--ids {item.name} --reroll' pays for a new render"
            )
            attempt: dict[str, Any] | None = {"outcome": "result_lost", "error": detail}
        elif step.outcome is Outcome.RESULT_UNUSABLE:
            error = detail  # the URL, and what a person can do (see _fresh_url)
            attempt = {"outcome": UNUSABLE_OUTPUT, "error": detail}
        elif step.outcome is Outcome.DOWNLOAD_PAUSED:
            error = f"paid, not fetched: {detail}{fix}; running the batch again fetches it"
            attempt = None
        else:
            assert step.delay is not None
            due = self._queue.now() + timedelta(seconds=step.delay)
            fields["next_attempt_at"] = due
            error = (
                f"paid, fetch failed (try {failures} of {policy.tries}): {detail}{fix}; "
                f"fetched again at {due:%H:%M:%S} UTC"
            )
            attempt = None
        await self._gateway.settle(item, step.outcome, fields=fields, error=error, attempt=attempt)

    async def _fresh_url(self, item: WorkItem) -> str:
        """A new download URL from ``/result`` (URLs expire; the render does not)."""
        assert item.request_id is not None
        try:
            result = await self._api.result(item.request_id, include_cost=True)
        except RequestNotFound as exc:
            raise DownloadError(str(exc), problem=FetchProblem.RESULT_LOST) from exc
        except RunComfyError as exc:
            if isinstance(exc, WrongRequest):  # another job's reply: never its URL
                self._wrong_replies.note(item, exc)
            # A 429, a 5xx or an odd reply while asking again: the paid video is still
            # there, so this is a wait (with the fetch backoff), never a reason to fail.
            raise DownloadError(f"asking for a fresh URL: {exc}") from exc
        if result.unusable:
            assert result.unusable_url is not None
            raise DownloadError(
                unusable_error(item.request_id, item.name, result.unusable_url),
                problem=FetchProblem.UNUSABLE_URL,
            )
        if not result.succeeded or result.video_url is None:
            raise DownloadError(
                f"the result of request {item.request_id} shows no video URL right now "
                f"(status {result.status})",
                problem=FetchProblem.NO_URL,
            )
        return result.video_url

    def _placer(self, item: WorkItem, facts: dict[str, Any], store_id: str, target: Path) -> Placer:
        """Put a verified video in place beside its sidecar, never over a file this store
        did not write for this job (runs in a worker thread, with the download)."""

        def is_ours(video: Path) -> bool:
            ids = {item.request_id} if item.request_id else set()
            return owned_by(video, store_id=store_id, job_key=item.key, request_ids=ids)

        def place(temp: Path, verified: Verified) -> Path:
            return place_video(
                temp,
                target,
                lambda video: self._sidecar(item, facts, store_id, video, verified),
                is_ours=is_ours,
            )

        return place

    def _sidecar(
        self,
        item: WorkItem,
        facts: dict[str, Any],
        store_id: str,
        video: Path,
        verified: Verified,
    ) -> dict[str, Any]:
        return {
            "store": {"id": store_id},
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
                "downloaded": self._queue.now().isoformat(),
            },
            "video": {
                "file": video.name,
                "bytes": verified.size_bytes,
                "sha256": verified.sha256,
                **verified.probe.as_dict(),
            },
        }
