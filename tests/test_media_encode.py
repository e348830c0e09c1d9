"""Building data URIs at submit time: pass-through, re-encoding, fitting and byte budgets."""

from __future__ import annotations

import base64
import io
import os
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from orchestrator.media import (
    BreaksRules,
    EncodedImage,
    ImageChanged,
    ImageError,
    TooLarge,
    encode_image,
    probe_image,
)
from orchestrator.media.encode import _plain
from orchestrator.media.rules import ImageRule, parse_rules

if TYPE_CHECKING:
    from pathlib import Path

ORIENTATION = 0x0112
TOO_BIG = "The uploaded image width and height must not exceed 6000 pixels."
TOO_SMALL = "The uploaded image width and height must not be less than 300 pixels."
ASPECT = "The aspect ratio range should be between 0.4 and 2.5."
SEEDANCE = parse_rules(
    {"validation_rule": rule, "validation_value": value, "validation_error": message}
    for rule, value, message in [
        ("width_pixels<", 6000, TOO_BIG),
        ("height_pixels<", 6000, TOO_BIG),
        ("width_pixels>", 300, TOO_SMALL),
        ("height_pixels>", 300, TOO_SMALL),
        ("width/height>", 0.4, ASPECT),
        ("width/height<", 2.5, ASPECT),
        ("file_size_mb<", 30, "File size must be less than 30 MB."),
    ]
)


def save(image: Image.Image, path: Path, fmt: str, **options: object) -> Path:
    image.save(path, fmt, **options)
    return path


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    bands = len(mode)
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * bands))


def decode(encoded: EncodedImage) -> tuple[bytes, Image.Image]:
    header, payload = encoded.data_uri.split(",", 1)
    assert header == f"data:{encoded.mime};base64"
    data = base64.b64decode(payload)
    assert len(data) == encoded.size_bytes
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.size == (encoded.width, encoded.height)
    return data, image


def encode(path: Path, **options: object) -> EncodedImage:
    return encode_image(path, expected_sha256=probe_image(path).sha256, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fmt", "mime"), [("JPEG", "image/jpeg"), ("PNG", "image/png")])
def test_fitting_jpeg_and_png_are_sent_untouched(tmp_path: Path, fmt: str, mime: str) -> None:
    path = save(Image.new("RGB", (640, 360), "teal"), tmp_path / "frame", fmt)
    encoded = encode(path, rules=SEEDANCE, allowed_formats={"JPEG", "PNG"})
    data, _ = decode(encoded)
    assert data == path.read_bytes()
    assert (encoded.mime, encoded.reencoded, encoded.width, encoded.height) == (
        mime,
        False,
        640,
        360,
    )


def test_changed_file_is_refused(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (640, 360), "teal"), tmp_path / "frame.png", "PNG")
    enqueued = probe_image(path).sha256
    save(Image.new("RGB", (640, 360), "orange"), path, "PNG")
    with pytest.raises(ImageChanged) as caught:
        encode_image(path, expected_sha256=enqueued)
    assert str(caught.value) == (
        f"image changed since it was enqueued: {path}; re-run plan/enqueue or restore the file"
    )


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (480, 360), "white")
    stored.paste((0, 0, 255), (0, 0, 40, 40))  # a marker in the stored top-left corner
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    path = save(stored, tmp_path / "phone.jpg", "JPEG", exif=exif)
    encoded = encode(path, rules=SEEDANCE)
    _, image = decode(encoded)
    assert (encoded.reencoded, image.size) == (True, (360, 480))
    assert ORIENTATION not in image.getexif()
    # Orientation 6 is displayed rotated 90 degrees clockwise: top-left goes to top-right.
    red, green, blue = image.convert("RGB").getpixel((340, 20))  # type: ignore[misc]
    assert blue > 200
    assert red < 60
    assert green < 60


@pytest.mark.parametrize(
    ("fmt", "mode", "mime"),
    [
        ("WEBP", "RGB", "image/jpeg"),
        ("BMP", "RGB", "image/jpeg"),
        ("WEBP", "RGBA", "image/png"),
        ("GIF", "P", "image/jpeg"),
    ],
)
def test_other_formats_are_reencoded(tmp_path: Path, fmt: str, mode: str, mime: str) -> None:
    image = Image.new(mode, (320, 320))
    if mode == "RGBA":
        image.paste((255, 0, 0, 0), (0, 0, 100, 100))  # some transparency
    path = save(image, tmp_path / f"frame.{fmt.lower()}", fmt)
    encoded = encode(path, rules=SEEDANCE, allowed_formats=["JPEG", "PNG"])
    _, decoded = decode(encoded)
    assert (encoded.mime, encoded.reencoded, decoded.size) == (mime, True, (320, 320))
    assert decoded.format == ("PNG" if mime == "image/png" else "JPEG")


def test_animated_gif_sends_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (320, 320), color) for color in ("red", "blue")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:])
    _, image = decode(encode(path))
    red, _, blue = image.convert("RGB").getpixel((10, 10))  # type: ignore[misc]
    assert red > 200
    assert blue < 60


def test_jpeg_not_allowed_becomes_png(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (320, 320), "teal"), tmp_path / "frame.jpg", "JPEG")
    encoded = encode(path, allowed_formats={"PNG"})
    assert (encoded.mime, encoded.reencoded) == ("image/png", True)


def test_no_writable_format_allowed(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (320, 320), "teal"), tmp_path / "frame.jpg", "JPEG")
    with pytest.raises(ImageError, match="this tool sends JPEG or PNG"):
        encode(path, allowed_formats={"WEBP"})


def test_alpha_is_composited_on_white_for_jpeg(tmp_path: Path) -> None:
    image = Image.new("RGBA", (320, 320), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (160, 0, 320, 320))
    path = save(image, tmp_path / "cutout.png", "PNG")
    as_png = encode(path, allowed_formats={"JPEG", "PNG"})
    assert (as_png.mime, as_png.reencoded) == ("image/png", False)
    as_jpeg = encode(path, allowed_formats={"JPEG"})
    _, decoded = decode(as_jpeg)
    assert as_jpeg.mime == "image/jpeg"
    assert decoded.convert("RGB").getpixel((20, 20)) == (255, 255, 255)


def test_opaque_alpha_channel_is_dropped(tmp_path: Path) -> None:
    path = save(Image.new("RGBA", (320, 320), (0, 128, 0, 255)), tmp_path / "x.webp", "WEBP")
    encoded = encode(path)
    assert encoded.mime == "image/jpeg"


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    path = save(Image.new("CMYK", (320, 320), (0, 255, 255, 0)), tmp_path / "print.jpg", "JPEG")
    encoded = encode(path)
    _, decoded = decode(encoded)
    assert (encoded.reencoded, decoded.mode) == (True, "RGB")


def test_sixteen_bit_grey_keeps_its_top_bits() -> None:
    grey = _plain(Image.new("I;16", (4, 4), 40000))
    assert (grey.mode, grey.getpixel((0, 0))) == ("L", 156)


def test_oversize_noise_png_is_shrunk_under_the_budget(tmp_path: Path) -> None:
    path = save(noise((1000, 800)), tmp_path / "noise.png", "PNG")
    assert path.stat().st_size > 2_000_000
    encoded = encode(path, rules=SEEDANCE, max_bytes=300_000)
    _, decoded = decode(encoded)
    assert encoded.mime == "image/jpeg"
    assert encoded.reencoded
    assert encoded.size_bytes <= 300_000
    assert all(rule.holds(*decoded.size, encoded.size_bytes) for rule in SEEDANCE)
    assert decoded.size[0] / decoded.size[1] == pytest.approx(1.25, rel=0.01)


def test_file_size_rule_sets_the_budget(tmp_path: Path) -> None:
    path = save(noise((600, 600)), tmp_path / "noise.jpg", "JPEG", quality=95)
    limit = parse_rules([{"validation_rule": "file_size_mb<", "validation_value": 0.2}])
    encoded = encode(path, rules=limit)
    assert encoded.reencoded
    assert encoded.size_bytes < 200_000


def test_alpha_png_over_budget_stays_png(tmp_path: Path) -> None:
    path = save(noise((400, 400), "RGBA"), tmp_path / "noise.png", "PNG")
    encoded = encode(path, max_bytes=200_000)
    assert encoded.mime == "image/png"
    assert encoded.size_bytes <= 200_000


def test_budget_below_the_minimum_size_is_too_large(tmp_path: Path) -> None:
    path = save(noise((400, 400)), tmp_path / "noise.png", "PNG")
    with pytest.raises(TooLarge, match="allow no smaller size"):
        encode(path, rules=SEEDANCE, max_bytes=5_000)


def test_breaking_a_rule_without_fit_names_the_rule(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (1600, 400), "teal"), tmp_path / "wide.png", "PNG")
    with pytest.raises(BreaksRules) as caught:
        encode(path, rules=SEEDANCE)
    assert ASPECT in caught.value.reason
    assert "image_fit" in caught.value.reason


@pytest.mark.parametrize("fit", ["resize", "pad", "crop"])
def test_fit_modes_produce_images_that_obey_the_rules(tmp_path: Path, fit: str) -> None:
    path = save(Image.new("RGB", (200, 150), "teal"), tmp_path / "small.png", "PNG")
    encoded = encode(path, rules=SEEDANCE, fit=fit)
    _, decoded = decode(encoded)
    assert encoded.reencoded
    assert encoded.mime == "image/png"
    assert all(rule.holds(*decoded.size, encoded.size_bytes) for rule in SEEDANCE)


def test_pad_letterboxes_in_black_and_crop_keeps_the_centre(tmp_path: Path) -> None:
    image = Image.new("RGB", (1500, 400), "white")
    image.paste((255, 0, 0), (0, 0, 100, 400))  # a red band the crop must remove
    path = save(image, tmp_path / "wide.png", "PNG")
    _, padded = decode(encode(path, rules=SEEDANCE, fit="pad"))
    assert padded.size == (1500, 601)
    assert padded.getpixel((750, 0)) == (0, 0, 0)
    assert padded.getpixel((750, 300)) != (0, 0, 0)
    _, cropped = decode(encode(path, rules=SEEDANCE, fit="crop"))
    assert cropped.size == (999, 400)
    assert cropped.getpixel((0, 200)) == (255, 255, 255)
    with pytest.raises(ImageError, match=r"aspect ratio 3.75 is outside 0.4-2.5"):
        encode(path, rules=SEEDANCE, fit="resize")


def test_unknown_fit_mode(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (320, 320)), tmp_path / "x.png", "PNG")
    with pytest.raises(ValueError, match="unknown image_fit mode"):
        encode(path, fit="stretch")


def test_reencoding_is_deterministic(tmp_path: Path) -> None:
    path = save(noise((500, 400)), tmp_path / "noise.webp", "WEBP")
    first = encode(path, rules=SEEDANCE, fit="crop", max_bytes=150_000)
    second = encode(path, rules=SEEDANCE, fit="crop", max_bytes=150_000)
    assert first == second
    assert first.reencoded


def test_rules_checked_with_the_rule_objects(tmp_path: Path) -> None:
    # A "<=" rule allows its bound exactly: a 2.5 ratio is sent untouched.
    path = save(Image.new("RGB", (1000, 400), "teal"), tmp_path / "x.png", "PNG")
    rule = ImageRule.parse({"validation_rule": "width/height<=", "validation_value": 2.5})
    assert not encode(path, rules=[rule], fit="crop").reencoded
