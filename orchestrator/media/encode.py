"""Turn a local image into the ``data:`` URI a model field receives, at submit time.

The store keeps only an image's path and sha256; :func:`encode_image` re-reads the file,
refuses it if its bytes changed since enqueue, and sends it untouched when it already suits
the model. Otherwise it decodes, applies the EXIF orientation and the ``image_fit`` plan, and
re-encodes as PNG or JPEG within the byte budget. The same input always yields the same URI.

>>> encoded = encode_image("frame.jpg", expected_sha256=info.sha256)  # doctest: +SKIP
>>> encoded.data_uri[:23], encoded.reencoded  # doctest: +SKIP
('data:image/jpeg;base64,', False)
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from PIL import Image, ImageColor, ImageOps

from orchestrator.inputfiles import FileMissing, FileRefused, FileTooBig, read_bounded
from orchestrator.media.errors import (
    BreaksRules,
    ImageChanged,
    ImageError,
    ImageNotFound,
    ImageUnreadable,
    TooLarge,
)
from orchestrator.media.fit import FIT_MODES, FitMode, FitPlan, plan_fit, scaled_size, shape_rules
from orchestrator.media.probe import ImageInfo, normalize_formats, probe_bytes
from orchestrator.media.rules import ImageLimits, ImageRule, violations

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

#: The vendor's own client caps image data URIs at 6 MiB.
DEFAULT_MAX_BYTES = 6 * 1024 * 1024
#: The most of an image file ever read: twice the largest file-size rule of the shipped
#: models (30 MB), room for a big photo that ``image_fit`` shrinks, and a bound on memory.
MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024
#: JPEG qualities tried in turn before the image is made smaller.
JPEG_QUALITIES = (92, 85, 78, 70)
#: Letterbox bars added by ``image_fit: pad``.
PAD_COLOR = "black"
#: Transparent pixels become this when the output is JPEG.
MATTE_COLOR = "white"

MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
#: Modes every decoder reads as they are; others (e.g. CMYK JPEG) are converted to RGB.
_PLAIN_MODES = {"JPEG": frozenset({"L", "RGB"}), "PNG": None}
#: Source modes whose ICC profile still describes the converted pixels.
_ICC_SAFE_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa"})
_MAX_SHRINKS = 24


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """An image ready for a request body."""

    data_uri: str
    mime: str
    width: int
    height: int
    #: Bytes of the encoded image (before base64).
    size_bytes: int
    #: False when the original file is sent byte for byte.
    reencoded: bool


def encode_image(
    path: str | os.PathLike[str],
    *,
    expected_sha256: str,
    rules: Sequence[ImageRule] = (),
    fit: str | None = None,
    allowed_formats: Collection[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> EncodedImage:
    """Encode the image at ``path`` as a data URI that obeys ``rules``.

    ``fit`` (``resize``, ``pad`` or ``crop``) adapts an image whose size or aspect breaks a
    rule; without it such an image raises :class:`BreaksRules`. The byte budget is the
    smaller of ``max_bytes`` and the rules' file-size limit. Raises :class:`ImageChanged`
    when the file no longer has ``expected_sha256``, and :class:`TooLarge` when no
    allowed size fits the budget.
    """
    name = os.fspath(path)
    if fit is not None and fit not in FIT_MODES:
        raise ValueError(f"unknown image_fit mode {fit!r}; known: {', '.join(FIT_MODES)}")
    data = read_image_file(name, MAX_IMAGE_FILE_BYTES)
    if hashlib.sha256(data).hexdigest() != expected_sha256.strip().lower():
        raise ImageChanged(
            f"image changed since it was enqueued: {name}; re-run plan/enqueue or restore the file",
            name,
        )
    info = probe_bytes(data, name)
    limits = ImageLimits.from_rules(rules)
    shape = shape_rules(rules)
    budget = max_bytes if limits.max_bytes is None else min(max_bytes, limits.max_bytes)
    allowed = None if allowed_formats is None else normalize_formats(allowed_formats)

    plan: FitPlan | None = None
    if fit is not None:
        plan = plan_fit(info.width, info.height, limits, cast("FitMode", fit), rules=shape)
    elif broken := violations(shape, info.width, info.height, info.size_bytes):
        messages = "; ".join(dict.fromkeys(rule.message for rule in broken))
        raise BreaksRules(
            f"image is {info.width}x{info.height}: {messages} "
            "(set image_fit: resize, pad or crop to adapt it)",
            name,
        )
    if plan is None and _sendable(info, allowed, budget):
        return _encoded(info.format, data, info.width, info.height, reencoded=False)
    return _reencode(data, info, plan, shape, limits, allowed, budget)


def read_image_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """An image file's bytes: a regular file of at most ``limit`` bytes.

    The file is re-read at submit time, long after it was checked: by then the path may name
    a named pipe (whose ``open`` would block the worker forever) or a huge file.
    """
    name = os.fspath(path)
    try:
        return read_bounded(name, limit)
    except FileMissing:
        raise ImageNotFound("file not found", name) from None
    except FileTooBig as exc:
        raise TooLarge(exc.reason, name) from None
    except FileRefused as exc:
        raise ImageUnreadable(exc.reason, name) from None


def _sendable(info: ImageInfo, allowed: frozenset[str] | None, budget: int) -> bool:
    """Whether the original bytes can go as they are."""
    if info.format not in MIME_TYPES or (allowed is not None and info.format not in allowed):
        return False
    plain = _PLAIN_MODES[info.format]
    return (
        info.orientation == 1
        and not info.animated
        and (plain is None or info.mode in plain)
        and info.size_bytes <= budget
    )


def _encoded(fmt: str, data: bytes, width: int, height: int, *, reencoded: bool) -> EncodedImage:
    mime = MIME_TYPES[fmt]
    return EncodedImage(
        data_uri=f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}",
        mime=mime,
        width=width,
        height=height,
        size_bytes=len(data),
        reencoded=reencoded,
    )


def _reencode(
    data: bytes,
    info: ImageInfo,
    plan: FitPlan | None,
    shape: Sequence[ImageRule],
    limits: ImageLimits,
    allowed: frozenset[str] | None,
    budget: int,
) -> EncodedImage:
    with Image.open(io.BytesIO(data)) as source:
        source.load()  # the first frame of an animation
        icc = source.info.get("icc_profile") if source.mode in _ICC_SAFE_MODES else None
        image = _plain(ImageOps.exif_transpose(source) if info.orientation != 1 else source)
    if plan is not None:
        image = _apply(image, plan)
    has_alpha = image.mode in ("RGBA", "LA")
    formats = [f for f in ("PNG", "JPEG") if allowed is None or f in allowed]
    if not formats:
        raise ImageError(
            f"none of the accepted formats ({', '.join(sorted(allowed or ()))}) can be "
            "written; this tool sends JPEG or PNG",
            info.path,
        )
    if "PNG" in formats and (has_alpha or info.format == "PNG" or "JPEG" not in formats):
        out = _save(image, "PNG", icc)
        if len(out) <= budget:
            return _encoded("PNG", out, *image.size, reencoded=True)
        # A photo saved as PNG rarely shrinks enough; JPEG does, unless transparency matters.
        fmt = "JPEG" if "JPEG" in formats and not has_alpha else "PNG"
    else:
        fmt = "JPEG"
    if fmt == "JPEG":
        image = _flatten(image)
        for quality in JPEG_QUALITIES:
            out = _save(image, "JPEG", icc, quality)
            if len(out) <= budget:
                return _encoded("JPEG", out, *image.size, reencoded=True)

    def save(img: Image.Image) -> bytes:
        return _save(img, fmt, icc, JPEG_QUALITIES[-1])

    image, out = _shrink(image, save, len(out), budget, shape, limits, info.path)
    return _encoded(fmt, out, *image.size, reencoded=True)


def _plain(image: Image.Image) -> Image.Image:
    """The image in L, LA, RGB or RGBA; alpha kept only where some pixel is see-through."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        # 16-bit greyscale: keep the top 8 bits (``convert("L")`` would clip instead).
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    elif mode in ("L", "RGB", "LA", "RGBA"):
        image = image.copy()  # detach from the source file, which is closed next
    elif image.has_transparency_data:
        image = image.convert("RGBA")
    else:
        image = image.convert("L" if mode == "1" else "RGB")
    if image.mode in ("LA", "RGBA"):
        low, _high = cast("tuple[int, int]", image.getchannel("A").getextrema())
        if low == 255:
            image = image.convert(image.mode[:-1])
    return image


def _apply(image: Image.Image, plan: FitPlan) -> Image.Image:
    """Crop or pad, then scale, as planned."""
    if plan.crop_box is not None:
        image = image.crop(plan.crop_box)
    if plan.pad_to is not None:
        canvas = Image.new(image.mode, plan.pad_to, ImageColor.getcolor(PAD_COLOR, image.mode))
        left = (plan.pad_to[0] - image.width) // 2
        top = (plan.pad_to[1] - image.height) // 2
        canvas.paste(image, (left, top))
        image = canvas
    if image.size != plan.size:
        image = image.resize(plan.size, Image.Resampling.LANCZOS)
    return image


def _flatten(image: Image.Image) -> Image.Image:
    """Composite transparency onto the matte colour, since JPEG has no alpha."""
    if image.mode not in ("LA", "RGBA"):
        return image
    mode = image.mode[:-1]
    background = Image.new(mode, image.size, ImageColor.getcolor(MATTE_COLOR, mode))
    background.paste(image.convert(mode), mask=image.getchannel("A"))
    return background


def _save(image: Image.Image, fmt: str, icc: bytes | None, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if fmt == "JPEG":
        options.update(quality=quality, optimize=True)
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _shrink(
    image: Image.Image,
    save: Callable[[Image.Image], bytes],
    size_bytes: int,
    budget: int,
    shape: Sequence[ImageRule],
    limits: ImageLimits,
    name: str,
) -> tuple[Image.Image, bytes]:
    """Scale down in steps until the encoding fits ``budget``, never below the minimum size."""
    width, height = image.size
    floor = max(
        (limits.min_width or 0) / width,
        (limits.min_height or 0) / height,
    )
    scale, current = 1.0, image.size
    for _ in range(_MAX_SHRINKS):
        # Bytes grow about with the pixel count: aim a little under the budget.
        factor = min(0.9, max(0.5, math.sqrt(budget / size_bytes) * 0.95))
        scale = max(scale * factor, floor)
        size = scaled_size(width, height, scale, shape)
        if size is None or size == current:
            break
        current = size
        smaller = image.resize(size, Image.Resampling.LANCZOS)
        out = save(smaller)
        if len(out) <= budget:
            return smaller, out
        size_bytes = len(out)
    raise TooLarge(
        f"cannot encode it in {budget:,} bytes: at {current[0]}x{current[1]} it still takes "
        f"{size_bytes:,} bytes and the model's rules allow no smaller size",
        name,
    )
