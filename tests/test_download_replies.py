"""Hostile file-host replies, in process: redirects, gzip bodies, the overall deadline.

Each reply comes from an ``httpx.MockTransport`` (no socket, no real time): the clock the
downloader reads is a :class:`FakeClock` the replies move, so a host that drips a byte
every 2 s is 60 s late in a few milliseconds. The same cases over real sockets, with the
engine and a store, are in ``tests/test_download_hostile.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_engine_download import Chunks, leftovers, tiny_video

from orchestrator.engine.download import MAX_REDIRECTS, Downloaded, Downloader, DownloadError
from orchestrator.engine.paidwork import FetchProblem
from orchestrator.engine.transfer import (
    PIECE,
    DeadlinePolicy,
    Gunzip,
    decoder_for,
    download_deadline,
)

if TYPE_CHECKING:
    from pathlib import Path

URL = "https://files.runcomfy.net/out/abc/output.mp4"
KIB = 1024
MIB = 1024 * KIB


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """Seconds that pass only when a reply says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Drip(httpx.AsyncByteStream):
    """A body sent in pieces, the clock moving ``seconds`` before each."""

    def __init__(self, pieces: list[bytes], clock: FakeClock, seconds: float) -> None:
        self.pieces, self.clock, self.seconds = pieces, clock, seconds
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.clock.now += self.seconds
            self.sent += 1
            yield piece


Handler = Callable[[httpx.Request], httpx.Response]


async def fetch(
    tmp_path: Path,
    handler: Handler,
    *,
    url: str = URL,
    trusted: tuple[str, ...] = (),
    max_bytes: int = 10**8,
    clock: FakeClock | None = None,
    deadline: DeadlinePolicy | None = None,
) -> tuple[Downloaded | DownloadError, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    target = tmp_path / "out" / "clip.mp4"
    async with Downloader(
        trusted_hosts=trusted,
        max_bytes=max_bytes,
        transport=httpx.MockTransport(record),
        clock=clock or FakeClock(),
        deadline=deadline,
    ) as downloader:
        try:
            return await downloader.fetch(url, target), seen
        except DownloadError as exc:
            return exc, seen


def video_reply(body: bytes | None = None, coding: str | None = None) -> httpx.Response:
    """A 200 streamed like a socket's, with a Content-Length (and a Content-Encoding)."""
    data = tiny_video() if body is None else body
    headers = {"content-length": str(len(data))}
    if coding is not None:
        headers["content-encoding"] = coding
    return httpx.Response(200, headers=headers, stream=Chunks(data[:600], data[600:]))


def chain(*locations: str, final: httpx.Response | None = None, status: int = 302) -> Handler:
    """302 to each location in turn (one per request), then ``final`` (the video)."""
    hops = list(locations)

    def handler(request: httpx.Request) -> httpx.Response:
        if hops:
            return httpx.Response(status, headers={"location": hops.pop(0)})
        return final or video_reply()

    return handler


def no_credentials(requests: list[httpx.Request]) -> None:
    for request in requests:
        assert "authorization" not in request.headers
        assert "cookie" not in request.headers
        assert "proxy-authorization" not in request.headers


# -- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.anyio
async def test_a_redirect_among_trusted_hosts_is_followed(tmp_path: Path, status: int) -> None:
    handler = chain("https://cdn.runcomfy.com/signed/output.mp4?sig=1", status=status)
    done, seen = await fetch(tmp_path, handler)
    assert isinstance(done, Downloaded), done
    assert done.path.read_bytes() == tiny_video()
    assert [str(r.url) for r in seen] == [URL, "https://cdn.runcomfy.com/signed/output.mp4?sig=1"]
    no_credentials(seen)


@pytest.mark.anyio
async def test_relative_and_loopback_redirects_resolve_against_the_current_url(
    tmp_path: Path,
) -> None:
    start = "http://localhost:8188/files/a/1/output.mp4"
    handler = chain("/files/a/1/output.mp4?hop=1", "http://127.0.0.1:8188/x.mp4")
    done, seen = await fetch(tmp_path, handler, url=start, trusted=("localhost", "127.0.0.1"))
    assert isinstance(done, Downloaded), done
    assert [str(r.url) for r in seen] == [
        start,
        "http://localhost:8188/files/a/1/output.mp4?hop=1",
        "http://127.0.0.1:8188/x.mp4",
    ]


@pytest.mark.anyio
async def test_five_redirects_are_followed_and_a_sixth_is_not(tmp_path: Path) -> None:
    hops = [f"https://files.runcomfy.net/hop/{n}" for n in range(1, MAX_REDIRECTS + 2)]
    done, seen = await fetch(tmp_path, chain(*hops[:MAX_REDIRECTS]))
    assert isinstance(done, Downloaded)
    assert len(seen) == MAX_REDIRECTS + 1
    loop, seen = await fetch(tmp_path, chain(*hops))
    assert isinstance(loop, DownloadError)
    assert str(loop) == "more than 5 redirects (the last was HTTP 302)"
    assert loop.problem is FetchProblem.HOST_DOWN
    assert loop.retryable
    assert len(seen) == MAX_REDIRECTS + 1
    assert leftovers(tmp_path / "out") == ["clip.mp4"]  # the first fetch's; no part left


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("https://evil.example/v.mp4", "host evil.example is not on the download allowlist"),
        ("http://files.runcomfy.net/v.mp4", "plain http download from files.runcomfy.net"),
        ("ftp://files.runcomfy.net/v.mp4", "scheme 'ftp' is not allowed"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("https://u:p@files.runcomfy.net/v.mp4", "URLs with credentials are refused"),
        ("//evil.example/v.mp4", "host evil.example is not on the download allowlist"),
    ],
)
@pytest.mark.anyio
async def test_a_redirect_to_a_host_not_allowed_is_refused_and_never_contacted(
    tmp_path: Path, location: str, why: str
) -> None:
    refused, seen = await fetch(tmp_path, chain(location))
    assert isinstance(refused, DownloadError)
    assert str(refused).startswith("refused a redirect (HTTP 302) from files.runcomfy.net: ")
    assert why in str(refused)
    assert refused.problem is FetchProblem.HOST_NOT_ALLOWED
    assert not refused.retryable
    assert [str(r.url) for r in seen] == [URL]  # the target was never asked
    no_credentials(seen)
    assert leftovers(tmp_path / "out") == []


@pytest.mark.anyio
async def test_a_refused_redirect_names_its_target_for_the_fix(tmp_path: Path) -> None:
    refused, _seen = await fetch(tmp_path, chain("https://cdn.other.example/v.mp4"))
    assert isinstance(refused, DownloadError)
    assert refused.host == "cdn.other.example"
    # Trusting that host lets the same redirect through.
    handler = chain("https://cdn.other.example/v.mp4")
    done, _seen = await fetch(tmp_path, handler, trusted=("cdn.other.example",))
    assert isinstance(done, Downloaded)


@pytest.mark.anyio
async def test_a_redirect_without_a_location_is_retryable(tmp_path: Path) -> None:
    raised, seen = await fetch(tmp_path, lambda _r: httpx.Response(302))
    assert isinstance(raised, DownloadError)
    assert raised.retryable
    assert str(raised) == "HTTP 302 without a Location header"
    assert len(seen) == 1


@pytest.mark.anyio
async def test_no_hop_carries_a_credential_or_a_cookie_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "env-token-should-not-travel")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "files.runcomfy.net":
            headers = {"location": "https://cdn.runcomfy.com/v.mp4", "set-cookie": "s=secret"}
            return httpx.Response(302, headers=headers)
        return video_reply()

    done, seen = await fetch(tmp_path, handler)
    assert isinstance(done, Downloaded)
    assert len(seen) == 2
    for request in seen:
        assert "env-token-should-not-travel" not in str(request.headers)
        assert "authorization" not in request.headers


# -- content codings ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_gzip_body_is_decoded_and_its_bytes_are_the_original(tmp_path: Path) -> None:
    packed = gzip.compress(tiny_video())
    done, seen = await fetch(tmp_path, lambda _r: video_reply(packed, "gzip"))
    assert isinstance(done, Downloaded), done
    assert done.path.read_bytes() == tiny_video()
    assert done.size_bytes == len(tiny_video())
    assert done.sha256 == hashlib.sha256(tiny_video()).hexdigest()
    assert seen[0].headers["accept-encoding"] == "identity, gzip"


@pytest.mark.anyio
async def test_a_gzip_body_in_two_members_is_one_body(tmp_path: Path) -> None:
    video = tiny_video()
    packed = gzip.compress(video[:700]) + gzip.compress(video[700:])
    done, _seen = await fetch(tmp_path, lambda _r: video_reply(packed, "gzip"))
    assert isinstance(done, Downloaded)
    assert done.path.read_bytes() == video


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (gzip.compress(b"x" * 5000)[:-12], "truncated: the gzip body ends early"),
        (b"this is not gzip at all", "the gzip body is corrupt"),
        (gzip.compress(b"x" * 100) + b"garbage after", "the gzip body is corrupt"),
    ],
    ids=["cut", "not-gzip", "trailing-garbage"],
)
@pytest.mark.anyio
async def test_a_broken_gzip_body_is_a_failed_download(
    tmp_path: Path, body: bytes, why: str
) -> None:
    raised, _seen = await fetch(tmp_path, lambda _r: video_reply(body, "gzip"))
    assert isinstance(raised, DownloadError)
    assert raised.retryable
    assert why in str(raised)
    assert leftovers(tmp_path / "out") == []


@pytest.mark.anyio
async def test_a_coding_not_accepted_is_refused(tmp_path: Path) -> None:
    raised, _seen = await fetch(tmp_path, lambda _r: video_reply(coding="br"))
    assert isinstance(raised, DownloadError)
    assert raised.problem is FetchProblem.BAD_FILE
    assert str(raised) == "Content-Encoding 'br' is not accepted (only identity, gzip)"


def gzip_bomb(decoded: int) -> bytes:
    """``decoded`` zero bytes, gzipped (about a thousandth of the size)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    parts = [packer.compress(zeros) for _ in range(decoded // MIB)]
    return b"".join(parts) + packer.flush()


@pytest.mark.anyio
async def test_a_gzip_bomb_meets_the_cap_on_decoded_bytes(tmp_path: Path) -> None:
    bomb = gzip_bomb(64 * MIB)
    assert len(bomb) < 100 * KIB  # far under the cap on the wire
    raised, _seen = await fetch(tmp_path, lambda _r: video_reply(bomb, "gzip"), max_bytes=4 * MIB)
    assert isinstance(raised, DownloadError)
    assert raised.problem is FetchProblem.TOO_BIG
    assert str(raised) == "over the 4,194,304 byte cap"
    assert leftovers(tmp_path / "out") == []


def test_a_gzip_bomb_is_decoded_in_bounded_pieces() -> None:
    body = Gunzip()
    bomb = gzip_bomb(32 * MIB)
    sizes = [len(piece) for piece in body.feed(bomb)]
    assert sum(sizes) == 32 * MIB
    assert body.complete
    assert max(sizes) <= PIECE  # memory per step stays a piece, not the body


def test_a_gzip_body_fed_a_byte_at_a_time_decodes_whole_in_small_pieces() -> None:
    # One byte of a run of zeros decodes to far more than a 100-byte piece: what does not
    # fit waits (in the unconsumed input, or inside zlib) for the next pieces.
    bomb = gzip_bomb(MIB)
    body = Gunzip(piece=100)
    sizes = [len(piece) for i in range(len(bomb)) for piece in body.feed(bomb[i : i + 1])]
    assert sum(sizes) == MIB
    assert max(sizes) == 100
    assert body.complete


def test_decoders() -> None:
    assert decoder_for("identity") is not None
    assert decoder_for("") is not None
    assert isinstance(decoder_for("x-gzip"), Gunzip)
    assert decoder_for("deflate") is None
    assert decoder_for("zstd") is None
    half = Gunzip()
    list(half.feed(gzip.compress(b"abc" * 100)[:10]))
    assert not half.complete
    assert not Gunzip().complete  # nothing fed: no member, no body


# -- the overall deadline ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "seconds"),
    [
        (None, 600.0),
        (0, 60.0),
        (1, 60.0),
        (15 * MIB, 60.0),  # 60 s at 256 KiB/s: the floor covers it exactly
        (15 * MIB + 256 * KIB, 61.0),
        (30 * MIB, 120.0),
        (2 * 1024 * MIB, 8192.0),  # the default size cap: over two hours
    ],
)
def test_download_deadline_table(size: int | None, seconds: float) -> None:
    assert download_deadline(size) == seconds


@given(st.integers(0, 2**40), st.integers(0, 2**40))
def test_download_deadline_has_a_floor_and_grows_with_the_size(a: int, b: int) -> None:
    small, large = sorted((a, b))
    assert download_deadline(small) >= 60.0
    assert download_deadline(small) <= download_deadline(large)
    # A download at the minimum rate is never cut: its size earns it its time.
    assert download_deadline(large) >= large / (256 * KIB)


@given(st.floats(0.1, 1e4), st.floats(1.0, 1e9), st.integers(0, 2**36), st.integers(0, 2**36))
def test_any_policy_keeps_its_floor_and_monotony(floor: float, rate: float, a: int, b: int) -> None:
    policy = DeadlinePolicy(floor=floor, rate=rate)
    small, large = sorted((a, b))
    assert floor <= download_deadline(small, policy) <= download_deadline(large, policy)


@pytest.mark.anyio
async def test_a_host_dripping_a_byte_every_2_s_fails_by_its_deadline(tmp_path: Path) -> None:
    video = tiny_video()
    clock = FakeClock()
    body = Drip([video[i : i + 1] for i in range(len(video))], clock, seconds=2.0)

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": str(len(video))}, stream=body)

    started = clock.now
    raised, _seen = await fetch(tmp_path, handler, clock=clock)
    assert isinstance(raised, DownloadError)
    assert raised.problem is FetchProblem.HOST_DOWN
    assert raised.retryable
    assert str(raised) == (
        f"too slow: 31 bytes in 62 s, past the 60 s deadline for {len(video):,} bytes"
    )
    assert body.sent == 31
    assert clock.now - started == 62.0
    assert leftovers(tmp_path / "out") == []


@pytest.mark.anyio
async def test_an_unannounced_size_gets_the_default_unless_its_bytes_earn_more(
    tmp_path: Path,
) -> None:
    policy = DeadlinePolicy(floor=0.5, rate=1000.0, unknown=1.0)
    video = tiny_video()

    def reply(stream: Drip) -> Handler:
        return lambda _request: httpx.Response(200, stream=stream)  # no Content-Length

    # 100 bytes every 5 s (20 bytes/s, under the rate): cut once the default 1 s passed.
    clock = FakeClock()
    slow = Drip([video[i : i + 100] for i in range(0, len(video), 100)], clock, 5.0)
    raised, _seen = await fetch(tmp_path, reply(slow), clock=clock, deadline=policy)
    assert isinstance(raised, DownloadError)
    assert str(raised) == (
        "too slow: 100 bytes in 5 s, past the 1 s deadline for an unannounced size"
    )
    # 10 bytes every 9 ms (over the rate): never cut, though it lasts longer than 1 s.
    clock = FakeClock()
    steady = Drip([video[i : i + 10] for i in range(0, len(video), 10)], clock, 0.009)
    done, _seen = await fetch(tmp_path, reply(steady), clock=clock, deadline=policy)
    assert isinstance(done, Downloaded), done
    assert clock.now - 1000.0 > 1.3
    assert done.path.read_bytes() == video


@pytest.mark.anyio
async def test_redirect_hops_count_against_the_deadline(tmp_path: Path) -> None:
    clock = FakeClock()

    def handler(request: httpx.Request) -> httpx.Response:
        clock.now += 300.0  # each hop's reply takes five minutes
        return httpx.Response(302, headers={"location": f"{URL}?n={clock.now}"})

    raised, seen = await fetch(tmp_path, handler, clock=clock)
    assert isinstance(raised, DownloadError)
    assert raised.retryable
    # Two hops within the 600 s an unannounced size gets; the third reply is too late.
    assert str(raised) == (
        "too slow: 0 bytes in 900 s, past the 600 s deadline for an unannounced size"
    )
    assert len(seen) == 3
