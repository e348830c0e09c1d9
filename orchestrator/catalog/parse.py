"""Reading catalog files into model specifications (:mod:`.spec`).

A catalog file is the JSON a ``GET /v1/models/{model_id}`` answers (``model_id``,
``display_name``, ``base_price_usd``, ``price_unit``, ``input_schema`` ...) plus two keys of
ours: ``slug`` (a short name for folders) and ``universal``, which maps the tool's universal
input names to the model's native fields::

    "universal": {
        "image": {"field": "image_urls", "wrap": "list"},
        "duration": {"field": "frames", "values": {"5": 121, "10": 241}}
    }

``wrap: list`` sends a single value as a one-element array; ``values`` translates a
universal value (compared as text) into the native one.

An entry may come from the API, so every key read here is checked: one the validator could
not use raises :class:`CatalogError` naming the model, the field and the key, and what is
allowed (values shown at most ~80 characters). Keys nothing reads are ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from orchestrator.catalog.spec import (
    _FLOAT_MAX,
    IMAGE_FORMATS,
    JSON_TYPES,
    PRICE_UNITS,
    Alias,
    CatalogError,
    FieldSpec,
    ModelSpec,
    Price,
    _show,
    model_slug,
)
from orchestrator.media.rules import ImageRule
from orchestrator.problems import clipped, show_value

if TYPE_CHECKING:
    from pathlib import Path

#: Bounds on one entry, which may come from the API: a runaway list or a runaway value
#: must not become a runaway loop or message.
LIST_LIMIT = 1_000
SHOWN_CHARS = 80
#: ``file_size_mb`` times 10**6 (bytes) must stay a finite whole number.
RULE_VALUE_LIMIT = 1e9
_NAMES = "a list of field names"
_SLUG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,78}[A-Za-z0-9])?")
_SLUG_TEXT = "a folder name: 1 to 80 letters, digits, '.', '_' or '-'"


def parse_field(
    name: str, raw: Mapping[str, Any], required: bool, formats: tuple[str, ...] | None
) -> FieldSpec:
    """Read one property of an input schema; raise :class:`CatalogError` naming the key.

    Every key the validator uses is checked; keys it does not use are ignored (APIs add them).

    >>> parse_field("duration", {"type": "integer", "maxLength": "abc"}, False, None)
    Traceback (most recent call last):
    ...
    orchestrator.catalog.spec.CatalogError: field 'duration': maxLength must be a whole number >= 0, got 'abc'
    """  # noqa: E501
    try:
        items = raw.get("items")
        _check(items is None or isinstance(items, Mapping), "items", "a JSON object", items)
        items = items or {}
        fmt = _text(raw, "format") or _text(items, "format", "items.format")
        rules = _rules(raw.get("validations"))
        min_length, max_length = _range(raw, "minLength", "maxLength", _whole)
        minimum, maximum = _range(raw, "minimum", "maximum", _finite)
        min_items, max_items = _range(raw, "minItems", "maxItems", _whole)
        return FieldSpec(
            name=name,
            type=_type_name(raw.get("type"), "type"),
            title=_text(raw, "title") or "",
            description=_text(raw, "description") or "",
            enum=_enum(raw.get("enum")),
            default=raw.get("default"),
            has_default="default" in raw,
            max_length=max_length,
            min_length=min_length,
            minimum=minimum,
            maximum=maximum,
            min_items=min_items,
            max_items=max_items,
            items_type=_type_name(items.get("type"), "items.type"),
            required=required,
            is_image=bool(rules) or fmt in IMAGE_FORMATS,
            rules=rules,
            image_formats=formats,
        )
    except CatalogError as exc:
        raise CatalogError(f"field {_clip(name)}: {exc}") from exc


def parse_model(entry: Mapping[str, Any], origin: str = "") -> ModelSpec:
    """Build a :class:`ModelSpec` from one catalog entry; raise :class:`CatalogError`.

    A message names the origin (when given), the model id and the key, and says what is
    allowed:

    >>> parse_model({"model_id": "acme/x", "input_schema": {"required": "prompt",
    ...     "properties": {"prompt": {"type": "string"}}}})
    Traceback (most recent call last):
    ...
    orchestrator.catalog.spec.CatalogError: acme/x: input_schema: required must be a list of field names, got 'prompt'
    """  # noqa: E501
    where = f"{origin}: " if origin else ""
    model_id = entry.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        raise CatalogError(f"{where}catalog entry has no model_id")
    try:
        return _read_model(model_id, entry, origin)
    except CatalogError as exc:
        raise CatalogError(f"{where}{_cap(model_id)}: {exc}") from exc


def _read_model(model_id: str, entry: Mapping[str, Any], origin: str) -> ModelSpec:
    schema = entry.get("input_schema") or {}
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping):
        raise CatalogError("input_schema has no properties")
    if len(properties) > LIST_LIMIT:
        raise CatalogError(
            f"input_schema: properties holds {len(properties):,} fields; "
            f"at most {LIST_LIMIT:,} are read"
        )
    required = _required(schema.get("required"))
    formats = _formats(entry.get("image_formats"), properties)
    universal_map = entry.get("universal")
    if universal_map is not None and not isinstance(universal_map, Mapping):
        raise CatalogError(f"'universal' must be a JSON object, got {_clip(universal_map)}")
    fields = {}
    for name, prop in properties.items():
        _check(isinstance(name, str), "input_schema: a property name", "text", name)
        if not isinstance(prop, Mapping):
            raise CatalogError(f"property {_clip(name)} must be a JSON object, got {_clip(prop)}")
        fields[name] = parse_field(name, prop, name in required, formats.get(name))
    if unknown := sorted(required - set(fields)):
        # The validator would not know the field's type, and refuses names it does not know.
        raise CatalogError(f"input_schema: required names {_clip(unknown[0])}, not a property")
    aliases = _aliases(universal_map or {}, fields)
    for universal in ("image", "last_image"):
        alias = aliases.get(universal)
        if alias is not None and not fields[alias.field].is_image:
            # The mapping names it an image (a derived one may know it by its name alone):
            # its values are files to resolve and send as data URIs, not text.
            fields[alias.field] = replace(fields[alias.field], is_image=True)
    slug = entry.get("slug")
    ok = slug in (None, "") or (isinstance(slug, str) and _SLUG.fullmatch(slug))
    _check(ok, "slug", _SLUG_TEXT, slug)
    return ModelSpec(
        model_id=model_id,
        display_name=_text(entry, "display_name") or model_id,
        slug=slug or model_slug(model_id),
        fields=fields,
        aliases=aliases,
        price=_price(entry.get("base_price_usd"), entry.get("price_unit")),
        pricing_note=_text(entry, "pricing_note") or "",
        source=_text(entry, "source") or origin,
        raw=entry,
    )


def _aliases(universal_map: Mapping[str, Any], fields: Mapping[str, FieldSpec]) -> dict[str, Alias]:
    if len(universal_map) > LIST_LIMIT:
        raise CatalogError(f"'universal' maps more than {LIST_LIMIT:,} names")
    aliases: dict[str, Alias] = {}
    for universal, target in universal_map.items():
        native: Any = target.get("field") if isinstance(target, Mapping) else None
        if not isinstance(native, str) or native not in fields:
            raise CatalogError(
                f"universal {_clip(universal)} maps to unknown field {_clip(native)}"
            )
        label = f"universal {_clip(universal)}: "
        wrap = target.get("wrap")
        _check(wrap in (None, "list"), label + "wrap", "'list' or absent", wrap)
        values = target.get("values")
        if values is not None and not isinstance(values, Mapping):
            raise CatalogError(f"{label}'values' must be a JSON object, got {_clip(values)}")
        if values and len(values) > LIST_LIMIT:
            raise CatalogError(f"{label}'values' holds more than {LIST_LIMIT:,} entries")
        if universal == "duration":
            # duration_seconds reads the keys back as seconds for prices.
            for key in values or ():
                _check(_seconds(key), label + "a 'values' key", "a number of seconds", key)
        aliases[universal] = Alias(
            universal=universal,
            field=native,
            wrap_list=wrap == "list",
            values={str(k): v for k, v in values.items()} if values else None,
        )
    return aliases


def _required(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    ok = isinstance(value, list) and len(value) <= LIST_LIMIT
    _check(ok and all(isinstance(n, str) for n in value), "input_schema: required", _NAMES, value)
    return frozenset(value)


def _formats(value: Any, properties: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CatalogError(f"'image_formats' must be a JSON object, got {_clip(value)}")
    formats = {}
    for name, names in value.items():
        if name not in properties:
            raise CatalogError(f"image_formats: {_clip(name)} is not a field of input_schema")
        ok = isinstance(names, list) and 0 < len(names) <= 20
        ok = ok and all(isinstance(n, str) and 0 < len(n) <= 20 for n in names)
        _check(ok, f"image_formats {_clip(name)}", "a list of format names such as ['PNG']", names)
        formats[name] = tuple(names)
    return formats


def _price(base: Any, unit: Any) -> Price | None:
    if base is None or isinstance(base, bool):
        return None  # true/false is not a price: unknown, as before; the unit then unused
    ok = _is_number(base) and 0 <= base <= _FLOAT_MAX
    _check(ok, "base_price_usd", "a number of USD >= 0, or null", base)
    unit = "second" if unit in (None, "") else unit
    # Any other unit would be counted as seconds, a wrong estimate and a wrong spend cap.
    ok = isinstance(unit, str) and unit.lower() in PRICE_UNITS
    _check(ok, "price_unit", "one of " + ", ".join(PRICE_UNITS), unit)
    return Price(usd=float(base), unit=unit.lower())


def _rules(value: Any) -> tuple[ImageRule, ...]:
    """The ``validations`` list, checked before :meth:`ImageRule.parse` reads it."""
    if value is None:
        return ()
    ok = isinstance(value, list) and len(value) <= LIST_LIMIT
    _check(ok, "validations", f"a list of at most {LIST_LIMIT:,} rule objects", value)
    rules = []
    for index, raw in enumerate(value):
        key = f"validations[{index}]"
        _check(isinstance(raw, Mapping), key, "a JSON object", raw)
        text, number = raw.get("validation_rule"), raw.get("validation_value")
        ok = isinstance(text, str) and len(text) <= SHOWN_CHARS
        _check(ok, f"{key}.validation_rule", "a rule such as 'width_pixels<='", text)
        _text(raw, "validation_error", f"{key}.validation_error")
        # Bounded so ImageLimits' byte and pixel counts stay finite whole numbers.
        if not (_is_number(number) and -RULE_VALUE_LIMIT <= number <= RULE_VALUE_LIMIT):
            raise CatalogError(
                f"{key}: rule {text!r} needs a numeric validation_value "
                f"(a number within ±{RULE_VALUE_LIMIT:,.0f}), got {_clip(number)}"
            )
        try:
            rules.append(ImageRule.parse(raw))
        except ValueError as exc:
            raise CatalogError(f"{key}: {exc}") from exc
    return tuple(rules)


def _enum(value: Any) -> tuple[Any, ...] | None:
    if value is None:
        return None
    ok = isinstance(value, list) and 0 < len(value) <= LIST_LIMIT
    _check(ok, "enum", f"a list of 1 to {LIST_LIMIT:,} values", value)
    for index, option in enumerate(value):
        ok = option is None or isinstance(option, str | bool) or _finite(None, option) is not None
        _check(ok, f"enum[{index}]", "text, a finite number, true/false or null", option)
    return tuple(value)


def _range(raw: Mapping[str, Any], low_key: str, high_key: str, read: Any) -> tuple[Any, Any]:
    """A pair of bounds (``minimum``/``maximum`` ...), each read by ``read``, low <= high."""
    low, high = read(low_key, raw.get(low_key)), read(high_key, raw.get(high_key))
    if low is not None and high is not None and low > high:
        raise CatalogError(
            f"{low_key} {_cap(_show(low))} is above {high_key} {_cap(_show(high))}; "
            "no value would pass"
        )
    return low, high


def _whole(key: str, value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
    _check(ok, key, "a whole number >= 0", value)
    return value  # type: ignore[no-any-return]


def _finite(key: str | None, value: Any) -> float | None:
    """``value`` when it is a finite number (or ``None``); else an error naming ``key``.

    With ``key=None`` a bad value reads as ``None`` instead of raising.
    """
    if value is None or (_is_number(value) and -_FLOAT_MAX <= value <= _FLOAT_MAX):
        return value  # type: ignore[no-any-return]
    if key is None:
        return None
    raise CatalogError(f"{key} must be a finite number, got {_clip(value)}")


def _type_name(value: Any, key: str) -> str | None:
    _check(value is None or value in JSON_TYPES, key, "one of " + ", ".join(JSON_TYPES), value)
    return value  # type: ignore[no-any-return]


def _text(raw: Mapping[str, Any], key: str, label: str | None = None) -> str | None:
    value = raw.get(key)
    _check(value is None or isinstance(value, str), label or key, "text", value)
    return value


def _check(ok: Any, key: str, wanted: str, value: Any) -> None:
    if not ok:
        raise CatalogError(f"{key} must be {wanted}, got {_clip(value)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _seconds(key: Any) -> bool:
    try:
        return 0 <= float(key) <= _FLOAT_MAX
    except (TypeError, ValueError):
        return False


def _clip(value: Any) -> str:
    """A value as shown in a message: JSON spelling for null/true/false, at most ~80 chars
    (:func:`~orchestrator.problems.show_value`, which walks only a few items of a list)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return show_value(value, SHOWN_CHARS)


def _cap(text: str) -> str:
    return clipped(text, SHOWN_CHARS)


def load_model_file(path: Path) -> ModelSpec:
    """Read one catalog JSON file."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read catalog file: {exc}") from exc
    if not isinstance(entry, dict):
        raise CatalogError(f"{path}: a catalog file holds one JSON object")
    return parse_model(entry, origin=str(path))
