"""Checking a downloaded video all the way through: every packet read, none missing.

A container's headers say how long a video is; only its packets say whether they are all
there. A faststart MP4 (the index before the data) cut anywhere after its index still
opens, still decodes its first frame and still claims every frame it had: the cut is only
seen by reading to the end. :func:`inspect_video` therefore demuxes every packet (reading
packet data, not decoding pixels: about a millisecond for a 5 s 720p clip, where decoding
every frame costs a few hundred), decodes just the first frame, and requires the packets
to add up to what the container claims (:func:`missing_frames`).

How close is close enough (:func:`allowed_shortfall`):

- **an indexed count** (MP4 and MOV list every sample in their sample table, PyAV's
  ``stream.frames``): none may be missing. A whole file yields one packet per sample, and
  a sample cut short is flagged corrupt by the demuxer (a cut of one byte is caught);
- **an estimate** (``duration x frame rate``, for Matroska and WebM, which count nothing):
  up to ``max(2, 2 %)`` of it may be missing. The estimate can be off by a frame from
  rounding the rate and by another from whether the duration includes the last frame's
  display time, and a rate PyAV gives as an average may be a little off for variable
  frame rates; 2 % of a 5 s clip is 2 to 3 frames, while a download cut short loses a
  share of the file, not a frame or two;
- **no claim at all** (no count, no duration or no rate): at least one whole packet whose
  frame decodes.

Memory stays bounded by the file's largest packet: libavformat reads the file through its
own small buffer, one packet at a time, and each packet is dropped once counted.

>>> missing_frames(FrameClaim(48, indexed=True), 23)
'23 of the 48 frames its container lists are there (the file is cut short or damaged)'
>>> missing_frames(FrameClaim(120, indexed=False), 118) is None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import av
import av.container
import av.video.stream

from orchestrator.media.errors import BrokenVideo

if TYPE_CHECKING:
    from fractions import Fraction
    from pathlib import Path

#: The share of an estimated frame count that may be missing, and the floor in frames.
ESTIMATE_SLACK = 0.02
ESTIMATE_SLACK_FRAMES = 2


@dataclass(frozen=True, slots=True)
class VideoProbe:
    """What PyAV reads from a video file that was read to its end."""

    codec: str
    width: int
    height: int
    frames: int
    """Whole packets of the video stream read from the file (one per frame)."""
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
class FrameClaim:
    """How many frames a container says its video stream has."""

    frames: int
    indexed: bool
    """True when the container lists every frame; False for ``duration x rate``."""


def frame_claim(listed: int, duration_s: float, rate: Fraction | float | None) -> FrameClaim | None:
    """The container's claim: its listed count, else ``duration x rate``, else None.

    >>> from fractions import Fraction
    >>> frame_claim(48, 6.0, Fraction(8))
    FrameClaim(frames=48, indexed=True)
    >>> frame_claim(0, 5.0, Fraction(24))
    FrameClaim(frames=120, indexed=False)
    >>> frame_claim(0, 5.0, None) is None
    True
    """
    if listed > 0:
        return FrameClaim(listed, indexed=True)
    if rate is None or not (duration_s > 0 and rate > 0):
        return None
    estimate = float(duration_s) * float(rate)
    if not math.isfinite(estimate) or estimate < 1:
        return None
    return FrameClaim(round(estimate), indexed=False)


def allowed_shortfall(claim: FrameClaim) -> int:
    """How many of the claimed frames may be missing from a whole file (see the module).

    >>> allowed_shortfall(FrameClaim(48, indexed=True))
    0
    >>> allowed_shortfall(FrameClaim(48, indexed=False)), allowed_shortfall(FrameClaim(500, False))
    (2, 10)
    """
    if claim.indexed:
        return 0
    return max(ESTIMATE_SLACK_FRAMES, math.ceil(claim.frames * ESTIMATE_SLACK))


def missing_frames(claim: FrameClaim | None, counted: int) -> str | None:
    """Why ``counted`` whole packets fall short of ``claim``, or None when they do not.

    More packets than claimed is not a cut: it is left to the player.
    """
    if claim is None or counted >= claim.frames - allowed_shortfall(claim):
        return None
    if claim.indexed:
        return (
            f"{counted} of the {claim.frames} frames its container lists are there "
            "(the file is cut short or damaged)"
        )
    return (
        f"{counted} frames where its duration and frame rate promise about {claim.frames} "
        "(the file is cut short or damaged)"
    )


def inspect_video(path: Path) -> VideoProbe:
    """Read the video at ``path`` to its end and decode its first frame.

    Raises :class:`BrokenVideo` when it is not a video, has no frame, holds a damaged
    packet (one cut short by the end of the file, say), or has fewer whole packets than
    its container claims.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BrokenVideo("the file has no video stream")
            stream = container.streams.video[0]
            duration = _duration(container, stream)
            claim = frame_claim(stream.frames, duration, stream.average_rate or stream.guessed_rate)
            counted, decoded, damaged = _read_through(container, stream)
            shortfall = missing_frames(claim, counted)
            if damaged:
                cut = f"frame {counted + 1} of the video is cut short or damaged"
                raise BrokenVideo(f"{cut}; {shortfall}" if shortfall else cut)
            if shortfall:
                raise BrokenVideo(shortfall)
            if not decoded:
                raise BrokenVideo("the video has no frames")
            codec = stream.codec_context.name
            width, height = stream.codec_context.width, stream.codec_context.height
    except av.error.FFmpegError as exc:
        raise BrokenVideo(f"not a playable video: {exc}") from exc
    return VideoProbe(codec=codec, width=width, height=height, frames=counted, duration_s=duration)


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def _read_through(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> tuple[int, bool, bool]:
    """(whole packets of ``stream``, whether a frame decoded, whether a packet was
    damaged), reading the file once; reading stops at the first damaged packet."""
    counted = 0
    decoded = False
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the demuxer's end-of-stream marker, not a frame
        if packet.is_corrupt:
            # The demuxer flags a packet whose data runs past the end of the file (or that
            # it could not read whole): what follows is missing or suspect alike.
            return counted, decoded, True
        counted += 1
        if not decoded:
            # Decoding stops at the first frame: pixels are not what tells a cut file.
            decoded = bool(stream.codec_context.decode(packet))
    if counted and not decoded:
        decoded = bool(stream.codec_context.decode(None))  # frames held back by the decoder
    return counted, decoded, False
