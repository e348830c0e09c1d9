"""Universal input names mapped to each model's native fields (design.md section 2)."""

from __future__ import annotations

from typing import Any

import pytest
from model_ids import DREAMINA, LITE, PRO, RUNWAY, V15

from orchestrator.catalog import UNIVERSAL_NAMES, Alias, FieldSpec, builtin_catalog, model_slug
from orchestrator.manifest.inputs import FieldError, from_text, to_native

#: design.md section 2: universal name -> native field per model (None: the model lacks it).
TABLE: dict[str, dict[str, str | None]] = {
    PRO: {
        "prompt": "prompt",
        "image": "first_frame_image_url",
        "last_image": None,
        "duration": "duration",
        "resolution": "resolution",
        "ratio": "ratio",
        "seed": None,
    },
    V15: {
        "prompt": "prompt",
        "image": "first_frame_image_url",
        "last_image": None,
        "duration": "duration",
        "resolution": "resolution",
        "ratio": "ratio",
        "seed": None,
    },
    LITE: {
        "prompt": "prompt",
        "image": "first_frame_image_url",
        "last_image": "last_frame_image_url",
        "duration": "duration",
        "resolution": "resolution",
        "ratio": None,
        "seed": None,
    },
    DREAMINA: {
        "prompt": "prompt",
        "image": "image_urls",
        "last_image": None,
        "duration": "frames",
        "resolution": None,
        "ratio": None,
        "seed": "seed",
    },
    RUNWAY: {
        "prompt": "promptText",
        "image": "promptImage",
        "last_image": None,
        "duration": "duration",
        "resolution": None,
        "ratio": "ratio",
        "seed": "seed",
    },
}
CASES = [
    pytest.param(model_id, name, native, id=f"{model_slug(model_id)}-{name}")
    for model_id, names in TABLE.items()
    for name, native in names.items()
]
IMAGE = "https://example.com/a.png"


def native(model_id: str, fields: dict[str, Any], *, text: bool = False) -> dict[str, Any]:
    """The native payload of valid fields (fails the test on any error)."""
    job, errors = to_native(builtin_catalog().require(model_id), fields, text_values=text)
    assert errors == []
    return job.payload


def errors_of(model_id: str, fields: dict[str, Any], *, text: bool = False) -> list[FieldError]:
    _job, errors = to_native(builtin_catalog().require(model_id), fields, text_values=text)
    assert errors
    return errors


def test_the_table_covers_every_universal_name() -> None:
    assert all(tuple(names) == UNIVERSAL_NAMES for names in TABLE.values())


@pytest.mark.parametrize(("model_id", "name", "expected"), CASES)
def test_universal_name_maps_to_the_native_field(
    model_id: str, name: str, expected: str | None
) -> None:
    assert builtin_catalog().require(model_id).native_name(name) == expected


@pytest.mark.parametrize(
    ("model_id", "name"),
    [pytest.param(*case.values[:2], id=case.id) for case in CASES if case.values[2] is None],
)
def test_a_universal_name_the_model_lacks_is_an_error(model_id: str, name: str) -> None:
    spec = builtin_catalog().require(model_id)
    fields = {"prompt": "x", "image": IMAGE, name: "y.png" if name == "last_image" else 3}
    [error] = errors_of(model_id, fields)
    assert error.field == name
    assert error.message == f"this model has no {name!r} input; it takes: {spec.inputs_text()}"


def test_runway_prompt_and_image() -> None:
    assert native(RUNWAY, {"prompt": "a cat", "image": IMAGE}) == {
        "promptText": "a cat",
        "promptImage": IMAGE,
    }


def test_dreamina_image_becomes_a_one_element_list() -> None:
    assert native(DREAMINA, {"prompt": "x", "image": IMAGE}) == {
        "prompt": "x",
        "image_urls": [IMAGE],
    }


@pytest.mark.parametrize(("seconds", "frames"), [(5, 121), (10, 241), ("10", 241), (5.0, 121)])
def test_dreamina_duration_in_seconds_becomes_frames(seconds: Any, frames: int) -> None:
    payload = native(DREAMINA, {"prompt": "x", "image": IMAGE, "duration": seconds})
    assert payload["frames"] == frames
    assert "duration" not in payload


@pytest.mark.parametrize("seconds", [7, 3, "five", True])
def test_an_unavailable_dreamina_duration_lists_the_allowed_values(seconds: Any) -> None:
    [error] = errors_of(DREAMINA, {"prompt": "x", "image": IMAGE, "duration": seconds})
    assert error.field == "duration"
    assert error.message.startswith(f"{seconds!r} is not available for this model; allowed: 5, 10")


def test_lite_takes_a_last_image() -> None:
    payload = native(LITE, {"prompt": "x", "image": IMAGE, "last_image": "https://e.com/b.png"})
    assert payload == {
        "prompt": "x",
        "first_frame_image_url": IMAGE,
        "last_frame_image_url": "https://e.com/b.png",
    }


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [("16:9", "1280:720"), ("9:16", "720:1280"), ("1:1", "960:960"), ("1280:720", "1280:720")],
)
def test_runway_ratio_accepts_universal_and_native_values(ratio: str, expected: str) -> None:
    assert native(RUNWAY, {"image": IMAGE, "ratio": ratio})["ratio"] == expected


def test_an_unknown_runway_ratio_lists_both_spellings() -> None:
    [error] = errors_of(RUNWAY, {"image": IMAGE, "ratio": "adaptive"})
    assert error.field == "ratio"
    assert error.message.startswith("'adaptive' is not available for this model; allowed: 16:9")
    assert "1280:720" not in error.message  # universal spellings in the message,
    assert error.hint is not None
    assert "'ratio' values: 1584:672, 1280:720" in error.hint


def test_seedance_ratio_is_passed_through() -> None:
    assert native(PRO, {"prompt": "x", "image": IMAGE, "ratio": "21:9"})["ratio"] == "21:9"


@pytest.mark.parametrize(
    ("model_id", "fields"),
    [
        (RUNWAY, {"promptText": "x", "promptImage": IMAGE, "ratio": "960:960", "seed": 3}),
        (DREAMINA, {"prompt": "x", "image_urls": [IMAGE], "frames": 241, "seed": 3}),
        (LITE, {"prompt": "x", "first_frame_image_url": IMAGE, "last_frame_image_url": IMAGE}),
        (V15, {"prompt": "x", "first_frame_image_url": IMAGE, "generate_audio": False}),
    ],
    ids=["runway", "dreamina", "lite", "v15"],
)
def test_native_names_are_accepted_unchanged(model_id: str, fields: dict[str, Any]) -> None:
    assert native(model_id, fields) == fields


def _clash(written: str, first: str, target: str) -> FieldError:
    return FieldError(
        written, f"sets the same input as {first!r} (native field {target!r}); keep one of them"
    )


@pytest.mark.parametrize(
    ("model_id", "fields", "expected"),
    [
        (
            RUNWAY,
            {"prompt": "a", "promptText": "b", "image": IMAGE},
            _clash("promptText", "prompt", "promptText"),
        ),
        (
            RUNWAY,
            {"promptImage": IMAGE, "image": IMAGE},
            _clash("image", "promptImage", "promptImage"),
        ),
        (
            DREAMINA,
            {"prompt": "p", "image": IMAGE, "duration": 5, "frames": 121},
            _clash("frames", "duration", "frames"),
        ),
        (
            LITE,
            {"prompt": "p", "image": IMAGE, "first_frame_image_url": IMAGE},
            _clash("first_frame_image_url", "image", "first_frame_image_url"),
        ),
    ],
    ids=["runway-prompt", "runway-image", "dreamina-duration", "lite-image"],
)
def test_a_universal_and_its_native_name_together_is_an_error(
    model_id: str, fields: dict[str, Any], expected: FieldError
) -> None:
    assert errors_of(model_id, fields) == [expected]


def test_a_missing_required_input_is_named_by_its_universal_name() -> None:
    errors = errors_of(RUNWAY, {"prompt": "x"})
    assert errors == [FieldError("image", "is required by this model (native name 'promptImage')")]
    errors = errors_of(LITE, {"image": IMAGE})
    assert errors == [FieldError("prompt", "is required by this model")]


def test_schema_problems_name_the_field_as_written_and_its_native_name() -> None:
    [error] = errors_of(DREAMINA, {"prompt": "x", "image": [IMAGE, IMAGE]})
    assert error == FieldError("image", "has 2 items; at most 1 allowed (as 'image_urls')")
    [error] = errors_of(RUNWAY, {"image": IMAGE, "prompt": "x" * 1001})
    assert error == FieldError(
        "prompt", "is 1,001 characters long; at most 1,000 allowed (as 'promptText')"
    )


def test_an_unknown_field_suggests_a_name() -> None:
    [error] = errors_of(RUNWAY, {"image": IMAGE, "promt": "x"})
    assert error.field == "promt"
    assert error.message.startswith("is not an input of this model; it takes: prompt (promptText)")
    assert error.hint == "did you mean 'prompt'?"


def test_csv_text_is_converted_to_the_schema_types() -> None:
    payload = native(
        V15,
        {
            "prompt": "5",
            "image": IMAGE,
            "duration": "5",
            "generate_audio": "true",
            "camera_fixed": "No",
        },
        text=True,
    )
    assert payload == {
        "prompt": "5",
        "first_frame_image_url": IMAGE,
        "duration": 5,
        "generate_audio": True,
        "camera_fixed": False,
    }
    assert (
        native(DREAMINA, {"prompt": "x", "image": IMAGE, "duration": "10"}, text=True)["frames"]
        == 241
    )


def test_text_that_is_not_of_the_type_stays_text_and_is_reported() -> None:
    [error] = errors_of(LITE, {"prompt": "x", "image": IMAGE, "duration": "five"}, text=True)
    assert error == FieldError("duration", "'five' is not a whole number", "allowed: 5, 10")
    # Without CSV conversion a quoted number is not a number.
    [error] = errors_of(LITE, {"prompt": "x", "image": IMAGE, "duration": "5"})
    assert error.message == "'5' is not a whole number"


@pytest.mark.parametrize(
    ("type_name", "text", "value"),
    [
        ("integer", "5", 5),
        ("integer", " -7 ", -7),
        ("integer", "5.5", "5.5"),
        ("number", "2.5", 2.5),
        ("number", "3", 3),
        ("number", "1e3", 1000.0),
        ("number", "abc", "abc"),
        ("boolean", "TRUE", True),
        ("boolean", "no", False),
        ("boolean", "1", True),
        ("boolean", "maybe", "maybe"),
        ("string", "10", "10"),
    ],
)
def test_from_text(type_name: str, text: str, value: Any) -> None:
    converted = from_text(FieldSpec(name="f", type=type_name), text)
    assert converted == value
    assert type(converted) is type(value)


def test_from_text_leaves_non_text_and_unknown_fields_alone() -> None:
    assert from_text(None, "5") == "5"
    assert from_text(FieldSpec(name="f", type="integer"), 5) == 5


def test_alias_translate() -> None:
    plain = Alias("prompt", "promptText")
    assert plain.translate("anything") == (True, "anything")
    frames = Alias("duration", "frames", values={"5": 121, "10": 241})
    assert frames.translate(10) == (True, 241)
    assert frames.translate(241) == (True, 241)  # already native
    assert frames.translate(7) == (False, 7)
