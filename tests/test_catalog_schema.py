"""A schema the validator cannot read is a CatalogError naming the model and the key."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.catalog import CatalogError, ModelSpec, validate_payload, with_derived_mapping
from orchestrator.catalog.parse import LIST_LIMIT, SHOWN_CHARS, parse_field, parse_model

if TYPE_CHECKING:
    from collections.abc import Iterator

SCHEMAS = Path(__file__).resolve().parent.parent / "orchestrator" / "catalog" / "schemas"
SHIPPED = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(SCHEMAS.glob("*.json"))]
RULE = {"validation_rule": "width_pixels<", "validation_value": 4000}
TYPES = "one of string, integer, number, boolean, array, object"


def entry(
    prompt: dict[str, Any] | None = None, frame: dict[str, Any] | None = None, **top: Any
) -> dict[str, Any]:
    """A small valid entry: ``prompt`` and ``frame`` properties changed by ``prompt``/``frame``."""
    base: dict[str, Any] = {
        "model_id": "acme/x",
        "base_price_usd": 0.1,
        "price_unit": "second",
        "universal": {"image": {"field": "frame"}},
        "input_schema": {
            "required": ["prompt"],
            "properties": {
                "prompt": {"type": "string", "maxLength": 100, **(prompt or {})},
                "frame": {"type": "string", "validations": [RULE], **(frame or {})},
            },
        },
    }
    base.update(top)
    return base


def schema(**changes: Any) -> dict[str, Any]:
    base = entry()
    base["input_schema"].update(changes)
    return base


def rule(**changes: Any) -> dict[str, Any]:
    return entry(frame={"validations": [{**RULE, **changes}]})


def error_of(raw: dict[str, Any]) -> str:
    with pytest.raises(CatalogError) as caught:
        parse_model(raw)
    return str(caught.value)


PROMPT = "acme/x: field 'prompt': "
FRAME = "acme/x: field 'frame': "
WHOLE = "must be a whole number >= 0, got"
FINITE = "must be a finite number, got"
RULE_VALUE = "validations[0]: rule 'width_pixels<' needs a numeric validation_value"
RULE_VALUE += " (a number within ±1,000,000,000), got"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # lengths and counts: whole numbers >= 0
        (entry({"maxLength": "abc"}), f"{PROMPT}maxLength {WHOLE} 'abc'"),
        (entry({"maxLength": -1}), f"{PROMPT}maxLength {WHOLE} -1"),
        (entry({"maxLength": 5.5}), f"{PROMPT}maxLength {WHOLE} 5.5"),
        (entry({"maxLength": True}), f"{PROMPT}maxLength {WHOLE} true"),
        (entry({"minLength": math.nan}), f"{PROMPT}minLength {WHOLE} nan"),
        (entry({"minItems": [1]}), f"{PROMPT}minItems {WHOLE} [1]"),
        (entry({"maxItems": math.inf}), f"{PROMPT}maxItems {WHOLE} inf"),
        (
            entry({"minLength": 200}),
            f"{PROMPT}minLength 200 is above maxLength 100; no value would pass",
        ),
        # bounds: finite numbers, low <= high
        (entry({"minimum": "x"}), f"{PROMPT}minimum {FINITE} 'x'"),
        (entry({"minimum": False}), f"{PROMPT}minimum {FINITE} false"),
        (entry({"maximum": math.nan}), f"{PROMPT}maximum {FINITE} nan"),
        (entry({"maximum": -math.inf}), f"{PROMPT}maximum {FINITE} -inf"),
        (
            entry({"minimum": 5, "maximum": 1.0}),
            f"{PROMPT}minimum 5 is above maximum 1; no value would pass",
        ),
        # types, enum, items, format, texts
        (entry({"type": 7}), f"{PROMPT}type must be {TYPES}, got 7"),
        (entry({"type": "file"}), f"{PROMPT}type must be {TYPES}, got 'file'"),
        (
            entry({"type": ["string", "null"]}),
            f"{PROMPT}type must be {TYPES}, got ['string', 'null']",
        ),
        (entry({"enum": 5}), f"{PROMPT}enum must be a list of 1 to 1,000 values, got 5"),
        (entry({"enum": []}), f"{PROMPT}enum must be a list of 1 to 1,000 values, got []"),
        (
            entry({"enum": ["a", {"b": 1}]}),
            f"{PROMPT}enum[1] must be text, a finite number, true/false or null, got {{'b': 1}}",
        ),
        (
            entry({"enum": [1, math.nan]}),
            f"{PROMPT}enum[1] must be text, a finite number, true/false or null, got nan",
        ),
        (entry({"items": []}), f"{PROMPT}items must be a JSON object, got []"),
        (entry({"items": {"type": 3}}), f"{PROMPT}items.type must be {TYPES}, got 3"),
        (entry({"items": {"format": 3}}), f"{PROMPT}items.format must be text, got 3"),
        (entry({"format": ["image_uri"]}), f"{PROMPT}format must be text, got ['image_uri']"),
        (entry({"title": 5}), f"{PROMPT}title must be text, got 5"),
        (entry({"description": {}}), f"{PROMPT}description must be text, got {{}}"),
        # image validations
        (
            entry(frame={"validations": "big"}),
            f"{FRAME}validations must be a list of at most 1,000 rule objects, got 'big'",
        ),
        (
            entry(frame={"validations": {"a": 1}}),
            f"{FRAME}validations must be a list of at most 1,000 rule objects, got {{'a': 1}}",
        ),
        (entry(frame={"validations": [5]}), f"{FRAME}validations[0] must be a JSON object, got 5"),
        (
            rule(validation_rule=5),
            f"{FRAME}validations[0].validation_rule must be a rule such as 'width_pixels<=', got 5",
        ),
        (rule(validation_value=math.nan), f"{FRAME}{RULE_VALUE} nan"),
        (rule(validation_value=math.inf), f"{FRAME}{RULE_VALUE} inf"),
        (rule(validation_value=1e300), f"{FRAME}{RULE_VALUE} 1e+300"),
        (rule(validation_value=True), f"{FRAME}{RULE_VALUE} true"),
        (rule(validation_value=None), f"{FRAME}{RULE_VALUE} null"),
        (
            rule(validation_error=["x"]),
            f"{FRAME}validations[0].validation_error must be text, got ['x']",
        ),
        (
            rule(validation_rule="depth_pixels<"),
            f"{FRAME}validations[0]: unknown image measure 'depth_pixels' in rule "
            "'depth_pixels<'; known: width_pixels, height_pixels, width/height, file_size_mb",
        ),
        # the schema itself
        (
            schema(required="prompt"),
            "acme/x: input_schema: required must be a list of field names, got 'prompt'",
        ),
        (
            schema(required=["prompt", 5]),
            "acme/x: input_schema: required must be a list of field names, got ['prompt', 5]",
        ),
        (
            schema(required=["prompt", "ghost"]),
            "acme/x: input_schema: required names 'ghost', not a property",
        ),
        (schema(properties=[]), "acme/x: input_schema has no properties"),
        # our keys
        (entry(universal=[]), "acme/x: 'universal' must be a JSON object, got []"),
        (
            entry(universal={"image": {"field": "frame", "wrap": "lists"}}),
            "acme/x: universal 'image': wrap must be 'list' or absent, got 'lists'",
        ),
        (
            entry(universal={"prompt": {"field": ["prompt"]}}),
            "acme/x: universal 'prompt' maps to unknown field ['prompt']",
        ),
        (
            entry(universal={"duration": {"field": "prompt", "values": {"short": "a"}}}),
            "acme/x: universal 'duration': a 'values' key must be a number of seconds, got 'short'",
        ),
        (
            entry(image_formats={"frame": "PNG"}),
            "acme/x: image_formats 'frame' must be a list of format names such as ['PNG'], "
            "got 'PNG'",
        ),
        (
            entry(image_formats={"frame": []}),
            "acme/x: image_formats 'frame' must be a list of format names such as ['PNG'], got []",
        ),
        (
            entry(image_formats={"ghost": ["PNG"]}),
            "acme/x: image_formats: 'ghost' is not a field of input_schema",
        ),
        (
            entry(slug="../elsewhere"),
            "acme/x: slug must be a folder name: 1 to 80 letters, digits, '.', '_' or '-', "
            "got '../elsewhere'",
        ),
        # the API's top-level keys
        (entry(display_name=5), "acme/x: display_name must be text, got 5"),
        (entry(pricing_note=["a"]), "acme/x: pricing_note must be text, got ['a']"),
        (
            entry(base_price_usd="0.1"),
            "acme/x: base_price_usd must be a number of USD >= 0, or null, got '0.1'",
        ),
        (
            entry(base_price_usd=-0.5),
            "acme/x: base_price_usd must be a number of USD >= 0, or null, got -0.5",
        ),
        (
            entry(base_price_usd=math.nan),
            "acme/x: base_price_usd must be a number of USD >= 0, or null, got nan",
        ),
        (
            entry(price_unit="image"),
            "acme/x: price_unit must be one of second, output, got 'image'",
        ),
    ],
)
def test_an_unreadable_key_is_named_with_what_is_allowed(raw: dict[str, Any], message: str) -> None:
    assert error_of(raw) == message


def test_the_origin_comes_first() -> None:
    with pytest.raises(CatalogError) as caught:
        parse_model(entry({"maxLength": "abc"}), origin="models/x.json")
    assert str(caught.value) == f"models/x.json: {PROMPT}maxLength {WHOLE} 'abc'"


def test_parse_field_names_the_field_alone() -> None:
    with pytest.raises(CatalogError) as caught:
        parse_field("duration", {"maxLength": "abc"}, False, None)
    assert str(caught.value) == f"field 'duration': maxLength {WHOLE} 'abc'"


def long_field_name() -> dict[str, Any]:
    raw = entry()
    raw["input_schema"]["properties"]["x" * 5_000] = {"type": "y" * 5_000}
    return raw


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(entry({"maxLength": "x" * 10_000}), id="long-text"),
        pytest.param(entry({"enum": {f"k{i}": [i] * 100 for i in range(500)}}), id="big-object"),
        pytest.param(entry({"minimum": 10**400}), id="long-number"),
        pytest.param(entry({"maxLength": [[[[[[1]]]]]] * 10_000}), id="deep-list"),
        pytest.param(long_field_name(), id="long-field-name"),
        pytest.param(entry({"type": 7}, model_id="acme/" + "y" * 5_000), id="long-model-id"),
    ],
)
def test_shown_values_are_capped(raw: dict[str, Any]) -> None:
    message = error_of(raw)
    # The model id, the field name and the value are each shown in at most SHOWN_CHARS.
    assert len(message) <= 3 * SHOWN_CHARS + 100, message
    assert "..." in message


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        pytest.param(entry({"enum": list(range(LIST_LIMIT + 1))}), "enum must be", id="enum"),
        pytest.param(
            entry(frame={"validations": [RULE] * (LIST_LIMIT + 1)}),
            "validations must be",
            id="validations",
        ),
        pytest.param(
            schema(required=["prompt"] * (LIST_LIMIT + 1)), "required must be", id="required"
        ),
        pytest.param(
            schema(properties={f"f{i}": {} for i in range(LIST_LIMIT + 1)}),
            "input_schema: properties holds 1,001 fields; at most 1,000 are read",
            id="properties",
        ),
    ],
)
def test_huge_lists_are_refused_before_they_are_read(raw: dict[str, Any], words: str) -> None:
    assert words in error_of(raw)


def test_huge_lists_at_the_limit_are_read() -> None:
    spec = parse_model(entry({"enum": [str(i) for i in range(LIST_LIMIT)]}))
    assert len(spec.fields["prompt"].enum or ()) == LIST_LIMIT


def test_unknown_keys_are_ignored_and_whole_floats_read_as_whole() -> None:
    raw = entry(
        {"maxLength": 5.0, "x-ui": {"widget": [1, 2]}, "exclusiveMinimum": "?"},
        **{"x-vendor": {"any": "thing"}},
    )
    raw["input_schema"]["x-order"] = ["prompt"]
    spec = parse_model(raw)
    assert spec.fields["prompt"].max_length == 5
    assert isinstance(spec.fields["prompt"].max_length, int)


def test_null_keys_read_as_absent() -> None:
    raw = entry(
        {"maxLength": None, "enum": None, "items": None, "title": None},
        frame={"validations": None},
        universal=None,
        image_formats=None,
        display_name=None,
        slug=None,
    )
    raw["input_schema"]["required"] = None
    spec = parse_model(raw)
    prompt = spec.fields["prompt"]
    assert (prompt.max_length, prompt.enum, prompt.title, prompt.required) == (
        None,
        None,
        "",
        False,
    )
    assert (spec.aliases, spec.display_name, spec.slug) == ({}, "acme/x", "x")


@pytest.mark.parametrize(
    ("top", "price"),
    [
        pytest.param({"price_unit": "OUTPUT"}, (0.1, "output"), id="unit-any-case"),
        pytest.param({"price_unit": None}, (0.1, "second"), id="unit-defaults-to-second"),
        pytest.param({"price_unit": ""}, (0.1, "second"), id="empty-unit"),
        # Without a price the unit counts nothing, so an odd one does not block the model.
        pytest.param({"base_price_usd": None, "price_unit": "image"}, None, id="no-price"),
        pytest.param({"base_price_usd": 0}, (0.0, "second"), id="free"),
    ],
)
def test_prices_and_units(top: dict[str, Any], price: tuple[float, str] | None) -> None:
    found = parse_model(entry(**top)).price
    assert ((found.usd, found.unit) if found else None) == price


def test_an_image_alias_makes_its_field_an_image() -> None:
    """A derived mapping may find an image field by its name alone: it is still an image
    (its values are files to send as data URIs, whichever name the manifest uses)."""
    spec = parse_model(entry(universal={"image": {"field": "prompt"}}))
    assert spec.fields["prompt"].is_image
    assert spec.image_fields == ("prompt", "frame")
    assert not parse_model(entry(universal={})).fields["prompt"].is_image


@pytest.mark.parametrize("seconds", [math.nan, math.inf, 10**400], ids=["nan", "inf", "huge"])
def test_duration_seconds_is_unknown_for_a_length_no_price_can_use(seconds: Any) -> None:
    raw = entry(universal={"duration": {"field": "length"}})
    raw["input_schema"]["properties"]["length"] = {"type": "number"}
    spec = parse_model(raw)
    assert spec.duration_seconds({"length": seconds}) is None
    assert spec.duration_seconds({"length": 4}) == 4.0


# -- any value in place of any key of a shipped entry ----------------------------------------

DELETE = object()
SCHEMA_KEYS = (
    "type",
    "enum",
    "items",
    "format",
    "maxLength",
    "minimum",
    "maxItems",
    "validations",
    "validation_rule",
    "validation_value",
    "field",
    "wrap",
    "values",
    "required",
    "properties",
)
INTERESTING = (
    *SCHEMA_KEYS,
    "string",
    "integer",
    "number",
    "array",
    "list",
    "image_uri",
    "width_pixels<",
    "file_size_mb<=",
    "width/height>",
    "second",
    "output",
    "prompt",
    "frames",
    "image_urls",
    0,
    -1,
    1e308,
    10**30,
    math.nan,
    math.inf,
    "",
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(INTERESTING)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.sampled_from(SCHEMA_KEYS), inner, max_size=4)
    ),
    max_leaves=10,
)
#: Payload values: smaller, since drawing them is most of the test's time.
PAYLOAD_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=4)


def key_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a key (or list item) of a JSON value, outermost first."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, inner in items:
        if key == "output_schema":
            continue  # not read
        yield (*path, key)
        yield from key_paths(inner, (*path, key))


#: Keys a property may have that the validator reads, present in a shipped entry or not.
FIELD_KEYS = (
    "type",
    "enum",
    "items",
    "format",
    "title",
    "description",
    "maxLength",
    "minLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "validations",
)


def all_paths(shipped: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    """The entry's own key paths, plus every validator key of each property and of the
    top level, where the entry lacks it (a value is then added there)."""
    yield from key_paths(shipped)
    for name, prop in shipped["input_schema"]["properties"].items():
        for key in FIELD_KEYS:
            if key not in prop:
                yield ("input_schema", "properties", name, key)
        yield ("input_schema", "properties", name, "items", "type")
    for key in ("image_formats", "slug", "universal", "base_price_usd", "price_unit"):
        if key not in shipped:
            yield (key,)


def kind_of(path: tuple[Any, ...]) -> str:
    """What a path points at: its last key, or ``enum[]`` for an item of an ``enum`` list."""
    last = path[-1]
    return f"{path[-2]}[]" if isinstance(last, int) else str(last)


PATHS: dict[str, list[tuple[int, tuple[Any, ...]]]] = {}
for _index, _shipped in enumerate(SHIPPED):
    for _path in all_paths(_shipped):
        PATHS.setdefault(kind_of(_path), []).append((_index, _path))
#: Each kind of key is as likely as any other (validations alone would be most paths).
WHERE = st.sampled_from(sorted(PATHS)).flatmap(lambda kind: st.sampled_from(PATHS[kind]))


def replaced(index: int, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed: dict[str, Any] = copy.deepcopy(SHIPPED[index])
    parent: Any = changed
    for key in path[:-1]:
        parent = parent.setdefault(key, {}) if isinstance(parent, dict) else parent[key]
    if value is not DELETE:
        parent[path[-1]] = value
    elif isinstance(parent, list) or path[-1] in parent:
        del parent[path[-1]]
    return changed


def exercise(spec: ModelSpec, payload: dict[str, Any]) -> None:
    """Everything validation and pricing ask of a spec, on any payload: none may raise."""
    validate_payload(spec, payload)
    validate_payload(spec, payload, images_ok=True, memo={})
    spec.duration_seconds(payload)
    spec.inputs_text()
    for field in spec.fields.values():
        field.allowed_text()
        assert field.limits is not None
    for alias in spec.aliases.values():
        alias.translate(payload.get(alias.universal))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    where=WHERE,
    value=VALUES | st.just(DELETE),
    payload_values=st.lists(PAYLOAD_VALUES, max_size=5),
    extra=st.dictionaries(st.text(max_size=6), PAYLOAD_VALUES, max_size=1),
)
@pytest.mark.slow
def test_any_value_for_any_key_is_a_spec_or_a_catalog_error(
    where: tuple[int, tuple[Any, ...]],
    value: Any,
    payload_values: list[Any],
    extra: dict[str, Any],
) -> None:
    check(replaced(*where, value), payload_values, extra)


HOSTILE: tuple[Any, ...] = (
    *(None, True, 0, -1, 2.5, math.nan, math.inf, -math.inf, 10**400),
    *("", "x", "x" * 1_000, "string", "width_pixels<"),
    *([], [1], ["string"], [math.nan], {}, {"type": 7}, {"field": "prompt"}),
    DELETE,
)


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: "delete" if v is DELETE else repr(v)[:20])
def test_hostile_values_for_every_kind_of_key(value: Any) -> None:
    """The same, exhaustively: each hostile value at a few keys of each kind."""
    payload = [v for v in HOSTILE if v is not DELETE]
    for paths in PATHS.values():
        for where in paths[:3]:
            check(replaced(*where, value), payload, {"zz": math.nan})


def check(raw: dict[str, Any], payload_values: list[Any], extra: dict[str, Any]) -> None:
    """``raw`` is a spec or a short CatalogError; a spec survives any payload; deriving a
    mapping never raises, and never makes a readable entry unreadable."""
    try:
        spec = parse_model(raw)
    except CatalogError as exc:
        assert len(str(exc)) <= 3 * SHOWN_CHARS + 150
    else:
        exercise(spec, payload_for(spec, payload_values, extra))
    bare = {k: v for k, v in raw.items() if k not in ("universal", "image_formats")}
    derived = with_derived_mapping(bare)
    try:
        parse_model(bare)
    except CatalogError:
        return
    spec = parse_model(derived)
    exercise(spec, payload_for(spec, payload_values, extra))


def payload_for(spec: ModelSpec, values: list[Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The values set on the spec's own names (native and universal), plus unknown names."""
    names = [*spec.fields, *spec.aliases]
    return {**extra, **dict(zip(names, values, strict=False))}
