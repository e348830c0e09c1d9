"""Downloading: fetch, verify and place each finished video, then write its sidecar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from orchestrator import failpoints
from orchestrator.api import (
    RunComfyError,
    TransientError,
)
from orchestrator.engine.core import EngineCore, log
from orchestrator.engine.decisions import (
    Outcome,
    retry_delay,
)
from orchestrator.engine.download import DownloadError
from orchestrator.outputs.paths import OutputPathError, resolve_inside
from orchestrator.outputs.sidecar import write_sidecar
from orchestrator.store.work import WorkItem


class Downloading(EngineCore):
    """Download workers fed by the poller through a memory channel."""

    async def _downloader(self) -> None:
        async for item, url in self._receive:
            self._busy += 1
            try:
                await self._download_one(item, url)
            except Exception as exc:  # one odd file must not stop the whole worker
                log.exception(
                    "download crashed", batch=item.batch, job=item.name, attempt=item.attempts
                )
                await self._settle(item, Outcome.DOWNLOAD_FAILED, error=f"download failed: {exc!r}")
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
        # Leftovers of a run killed mid-download go now, whatever happens next.
        rescan = item.row_id in self._adopted  # its dead worker may have left a part since
        self._adopted.discard(item.row_id)
        await anyio.to_thread.run_sync(
            lambda: self.downloader.leftovers.remove(target, rescan=rescan)
        )
        refreshed = False
        error = "no download URL"
        for attempt in range(1, self.settings.max_download_tries + 1):
            try:
                if url is None:
                    url = await self._fresh_url(item)
                    if url is None:
                        error = "the result has no video URL any more"
                        break
                failpoints.reached("before_download")
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
        except TransientError as exc:
            # A 429 or 5xx while asking again: the paid video is still there, so this is a
            # retry (with the download's backoff), never a reason to fail the job.
            raise DownloadError(f"asking for a fresh URL: {exc}", retryable=True) from exc
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
