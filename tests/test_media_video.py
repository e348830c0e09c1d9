"""A downloaded video read to its end: the frame count against the container's claim."""

from __future__ import annotations

import io
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from orchestrator.media.errors import BrokenVideo
from orchestrator.media.video import (
    FrameClaim,
    allowed_shortfall,
    frame_claim,
    inspect_video,
    missing_frames,
)
from orchestrator.simulator.video import faststart, placeholder, render_zoom

if TYPE_CHECKING:
    from pathlib import Path

_MADE: dict[str, bytes] = {}


def clip() -> bytes:
    """Six seconds at 8 fps (48 frames), index at the end, as the simulator renders."""
    if "mp4" not in _MADE:
        _MADE["mp4"] = render_zoom(placeholder("clip"), seconds=6, fps=8, max_side=96)
    return _MADE["mp4"]


def fast_clip() -> bytes:
    """The same clip with its index first (faststart)."""
    if "fast" not in _MADE:
        _MADE["fast"] = faststart(clip())
    return _MADE["fast"]


def matroska(frames: int) -> bytes:
    """A clip in a container that counts no frames (only its duration is written)."""
    buffer = io.BytesIO()
    image = Image.new("RGB", (32, 32), (40, 90, 200))
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(frames):
            frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def write(tmp_path: Path, data: bytes, name: str = "v.mp4") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- the claim and its tolerance (pure) --------------------------------------------------------


@pytest.mark.parametrize(
    ("listed", "duration", "rate", "claim"),
    [
        (48, 6.0, Fraction(8), FrameClaim(48, indexed=True)),
        (48, 0.0, None, FrameClaim(48, indexed=True)),  # a listed count needs nothing else
        (0, 5.0, Fraction(24), FrameClaim(120, indexed=False)),
        (0, 5.0, Fraction(30000, 1001), FrameClaim(150, indexed=False)),
        (0, 0.04, Fraction(24), None),  # under one frame: no claim to hold it to
        (0, 5.0, None, None),
        (0, 0.0, Fraction(24), None),
        (0, 5.0, Fraction(0), None),
        (0, float("inf"), Fraction(24), None),
    ],
)
def test_frame_claim(
    listed: int, duration: float, rate: Fraction | None, claim: FrameClaim | None
) -> None:
    assert frame_claim(listed, duration, rate) == claim


@pytest.mark.parametrize(
    ("claim", "counted", "ok"),
    [
        (FrameClaim(48, indexed=True), 48, True),
        (FrameClaim(48, indexed=True), 49, True),  # more than listed is not a cut
        (FrameClaim(48, indexed=True), 47, False),  # a listed count is exact
        (FrameClaim(48, indexed=True), 23, False),
        (FrameClaim(120, indexed=False), 117, True),  # an estimate: 2 % (at least 2)
        (FrameClaim(120, indexed=False), 116, False),
        (FrameClaim(40, indexed=False), 38, True),
        (FrameClaim(40, indexed=False), 37, False),
        (FrameClaim(500, indexed=False), 490, True),
        (FrameClaim(500, indexed=False), 489, False),
        (FrameClaim(48, indexed=False), 29, False),  # 60 % of an estimated clip
        (None, 1, True),
    ],
)
def test_missing_frames(claim: FrameClaim | None, counted: int, ok: bool) -> None:
    assert (missing_frames(claim, counted) is None) is ok


@given(st.integers(1, 10**7), st.booleans())
def test_the_shortfall_allowed_is_small_and_grows_with_the_claim(
    frames: int, indexed: bool
) -> None:
    claim = FrameClaim(frames, indexed)
    slack = allowed_shortfall(claim)
    assert slack == 0 if indexed else 2 <= slack <= max(2, frames * 0.02 + 1)
    assert allowed_shortfall(FrameClaim(frames + 1, indexed)) >= slack
    # A file cut to 60 % is never within the tolerance once it has a few frames.
    if frames >= 10:
        assert missing_frames(claim, int(frames * 0.6)) is not None


# -- real files --------------------------------------------------------------------------------


def test_a_whole_clip_is_read_to_its_end(tmp_path: Path) -> None:
    for data in (clip(), fast_clip()):
        probe = inspect_video(write(tmp_path, data))
        assert (probe.codec, probe.frames, probe.width) == ("h264", 48, 96)
        assert probe.duration_s == pytest.approx(6.0)


def test_a_faststart_clip_cut_to_60_percent_is_refused(tmp_path: Path) -> None:
    data = fast_clip()
    path = write(tmp_path, data[: int(len(data) * 0.6)])
    with av.open(str(path)) as container:  # what the old probe saw: it opens, claims 48
        assert container.streams.video[0].frames == 48
        assert next(container.decode(video=0)) is not None
    with pytest.raises(BrokenVideo) as caught:
        inspect_video(path)
    assert "of the 48 frames its container lists are there" in str(caught.value)


def test_every_cut_of_a_faststart_clip_after_its_index_is_refused(tmp_path: Path) -> None:
    data = fast_clip()
    moov = data.index(b"mdat")  # the index ends where the data begins
    cuts = sorted({*range(moov + 8, len(data), max(1, (len(data) - moov) // 60)), len(data) - 1})
    for cut in cuts:
        with pytest.raises(BrokenVideo):
            inspect_video(write(tmp_path, data[:cut]))


def test_a_packet_cut_short_is_damage(tmp_path: Path) -> None:
    data = fast_clip()
    with pytest.raises(BrokenVideo) as caught:
        inspect_video(write(tmp_path, data[:-1]))
    assert str(caught.value) == (
        "frame 48 of the video is cut short or damaged; 47 of the 48 frames its container "
        "lists are there (the file is cut short or damaged)"
    )


def test_a_clip_with_its_index_at_the_end_cut_short_does_not_open(tmp_path: Path) -> None:
    data = clip()
    with pytest.raises(BrokenVideo, match="not a playable video"):
        inspect_video(write(tmp_path, data[: int(len(data) * 0.6)]))


def test_containers_that_count_nothing_are_held_to_duration_times_rate(tmp_path: Path) -> None:
    data = matroska(frames=24)
    probe = inspect_video(write(tmp_path, data, "v.mkv"))
    assert probe.frames == 24
    # Matroska writes its duration first: a copy missing its second half still claims it.
    for keep in (0.5, 0.8):
        with pytest.raises(BrokenVideo, match="frames where its duration and frame rate prom"):
            inspect_video(write(tmp_path, data[: int(len(data) * keep)], "v.mkv"))


def test_no_video_stream_and_no_frame(tmp_path: Path) -> None:
    with pytest.raises(BrokenVideo, match="not a playable video"):
        inspect_video(write(tmp_path, b"<html>not a video</html>"))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
    with pytest.raises(BrokenVideo, match="the video has no frames"):
        inspect_video(write(tmp_path, buffer.getvalue(), "v.avi"))
