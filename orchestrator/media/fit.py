"""Plan how to bring an image's size within a model's rules: pure geometry, no pixels.

Three ``image_fit`` modes:

* ``resize`` scales the whole image, keeping its aspect ratio, down or up into the allowed
  box. It cannot fix an aspect ratio the model refuses.
* ``pad`` first letterboxes the image (source centered) to the nearest allowed aspect ratio,
  then scales.
* ``crop`` first cuts the centre to the nearest allowed aspect ratio, then scales.

Limits from strict rules stay strict: under ``width/height<2.5`` the planned size has an
integer ratio below 2.5, never equal to it.

>>> from orchestrator.media.rules import ImageLimits
>>> limits = ImageLimits(min_width=301, max_width=5999, min_height=301, max_height=5999,
...                      min_aspect=0.4, max_aspect=2.5)
>>> plan_fit(1000, 800, limits, "resize") is None  # already fits
True
>>> plan_fit(8000, 6000, limits, "resize").size
(5999, 4499)
>>> plan_fit(3200, 1000, limits, "crop")
FitPlan(crop_box=(350, 0, 2849, 1000), pad_to=None, size=(2499, 1000))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from orchestrator.media.errors import CannotFit
from orchestrator.media.rules import ImageLimits, ImageRule

FitMode = Literal["resize", "pad", "crop"]
FIT_MODES: tuple[str, ...] = get_args(FitMode)

_AspectCheck = Callable[[int, int], bool]
_IntCheck = Callable[[int], bool]

#: How far (in pixels) to look around an ideal scaled width for one that obeys every rule.
_SEARCH = 16
#: Enough steps to reach any aspect window from a rounded first guess.
_MAX_STEPS = 10_000


@dataclass(frozen=True, slots=True)
class FitPlan:
    """What to do to the oriented source image, in order: crop or pad, then scale to ``size``."""

    #: (left, top, right, bottom) in oriented source pixels, or ``None`` for no crop.
    crop_box: tuple[int, int, int, int] | None
    #: Canvas (width, height) the source is centered on before scaling, or ``None``.
    pad_to: tuple[int, int] | None
    #: Final (width, height).
    size: tuple[int, int]


def limit_rules(limits: ImageLimits) -> tuple[ImageRule, ...]:
    """The size and aspect limits as rules; aspect bounds are strict (the safe reading)."""
    rules: list[ImageRule] = []

    def add(measure: str, op: str, value: float | None, message: str) -> None:
        if value is not None:
            rules.append(ImageRule(measure, op, float(value), message))

    add("width_pixels", ">=", limits.min_width, f"width must be at least {limits.min_width}")
    add("width_pixels", "<=", limits.max_width, f"width must be at most {limits.max_width}")
    add("height_pixels", ">=", limits.min_height, f"height must be at least {limits.min_height}")
    add("height_pixels", "<=", limits.max_height, f"height must be at most {limits.max_height}")
    add("width/height", ">", limits.min_aspect, f"aspect must be above {limits.min_aspect}")
    add("width/height", "<", limits.max_aspect, f"aspect must be below {limits.max_aspect}")
    return tuple(rules)


def shape_rules(rules: Iterable[ImageRule]) -> tuple[ImageRule, ...]:
    """The rules about pixels and aspect (every rule but file size)."""
    return tuple(rule for rule in rules if rule.measure != "file_size_mb")


def _obeys(width: int, height: int, rules: Iterable[ImageRule]) -> bool:
    return all(rule.holds(width, height, 0) for rule in rules)


def scaled_size(
    width: int, height: int, scale: float, rules: Sequence[ImageRule]
) -> tuple[int, int] | None:
    """The whole-pixel size nearest to ``scale`` times the given one that obeys ``rules``.

    Rounding can push a ratio across a strict bound, so neighbours are tried, nearest first.
    ``None`` when nothing within a few pixels obeys.

    >>> rule = ImageRule("width/height", "<", 2.5, "aspect below 2.5")
    >>> scaled_size(2499, 1000, 0.4, [rule])
    (1000, 401)
    """
    aspect = width / height
    ideal = max(1, round(width * scale))
    for step in range(2 * _SEARCH + 1):
        # 0, -1, +1, -2, +2, ...: deterministic, nearest to the ideal width first.
        w = ideal + (step + 1) // 2 * (-1 if step % 2 else 1)
        if w < 1:
            continue
        h_ideal = w / aspect
        base = math.floor(h_ideal)
        for h in sorted(range(base - 1, base + 3), key=lambda h: (abs(h - h_ideal), h)):
            if h >= 1 and _obeys(w, h, rules):
                return w, h
    return None


def _aspect_window(limits: ImageLimits, rules: Iterable[ImageRule]) -> tuple[float, float]:
    """Aspect ratios some size in the box can have: the aspect rules and the box's corners."""
    low = limits.min_aspect or 0.0
    high = limits.max_aspect or math.inf
    for rule in rules:
        if rule.measure == "width/height" and rule.op in ("<", "<="):
            high = min(high, rule.value)
        elif rule.measure == "width/height":
            low = max(low, rule.value)
    if limits.min_width is not None and limits.max_height is not None:
        low = max(low, limits.min_width / limits.max_height)
    if limits.max_width is not None and limits.min_height is not None:
        high = min(high, limits.max_width / limits.min_height)
    return low, high


def _num(value: float) -> str:
    return f"{value:.4g}"


def _aspect_reason(aspect: float, low: float, high: float) -> str:
    if low > 0 and high < math.inf:
        where = f"outside {_num(low)}-{_num(high)}"
    elif high < math.inf:
        where = f"above the maximum {_num(high)}"
    else:
        where = f"below the minimum {_num(low)}"
    return f"aspect ratio {aspect:.2f} is {where}; use image_fit: pad or crop"


def _check_box(limits: ImageLimits) -> None:
    for axis, low, high in (
        ("width", limits.min_width, limits.max_width),
        ("height", limits.min_height, limits.max_height),
    ):
        if low is not None and high is not None and low > high:
            raise CannotFit(f"the model's rules allow no {axis} (at least {low}, at most {high})")


def plan_fit(
    width: int,
    height: int,
    limits: ImageLimits,
    mode: FitMode,
    *,
    rules: Sequence[ImageRule] = (),
) -> FitPlan | None:
    """Plan the crop or pad and the final size for an oriented ``width`` x ``height`` image.

    ``None`` when it already fits. ``rules`` (the schema's own, optional) decide whether it
    fits and are obeyed too; without them ``limits`` decide, reading aspect bounds as strict.
    Raises :class:`CannotFit` when ``mode`` cannot make it fit.
    """
    if mode not in FIT_MODES:
        raise ValueError(f"unknown image_fit mode {mode!r}; known: {', '.join(FIT_MODES)}")
    if width < 1 or height < 1:
        raise CannotFit(f"image has no pixels ({width}x{height})")
    exact = shape_rules(rules)
    checks = limit_rules(limits) + exact
    if _obeys(width, height, exact or checks):
        return None
    _check_box(limits)
    aspect_rules = [rule for rule in checks if rule.measure == "width/height"]
    low, high = _aspect_window(limits, aspect_rules)

    def aspect_ok(w: int, h: int) -> bool:
        return low <= w / h <= high and _obeys(w, h, aspect_rules)

    if low > high or (low == high and aspect_rules):
        raise CannotFit(f"the model's rules allow no aspect ratio ({_num(low)}-{_num(high)})")
    crop_box: tuple[int, int, int, int] | None = None
    pad_to: tuple[int, int] | None = None
    canvas_w, canvas_h = width, height
    if not aspect_ok(width, height):
        if mode == "resize":
            raise CannotFit(_aspect_reason(width / height, low, high))
        too_wide = width / height >= high
        canvas_w, canvas_h = _canvas(width, height, low, high, too_wide, mode, aspect_ok)
        if mode == "crop":
            left, top = (width - canvas_w) // 2, (height - canvas_h) // 2
            crop_box = (left, top, left + canvas_w, top + canvas_h)
        else:
            pad_to = (canvas_w, canvas_h)
    size = scaled_size(canvas_w, canvas_h, _scale(canvas_w, canvas_h, limits), checks)
    if size is None:
        raise CannotFit(f"no size within the model's rules is close to {canvas_w}x{canvas_h}")
    return FitPlan(crop_box=crop_box, pad_to=pad_to, size=size)


def _canvas(
    width: int,
    height: int,
    low: float,
    high: float,
    too_wide: bool,
    mode: FitMode,
    aspect_ok: _AspectCheck,
) -> tuple[int, int]:
    """The crop or pad of the source nearest to it whose ratio is allowed."""
    if mode == "crop":
        # Keep the full length of the short side, cut the long one.
        if too_wide:
            w = _walk(min(width, math.floor(high * height)), -1, lambda w: aspect_ok(w, height))
            return w, height
        h = _walk(min(height, math.floor(width / low)), -1, lambda h: aspect_ok(width, h))
        return width, h
    # Pad: keep the whole source, grow the short side.
    if too_wide:
        h = _walk(max(height, math.ceil(width / high)), 1, lambda h: aspect_ok(width, h))
        return width, h
    w = _walk(max(width, math.ceil(low * height)), 1, lambda w: aspect_ok(w, height))
    return w, height


def _walk(start: int, step: int, ok: _IntCheck) -> int:
    """The first value from ``start`` in ``step`` s that is ``ok``."""
    value = max(1, start)
    for _ in range(_MAX_STEPS):
        if ok(value):
            return value
        value += step
        if value < 1:
            break
    raise CannotFit("no crop or pad of the image has an allowed aspect ratio")


def _scale(width: int, height: int, limits: ImageLimits) -> float:
    """The scale nearest to 1 that puts the size within the box."""
    low = max(
        limits.min_width / width if limits.min_width is not None else 0.0,
        limits.min_height / height if limits.min_height is not None else 0.0,
    )
    high = min(
        limits.max_width / width if limits.max_width is not None else math.inf,
        limits.max_height / height if limits.max_height is not None else math.inf,
    )
    return min(max(1.0, low), high)
