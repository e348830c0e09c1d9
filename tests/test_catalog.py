"""The model catalog: the five seed schemas as data, the generic validator, catalog files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from model_ids import DREAMINA, LITE, PRO, RUNWAY, V15

from orchestrator.catalog import (
    Catalog,
    CatalogError,
    FieldIssue,
    ModelSpec,
    Price,
    builtin_catalog,
    model_slug,
    validate_payload,
)
from orchestrator.catalog.parse import load_model_file, parse_model
from orchestrator.catalog.validate import in_enum, matches_type
from orchestrator.media.rules import BYTES_PER_MB, ImageLimits

MODEL_IDS = (PRO, LITE, DREAMINA, V15, RUNWAY)
SCHEMAS = Path(__file__).resolve().parent.parent / "orchestrator" / "catalog" / "schemas"

_SIZE_6000 = "The uploaded image width and height must not exceed 6000 pixels."
_MIN_300 = "The uploaded image width and height must not be less than 300 pixels."
_ASPECT_SEEDANCE = "The aspect ratio range should be between 0.4 and 2.5."
SEEDANCE_RULES = (
    ("width_pixels<", 6000, _SIZE_6000),
    ("height_pixels<", 6000, _SIZE_6000),
    ("width_pixels>", 300, _MIN_300),
    ("height_pixels>", 300, _MIN_300),
    ("width/height>", 0.4, _ASPECT_SEEDANCE),
    ("width/height<", 2.5, _ASPECT_SEEDANCE),
    ("file_size_mb<", 30, "File size must be less than 30 MB."),
)
_MAX_4096 = "Maximum resolution is 4096x4096."
_MIN_320 = "The shortest side must be at least 320 pixels."
DREAMINA_RULES = (
    ("file_size_mb<", 4.7, "File size must be less than 4.7 MB."),
    ("width_pixels<=", 4096, _MAX_4096),
    ("height_pixels<=", 4096, _MAX_4096),
    ("width_pixels>", 320, _MIN_320),
    ("height_pixels>", 320, _MIN_320),
    ("width/height<", 3, "The ratio of long side to short side must be within 3:1."),
    ("width/height>", 0.33, "The ratio of long side to short side must be greater than 0.33."),
)
_SIZE_8000 = "The uploaded image width and height must not exceed 8000 pixels."
_ASPECT_RUNWAY = "The aspect ratio range should be 1:2 to 2:1."
RUNWAY_RULES = (
    ("width_pixels<", 8000, _SIZE_8000),
    ("height_pixels<", 8000, _SIZE_8000),
    ("width/height>", 0.5, _ASPECT_RUNWAY),
    ("width/height<", 2, _ASPECT_RUNWAY),
    ("file_size_mb<", 16, "File size must be less than 16 MB."),
)
#: The image rules of the seed pages (shared/seeds), per model and image field.
SEED_IMAGE_RULES = {
    (PRO, "first_frame_image_url"): SEEDANCE_RULES,
    (LITE, "first_frame_image_url"): SEEDANCE_RULES,
    (LITE, "last_frame_image_url"): SEEDANCE_RULES,
    (DREAMINA, "image_urls"): DREAMINA_RULES,
    (V15, "first_frame_image_url"): SEEDANCE_RULES,
    (RUNWAY, "promptImage"): RUNWAY_RULES,
}
RULE_CASES = [
    pytest.param(model_id, name, index, rule, id=f"{model_slug(model_id)}-{name}-{rule[0]}")
    for (model_id, name), rules in SEED_IMAGE_RULES.items()
    for index, rule in enumerate(rules)
]


def model(model_id: str) -> ModelSpec:
    return builtin_catalog().require(model_id)


def issues(model_id: str, payload: dict[str, Any], **kwargs: bool) -> list[FieldIssue]:
    return validate_payload(model(model_id), payload, **kwargs)


def good_payload(model_id: str) -> dict[str, Any]:
    """A native payload every schema check accepts (images as plain references)."""
    if model_id == RUNWAY:
        return {"promptText": "a cat", "promptImage": "https://example.com/a.png"}
    if model_id == DREAMINA:
        return {"prompt": "a cat", "image_urls": ["https://example.com/a.png"]}
    return {"prompt": "a cat", "first_frame_image_url": "https://example.com/a.png"}


# -- the five built-in models ----------------------------------------------------------------


def test_builtin_catalog_holds_the_five_seed_models() -> None:
    catalog = builtin_catalog()
    assert len(catalog) == 5
    assert [m.model_id for m in catalog] == sorted(MODEL_IDS)
    assert all(model_id in catalog for model_id in MODEL_IDS)
    assert builtin_catalog() is catalog  # read once per process


@pytest.mark.parametrize(
    ("model_id", "slug", "required", "fields"),
    [
        (
            PRO,
            "seedance-1-0-pro",
            ("prompt", "first_frame_image_url"),
            ("prompt", "resolution", "first_frame_image_url", "ratio", "duration"),
        ),
        (
            LITE,
            "seedance-1-0-lite",
            ("prompt", "first_frame_image_url"),
            ("prompt", "first_frame_image_url", "last_frame_image_url", "resolution", "duration"),
        ),
        (
            DREAMINA,
            "dreamina-3-0-pro",
            ("prompt", "image_urls"),
            ("prompt", "image_urls", "seed", "frames"),
        ),
        (
            V15,
            "seedance-v1-5-pro",
            ("prompt", "first_frame_image_url"),
            (
                "prompt",
                "first_frame_image_url",
                "resolution",
                "ratio",
                "duration",
                "generate_audio",
                "camera_fixed",
            ),
        ),
        (
            RUNWAY,
            "runway-gen-4-turbo",
            ("promptImage",),
            ("promptText", "promptImage", "ratio", "duration", "seed"),
        ),
    ],
    ids=lambda v: model_slug(v) if isinstance(v, str) and "/" in v else None,
)
def test_model_fields_in_schema_order(
    model_id: str, slug: str, required: tuple[str, ...], fields: tuple[str, ...]
) -> None:
    spec = model(model_id)
    assert spec.slug == slug
    assert spec.required == required
    assert tuple(spec.fields) == fields
    assert spec.price is None  # the seed pages publish no price
    assert "price" in spec.pricing_note


@pytest.mark.parametrize(
    ("model_id", "field", "default"),
    [
        (LITE, "resolution", "480p"),
        (LITE, "duration", 5),
        (DREAMINA, "frames", 121),
        (DREAMINA, "seed", -1),
        (V15, "generate_audio", True),
        (RUNWAY, "ratio", "1280:720"),
    ],
)
def test_defaults_come_from_the_schema(model_id: str, field: str, default: object) -> None:
    spec = model(model_id).fields[field]
    assert spec.has_default
    assert spec.default == default


def test_fields_without_default_say_so() -> None:
    seed = model(RUNWAY).fields["seed"]
    assert (seed.has_default, seed.default) == (False, None)
    assert (seed.minimum, seed.maximum) == (0, 4294967295)
    assert seed.allowed_text() == "allowed: >= 0 and <= 4294967295"
    assert model(LITE).fields["prompt"].allowed_text() is None


@pytest.mark.parametrize(("model_id", "name"), list(SEED_IMAGE_RULES))
def test_image_fields_are_recognised(model_id: str, name: str) -> None:
    spec = model(model_id)
    assert spec.fields[name].is_image
    assert set(spec.image_fields) == {n for m, n in SEED_IMAGE_RULES if m == model_id}


def test_dreamina_image_field_is_a_list_of_exactly_one_jpeg_or_png() -> None:
    spec = model(DREAMINA).fields["image_urls"]
    assert (spec.type, spec.items_type, spec.min_items, spec.max_items) == ("array", "string", 1, 1)
    assert spec.image_formats == ("JPEG", "PNG")
    assert model(LITE).fields["first_frame_image_url"].image_formats is None


# -- image validation rules ------------------------------------------------------------------


def test_catalog_parses_every_rule_kind_of_the_seed_pages() -> None:
    kinds = {
        f"{rule.measure}{rule.op}"
        for spec in builtin_catalog()
        for name in spec.image_fields
        for rule in spec.fields[name].rules
    }
    assert kinds == {
        "width_pixels<",
        "height_pixels<",
        "width_pixels>",
        "height_pixels>",
        "width/height>",
        "width/height<",
        "file_size_mb<",
        "width_pixels<=",
        "height_pixels<=",
    }


@pytest.mark.parametrize(("model_id", "name"), list(SEED_IMAGE_RULES))
def test_every_field_has_exactly_the_seed_rules(model_id: str, name: str) -> None:
    rules = model(model_id).fields[name].rules
    assert [(r.measure + r.op, r.value, r.message) for r in rules] == [
        (text, float(value), message) for text, value, message in SEED_IMAGE_RULES[model_id, name]
    ]


@pytest.mark.parametrize(("model_id", "name", "index", "rule"), RULE_CASES)
def test_each_seed_rule_holds_up_to_its_bound(
    model_id: str, name: str, index: int, rule: tuple[str, float, str]
) -> None:
    """Just inside the bound the rule holds; at (or just past) it, it does not."""
    parsed = model(model_id).fields[name].rules[index]
    text, value, message = rule
    assert parsed.text == text + (str(value) if isinstance(value, int) else repr(value))
    assert parsed.message == message
    op = text[len(parsed.measure) :]
    upper = op.startswith("<")
    inclusive = op.endswith("=")

    def image(amount: float) -> dict[str, int]:
        base = {"width": 1000, "height": 1000, "size_bytes": 1000}
        if parsed.measure == "width_pixels":
            base["width"] = int(amount)
        elif parsed.measure == "height_pixels":
            base["height"] = int(amount)
        elif parsed.measure == "width/height":
            base["width"] = round(amount * 1000)
        else:
            base["size_bytes"] = round(amount * BYTES_PER_MB)
        return base

    step = 1 if parsed.measure.endswith("pixels") else 0.001
    inside = value if inclusive else (value - step if upper else value + step)
    outside = (value + step if upper else value - step) if inclusive else value
    assert parsed.holds(**image(inside))
    assert not parsed.holds(**image(outside))


@pytest.mark.parametrize(
    ("model_id", "name", "limits"),
    [
        (
            LITE,
            "first_frame_image_url",
            ImageLimits(301, 5999, 301, 5999, 0.4, 2.5, 29_999_999),
        ),
        (DREAMINA, "image_urls", ImageLimits(321, 4096, 321, 4096, 0.33, 3.0, 4_699_999)),
        (RUNWAY, "promptImage", ImageLimits(None, 7999, None, 7999, 0.5, 2.0, 15_999_999)),
    ],
    ids=["seedance", "dreamina", "runway"],
)
def test_rules_fold_into_whole_pixel_limits(model_id: str, name: str, limits: ImageLimits) -> None:
    assert model(model_id).fields[name].limits == limits


# -- the generic validator -------------------------------------------------------------------


@pytest.mark.parametrize("model_id", MODEL_IDS, ids=model_slug)
def test_a_complete_payload_passes(model_id: str) -> None:
    assert issues(model_id, good_payload(model_id)) == []


@pytest.mark.parametrize(
    ("model_id", "payload", "expected"),
    [
        pytest.param(
            LITE,
            {"prompt": "x"},
            [FieldIssue("first_frame_image_url", "required by this model")],
            id="lite-image",
        ),
        pytest.param(
            DREAMINA,
            {},
            [
                FieldIssue("prompt", "required by this model"),
                FieldIssue("image_urls", "required by this model"),
            ],
            id="dreamina-both-in-schema-order",
        ),
        pytest.param(
            RUNWAY,
            {"promptText": "x"},
            [FieldIssue("promptImage", "required by this model")],
            id="runway-image",
        ),
        pytest.param(
            RUNWAY,
            {"promptImage": None},
            [FieldIssue("promptImage", "required by this model")],
            id="none-is-missing",
        ),
    ],
)
def test_required_fields(
    model_id: str, payload: dict[str, Any], expected: list[FieldIssue]
) -> None:
    assert issues(model_id, payload) == expected


def test_runway_prompt_is_optional() -> None:
    assert issues(RUNWAY, {"promptImage": "https://example.com/a.png"}) == []


@pytest.mark.parametrize(
    ("model_id", "field", "value", "message"),
    [
        pytest.param(LITE, "prompt", 5, "5 is not text", id="int-for-text"),
        pytest.param(LITE, "duration", "5", "'5' is not a whole number", id="text-for-int"),
        pytest.param(LITE, "duration", 5.5, "5.5 is not a whole number", id="float-for-int"),
        pytest.param(RUNWAY, "seed", True, "true is not a whole number", id="bool-for-int"),
        pytest.param(DREAMINA, "seed", False, "false is not a whole number", id="false-for-int"),
        pytest.param(V15, "camera_fixed", "yes", "'yes' is not true or false", id="text-bool"),
        pytest.param(V15, "generate_audio", 1, "1 is not true or false", id="int-for-bool"),
        pytest.param(DREAMINA, "image_urls", "a.png", "'a.png' is not a list", id="not-list"),
        pytest.param(LITE, "prompt", ["a"] * 2, "['a', 'a'] is not text", id="list-for-text"),
    ],
)
def test_types_are_checked_strictly(model_id: str, field: str, value: Any, message: str) -> None:
    payload = {**good_payload(model_id), field: value}
    found = [i for i in issues(model_id, payload) if i.field == field]
    assert [i.message for i in found] == [message]


def test_type_issue_hints_the_allowed_values() -> None:
    [issue] = issues(LITE, {**good_payload(LITE), "duration": True})
    assert str(issue) == "field 'duration': true is not a whole number (allowed: 5, 10)"


def test_long_text_values_are_shortened_in_messages() -> None:
    [issue] = issues(LITE, {**good_payload(LITE), "resolution": "x" * 100})
    assert issue.message.startswith("'" + "x" * 37 + "...' is not allowed")


@pytest.mark.parametrize(
    ("model_id", "field", "value", "allowed"),
    [
        (PRO, "resolution", "4k", "480p, 720p, 1080p"),
        (V15, "resolution", "1080p", "480p, 720p"),
        (LITE, "duration", 7, "5, 10"),
        (PRO, "duration", 1, "2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12"),
        (V15, "duration", 3, "4, 5, 6, 7, 8, 9, 10, 11, 12"),
        (PRO, "ratio", "2:1", "16:9, 4:3, 1:1, 3:4, 9:16, 21:9, adaptive"),
        (RUNWAY, "ratio", "16:9", "1584:672, 1280:720, 1104:832, 960:960, 832:1104, 720:1280"),
        (DREAMINA, "frames", 120, "121, 241"),
    ],
    ids=lambda v: model_slug(v) if isinstance(v, str) and "/" in v else None,
)
def test_enum_lists_the_allowed_values(model_id: str, field: str, value: Any, allowed: str) -> None:
    [issue] = issues(model_id, {**good_payload(model_id), field: value})
    assert issue.field == field
    assert issue.message.endswith(f"is not allowed; allowed: {allowed}")


def test_enum_values_of_the_model_pass() -> None:
    for value in model(PRO).fields["duration"].enum or ():
        assert issues(PRO, {**good_payload(PRO), "duration": value}) == []


@pytest.mark.parametrize(
    ("model_id", "field", "limit"),
    [(LITE, "prompt", 1900), (DREAMINA, "prompt", 800), (RUNWAY, "promptText", 1000)],
    ids=["lite", "dreamina", "runway"],
)
def test_max_length(model_id: str, field: str, limit: int) -> None:
    assert issues(model_id, {**good_payload(model_id), field: "x" * limit}) == []
    [issue] = issues(model_id, {**good_payload(model_id), field: "x" * (limit + 1)})
    assert issue == FieldIssue(
        field, f"is {limit + 1:,} characters long; at most {limit:,} allowed"
    )


def test_prompt_without_max_length_is_not_limited() -> None:
    assert issues(PRO, {**good_payload(PRO), "prompt": "x" * 20_000}) == []


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        (0, None),
        (4294967295, None),
        (-1, "-1 is below the minimum 0"),
        (4294967296, "4294967296 is above the maximum 4294967295"),
    ],
)
def test_runway_seed_range(seed: int, message: str | None) -> None:
    found = issues(RUNWAY, {**good_payload(RUNWAY), "seed": seed})
    assert [i.message for i in found] == ([message] if message else [])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "has 0 items; at least 1 needed"),
        (["a.png", "b.png"], "has 2 items; at most 1 allowed"),
    ],
    ids=["none", "two"],
)
def test_dreamina_takes_exactly_one_image(value: list[str], message: str) -> None:
    payload = {**good_payload(DREAMINA), "image_urls": value}
    assert issues(DREAMINA, payload) == [FieldIssue("image_urls", message)]
    # Image references are resolved by the caller, but the count is still checked.
    assert issues(DREAMINA, payload, images_ok=True) == [FieldIssue("image_urls", message)]


def test_list_items_are_type_checked() -> None:
    found = issues(DREAMINA, {**good_payload(DREAMINA), "image_urls": [5]})
    assert found == [FieldIssue("image_urls[0]", "5 is not text")]


def test_images_ok_skips_the_shape_of_single_image_references() -> None:
    payload = {"prompt": "x", "first_frame_image_url": {"$image": "abc"}}
    assert [i.field for i in issues(LITE, payload)] == ["first_frame_image_url"]
    assert issues(LITE, payload, images_ok=True) == []


def test_unknown_field_lists_the_inputs_and_suggests_the_closest() -> None:
    [issue] = issues(DREAMINA, {**good_payload(DREAMINA), "sede": 3})
    assert issue.field == "sede"
    assert issue.message.startswith("is not an input of this model; it takes: ")
    for name in ("prompt", "image_urls", "seed", "frames", "image", "duration"):
        assert name in issue.message
    assert issue.hint == "did you mean 'seed'?"
    assert str(issue).endswith("(did you mean 'seed'?)")


def test_unknown_field_without_anything_close_has_no_hint() -> None:
    [issue] = issues(LITE, {**good_payload(LITE), "zzzzzz": 1})
    assert issue.hint is None


def test_issues_come_in_schema_order_then_unknown_fields() -> None:
    payload = {"zzz": 1, "duration": 7, "resolution": "4k", "prompt": 3}
    assert [i.field for i in issues(LITE, payload)] == [
        "prompt",
        "first_frame_image_url",
        "resolution",
        "duration",
        "zzz",
    ]


@pytest.mark.parametrize(
    ("value", "type_name", "ok"),
    [
        ("a", "string", True),
        (1, "integer", True),
        (True, "integer", False),
        (1.0, "integer", False),
        (1.5, "number", True),
        (2, "number", True),
        (False, "number", False),
        (False, "boolean", True),
        (0, "boolean", False),
        ([], "array", True),
        ((), "array", False),
        ({}, "object", True),
        ("x", None, True),
        ("x", "unheard-of", True),
    ],
)
def test_matches_type(value: Any, type_name: str | None, ok: bool) -> None:
    assert matches_type(value, type_name) is ok


def test_enum_membership_keeps_bools_apart_from_numbers() -> None:
    assert in_enum(5.0, (5, 10))
    assert not in_enum(True, (1, 2))
    assert not in_enum(1, (True, False))
    assert not in_enum("5", (5,))


# -- model facts -----------------------------------------------------------------------------


def test_names_a_manifest_may_use() -> None:
    dreamina = model(DREAMINA)
    assert dreamina.native_name("image") == "image_urls"
    assert dreamina.native_name("image_urls") == "image_urls"
    assert dreamina.native_name("last_image") is None
    assert dreamina.universal_name("frames") == "duration"
    assert dreamina.universal_name("image_urls") == "image"
    assert dreamina.input_names() == [
        "duration",
        "frames",
        "image",
        "image_urls",
        "prompt",
        "seed",
    ]
    assert dreamina.inputs_text() == "prompt, image (image_urls), seed, duration (frames)"


@pytest.mark.parametrize(
    ("model_id", "payload", "seconds"),
    [
        (DREAMINA, {"frames": 241}, 10.0),
        (DREAMINA, {"frames": 121}, 5.0),
        (DREAMINA, {}, 5.0),
        (DREAMINA, {"frames": 99}, None),
        (RUNWAY, {"duration": 10}, 10.0),
        (RUNWAY, {}, 5.0),
        (PRO, {"duration": 12}, 12.0),
        (LITE, {"duration": True}, None),
        # Text counts as seconds when it is a number (models with ``enum: ["5", "10"]``);
        # whether "5" is a valid value for LITE is the validator's call, not this one.
        (LITE, {"duration": "5"}, 5.0),
        (LITE, {"duration": "five"}, None),
        (LITE, {"duration": "1e309"}, None),
    ],
)
def test_duration_seconds(model_id: str, payload: dict[str, Any], seconds: float | None) -> None:
    assert model(model_id).duration_seconds(payload) == seconds


@pytest.mark.parametrize(
    ("model_id", "slug"),
    [
        ("bytedance/seedance-1-0/pro/image-to-video", "seedance-1-0-pro"),
        ("acme/wonder/v2/text-to-video", "wonder-v2"),
        ("acme/odd name!/video", "odd-name"),
        ("single", "single"),
        ("acme/image-to-video", "image-to-video"),
        ("///", "model"),
    ],
)
def test_model_slug(model_id: str, slug: str) -> None:
    assert model_slug(model_id) == slug


def test_require_suggests_the_closest_model() -> None:
    with pytest.raises(KeyError) as caught:
        builtin_catalog().require("bytedance/seedance-1-0/lite/image-to-vidoe")
    assert f"did you mean {LITE!r}" in str(caught.value)
    assert builtin_catalog().get("nope") is None
    assert builtin_catalog().suggest("runwayml/runway-gen-4/turbo/image-to-vid") == RUNWAY


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("bytedance/seedance-1-0/prp/image-to-video", [PRO, V15, LITE]),
        ("runwayml/runway-gen-4/turbo/image-to-vid", [RUNWAY]),
        ("bytedance/dreamina-3-0/pro", [DREAMINA, PRO, V15]),
        ("bytedance/seedance-9/ultra", [LITE, PRO, V15]),  # issue 14's typo
        ("acme/nothing-like-it", []),
    ],
    ids=["three-close", "one-close", "no-suffix", "issue-typo", "none-close"],
)
def test_suggestions_are_the_closest_ids_closest_first(typo: str, expected: list[str]) -> None:
    catalog = builtin_catalog()
    assert catalog.suggestions(typo) == expected
    assert catalog.suggestions(typo, limit=1) == expected[:1]
    assert catalog.suggest(typo) == (expected[0] if expected else None)


def test_suggestions_limit() -> None:
    typo = "bytedance/seedance-1-0/prp/image-to-video"
    assert builtin_catalog().suggestions(typo, limit=2) == [PRO, V15]
    assert builtin_catalog().suggestions(typo, limit=0) == []
    assert builtin_catalog().suggestions(typo, limit=-1) == []
    assert len(builtin_catalog().suggestions("bytedance/seedance", limit=10)) <= 5
    assert Catalog().suggestions(typo) == []


def test_suggestions_keep_ids_that_differ_only_by_the_task_suffix() -> None:
    twins = Catalog(
        parse_model({"model_id": model_id, "input_schema": {"properties": {}}})
        for model_id in ("acme/wonder", "acme/wonder/image-to-video")
    )
    assert twins.suggestions("acme/wondr") == ["acme/wonder", "acme/wonder/image-to-video"]
    assert twins.suggest("acme/wondr") == "acme/wonder"


# -- catalog files ---------------------------------------------------------------------------


def catalog_entry(model_id: str = "acme/wonder/v2/image-to-video", **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "model_id": model_id,
        "display_name": "Wonder v2",
        "base_price_usd": 0.08,
        "price_unit": "second",
        "universal": {
            "prompt": {"field": "text"},
            "image": {"field": "frame"},
            "duration": {"field": "length", "values": {"5": "short", "10": "long"}},
        },
        "input_schema": {
            "required": ["text", "frame"],
            "properties": {
                "text": {"type": "string", "maxLength": 50},
                "frame": {
                    "type": "string",
                    "validations": [
                        {
                            "validation_rule": "width_pixels>=",
                            "validation_value": 64,
                            "validation_error": "Too narrow.",
                        },
                        {"validation_rule": "height_pixels <= ", "validation_value": 2048},
                    ],
                },
                "length": {"type": "string", "enum": ["short", "long"], "default": "short"},
            },
        },
    }
    entry.update(extra)
    return entry


def write_entry(folder: Path, name: str, entry: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(entry if isinstance(entry, str) else json.dumps(entry), encoding="utf-8")
    return path


def test_builtin_files_are_the_shape_of_get_models() -> None:
    for path in sorted(SCHEMAS.glob("*.json")):
        spec = load_model_file(path)
        assert spec == builtin_catalog().require(spec.model_id)
        assert spec.slug == path.stem


def test_with_directory_adds_a_model_and_leaves_the_builtin_catalog_alone(tmp_path: Path) -> None:
    write_entry(tmp_path / "models", "wonder.json", catalog_entry())
    write_entry(tmp_path / "models", "notes.txt", "not a catalog file")
    catalog = builtin_catalog().with_directory(tmp_path / "models")
    assert len(catalog) == 6
    assert len(builtin_catalog()) == 5
    wonder = catalog.require("acme/wonder/v2/image-to-video")
    assert wonder.slug == "wonder-v2"
    assert wonder.display_name == "Wonder v2"
    assert wonder.price == Price(0.08, "second")
    assert wonder.required == ("text", "frame")
    assert wonder.image_fields == ("frame",)
    rules = wonder.fields["frame"].rules
    assert [r.text for r in rules] == ["width_pixels>=64", "height_pixels<=2048"]
    assert rules[0].message == "Too narrow."
    assert rules[1].message == "image must satisfy height_pixels <= 2048"
    assert wonder.duration_seconds({"length": "long"}) == 10.0
    assert wonder.source.endswith("wonder.json")
    assert validate_payload(wonder, {"text": "x" * 51, "frame": "a.png"}) == [
        FieldIssue("text", "is 51 characters long; at most 50 allowed")
    ]


def test_a_user_file_overrides_a_builtin_model(tmp_path: Path) -> None:
    entry = json.loads((SCHEMAS / "seedance-1-0-lite.json").read_text(encoding="utf-8"))
    entry["input_schema"]["properties"]["prompt"]["maxLength"] = 10
    write_entry(tmp_path, "lite.json", entry)
    catalog = builtin_catalog().with_directory(tmp_path)
    assert len(catalog) == 5
    assert catalog.require(LITE).fields["prompt"].max_length == 10
    assert model(LITE).fields["prompt"].max_length == 1900


def test_with_directory_needs_a_folder(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="catalog directory not found"):
        builtin_catalog().with_directory(tmp_path / "missing")


def test_an_empty_catalog_and_iteration_order() -> None:
    empty = Catalog()
    assert len(empty) == 0
    assert list(empty) == []
    assert empty.suggest(LITE) is None
    with pytest.raises(KeyError, match="unknown model"):
        empty.require(LITE)
    copy = Catalog(builtin_catalog())
    assert [m.model_id for m in copy] == sorted(MODEL_IDS)


def _without(key: str) -> dict[str, Any]:
    entry = catalog_entry()
    del entry[key]
    return entry


def _with_schema(**changes: Any) -> dict[str, Any]:
    entry = catalog_entry()
    entry["input_schema"] = {**entry["input_schema"], **changes}
    return entry


def _with_frame_rule(rule: dict[str, Any]) -> dict[str, Any]:
    entry = catalog_entry()
    entry["input_schema"]["properties"]["frame"]["validations"] = [rule]
    return entry


@pytest.mark.parametrize(
    ("content", "words"),
    [
        pytest.param("{not json", ["cannot read catalog file"], id="invalid-json"),
        pytest.param("[1, 2]", ["holds one JSON object"], id="not-an-object"),
        pytest.param(_without("model_id"), ["has no model_id"], id="no-model-id"),
        pytest.param(catalog_entry(model_id=""), ["has no model_id"], id="empty-model-id"),
        pytest.param(_without("input_schema"), ["input_schema has no properties"], id="no-schema"),
        pytest.param(
            catalog_entry(input_schema="text"), ["input_schema has no properties"], id="bad-schema"
        ),
        pytest.param(
            _with_schema(properties=[]), ["input_schema has no properties"], id="list-properties"
        ),
        pytest.param(
            _with_schema(properties={"text": "string"}),
            ["property 'text' must be a JSON object"],
            id="property-not-object",
        ),
        pytest.param(
            _with_frame_rule({"validation_rule": "depth_pixels<", "validation_value": 3}),
            ["field 'frame'", "unknown image measure 'depth_pixels'"],
            id="unknown-measure",
        ),
        pytest.param(
            _with_frame_rule({"validation_rule": "width_pixels~", "validation_value": 3}),
            ["field 'frame'", "unknown image validation rule"],
            id="unknown-comparison",
        ),
        pytest.param(
            _with_frame_rule({"validation_rule": "width_pixels<", "validation_value": "big"}),
            ["needs a numeric validation_value"],
            id="text-rule-value",
        ),
        pytest.param(
            catalog_entry(universal={"prompt": {"field": "nope"}}),
            ["universal 'prompt' maps to unknown field 'nope'"],
            id="alias-to-unknown-field",
        ),
        pytest.param(
            catalog_entry(universal={"prompt": "text"}),
            ["universal 'prompt' maps to unknown field"],
            id="alias-not-object",
        ),
        pytest.param(
            catalog_entry(universal=["prompt"]), ["'universal' must be a JSON object"], id="list"
        ),
        pytest.param(
            catalog_entry(universal={"duration": {"field": "length", "values": [5]}}),
            ["'values' must be a JSON object"],
            id="values-not-object",
        ),
        pytest.param(
            catalog_entry(image_formats=["PNG"]),
            ["'image_formats' must be a JSON object"],
            id="formats-not-object",
        ),
    ],
)
def test_a_malformed_catalog_file_raises_catalog_error(
    tmp_path: Path, content: Any, words: list[str]
) -> None:
    path = write_entry(tmp_path / "models", "bad.json", content)
    with pytest.raises(CatalogError) as caught:
        builtin_catalog().with_directory(tmp_path / "models")
    message = str(caught.value)
    assert message.startswith(str(path))
    for word in words:
        assert word in message


def test_parse_model_reads_prices_and_falls_back_to_a_slug() -> None:
    spec = parse_model(catalog_entry(price_unit="output", slug=None))
    assert spec.price == Price(0.08, "output")
    assert spec.slug == "wonder-v2"
    assert parse_model(catalog_entry(base_price_usd=True)).price is None
    assert parse_model(catalog_entry(base_price_usd=None)).price is None
    spec = parse_model({"model_id": "a/b", "input_schema": {"properties": {}}})
    assert (spec.display_name, spec.slug, spec.fields, spec.aliases) == ("a/b", "b", {}, {})


def test_a_float_bound_is_shown_as_typed() -> None:
    spec = parse_model(
        {
            "model_id": "a/b",
            "input_schema": {"properties": {"strength": {"type": "number", "maximum": 1.0}}},
        }
    )
    [issue] = validate_payload(spec, {"strength": 1.5})
    assert issue.message == "1.5 is above the maximum 1"
    assert math.isclose(spec.fields["strength"].maximum or 0, 1.0)
