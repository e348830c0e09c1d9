"""Downloading a finished video: allowlisted host, no token, atomic, verified.

The file is streamed to a temporary name in the target folder while its sha256 is computed,
fsynced, probed with PyAV (a real video: frames, duration, size), and only then renamed into
place, so a crash or a cut connection never leaves a partial file under the final name.
The download client carries no ``Authorization`` header: the token stays on the API host.
Every failure is a :class:`DownloadError` naming its :class:`FetchProblem`, which decides
whether the job waits, pauses or trips a breaker (:mod:`.paidwork`).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self
from urllib.parse import urlsplit

import anyio
import av
import httpx

from orchestrator import failpoints
from orchestrator.engine.paidwork import NEEDS_A_FIX, FetchProblem, problem_of_os_error
from orchestrator.outputs.paths import part_name, part_prefix, part_target
from orchestrator.outputs.placing import publish
from orchestrator.outputs.sidecar import sidecar_path

RUNCOMFY_DOMAINS = ("runcomfy.net", "runcomfy.com")
BAD_FILE = FetchProblem.BAD_FILE
DEFAULT_MAX_BYTES = 2 * 1024**3  # the official CLI's cap
CHUNK = 256 * 1024


class DownloadError(Exception):
    """A download that did not produce a verified file, and why (``problem``).

    ``expired`` (403/404/410): ask /result for a fresh URL. ``retryable``: the same fetch
    may work later. Neither: a setting must change first (a host we do not trust, a file
    over the size cap, a name too long).
    """

    def __init__(self, message: str, *, problem: FetchProblem = FetchProblem.HOST_DOWN):
        super().__init__(message)
        self.problem = problem

    @property
    def expired(self) -> bool:
        return self.problem is FetchProblem.EXPIRED

    @property
    def retryable(self) -> bool:
        return self.problem not in NEEDS_A_FIX and not self.expired


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


@dataclass(frozen=True, slots=True)
class Verified:
    """A downloaded temporary file that is a real video, before it is put in place."""

    size_bytes: int
    sha256: str
    probe: VideoProbe


#: Puts a verified temporary file in place and returns where it went (see
#: :func:`orchestrator.outputs.placing.place_video`); runs in a worker thread.
Placer = Callable[[Path, Verified], Path]


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
                raise DownloadError("the file has no video stream", problem=BAD_FILE)
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise DownloadError("the video has no frames", problem=BAD_FILE)
            frames = stream.frames or 1
            duration = 0.0
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            codec = stream.codec_context.name
            width, height = stream.codec_context.width, stream.codec_context.height
    except av.error.FFmpegError as exc:
        raise DownloadError(f"not a playable video: {exc}", problem=BAD_FILE) from exc
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

    async def fetch(self, url: str, target: Path, place: Placer | None = None) -> Downloaded:
        """Download ``url`` to ``target`` atomically and verify it is a real video.

        ``place`` puts the verified file where it belongs (it may choose another name, so
        as not to overwrite a file someone else wrote); by default it replaces ``target``.
        """
        refused = host_allowed(url, self.trusted_hosts)
        if refused:
            raise DownloadError(refused, problem=FetchProblem.HOST_NOT_ALLOWED)
        temp = target.with_name(part_name(target.name, secrets.token_hex(4)))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.leftovers.remove(target)
            size, digest = await self._stream(url, temp)
            placer = place or (lambda part, _verified: _replace(part, target))
            verified, path = await anyio.to_thread.run_sync(
                _verify_and_place, temp, size, digest, placer
            )
        except OSError as exc:
            # A full disk, an unwritable or vanished folder, or another worker that took this
            # job over while we looked dead cleaning up our temp file: the job decides.
            _discard(temp)
            problem = problem_of_os_error(exc)
            raise DownloadError(f"could not write the file: {exc}", problem=problem) from exc
        except BaseException:
            _discard(temp)
            raise
        return Downloaded(path=path, size_bytes=size, sha256=digest, probe=verified.probe)

    async def _stream(self, url: str, temp: Path) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        try:
            async with self._http.stream("GET", url) as response:
                if response.status_code in (403, 404, 410):
                    raise DownloadError(
                        f"HTTP {response.status_code}: the URL has expired or is gone",
                        problem=FetchProblem.EXPIRED,
                    )
                if response.status_code != 200:
                    raise DownloadError(f"HTTP {response.status_code}")
                announced = response.headers.get("content-length")
                expected = int(announced) if announced and announced.isdigit() else None
                if expected is not None and expected > self.max_bytes:
                    raise DownloadError(
                        f"{expected:,} bytes is over the {self.max_bytes:,} cap",
                        problem=FetchProblem.TOO_BIG,
                    )
                # Plain file calls, each chunk written in a worker thread, the end (flush,
                # fsync) in one: anyio's async file costs a thread hop per call.
                handle = await anyio.to_thread.run_sync(open, temp, "wb")
                try:
                    async for chunk in response.aiter_raw(CHUNK):
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise DownloadError(
                                f"over the {self.max_bytes:,} byte cap",
                                problem=FetchProblem.TOO_BIG,
                            )
                        digest.update(chunk)
                        await anyio.to_thread.run_sync(handle.write, chunk)
                    await anyio.to_thread.run_sync(_flush_to_disk, handle)
                finally:
                    handle.close()
                if expected is not None and size != expected:
                    raise DownloadError(f"truncated: {size:,} of {expected:,} bytes")
        except httpx.HTTPError as exc:
            raise DownloadError(f"download failed: {type(exc).__name__}") from exc
        return size, digest.hexdigest()


class Leftovers:
    """Temp files a killed run left beside its targets, found with one listing per folder.

    A glob per download lists the whole folder each time: quadratic in a folder of 10,000
    videos. The first visit to a folder indexes its temporary files
    (:func:`~orchestrator.outputs.paths.part_name`) by their target's prefix; later visits
    only look the target up. Parts written after that listing belong to
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
        # The video's own parts, and its sidecar's (a kill can land while either is written).
        for final in (target.name, sidecar_path(target).name):
            for name in index.pop(part_prefix(final)[1:], ()):
                (folder / name).unlink(missing_ok=True)


def _index_parts(folder: Path) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    try:
        entries = [entry.name for entry in os.scandir(folder)]
    except (FileNotFoundError, NotADirectoryError):
        return index
    for name in entries:
        target = part_target(name)
        if target:
            index.setdefault(target, []).append(name)
    return index


def _flush_to_disk(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _verify_and_place(temp: Path, size: int, digest: str, place: Placer) -> tuple[Verified, Path]:
    """Probe the downloaded file and, if it is a real video, put it in place."""
    verified = Verified(size_bytes=size, sha256=digest, probe=probe_video(temp))
    failpoints.reached("before_rename")
    return verified, place(temp, verified)


def _replace(temp: Path, target: Path) -> Path:
    publish(temp, target)
    return target


def _discard(temp: Path) -> None:
    # The folder itself may be gone or unreadable: then there is nothing left to clean.
    with contextlib.suppress(OSError):
        temp.unlink(missing_ok=True)
