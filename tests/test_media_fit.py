"""Planning resize / pad / crop into the seed models' image rules (pure geometry)."""

from __future__ import annotations

import pytest

from orchestrator.media.errors import CannotFit
from orchestrator.media.fit import FitMode, FitPlan, limit_rules, plan_fit, scaled_size
from orchestrator.media.rules import ImageLimits, ImageRule, parse_rules


def _rules(*entries: tuple[str, float]) -> tuple[ImageRule, ...]:
    return parse_rules(
        {"validation_rule": rule, "validation_value": value, "validation_error": rule}
        for rule, value in entries
    )


SEEDANCE = _rules(
    ("width_pixels<", 6000),
    ("height_pixels<", 6000),
    ("width_pixels>", 300),
    ("height_pixels>", 300),
    ("width/height>", 0.4),
    ("width/height<", 2.5),
    ("file_size_mb<", 30),
)
DREAMINA = _rules(
    ("file_size_mb<", 4.7),
    ("width_pixels<=", 4096),
    ("height_pixels<=", 4096),
    ("width_pixels>", 320),
    ("height_pixels>", 320),
    ("width/height<", 3),
    ("width/height>", 0.33),
)
RUNWAY = _rules(
    ("width_pixels<", 8000),
    ("height_pixels<", 8000),
    ("width/height>", 0.5),
    ("width/height<", 2),
    ("file_size_mb<", 16),
)
#: The image rules of the five seed models (the three Seedance pages share theirs).
SEED_RULES = {
    "seedance-1-0/pro": SEEDANCE,
    "seedance-1-0/lite": SEEDANCE,
    "dreamina-3-0/pro": DREAMINA,
    "seedance-v1.5-pro": SEEDANCE,
    "runway-gen-4/turbo": RUNWAY,
}
SOURCES = [
    (8000, 1000),
    (1000, 8000),
    (100, 100),
    (100, 1000),
    (20000, 120),
    (9000, 9000),
    (6000, 2400),
    (2400, 6000),
    (4097, 1366),
    (1920, 1080),
    (301, 301),
    (1, 1),
    (3, 1),
]


def _obeys(size: tuple[int, int], rules: tuple[ImageRule, ...]) -> bool:
    return all(rule.holds(*size, 0) for rule in rules if rule.measure != "file_size_mb")


@pytest.mark.parametrize("model", list(SEED_RULES))
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("mode", ["pad", "crop"])
def test_pad_and_crop_always_fit_the_seed_rules(
    model: str, source: tuple[int, int], mode: FitMode
) -> None:
    rules = SEED_RULES[model]
    plan = plan_fit(*source, ImageLimits.from_rules(rules), mode)
    if plan is None:
        assert _obeys(source, rules)
        return
    assert _obeys(plan.size, rules), plan
    width, height = source
    if plan.crop_box is not None:
        left, top, right, bottom = plan.crop_box
        assert 0 <= left < right <= width
        assert 0 <= top < bottom <= height
        # Centered: the margins on either side differ by at most one pixel.
        assert abs(left - (width - right)) <= 1
        assert abs(top - (height - bottom)) <= 1
    if plan.pad_to is not None:
        assert plan.pad_to[0] >= width
        assert plan.pad_to[1] >= height


@pytest.mark.parametrize("model", list(SEED_RULES))
@pytest.mark.parametrize("source", [(9000, 6000), (100, 120), (1920, 1080), (7000, 7000)])
def test_resize_fits_the_seed_rules_and_keeps_the_aspect(
    model: str, source: tuple[int, int]
) -> None:
    rules = SEED_RULES[model]
    plan = plan_fit(*source, ImageLimits.from_rules(rules), "resize")
    if plan is None:
        assert _obeys(source, rules)
        return
    assert _obeys(plan.size, rules)
    assert (plan.crop_box, plan.pad_to) == (None, None)
    assert plan.size[0] / plan.size[1] == pytest.approx(source[0] / source[1], rel=0.01)


def test_resize_cannot_fix_the_aspect_ratio() -> None:
    with pytest.raises(CannotFit) as caught:
        plan_fit(3200, 1000, ImageLimits.from_rules(SEEDANCE), "resize")
    assert caught.value.reason == (
        "aspect ratio 3.20 is outside 0.4-2.5; use image_fit: pad or crop"
    )


def test_resize_names_a_one_sided_aspect_limit() -> None:
    with pytest.raises(CannotFit, match="above the maximum 2"):
        plan_fit(300, 100, ImageLimits(max_aspect=2.0), "resize")
    with pytest.raises(CannotFit, match=r"below the minimum 0\.5"):
        plan_fit(100, 300, ImageLimits(min_aspect=0.5), "resize")


def test_resize_cannot_fit_a_size_box_without_aspect_rules() -> None:
    # 10000x200 must shrink to width 5999 but grow to height 301: no single scale does both.
    limits = ImageLimits.from_rules(_rules(("width_pixels<", 6000), ("height_pixels>", 300)))
    with pytest.raises(CannotFit, match=r"aspect ratio 50\.00 is above the maximum 19\.93"):
        plan_fit(10000, 200, limits, "resize")
    plan = plan_fit(10000, 200, limits, "pad")
    assert plan is not None
    assert plan.size[0] <= 5999
    assert plan.size[1] >= 301


def test_already_fitting_image_needs_no_plan() -> None:
    for mode in ("resize", "pad", "crop"):
        assert plan_fit(1920, 1080, ImageLimits.from_rules(SEEDANCE), mode) is None


def test_strict_aspect_bound_is_never_reached() -> None:
    limits = ImageLimits.from_rules(SEEDANCE)
    crop = plan_fit(2500, 1000, limits, "crop")
    pad = plan_fit(2500, 1000, limits, "pad")
    assert crop == FitPlan(crop_box=(0, 0, 2499, 1000), pad_to=None, size=(2499, 1000))
    assert pad == FitPlan(crop_box=None, pad_to=(2500, 1001), size=(2500, 1001))


def test_schema_rules_decide_whether_it_fits() -> None:
    # With only limits the aspect bound reads as strict; a "<=" schema rule allows 2.5 itself.
    inclusive = _rules(("width/height<=", 2.5))
    limits = ImageLimits.from_rules(inclusive)
    assert plan_fit(2500, 1000, limits, "crop") is not None
    assert plan_fit(2500, 1000, limits, "crop", rules=inclusive) is None


def test_scales_up_small_images_and_down_large_ones() -> None:
    limits = ImageLimits.from_rules(SEEDANCE)
    small = plan_fit(150, 100, limits, "resize")
    large = plan_fit(12000, 8000, limits, "resize")
    assert small is not None
    assert small.size == (451, 301)
    assert large is not None
    assert large.size == (5999, 3999)


def test_plans_are_deterministic() -> None:
    limits = ImageLimits.from_rules(DREAMINA)
    plans = {plan_fit(12345, 1234, limits, "pad") for _ in range(20)}
    assert len(plans) == 1


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown image_fit mode 'stretch'"):
        plan_fit(100, 100, ImageLimits(min_width=200), "stretch")  # type: ignore[arg-type]


def test_contradictory_limits_cannot_fit() -> None:
    with pytest.raises(CannotFit, match="allow no width"):
        plan_fit(100, 100, ImageLimits(min_width=500, max_width=400), "pad")
    with pytest.raises(CannotFit, match="allow no aspect ratio"):
        plan_fit(100, 100, ImageLimits(min_aspect=2.0, max_aspect=1.0), "pad")
    with pytest.raises(CannotFit, match="no pixels"):
        plan_fit(0, 100, ImageLimits(), "pad")


def test_scaled_size_steps_around_a_strict_ratio() -> None:
    rule = ImageRule("width/height", "<", 2.5, "aspect below 2.5")
    assert scaled_size(2499, 1000, 0.4, [rule]) == (1000, 401)
    assert scaled_size(1000, 1000, 0.5, []) == (500, 500)
    assert scaled_size(1000, 1000, 0.5, [ImageRule("width_pixels", ">", 10_000, "")]) is None


def test_limit_rules_mirror_the_limits() -> None:
    rules = limit_rules(ImageLimits.from_rules(SEEDANCE))
    assert [rule.text for rule in rules] == [
        "width_pixels>=301",
        "width_pixels<=5999",
        "height_pixels>=301",
        "height_pixels<=5999",
        "width/height>0.4",
        "width/height<2.5",
    ]
