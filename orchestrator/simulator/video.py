"""Real, playable H.264 MP4 files for simulated jobs: a slow zoom over the first frame.

Rendering takes a fraction of a second, so results are cached by their inputs (image
content hash, length, frame rate, size): a 10,000-job matrix over one image renders once.
An image given by URL cannot be fetched here (no network), so it gets a placeholder
gradient derived from the URL. :func:`faststart` rewrites a video with its index first, as
web servers like to serve them (the file host's ``truncate_faststart`` trick cuts one).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import av
from PIL import Image, ImageOps

ZOOM = 0.15  # the last frame shows the middle 1/1.15 of the image


def placeholder(seed_text: str, size: tuple[int, int] = (640, 360)) -> Image.Image:
    """A deterministic two-colour gradient standing in for an image we cannot fetch."""
    digest = hashlib.sha256(seed_text.encode()).digest()
    top, bottom = digest[:3], digest[3:6]
    gradient = Image.linear_gradient("L").resize(size)
    return Image.composite(
        Image.new("RGB", size, tuple(bottom)), Image.new("RGB", size, tuple(top)), gradient
    )


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def render_zoom(image: Image.Image, *, seconds: float, fps: int, max_side: int) -> bytes:
    """Encode ``seconds`` of a slow centre zoom over ``image`` as H.264 in MP4."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    scale = max_side / max(image.size)
    width, height = _even(image.width * scale), _even(image.height * scale)
    frames = max(1, round(seconds * fps))
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for index in range(frames):
            zoom = 1 + ZOOM * index / frames
            crop_w, crop_h = image.width / zoom, image.height / zoom
            left, top = (image.width - crop_w) / 2, (image.height - crop_h) / 2
            frame = image.resize(
                (width, height),
                Image.Resampling.BILINEAR,
                box=(left, top, left + crop_w, top + crop_h),
            )
            video_frame = av.VideoFrame.from_image(frame)  # type: ignore[no-untyped-call]
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def faststart(video: bytes) -> bytes:
    """The same MP4 packets remuxed with the index (``moov``) before the data (``mdat``).

    Such a file cut anywhere after its index still opens and still claims every frame.
    The muxer moves the index in a second pass over a real file, hence the temporary one.
    """
    with tempfile.TemporaryDirectory(prefix="sim-faststart-") as folder:
        path = Path(folder) / "faststart.mp4"
        with (
            av.open(io.BytesIO(video), "r") as source,
            av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out,
        ):
            stream = source.streams.video[0]
            copy = out.add_stream_from_template(stream)
            for packet in source.demux(stream):
                if packet.dts is None:
                    continue  # the demuxer's end-of-stream marker
                packet.stream = copy
                out.mux(packet)
        return path.read_bytes()


class VideoCache:
    """Renders each distinct video once (thread-safe; least recently used dropped first)."""

    def __init__(self, *, fps: int = 8, max_side: int = 320, capacity: int = 128) -> None:
        self.fps = fps
        self.max_side = max_side
        self.capacity = capacity
        self.renders = 0
        self._videos: OrderedDict[str, bytes] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, image_bytes: bytes | None, fallback: str, seconds: float) -> bytes:
        """The video for these inputs; ``fallback`` names the placeholder when no bytes."""
        source = hashlib.sha256(image_bytes).hexdigest() if image_bytes else f"url:{fallback}"
        key = f"{source}|{seconds:g}|{self.fps}|{self.max_side}"
        with self._lock:
            if key in self._videos:
                self._videos.move_to_end(key)
                return self._videos[key]
            key_lock = self._locks.setdefault(key, threading.Lock())
        with key_lock:  # concurrent downloads of one new video render it once
            with self._lock:
                if key in self._videos:
                    return self._videos[key]
            image = Image.open(io.BytesIO(image_bytes)) if image_bytes else placeholder(fallback)
            video = render_zoom(image, seconds=seconds, fps=self.fps, max_side=self.max_side)
            with self._lock:
                self.renders += 1
                self._videos[key] = video
                self._locks.pop(key, None)
                while len(self._videos) > self.capacity:
                    self._videos.popitem(last=False)
            return video
