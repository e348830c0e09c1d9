"""Downloading a finished video: allowlisted host, no token, atomic, verified.

The file is streamed to a temporary name in the target folder while its sha256 is computed,
fsynced, probed with PyAV (a real video: frames, duration, size), and only then renamed into
place, so a crash or a cut connection never leaves a partial file under the final name.
The download client carries no ``Authorization`` header: the token stays on the API host.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self
from urllib.parse import urlsplit

import anyio
import av
import httpx

from orchestrator import failpoints

RUNCOMFY_DOMAINS = ("runcomfy.net", "runcomfy.com")
DEFAULT_MAX_BYTES = 2 * 1024**3  # the official CLI's cap
CHUNK = 256 * 1024


class DownloadError(Exception):
    """A download that did not produce a verified file.

    ``expired`` (403/404): ask /result for a fresh URL. ``retryable``: try the same URL later.
    Neither: give up (a host we do not trust, a file over the size cap).
    """

    def __init__(self, message: str, *, retryable: bool = False, expired: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.expired = expired


@dataclass(frozen=True, slots=True)
class VideoProbe:
    """What PyAV reads from a downloaded file."""

    codec: str
    width: int
    height: int
    frames: int
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "frames": self.frames,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass(frozen=True, slots=True)
class Downloaded:
    path: Path
    size_bytes: int
    sha256: str
    probe: VideoProbe


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_allowed(url: str, trusted: Iterable[str]) -> str | None:
    """Why ``url`` may not be downloaded, or None when it may.

    Allowed: https on RunComfy's domains or a trusted host; plain http only on loopback
    trusted hosts (the local simulator). No credentials in URLs.

    >>> host_allowed("https://files.runcomfy.net/a.mp4", []) is None
    True
    >>> print(host_allowed("https://evil.example/a.mp4", []))  # doctest: +ELLIPSIS
    host evil.example is not on the download allowlist ...
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.username or parts.password:
        return "download URLs with credentials are refused"
    trusted_hosts = {t.lower() for t in trusted}
    runcomfy = any(host == d or host.endswith("." + d) for d in RUNCOMFY_DOMAINS)
    if parts.scheme == "https" and (runcomfy or host in trusted_hosts):
        return None
    if parts.scheme == "http" and host in trusted_hosts and is_loopback(host):
        return None
    if parts.scheme not in ("https", "http"):
        return f"scheme {parts.scheme!r} is not allowed for downloads"
    if parts.scheme == "http" and not is_loopback(host):
        return f"plain http download from {host} refused (https only)"
    return (
        f"host {host} is not on the download allowlist (RunComfy domains, the API host, "
        "--trust-host)"
    )


def probe_video(path: Path) -> VideoProbe:
    """Open the file with PyAV and decode its first frame; raise DownloadError if it is not
    a video. The frame count comes from the container (decoding every frame of every video
    would cost more CPU than the rest of the engine together); a cut file fails to open or
    to decode, and its size already disagreed with Content-Length."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DownloadError("the file has no video stream", retryable=True)
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise DownloadError("the video has no frames", retryable=True)
            frames = stream.frames or 1
            duration = 0.0
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            codec = stream.codec_context.name
            width, height = stream.codec_context.width, stream.codec_context.height
    except av.error.FFmpegError as exc:
        raise DownloadError(f"not a playable video: {exc}", retryable=True) from exc
    return VideoProbe(codec=codec, width=width, height=height, frames=frames, duration_s=duration)


class Downloader:
    """Fetches videos with its own HTTP client (never the API client, never the token)."""

    def __init__(
        self,
        *,
        trusted_hosts: Iterable[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 8,
    ) -> None:
        self.trusted_hosts = tuple(trusted_hosts)
        self.max_bytes = max_bytes
        self.leftovers = Leftovers()
        self._http = httpx.AsyncClient(
            timeout=timeout or httpx.Timeout(60.0, connect=10.0),
            follow_redirects=False,
            transport=transport,
            trust_env=False,
            # As many as downloads run at once: every request checks each pooled
            # connection, so idle extras cost CPU on every download.
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"Accept": "video/*, application/octet-stream"},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    async def fetch(self, url: str, target: Path) -> Downloaded:
        """Download ``url`` to ``target`` atomically and verify it is a real video."""
        refused = host_allowed(url, self.trusted_hosts)
        if refused:
            raise DownloadError(refused)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.leftovers.remove(target)
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        try:
            size, digest = await self._stream(url, temp)
            probe = await anyio.to_thread.run_sync(_verify_and_publish, temp, target)
        except OSError as exc:
            # A full disk, a vanished folder, or another worker that took this job over
            # while we looked dead cleaning up our temp file: retry, don't crash the worker.
            temp.unlink(missing_ok=True)
            raise DownloadError(f"could not write the file: {exc}", retryable=True) from exc
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return Downloaded(path=target, size_bytes=size, sha256=digest, probe=probe)

    async def _stream(self, url: str, temp: Path) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        try:
            async with self._http.stream("GET", url) as response:
                if response.status_code in (403, 404, 410):
                    raise DownloadError(
                        f"HTTP {response.status_code}: the URL has expired or is gone",
                        expired=True,
                    )
                if response.status_code != 200:
                    raise DownloadError(f"HTTP {response.status_code}", retryable=True)
                announced = response.headers.get("content-length")
                expected = int(announced) if announced and announced.isdigit() else None
                if expected is not None and expected > self.max_bytes:
                    raise DownloadError(f"{expected:,} bytes is over the {self.max_bytes:,} cap")
                # Plain file calls, each chunk written in a worker thread, the end (flush,
                # fsync) in one: anyio's async file costs a thread hop per call.
                handle = await anyio.to_thread.run_sync(open, temp, "wb")
                try:
                    async for chunk in response.aiter_raw(CHUNK):
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise DownloadError(f"over the {self.max_bytes:,} byte cap")
                        digest.update(chunk)
                        await anyio.to_thread.run_sync(handle.write, chunk)
                    await anyio.to_thread.run_sync(_flush_to_disk, handle)
                finally:
                    handle.close()
                if expected is not None and size != expected:
                    raise DownloadError(
                        f"truncated: {size:,} of {expected:,} bytes", retryable=True
                    )
        except httpx.HTTPError as exc:
            raise DownloadError(f"download failed: {type(exc).__name__}", retryable=True) from exc
        return size, digest.hexdigest()


class Leftovers:
    """Temp files a killed run left beside its targets, found with one listing per folder.

    A glob per download lists the whole folder each time: quadratic in a folder of 10,000
    videos. The first visit to a folder indexes its ``.<name>.<hex>.part`` files by target
    name; later visits only look the target up. Parts written after that listing belong to
    downloads running now (here or on another worker) and are left alone, unless the job was
    taken over from a dead worker: ``rescan`` lists the folder again for it.
    """

    def __init__(self) -> None:
        self._by_folder: dict[Path, dict[str, list[str]]] = {}

    def remove(self, target: Path, *, rescan: bool = False) -> None:
        folder = target.parent
        index = self._by_folder.get(folder)
        if index is None or rescan:
            index = self._by_folder[folder] = _index_parts(folder)
        for name in index.pop(target.name, ()):
            (folder / name).unlink(missing_ok=True)


def _index_parts(folder: Path) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    try:
        entries = [entry.name for entry in os.scandir(folder)]
    except (FileNotFoundError, NotADirectoryError):
        return index
    for name in entries:
        if name.startswith(".") and name.endswith(".part"):
            target, _dot, _tag = name[1:-5].rpartition(".")
            if target:
                index.setdefault(target, []).append(name)
    return index


def _flush_to_disk(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _verify_and_publish(temp: Path, target: Path) -> VideoProbe:
    """Probe the downloaded file and, if it is a real video, rename it into place."""
    probe = probe_video(temp)
    failpoints.reached("before_rename")
    _publish(temp, target)
    return probe


def _publish(temp: Path, target: Path) -> None:
    """Rename into place and make the rename durable (fsync the folder)."""
    os.replace(temp, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
