"""Downloads: the host allowlist, atomic verified files, and every way a fetch can fail."""

from __future__ import annotations

import hashlib
import io
from typing import TYPE_CHECKING

import av
import httpx
import pytest
from PIL import Image

from orchestrator.engine.download import (
    Downloader,
    DownloadError,
    Leftovers,
    VideoProbe,
    host_allowed,
    is_loopback,
    probe_video,
)
from orchestrator.simulator.video import render_zoom

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

URL = "https://files.runcomfy.net/out/abc/output.mp4"
_VIDEO: list[bytes] = []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tiny_video() -> bytes:
    """A real H.264 MP4: two 32x24 frames (rendered once per session)."""
    if not _VIDEO:
        image = Image.new("RGB", (64, 48), (10, 200, 30))
        _VIDEO.append(render_zoom(image, seconds=0.5, fps=4, max_side=32))
    return _VIDEO[0]


def audio_only() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame(format="s16", layout="mono", samples=800)
        frame.sample_rate = 8000
        frame.planes[0].update(bytes(frame.planes[0].buffer_size))
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def no_frames() -> bytes:
    """An AVI with a video stream and not a single frame."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()  # write the header even though no frame follows
    return buffer.getvalue()


class Chunks(httpx.AsyncByteStream):
    """A response body sent in pieces, optionally cut by a network error (no length)."""

    def __init__(self, *chunks: bytes, fail: Exception | None = None) -> None:
        self.chunks = chunks
        self.fail = fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.fail is not None:
            raise self.fail


class Host:
    """A MockTransport handler for the file host."""

    def __init__(self, reply: httpx.Response | Exception) -> None:
        self.reply = reply
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


async def fetch(
    tmp_path: Path,
    reply: httpx.Response | Exception,
    *,
    url: str = URL,
    max_bytes: int = 10**8,
    trusted: tuple[str, ...] = (),
) -> tuple[object, Host, Path]:
    """Fetch into ``tmp_path/out/clip.mp4``: (the Downloaded or the DownloadError, host, target)."""
    host = Host(reply)
    target = tmp_path / "out" / "clip.mp4"
    async with Downloader(
        trusted_hosts=trusted, max_bytes=max_bytes, transport=httpx.MockTransport(host)
    ) as downloader:
        try:
            return await downloader.fetch(url, target), host, target
        except DownloadError as exc:
            return exc, host, target


def ok(body: bytes, *, length: int | None = None) -> httpx.Response:
    """A 200 whose body is streamed like a real socket's, with a Content-Length."""
    size = len(body) if length is None else length
    return httpx.Response(200, headers={"content-length": str(size)}, stream=Chunks(body))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# -- the allowlist ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://files.runcomfy.net/a.mp4", ()),
        ("https://playgrounds-storage-public.runcomfy.net/x/output.mp4", ()),
        ("https://runcomfy.com/a.mp4", ()),
        ("https://a.b.runcomfy.com:443/a.mp4", ()),
        ("https://FILES.RUNCOMFY.NET/a.mp4", ()),
        ("https://cdn.example/a.mp4", ("CDN.example",)),
        ("http://localhost:8188/files/a.mp4", ("localhost",)),
        ("http://127.0.0.1:9/a.mp4", ("127.0.0.1",)),
        ("http://[::1]:9/a.mp4", ("::1",)),
    ],
)
def test_allowed_hosts(url: str, trusted: tuple[str, ...]) -> None:
    assert host_allowed(url, trusted) is None


@pytest.mark.parametrize(
    ("url", "trusted", "why"),
    [
        ("https://evil.example/a.mp4", (), "host evil.example is not on the download allowlist"),
        ("https://evilruncomfy.net/a.mp4", (), "not on the download allowlist"),
        ("https://runcomfy.net.evil.example/a.mp4", (), "not on the download allowlist"),
        ("http://localhost:8188/a.mp4", (), "host localhost is not on the download allowlist"),
        ("http://files.runcomfy.net/a.mp4", (), "plain http download from files.runcomfy.net"),
        ("http://cdn.example/a.mp4", ("cdn.example",), "refused (https only)"),
        ("https://user:pw@files.runcomfy.net/a.mp4", (), "credentials are refused"),
        ("https://token@files.runcomfy.net/a.mp4", (), "credentials are refused"),
        ("http://u:p@localhost/a.mp4", ("localhost",), "credentials are refused"),
        ("ftp://files.runcomfy.net/a.mp4", (), "scheme 'ftp' is not allowed"),
        ("file:///etc/passwd", ("",), "scheme 'file' is not allowed"),
        ("data:video/mp4;base64,AAAA", (), "scheme 'data' is not allowed"),
    ],
)
def test_refused_hosts(url: str, trusted: tuple[str, ...], why: str) -> None:
    reason = host_allowed(url, trusted)
    assert reason is not None
    assert why in reason


def test_is_loopback() -> None:
    assert is_loopback("localhost")
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.9.9.9")
    assert is_loopback("::1")
    assert is_loopback("[::1]")
    assert not is_loopback("10.0.0.1")
    assert not is_loopback("example.com")
    assert not is_loopback("")


# -- a good download ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_download_is_written_atomically_hashed_and_probed(tmp_path: Path) -> None:
    video = tiny_video()
    target = tmp_path / "out" / "clip.mp4"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"an older, broken file")
    reply = ok(video)
    done, host, target = await fetch(tmp_path, reply)
    assert not isinstance(done, Exception), done
    assert done.path == target
    assert target.read_bytes() == video
    assert done.size_bytes == len(video)
    assert done.sha256 == hashlib.sha256(video).hexdigest()
    assert done.probe == VideoProbe(codec="h264", width=32, height=24, frames=2, duration_s=0.5)
    assert done.probe.as_dict() == {
        "codec": "h264",
        "width": 32,
        "height": 24,
        "frames": 2,
        "duration_s": 0.5,
    }
    assert leftovers(tmp_path / "out") == ["clip.mp4"]  # no temp file left
    (request,) = host.requests
    assert "authorization" not in request.headers
    assert request.headers["accept"] == "video/*, application/octet-stream"
    assert str(request.url) == URL


@pytest.mark.anyio
async def test_a_body_streamed_in_chunks_without_a_length(tmp_path: Path) -> None:
    video = tiny_video()
    reply = httpx.Response(200, stream=Chunks(video[:500], video[500:1000], video[1000:]))
    done, _host, target = await fetch(tmp_path, reply)
    assert not isinstance(done, Exception), done
    assert target.read_bytes() == video
    assert done.sha256 == hashlib.sha256(video).hexdigest()


@pytest.mark.anyio
async def test_the_token_of_the_environment_never_reaches_the_file_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "env-token-should-not-travel")
    done, host, _target = await fetch(tmp_path, ok(tiny_video()))
    assert not isinstance(done, Exception)
    (request,) = host.requests
    assert "env-token-should-not-travel" not in str(request.headers)
    assert "authorization" not in request.headers


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 404, 410])
@pytest.mark.anyio
async def test_403_404_410_mean_the_url_expired(tmp_path: Path, status: int) -> None:
    raised, _host, _target = await fetch(tmp_path, httpx.Response(status, text="AccessDenied"))
    assert isinstance(raised, DownloadError)
    assert raised.expired
    assert not raised.retryable
    assert f"HTTP {status}: the URL has expired or is gone" in str(raised)
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("status", [500, 503, 204, 304])
@pytest.mark.anyio
async def test_other_statuses_are_retryable(tmp_path: Path, status: int) -> None:
    # Redirects are followed through the allowlist (tests/test_download_replies.py); a
    # Location on any other status means nothing.
    reply = httpx.Response(status, headers={"location": "https://evil.example/x"})
    raised, host, _target = await fetch(tmp_path, reply)
    assert isinstance(raised, DownloadError)
    assert raised.retryable
    assert not raised.expired
    assert str(raised) == f"HTTP {status}"
    assert len(host.requests) == 1
    assert leftovers(tmp_path / "out") == []


@pytest.mark.anyio
async def test_a_truncated_body_is_retryable_and_leaves_nothing(tmp_path: Path) -> None:
    video = tiny_video()
    cut = video[: len(video) // 3]
    reply = ok(cut, length=len(video))
    raised, _host, target = await fetch(tmp_path, reply)
    assert isinstance(raised, DownloadError)
    assert raised.retryable
    assert not raised.expired
    assert str(raised) == f"truncated: {len(cut):,} of {len(video):,} bytes"
    assert not target.exists()
    assert leftovers(tmp_path / "out") == []


@pytest.mark.anyio
async def test_a_connection_cut_mid_body_is_retryable_and_leaves_nothing(tmp_path: Path) -> None:
    video = tiny_video()
    reply = httpx.Response(
        200, stream=Chunks(video[:700], fail=httpx.RemoteProtocolError("peer closed"))
    )
    raised, _host, _target = await fetch(tmp_path, reply)
    assert isinstance(raised, DownloadError)
    assert raised.retryable
    assert str(raised) == "download failed: RemoteProtocolError"
    assert leftovers(tmp_path / "out") == []


@pytest.mark.anyio
async def test_a_network_error_is_retryable(tmp_path: Path) -> None:
    raised, _host, _target = await fetch(tmp_path, httpx.ConnectError("refused"))
    assert isinstance(raised, DownloadError)
    assert raised.retryable
    assert str(raised) == "download failed: ConnectError"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html><body>Access granted, honest</body></html>", "not a playable video"),
        (b"", "not a playable video"),
        (None, "the file has no video stream"),
        (b"noframes", "the video has no frames"),
    ],
    ids=["html", "empty", "audio-only", "no-frames"],
)
@pytest.mark.anyio
async def test_a_body_that_is_not_a_video_is_retryable_and_removed(
    tmp_path: Path, body: bytes | None, why: str
) -> None:
    content = audio_only() if body is None else no_frames() if body == b"noframes" else body
    raised, _host, target = await fetch(tmp_path, ok(content))
    assert isinstance(raised, DownloadError)
    assert raised.retryable
    assert not raised.expired
    assert why in str(raised)
    assert not target.exists()
    assert leftovers(tmp_path / "out") == []


@pytest.mark.anyio
async def test_over_the_size_cap_by_content_length(tmp_path: Path) -> None:
    video = tiny_video()
    raised, _host, _target = await fetch(tmp_path, ok(video), max_bytes=len(video) - 1)
    assert isinstance(raised, DownloadError)
    assert not raised.retryable
    assert not raised.expired
    assert str(raised) == f"{len(video):,} bytes is over the {len(video) - 1:,} cap"
    assert leftovers(tmp_path / "out") == []


@pytest.mark.anyio
async def test_over_the_size_cap_while_streaming(tmp_path: Path) -> None:
    chunk = b"x" * 400
    raised, _host, _target = await fetch(
        tmp_path, httpx.Response(200, stream=Chunks(chunk, chunk, chunk)), max_bytes=1000
    )
    assert isinstance(raised, DownloadError)
    assert not raised.retryable
    assert not raised.expired
    assert str(raised) == "over the 1,000 byte cap"
    assert leftovers(tmp_path / "out") == []


@pytest.mark.anyio
async def test_a_refused_host_is_never_contacted(tmp_path: Path) -> None:
    raised, host, _target = await fetch(
        tmp_path, ok(tiny_video()), url="https://evil.example/v.mp4"
    )
    assert isinstance(raised, DownloadError)
    assert not raised.retryable
    assert not raised.expired
    assert "not on the download allowlist" in str(raised)
    assert host.requests == []
    assert not (tmp_path / "out").exists()


@pytest.mark.anyio
async def test_a_loopback_host_must_be_trusted(tmp_path: Path) -> None:
    url = "http://localhost:8188/files/a/1/output.mp4"
    refused, _host, _target = await fetch(tmp_path, ok(tiny_video()), url=url)
    assert isinstance(refused, DownloadError)
    done, _host, target = await fetch(tmp_path, ok(tiny_video()), url=url, trusted=("localhost",))
    assert not isinstance(done, Exception)
    assert target.read_bytes() == tiny_video()


def test_probe_video_reads_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    path.write_bytes(tiny_video())
    probe = probe_video(path)
    assert (probe.codec, probe.frames, probe.width, probe.height) == ("h264", 2, 32, 24)
    assert probe.duration_s == pytest.approx(0.5)


def mkv_video() -> bytes:
    """A Matroska file: its stream carries no duration, the container does."""
    buffer = io.BytesIO()
    image = Image.new("RGB", (32, 32), (200, 10, 10))
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(4):
            frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def test_probe_falls_back_to_the_container_duration(tmp_path: Path) -> None:
    path = tmp_path / "v.mkv"
    path.write_bytes(mkv_video())
    probe = probe_video(path)
    assert probe.codec == "h264"
    assert (probe.width, probe.height) == (32, 32)
    assert probe.duration_s == pytest.approx(1.0, abs=0.3)


def test_leftovers_are_listed_once_per_folder_and_parts_written_later_are_kept(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / ".a.mp4.0badf00d.part").write_bytes(b"killed run")
    (folder / ".b.mp4.1.part").write_bytes(b"killed run")
    (folder / ".part").write_bytes(b"not ours")
    found = Leftovers()
    found.remove(folder / "a.mp4")
    assert leftovers(folder) == [".b.mp4.1.part", ".part"]
    # Written after the folder was listed: a download running now, left alone...
    (folder / ".a.mp4.cafe.part").write_bytes(b"in progress")
    found.remove(folder / "a.mp4")
    assert ".a.mp4.cafe.part" in leftovers(folder)
    # ...unless the job was taken over from a dead worker, whose part it is.
    found.remove(folder / "a.mp4", rescan=True)
    found.remove(folder / "b.mp4")
    assert leftovers(folder) == [".part"]
    found.remove(tmp_path / "missing" / "c.mp4")  # a folder not made yet: nothing to do


@pytest.mark.anyio
async def test_a_partial_file_left_by_a_crash_is_cleaned_up(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / ".clip.mp4.0badf00d.part").write_bytes(b"half a video")
    (folder / ".other.mp4.0badf00d.part").write_bytes(b"another job's")
    done, _host, target = await fetch(tmp_path, ok(tiny_video()))
    assert not isinstance(done, Exception)
    assert leftovers(folder) == [".other.mp4.0badf00d.part", "clip.mp4"]
    assert target.read_bytes() == tiny_video()
