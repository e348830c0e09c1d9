"""Probing local images: header facts, displayed size, damage, errors and the cache."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from orchestrator.media import probe as probe_module
from orchestrator.media.errors import ImageError, ImageNotFound, ImageUnreadable, NotAnImage
from orchestrator.media.probe import (
    ImageInfo,
    ProbeCache,
    check_image,
    format_problem,
    probe_bytes,
    probe_image,
)
from orchestrator.media.rules import ImageRule

if TYPE_CHECKING:
    from pathlib import Path

ORIENTATION = 0x0112


def write_image(path: Path, size: tuple[int, int], fmt: str, **options: object) -> Path:
    Image.new("RGB", size, (200, 30, 30)).save(path, fmt, **options)
    return path


def jpeg_with_orientation(path: Path, size: tuple[int, int], orientation: int) -> Path:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return write_image(path, size, "JPEG", exif=exif)


def info_of(width: int, height: int, size_bytes: int = 1000) -> ImageInfo:
    return ImageInfo("x.png", "PNG", width, height, size_bytes, "00", 1, "RGB")


def test_probe_png_reports_header_facts_and_hash(tmp_path: Path) -> None:
    path = write_image(tmp_path / "frame.png", (640, 360), "PNG")
    info = probe_image(path)
    data = path.read_bytes()
    assert info == ImageInfo(
        path=str(path),
        format="PNG",
        width=640,
        height=360,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        orientation=1,
        mode="RGB",
    )


def test_probe_bytes_matches_probe_image(tmp_path: Path) -> None:
    path = write_image(tmp_path / "frame.jpg", (320, 480), "JPEG")
    from_file = probe_image(path)
    from_bytes = probe_bytes(path.read_bytes(), "https://example.com/frame.jpg")
    assert from_bytes.path == "https://example.com/frame.jpg"
    assert from_bytes.sha256 == from_file.sha256
    assert (from_bytes.format, from_bytes.width, from_bytes.height) == ("JPEG", 320, 480)


def test_exif_orientation_6_swaps_width_and_height(tmp_path: Path) -> None:
    info = probe_image(jpeg_with_orientation(tmp_path / "phone.jpg", (400, 300), 6))
    assert (info.width, info.height, info.orientation) == (300, 400, 6)


def test_exif_orientation_3_keeps_width_and_height(tmp_path: Path) -> None:
    info = probe_image(jpeg_with_orientation(tmp_path / "upside.jpg", (400, 300), 3))
    assert (info.width, info.height, info.orientation) == (400, 300, 3)


def test_rules_apply_to_the_displayed_size(tmp_path: Path) -> None:
    # Stored 700x250 (too wide) but displayed 250x700 (too tall and too narrow).
    info = probe_image(jpeg_with_orientation(tmp_path / "tall.jpg", (700, 250), 8))
    rules = [
        ImageRule("width_pixels", ">", 300, "at least 300 wide"),
        ImageRule("width/height", ">", 0.4, "aspect above 0.4"),
        ImageRule("width/height", "<", 2.5, "aspect below 2.5"),
    ]
    assert [rule.message for rule in check_image(info, rules)] == [
        "at least 300 wide",
        "aspect above 0.4",
    ]


@pytest.mark.parametrize(
    ("rule", "passing", "failing"),
    [
        ("width_pixels<6000", (5999, 1000, 0), (6000, 1000, 0)),
        ("height_pixels<6000", (1000, 5999, 0), (1000, 6000, 0)),
        ("width_pixels>300", (301, 1000, 0), (300, 1000, 0)),
        ("height_pixels>300", (1000, 301, 0), (1000, 300, 0)),
        ("width/height>0.4", (401, 1000, 0), (400, 1000, 0)),
        ("width/height<2.5", (2499, 1000, 0), (2500, 1000, 0)),
        ("width/height<3", (2999, 1000, 0), (3000, 1000, 0)),
        ("width/height>0.33", (331, 1000, 0), (330, 1000, 0)),
        ("file_size_mb<30", (1000, 1000, 29_999_999), (1000, 1000, 30_000_000)),
        ("file_size_mb<4.7", (1000, 1000, 4_699_999), (1000, 1000, 4_700_000)),
        ("width_pixels<=4096", (4096, 1000, 0), (4097, 1000, 0)),
        ("height_pixels<=4096", (1000, 4096, 0), (1000, 4097, 0)),
    ],
)
def test_each_rule_kind_at_its_boundary(
    rule: str, passing: tuple[int, int, int], failing: tuple[int, int, int]
) -> None:
    measure, op, value = _split(rule)
    parsed = ImageRule.parse({"validation_rule": measure + op, "validation_value": value})
    assert check_image(info_of(*passing), [parsed]) == []
    assert check_image(info_of(*failing), [parsed]) == [parsed]


def _split(rule: str) -> tuple[str, str, float]:
    for op in ("<=", ">=", "<", ">"):
        if op in rule:
            measure, value = rule.split(op)
            return measure, op, float(value)
    raise AssertionError(rule)


def test_file_size_rule_uses_the_real_byte_count(tmp_path: Path) -> None:
    path = write_image(tmp_path / "frame.png", (400, 400), "PNG")
    size = path.stat().st_size
    limit = ImageRule("file_size_mb", "<", size / 1_000_000, "too big")
    assert check_image(probe_image(path), [limit]) == [limit]
    roomy = ImageRule("file_size_mb", "<", (size + 1) / 1_000_000, "too big")
    assert check_image(probe_image(path), [roomy]) == []


def test_format_problem() -> None:
    webp = ImageInfo("a.webp", "WEBP", 640, 360, 1000, "00", 1, "RGB")
    assert format_problem(webp, None) is None
    assert format_problem(webp, ["JPEG", "PNG"]) == (
        "format WEBP is not accepted (allowed: JPEG, PNG)"
    )
    jpeg = ImageInfo("a.jpg", "JPEG", 640, 360, 1000, "00", 1, "RGB")
    assert format_problem(jpeg, ["jpg", "png"]) is None


@pytest.mark.parametrize(("fmt", "expected"), [("WEBP", "WEBP"), ("BMP", "BMP"), ("GIF", "GIF")])
def test_other_formats_are_identified(tmp_path: Path, fmt: str, expected: str) -> None:
    info = probe_image(write_image(tmp_path / f"frame.{fmt.lower()}", (320, 200), fmt))
    assert (info.format, info.width, info.height, info.animated) == (expected, 320, 200, False)


def test_mpo_counts_as_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "stereo.jpg"
    first, second = Image.new("RGB", (320, 200), "red"), Image.new("RGB", (320, 200), "blue")
    first.save(path, "MPO", save_all=True, append_images=[second])
    assert probe_image(path).format == "JPEG"


def test_animated_gif_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (320, 200), color) for color in ("red", "blue")]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:])
    assert probe_image(path).animated


def test_text_file_named_png_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("just some notes\n")
    with pytest.raises(NotAnImage) as caught:
        probe_image(path)
    assert "not an image (Pillow could not identify the format)" in str(caught.value)
    assert caught.value.path == str(path)


def test_empty_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(NotAnImage, match="empty file"):
        probe_image(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound) as caught:
        probe_image(tmp_path / "nope.jpg")
    assert caught.value.reason == "file not found"
    assert str(caught.value).endswith("nope.jpg: file not found")


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ImageUnreadable, match="is a directory"):
        probe_image(tmp_path)


def test_unreadable_file_chmod(tmp_path: Path) -> None:
    path = write_image(tmp_path / "locked.png", (320, 200), "PNG")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reading")
        with pytest.raises(ImageUnreadable, match="permission denied"):
            probe_image(path)
    finally:
        path.chmod(0o644)


def test_permission_error_is_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root can read a chmod 000 file, so simulate the error the OS gives everyone else.
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(probe_module, "open", refuse, raising=False)
    with pytest.raises(ImageUnreadable, match="permission denied"):
        probe_image(tmp_path / "locked.png")


def test_io_error_is_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(probe_module, "open", fail, raising=False)
    with pytest.raises(ImageUnreadable, match="Input/output error"):
        probe_image(tmp_path / "disk.png")


def _noise(size: tuple[int, int]) -> Image.Image:
    return Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))


def test_truncated_jpeg_is_not_an_image(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    _noise((320, 200)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])
    with pytest.raises(NotAnImage, match="truncated or corrupt JPEG"):
        probe_image(path)


def test_jpeg_with_trailing_data_is_accepted(tmp_path: Path) -> None:
    # Motion photos append a video after the JPEG's end marker.
    path = write_image(tmp_path / "motion.jpg", (320, 200), "JPEG")
    path.write_bytes(path.read_bytes() + os.urandom(5000))
    assert probe_image(path).format == "JPEG"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP"])
def test_truncated_files_are_not_images(tmp_path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    _noise((320, 200)).save(buffer, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(NotAnImage, match="truncated or corrupt"):
        probe_image(path)


def test_corrupt_png_chunk_is_not_an_image(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    _noise((64, 64)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[200] ^= 0xFF  # inside IDAT: its CRC no longer matches
    path = tmp_path / "flipped.png"
    path.write_bytes(bytes(data))
    with pytest.raises(NotAnImage):
        probe_image(path)


def test_errors_pickle_and_print() -> None:
    error = NotAnImage("not an image (Pillow could not identify the format)", "a.png")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ImageError)
    assert (copy.reason, copy.path, str(copy)) == (error.reason, "a.png", str(error))
    assert str(ImageError("no path")) == "no path"


class CountingProbe:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: str | os.PathLike[str]) -> ImageInfo:
        self.calls += 1
        return probe_image(path)


def test_probe_cache_reads_an_unchanged_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(tmp_path / "frame.png", (320, 200), "PNG")
    counter = CountingProbe()
    monkeypatch.setattr(probe_module, "probe_image", counter)
    cache = ProbeCache()
    infos = {cache.probe(path) for _ in range(1000)}
    assert len(infos) == 1
    assert (counter.calls, cache.misses, cache.hits) == (1, 1, 999)


def test_probe_cache_reprobes_after_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(tmp_path / "frame.png", (320, 200), "PNG")
    counter = CountingProbe()
    monkeypatch.setattr(probe_module, "probe_image", counter)
    cache = ProbeCache()
    before = cache.probe(path)
    write_image(path, (640, 400), "PNG")
    # A rewrite within one clock tick could keep the old mtime; set it rather than sleep.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    after = cache.probe(path)
    assert (before.width, after.width, counter.calls) == (320, 640, 2)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    cache.probe(path)  # only the mtime changed: probed again all the same
    assert counter.calls == 3


def test_probe_cache_keys_by_resolved_path_and_keeps_the_asked_name(tmp_path: Path) -> None:
    path = write_image(tmp_path / "frame.png", (320, 200), "PNG")
    link = tmp_path / "link.png"
    link.symlink_to(path)
    cache = ProbeCache()
    first = cache.probe(path)
    second = cache.probe(link)
    assert (cache.misses, cache.hits) == (1, 1)
    assert (first.path, second.path) == (str(path), str(link))


def test_probe_cache_evicts_least_recently_used(tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.png", (320, 200), "PNG")
    b = write_image(tmp_path / "b.png", (320, 200), "PNG")
    cache = ProbeCache(maxsize=1)
    cache.probe(a)
    cache.probe(b)
    cache.probe(a)
    assert cache.misses == 3
    cache.clear()
    cache.probe(a)
    assert cache.misses == 4


def test_probe_cache_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound):
        ProbeCache().probe(tmp_path / "gone.png")


def _with_comment(jpeg: bytes, comment: bytes) -> bytes:
    """Insert a COM segment right after the start marker."""
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return jpeg[:2] + segment + jpeg[2:]


def test_end_marker_before_the_image_data_does_not_count(tmp_path: Path) -> None:
    # An EXIF thumbnail (here: a comment) holds its own end marker before the main picture.
    buffer = io.BytesIO()
    _noise((320, 200)).save(buffer, "JPEG")
    data = _with_comment(buffer.getvalue(), b"thumb\xff\xd9thumb")
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(data)
    assert probe_image(whole).format == "JPEG"
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) - 1000])
    with pytest.raises(NotAnImage, match="truncated"):
        probe_image(cut)


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_end_marker_found_across_read_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(probe_module, "_CHUNK", chunk)
    path = write_image(tmp_path / "frame.jpg", (64, 48), "JPEG")
    assert probe_image(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(NotAnImage):
        probe_image(path)
