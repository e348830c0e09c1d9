"""Downloading a finished video: allowlisted hosts, no token, atomic, read to its end.

The file is streamed to a temporary name in the target folder while its sha256 is computed,
fsynced, read to its end with PyAV (:func:`orchestrator.media.video.inspect_video`: every
packet there, as many as the container claims, the first frame decoded), and only then
renamed into place, so a crash, a cut connection or a file cut short never stands under the
final name. The download client carries no ``Authorization`` header (nor any other
credential): the token stays on the API host.

A redirect is followed only to a host the allowlist accepts (:func:`host_allowed`, the
same rule as the first URL), at most :data:`MAX_REDIRECTS` times. A gzip body is decoded as
it arrives, the size cap counting decoded bytes. Besides the client's read timeout (a host
gone silent), every download has an overall deadline (:mod:`.transfer`), read from an
injectable clock. Every failure is a :class:`DownloadError` naming its
:class:`FetchProblem`, which decides whether the job waits, pauses or trips a breaker
(:mod:`.paidwork`).
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Self
from urllib.parse import urljoin, urlsplit

import anyio
import httpx

from orchestrator import failpoints
from orchestrator.engine.paidwork import NEEDS_A_FIX, FetchProblem, problem_of_os_error
from orchestrator.engine.transfer import (
    ACCEPT_ENCODING,
    PIECE,
    DeadlinePolicy,
    decoder_for,
    download_deadline,
    host_allowed,
    is_loopback,
)
from orchestrator.media.errors import BrokenVideo
from orchestrator.media.video import VideoProbe, inspect_video
from orchestrator.outputs.atomicwrite import discard, open_temporary, publish
from orchestrator.outputs.paths import part_prefix, part_target
from orchestrator.outputs.sidecar import sidecar_path

if TYPE_CHECKING:
    from types import TracebackType

BAD_FILE = FetchProblem.BAD_FILE
DEFAULT_MAX_BYTES = 2 * 1024**3  # the official CLI's cap
CHUNK = PIECE
#: Statuses that send the client elsewhere (303 included: a download is a GET anyway).
REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Redirects followed per download: a CDN hands over once or twice, a loop never ends.
MAX_REDIRECTS = 5
__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_REDIRECTS",
    "DownloadError",
    "Downloaded",
    "Downloader",
    "Leftovers",
    "Placer",
    "Verified",
    "VideoProbe",
    "host_allowed",
    "is_loopback",
    "probe_video",
]


class DownloadError(Exception):
    """A download that did not produce a verified file, and why (``problem``).

    ``expired`` (403/404/410): ask /result for a fresh URL. ``retryable``: the same fetch
    may work later. Neither: a setting must change first (a host we do not trust, a file
    over the size cap, a name too long). ``host``: the host a refusal is about when it is
    not the first URL's (a redirect's target), so the fix names the right one.
    """

    def __init__(
        self,
        message: str,
        *,
        problem: FetchProblem = FetchProblem.HOST_DOWN,
        host: str | None = None,
    ):
        super().__init__(message)
        self.problem = problem
        self.host = host

    @property
    def expired(self) -> bool:
        return self.problem is FetchProblem.EXPIRED

    @property
    def retryable(self) -> bool:
        return self.problem not in NEEDS_A_FIX and not self.expired


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


def probe_video(path: Path) -> VideoProbe:
    """Read the file to its end with PyAV (:func:`~orchestrator.media.video.inspect_video`);
    raise a :class:`DownloadError` (a bad file: fetched again) when it is not a whole video."""
    try:
        return inspect_video(path)
    except BrokenVideo as exc:
        raise DownloadError(str(exc), problem=BAD_FILE) from exc


class Downloader:
    """Fetches videos with its own HTTP client (never the API client, never the token).

    ``clock`` (seconds, monotonic) measures each download against its overall deadline
    (``deadline``, see :mod:`.transfer`); tests pass a simulated one. The ``timeout``'s
    read value is the stall timeout: the longest silence between two reads.
    """

    def __init__(
        self,
        *,
        trusted_hosts: Iterable[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 8,
        deadline: DeadlinePolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.trusted_hosts = tuple(trusted_hosts)
        self.max_bytes = max_bytes
        self.deadline = deadline or DeadlinePolicy()
        self.clock = clock
        self.leftovers = Leftovers()
        self._http = httpx.AsyncClient(
            timeout=timeout or httpx.Timeout(60.0, connect=10.0),
            # Redirects are followed here, hop by hop, through the allowlist (_next_hop).
            follow_redirects=False,
            transport=transport,
            # No proxy, no .netrc credentials: nothing from the environment rides along.
            trust_env=False,
            # As many as downloads run at once: every request checks each pooled
            # connection, so idle extras cost CPU on every download.
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # Only codings this module decodes (httpx would announce br and zstd too).
            headers={
                "Accept": "video/*, application/octet-stream",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
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
        """Download ``url`` to ``target`` atomically and verify it is a whole video.

        ``place`` puts the verified file where it belongs (it may choose another name, so
        as not to overwrite a file someone else wrote); by default it replaces ``target``.
        """
        refused = host_allowed(url, self.trusted_hosts)
        if refused:
            raise DownloadError(refused, problem=FetchProblem.HOST_NOT_ALLOWED)
        temp: Path | None = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.leftovers.remove(target)
            # A temporary of its own (see orchestrator.outputs.atomicwrite): the video is
            # verified before it is renamed into place, by ``place``.
            fresh, handle = await anyio.to_thread.run_sync(open_temporary, target)
            temp = fresh
            try:
                size, digest = await self._stream(url, handle)
            finally:
                handle.close()
            placer = place or (lambda part, _verified: _replace(part, target))
            verified, path = await anyio.to_thread.run_sync(
                _verify_and_place, fresh, size, digest, placer
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

    async def _stream(self, url: str, handle: BinaryIO) -> tuple[int, str]:
        """Follow allowed redirects to the file and write its decoded body to ``handle``."""
        started = self.clock()
        current = url
        try:
            for hops in range(MAX_REDIRECTS + 1):
                async with self._http.stream("GET", current) as response:
                    if response.status_code not in REDIRECTS:
                        return await self._receive(response, handle, started)
                    self._check_deadline(started, None, 0)
                    current = self._next_hop(current, response, hops)
        except httpx.HTTPError as exc:
            raise DownloadError(f"download failed: {type(exc).__name__}") from exc
        raise AssertionError("unreachable: _next_hop refuses a hop past the limit")

    def _next_hop(self, current: str, response: httpx.Response, hops: int) -> str:
        """Where a redirect points, if it may be followed; a DownloadError if not."""
        status = response.status_code
        location = response.headers.get("location")
        if not location:
            raise DownloadError(f"HTTP {status} without a Location header")
        if hops >= MAX_REDIRECTS:
            raise DownloadError(f"more than {MAX_REDIRECTS} redirects (the last was HTTP {status})")
        target: str = urljoin(current, str(location).strip())
        refused = host_allowed(target, self.trusted_hosts)
        if refused:
            origin = urlsplit(current).hostname
            raise DownloadError(
                f"refused a redirect (HTTP {status}) from {origin}: {refused}",
                problem=FetchProblem.HOST_NOT_ALLOWED,
                host=urlsplit(target).hostname or None,
            )
        return target

    async def _receive(
        self, response: httpx.Response, handle: BinaryIO, started: float
    ) -> tuple[int, str]:
        """Write a reply's body to ``handle``: (decoded bytes, their sha256)."""
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
        coding = response.headers.get("content-encoding")
        decoder = decoder_for(coding)
        if decoder is None:
            raise DownloadError(
                f"Content-Encoding {coding!r} is not accepted (only {ACCEPT_ENCODING})",
                problem=BAD_FILE,
            )
        digest = hashlib.sha256()
        size = wire = 0
        pending = bytearray()
        # Plain file calls, a batch of up to CHUNK bytes written in a worker thread, the end
        # (flush, fsync) in one: anyio's async file costs a thread hop per call.
        try:
            # Raw pieces as the socket gives them (no re-chunking): the deadline is checked
            # as each arrives, however small, and the body is decoded here, bounded.
            async for raw in response.aiter_raw():
                wire += len(raw)
                self._check_deadline(started, expected, wire)
                for piece in decoder.feed(raw):
                    size += len(piece)
                    if size > self.max_bytes:
                        raise DownloadError(
                            f"over the {self.max_bytes:,} byte cap", problem=FetchProblem.TOO_BIG
                        )
                    digest.update(piece)
                    pending += piece
                    if len(pending) >= CHUNK:
                        await anyio.to_thread.run_sync(handle.write, bytes(pending))
                        pending.clear()
            await anyio.to_thread.run_sync(_write_and_flush, handle, bytes(pending))
        except zlib.error as exc:
            raise DownloadError(f"the gzip body is corrupt: {exc}", problem=BAD_FILE) from exc
        if expected is not None and wire != expected:
            raise DownloadError(f"truncated: {wire:,} of {expected:,} bytes")
        if not decoder.complete:
            raise DownloadError(f"truncated: the gzip body ends early ({wire:,} bytes)")
        return size, digest.hexdigest()

    def _check_deadline(self, started: float, expected: int | None, received: int) -> None:
        """Fail a download that has run past its overall deadline (see :mod:`.transfer`)."""
        limit = download_deadline(expected, self.deadline)
        if expected is None:
            # An unannounced size: bytes that arrive at the minimum rate earn their time.
            limit = max(limit, download_deadline(received, self.deadline))
        elapsed = self.clock() - started
        if elapsed > limit:
            size = f"{expected:,} bytes" if expected is not None else "an unannounced size"
            raise DownloadError(
                f"too slow: {received:,} bytes in {elapsed:.0f} s, past the {limit:.0f} s "
                f"deadline for {size}"
            )


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


def _write_and_flush(handle: BinaryIO, rest: bytes) -> None:
    handle.write(rest)
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


def _discard(temp: Path | None) -> None:
    # The folder itself may be gone or unreadable: then there is nothing left to clean.
    if temp is not None:
        discard(temp)
