"""Read what a model's rules need to know about an image, without decoding its pixels.

:func:`probe_image` reads the header (format, size, EXIF orientation), checks that the file is
complete and hashes its bytes. Sizes are reported *as displayed*: a phone photo stored as
4000x3000 with EXIF orientation 6 is probed as 3000x4000, which is what the rules apply to.

>>> from PIL import Image; import io
>>> buf = io.BytesIO(); Image.new("RGB", (640, 360)).save(buf, "PNG")
>>> info = probe_bytes(buf.getvalue(), "frame.png")
>>> (info.format, info.width, info.height, info.orientation)
('PNG', 640, 360, 1)
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, BinaryIO

from PIL import Image, UnidentifiedImageError

from orchestrator.media.errors import (
    ImageNotFound,
    ImageUnreadable,
    NotAnImage,
    TooLarge,
)
from orchestrator.media.rules import ImageRule, violations

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Sequence

_CHUNK = 1 << 20
_ORIENTATION_TAG = 0x0112
#: Orientations 5-8 rotate by 90 degrees, so the displayed width is the stored height.
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_JPEG_EOI = b"\xff\xd9"
#: Errors Pillow raises for damaged or truncated data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the rules and the encoder need to know about one image file."""

    path: str
    format: str
    width: int
    height: int
    size_bytes: int
    sha256: str
    orientation: int
    mode: str
    #: True for animated GIF/PNG/WebP; only the first frame is ever sent.
    animated: bool = False


@contextmanager
def _file_errors(name: str) -> Iterator[None]:
    """Turn OS errors about opening or reading ``name`` into :class:`ImageError` s."""
    try:
        yield
    except FileNotFoundError:
        raise ImageNotFound("file not found", name) from None
    except IsADirectoryError:
        raise ImageUnreadable("is a directory, not an image file", name) from None
    except PermissionError:
        raise ImageUnreadable("permission denied (cannot read the file)", name) from None
    except OSError as exc:
        raise ImageUnreadable(f"could not read the file ({exc.strerror or exc})", name) from None


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The whole file, with the same errors as :func:`probe_image`."""
    name = os.fspath(path)
    with _file_errors(name), open(name, "rb") as fh:
        return fh.read()


def probe_image(path: str | os.PathLike[str]) -> ImageInfo:
    """Probe an image file: header, orientation, completeness and sha256.

    Raises :class:`ImageNotFound`, :class:`ImageUnreadable` or :class:`NotAnImage`.
    """
    name = os.fspath(path)
    with _file_errors(name), open(name, "rb") as fh:
        return _probe_stream(fh, name, os.fstat(fh.fileno()).st_size)


def probe_bytes(data: bytes, name: str) -> ImageInfo:
    """Probe an image already in memory (e.g. fetched from a URL); ``name`` becomes ``path``."""
    return _probe_stream(io.BytesIO(data), name, len(data))


def check_image(info: ImageInfo, rules: Sequence[ImageRule]) -> list[ImageRule]:
    """The rules the image breaks, judged on its displayed size and its byte count."""
    return violations(rules, info.width, info.height, info.size_bytes)


def format_problem(info: ImageInfo, allowed: Collection[str] | None) -> str | None:
    """Say why the image's format is not accepted, or ``None`` when it is.

    >>> webp = ImageInfo("a.webp", "WEBP", 640, 360, 1000, "00", 1, "RGB")
    >>> format_problem(webp, ["JPEG", "PNG"])
    'format WEBP is not accepted (allowed: JPEG, PNG)'
    """
    if allowed is None:
        return None
    names = normalize_formats(allowed)
    if info.format in names:
        return None
    return f"format {info.format} is not accepted (allowed: {', '.join(sorted(names))})"


def normalize_formats(names: Collection[str]) -> frozenset[str]:
    """Pillow format names in upper case, with the common alias ``JPG`` read as ``JPEG``."""
    upper = {name.strip().upper() for name in names}
    return frozenset("JPEG" if name == "JPG" else name for name in upper)


def _probe_stream(fh: BinaryIO, name: str, size: int) -> ImageInfo:
    if size == 0:
        raise NotAnImage("empty file (0 bytes)", name)
    fmt, width, height, orientation, mode, animated = _read_header(fh, name)
    scan_start = None
    if fmt == "JPEG":
        # An unusual segment layout must not reject a JPEG Pillow accepted: fall back to
        # looking for the end marker anywhere after the start marker.
        scan_start = _jpeg_scan_start(fh) or 2
    fh.seek(0)
    digest, has_eoi = _hash(fh, scan_start)
    if fmt == "JPEG" and not has_eoi:
        raise NotAnImage("truncated or corrupt JPEG (the image data has no end marker)", name)
    if orientation in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    return ImageInfo(
        path=name,
        format=fmt,
        width=width,
        height=height,
        size_bytes=size,
        sha256=digest,
        orientation=orientation,
        mode=mode,
        animated=animated,
    )


def _read_header(fh: BinaryIO, name: str) -> tuple[str, int, int, int, str, bool]:
    """Identify the image and check it is complete, decoding as little as possible."""
    fmt = "image"
    try:
        with Image.open(fh) as img:
            fmt = img.format or "image"
            # MPO is a JPEG with extra pictures (depth maps) after the first; every JPEG
            # decoder reads it as the first picture, so it is a JPEG for our purposes.
            if fmt == "MPO":
                fmt = "JPEG"
            width, height = img.size
            orientation = _orientation(img)
            mode = img.mode
            animated = fmt != "JPEG" and bool(getattr(img, "is_animated", False))
            if fmt == "PNG":
                img.verify()  # checks every chunk's CRC without inflating the pixels
            elif fmt != "JPEG":
                # Rare formats are re-encoded at submit anyway; decoding now reports damage
                # at plan time instead of in the middle of a run. JPEG is checked by its end
                # marker instead (see _probe_stream).
                img.load()
    except UnidentifiedImageError:
        raise NotAnImage("not an image (Pillow could not identify the format)", name) from None
    except Image.DecompressionBombError as exc:
        raise TooLarge(f"too many pixels to decode safely ({exc})", name) from None
    except _DECODE_ERRORS as exc:
        raise NotAnImage(f"truncated or corrupt {fmt} ({exc})", name) from None
    return fmt, width, height, orientation, mode, animated


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag, 1 when absent or unreadable."""
    # A PNG's eXIf chunk may follow the pixel data; Pillow would then decode the whole image
    # to find it. Such late chunks are ignored here and by the encoder alike, consistently.
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _jpeg_scan_start(fh: BinaryIO) -> int | None:
    """Offset of the first start-of-scan marker, by walking the JPEG segment headers.

    The end-of-image marker must follow it; one found earlier may belong to the EXIF
    thumbnail, which says nothing about the main picture.
    """
    fh.seek(2)  # past SOI
    pos = 2
    while True:
        head = fh.read(2)
        if len(head) < 2 or head[0] != 0xFF:
            return None
        marker = head[1]
        if marker == 0xFF:  # fill byte before a marker
            fh.seek(pos + 1)
            pos += 1
            continue
        if marker == 0xDA:
            return pos
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # markers without a length
            pos += 2
            continue
        raw_length = fh.read(2)
        if len(raw_length) < 2:
            return None
        pos += 2 + int.from_bytes(raw_length, "big")
        fh.seek(pos)


def _hash(fh: BinaryIO, eoi_after: int | None) -> tuple[str, bool]:
    """sha256 of the stream and whether a JPEG end marker follows offset ``eoi_after``."""
    digest = hashlib.sha256()
    found = False
    pos = 0
    tail = b""  # last byte of the previous chunk, so a marker split across chunks is seen
    while chunk := fh.read(_CHUNK):
        digest.update(chunk)
        end = pos + len(chunk)
        if eoi_after is not None and not found and end > eoi_after:
            window = tail + chunk[max(0, eoi_after - pos) :]
            found = _JPEG_EOI in window
            tail = chunk[-1:]
        pos = end
    return digest.hexdigest(), found


class ProbeCache:
    """Probe each unchanged file once, however many jobs use it.

    Entries are keyed by (resolved path, modification time in ns, size): a file edited in
    place gets a new key and is probed again. A same-size rewrite within the file system's
    timestamp granularity is not noticed here, but :func:`encode_image` re-hashes before
    sending, so such a file is never submitted unnoticed. The cache holds at most ``maxsize``
    entries (least recently used dropped first) and is safe to share between threads.

    >>> cache = ProbeCache()
    >>> info = cache.probe("frame.png")  # doctest: +SKIP
    >>> cache.probe("frame.png") is info  # second call only stats the file  # doctest: +SKIP
    True
    """

    def __init__(self, maxsize: int = 4096) -> None:
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, int, int], ImageInfo] = OrderedDict()
        self._lock = threading.Lock()

    def probe(self, path: str | os.PathLike[str]) -> ImageInfo:
        """Like :func:`probe_image`, from the cache when the file has not changed."""
        name = os.fspath(path)
        key = self._key(name)
        with self._lock:
            info = self._entries.get(key)
            if info is not None:
                self._entries.move_to_end(key)
                self.hits += 1
        if info is None:
            info = probe_image(name)
            with self._lock:
                self.misses += 1
            # Only cache what was read from a file that did not change while being read.
            if self._key(name) == key:
                with self._lock:
                    self._entries[key] = info
                    while len(self._entries) > self.maxsize:
                        self._entries.popitem(last=False)
        return info if info.path == name else replace(info, path=name)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    @staticmethod
    def _key(name: str) -> tuple[str, int, int]:
        with _file_errors(name):
            real = os.path.realpath(name)
            st = os.stat(real)
        return real, st.st_mtime_ns, st.st_size
