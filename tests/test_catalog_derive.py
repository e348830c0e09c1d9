"""Universal names and image formats derived from the schema of a model never seen before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from model_ids import DREAMINA, RUNWAY

from orchestrator.catalog import (
    UNIVERSAL_NAMES,
    derive_image_formats,
    derive_universal,
    with_derived_mapping,
)
from orchestrator.catalog.parse import parse_model
from orchestrator.manifest.inputs import to_native

SCHEMAS = Path(__file__).resolve().parent.parent / "orchestrator" / "catalog" / "schemas"
SHIPPED = {
    entry["model_id"]: entry
    for entry in (json.loads(p.read_text(encoding="utf-8")) for p in sorted(SCHEMAS.glob("*.json")))
}
RULES = [{"validation_rule": "width_pixels<", "validation_value": 4000}]
TEXT: dict[str, Any] = {"type": "string"}
TEXTS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
INTEGER: dict[str, Any] = {"type": "integer"}
NUMBER: dict[str, Any] = {"type": "number"}
RULED: dict[str, Any] = {"type": "string", "validations": RULES}
URI: dict[str, Any] = {"type": "string", "format": "image_uri"}
URIS: dict[str, Any] = {"type": "array", "items": {"type": "string", "format": "image_uri"}}
CHOICE: dict[str, Any] = {"type": "string", "enum": ["a", "b"]}


def of(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"model_id": "acme/new", "input_schema": {"properties": properties}}


def fields(mapping: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: target["field"] for name, target in mapping.items()}


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        # image fields: by validations, format (on the field or its items), or name
        pytest.param({"src": RULED}, {"image": "src"}, id="validations"),
        pytest.param({"pic": URI}, {"image": "pic"}, id="format"),
        pytest.param({"pics": URIS}, {"image": "pics"}, id="items-format"),
        pytest.param({"input_image": TEXT}, {"image": "input_image"}, id="name-image"),
        pytest.param({"keyframes": TEXTS}, {"image": "keyframes"}, id="name-frame-list"),
        pytest.param({"num_frames": INTEGER}, {}, id="a-count-of-frames-is-no-image"),
        pytest.param({"image_style": CHOICE}, {}, id="a-choice-is-no-image"),
        pytest.param({"image_strength": NUMBER}, {}, id="a-number-is-no-image"),
        # two image fields: told apart by their words
        pytest.param(
            {"start_image": RULED, "end_image": RULED},
            {"image": "start_image", "last_image": "end_image"},
            id="start-end",
        ),
        pytest.param(
            {"lastFrame": URI, "firstFrame": URI},
            {"image": "firstFrame", "last_image": "lastFrame"},
            id="camel-case-any-order",
        ),
        pytest.param(
            {"image_begin": URI, "image_final": URI},
            {"image": "image_begin", "last_image": "image_final"},
            id="begin-final",
        ),
        pytest.param(
            {"image": URI, "image_tail": URI},
            {"image": "image", "last_image": "image_tail"},
            id="plain-and-tail",
        ),
        pytest.param({"image_a": URI, "image_b": URI}, {}, id="two-unnamed"),
        pytest.param(
            {"start_image": URI, "style_image": URI}, {"image": "start_image"}, id="start-and-other"
        ),
        pytest.param({"tail_image": URI, "end_image": URI}, {}, id="two-ends"),
        pytest.param({"first_last_image": URI, "image": TEXT}, {"image": "image"}, id="both-words"),
        pytest.param(
            {"first_image": URI, "middle_image": URI, "last_image": URI},
            {"last_image": "last_image"},
            id="three-only-the-native-name",
        ),
        pytest.param({"a_image": URI, "b_image": URI, "c_image": URI}, {}, id="three"),
        pytest.param({"extended_image": URI, "legend_image": URI}, {}, id="words-not-substrings"),
        # prompt
        pytest.param({"prompt": TEXT, "text": TEXT}, {"prompt": "prompt"}, id="prompt-exact"),
        pytest.param({"promptText": TEXT}, {"prompt": "promptText"}, id="prompt-camel"),
        pytest.param({"text_prompt": TEXT}, {"prompt": "text_prompt"}, id="text-prompt"),
        pytest.param({"input_text": TEXT}, {"prompt": "input_text"}, id="text-word"),
        pytest.param({"description": TEXT}, {"prompt": "description"}, id="description"),
        pytest.param({"caption": TEXT}, {}, id="caption-is-not-named"),
        pytest.param({"context": TEXT}, {}, id="context-is-not-text"),
        pytest.param({"text_a": TEXT, "prompt_b": TEXT}, {}, id="prompt-ambiguous"),
        pytest.param(
            {"prompt_text": TEXT, "negative_prompt": TEXT, "neg_text": TEXT},
            {"prompt": "prompt_text"},
            id="negative-prompts-never-count",
        ),
        pytest.param({"prompt_style": CHOICE}, {}, id="a-choice-is-no-prompt"),
        pytest.param({"prompt_count": INTEGER}, {}, id="a-number-is-no-prompt"),
        pytest.param(
            {"promptImage": RULED, "promptText": TEXT},
            {"prompt": "promptText", "image": "promptImage"},
            id="an-image-is-no-prompt",
        ),
        # duration
        pytest.param({"clip_seconds": INTEGER}, {"duration": "clip_seconds"}, id="seconds"),
        pytest.param({"video_length": NUMBER}, {"duration": "video_length"}, id="length"),
        pytest.param(
            {"duration_s": {"enum": [5, 10]}}, {"duration": "duration_s"}, id="numeric-enum"
        ),
        pytest.param(
            {"duration_s": {"type": "string", "enum": ["5", "10"]}},
            {"duration": "duration_s"},
            id="numbers-as-text-enum",
        ),
        pytest.param({"duration_s": {"enum": [5, "ten"]}}, {}, id="mixed-enum"),
        pytest.param({"duration_label": TEXT}, {}, id="text-duration"),
        pytest.param({"duration": TEXT}, {"duration": "duration"}, id="native-name-any-type"),
        pytest.param({"max_length": INTEGER}, {}, id="a-limit-is-no-length"),
        pytest.param({"minDuration": INTEGER}, {}, id="a-minimum-is-no-duration"),
        pytest.param({"length": INTEGER, "seconds": INTEGER}, {}, id="duration-ambiguous"),
        # resolution, ratio, seed
        pytest.param({"out_resolution": CHOICE}, {"resolution": "out_resolution"}, id="resolution"),
        pytest.param({"resolution_w": TEXT, "resolution_h": TEXT}, {}, id="resolution-ambiguous"),
        pytest.param({"aspect_ratio": CHOICE}, {"ratio": "aspect_ratio"}, id="aspect-ratio"),
        pytest.param({"aspectRatio": CHOICE}, {"ratio": "aspectRatio"}, id="aspect-ratio-camel"),
        pytest.param({"aspect": CHOICE}, {"ratio": "aspect"}, id="aspect"),
        pytest.param({"ratio_mode": CHOICE}, {"ratio": "ratio_mode"}, id="ratio-word"),
        pytest.param({"duration": INTEGER}, {"duration": "duration"}, id="duration-is-no-ratio"),
        pytest.param({"aspect_mode": CHOICE}, {}, id="aspect-mode"),
        pytest.param({"noise_seed": INTEGER}, {"seed": "noise_seed"}, id="seed"),
        pytest.param({"seed_label": TEXT}, {}, id="text-seed"),
        pytest.param({"seed_a": INTEGER, "seedB": INTEGER}, {}, id="seed-ambiguous"),
        # a native name is its universal name's field, and no other's
        pytest.param(
            {"seed": TEXT, "noise_seed": INTEGER}, {"seed": "seed"}, id="native-seed-wins"
        ),
        pytest.param(
            {"image": URI, "first_frame": URI}, {"image": "image"}, id="native-image-wins"
        ),
        pytest.param(
            {"image": INTEGER, "frame_in": URI}, {}, id="native-image-that-is-no-image-is-unmapped"
        ),
        pytest.param({"prompt": URI}, {"prompt": "prompt"}, id="never-another-universals-field"),
        pytest.param({"resolution_ratio": CHOICE}, {}, id="one-field-for-two-names"),
    ],
)
def test_derive_universal(properties: dict[str, Any], expected: dict[str, str]) -> None:
    mapping = derive_universal(of(**properties))
    assert fields(mapping) == expected
    assert list(mapping) == [name for name in UNIVERSAL_NAMES if name in mapping]


@pytest.mark.parametrize(
    ("properties", "wraps"),
    [
        pytest.param({"pics": URIS}, {"image": "list"}, id="array"),
        pytest.param({"pic": URI}, {}, id="string"),
        pytest.param(
            {"first_images": URIS, "last_image": URI}, {"image": "list"}, id="only-the-array"
        ),
        pytest.param({"image": URIS}, {"image": "list"}, id="native-name-array"),
    ],
)
def test_an_array_image_field_wraps_a_single_value(
    properties: dict[str, Any], wraps: dict[str, str]
) -> None:
    mapping = derive_universal(of(**properties))
    assert {name: t["wrap"] for name, t in mapping.items() if "wrap" in t} == wraps


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param({}, id="no-schema"),
        pytest.param({"input_schema": []}, id="schema-list"),
        pytest.param({"input_schema": {"properties": ["prompt"]}}, id="properties-list"),
        pytest.param({"input_schema": {"properties": {"prompt": "text"}}}, id="property-text"),
        pytest.param({"input_schema": {"properties": {"image": {"items": 5}}}}, id="bad-items"),
        pytest.param(
            {"input_schema": {"properties": {"image": {"validations": [5, {"x": 1}]}}}},
            id="bad-validations",
        ),
    ],
)
def test_a_schema_it_cannot_read_gives_nothing(entry: dict[str, Any]) -> None:
    assert derive_universal(entry) == {}
    assert derive_image_formats(entry) == {}


# -- image formats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("description", "formats"),
    [
        ("Upload JPEG or PNG only.", ["JPEG", "PNG"]),
        ("png, jpg or WebP", ["JPEG", "PNG", "WEBP"]),
        ("An animated GIF works too.", ["GIF"]),
        ("Images under 16MB, below 8000x8000 pixels.", None),
        ("", None),
        ("PNG is not supported.", None),
        ("Any format except GIF.", None),
        ("JPEGs and PNGs", ["JPEG", "PNG"]),
        ("See https://x.test/sample.gif", ["GIF"]),
    ],
)
def test_derive_image_formats_reads_the_description(
    description: str, formats: list[str] | None
) -> None:
    entry = of(image_urls={**URIS, "description": description})
    assert derive_image_formats(entry) == ({"image_urls": formats} if formats else {})


def test_image_formats_only_for_image_fields() -> None:
    entry = of(
        prompt={**TEXT, "description": "Describe the PNG."},
        frame={**TEXT, "title": "PNG", "description": 5},
        input_image={**TEXT, "description": "JPEG"},
    )
    assert derive_image_formats(entry) == {"input_image": ["JPEG"]}


# -- the five shipped entries ----------------------------------------------------------------

#: What derivation cannot know about the shipped models: Dreamina's length is ``frames``
#: with a seconds-to-frames table, and Runway's ``ratio`` takes pixel sizes that its table
#: names as ratios. The shipped mapping is the one the tool uses for these five.
NOT_DERIVED = {DREAMINA: {"duration"}, RUNWAY: {"ratio"}}


@pytest.mark.parametrize("model_id", sorted(SHIPPED))
def test_derived_mapping_agrees_with_the_shipped_one(model_id: str) -> None:
    shipped = SHIPPED[model_id]
    bare = {k: v for k, v in shipped.items() if k not in ("universal", "image_formats")}
    derived = derive_universal(bare)
    for name in UNIVERSAL_NAMES:
        if name in NOT_DERIVED.get(model_id, ()):
            assert derived.get(name) != shipped["universal"].get(name)
        else:
            assert derived.get(name) == shipped["universal"].get(name), name
    assert derive_image_formats(bare) == shipped.get("image_formats", {})


def test_what_is_not_derived_is_the_value_table() -> None:
    dreamina = derive_universal(SHIPPED[DREAMINA])
    runway = derive_universal(SHIPPED[RUNWAY])
    assert "duration" not in dreamina  # "frames" is no duration name
    assert runway["ratio"] == {"field": "ratio"}  # native values only: "1280:720"
    assert "values" in SHIPPED[RUNWAY]["universal"]["ratio"]


# -- with_derived_mapping --------------------------------------------------------------------


def test_with_derived_mapping_fills_only_what_is_absent() -> None:
    entry = of(pic={**URI, "description": "PNG only"}, text_prompt=TEXT)
    before = json.dumps(entry)
    filled = with_derived_mapping(entry)
    assert filled is not entry
    assert json.dumps(entry) == before  # the entry itself is left alone
    assert filled["universal"] == {"prompt": {"field": "text_prompt"}, "image": {"field": "pic"}}
    assert filled["image_formats"] == {"pic": ["PNG"]}
    own = {"prompt": {"field": "pic"}}
    kept = with_derived_mapping({**entry, "universal": own})
    assert (kept["universal"], kept["image_formats"]) == (own, {"pic": ["PNG"]})
    assert with_derived_mapping({**entry, "universal": None})["universal"] == filled["universal"]
    assert with_derived_mapping({**entry, "image_formats": {}})["image_formats"] == {}


@pytest.mark.parametrize("model_id", sorted(SHIPPED))
def test_shipped_entries_come_back_unchanged(model_id: str) -> None:
    shipped = SHIPPED[model_id]
    filled = with_derived_mapping(shipped)
    assert filled["universal"] == shipped["universal"]
    assert filled["image_formats"] == shipped.get("image_formats", {})
    assert parse_model(filled).fields == parse_model(shipped).fields


def test_a_new_model_runs_through_its_derived_names() -> None:
    """An image field known only by its name is an image (its value wrapped in a list),
    and the duration in seconds prices the clip."""
    entry = of(
        description=TEXT,
        frames_in=TEXTS,
        clip_seconds={**INTEGER, "default": 5},
        aspect=CHOICE,
    )
    spec = parse_model(with_derived_mapping(entry))
    assert spec.image_fields == ("frames_in",)
    job, errors = to_native(
        spec,
        {"prompt": "a cat", "image": "https://example.com/a.png", "duration": 10, "ratio": "a"},
        text_values=False,
    )
    assert errors == []
    assert job.payload == {
        "description": "a cat",
        "frames_in": ["https://example.com/a.png"],
        "clip_seconds": 10,
        "aspect": "a",
    }
    assert spec.duration_seconds(job.payload) == 10.0
    assert spec.duration_seconds({}) == 5.0
    assert spec.inputs_text() == (
        "prompt (description), image (frames_in), duration (clip_seconds), ratio (aspect)"
    )
