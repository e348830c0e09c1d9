"""Model specifications read from catalog files.

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
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from orchestrator.media.rules import ImageLimits, ImageRule, parse_rules

#: Names a manifest may use for any model; each model maps the ones it supports.
UNIVERSAL_NAMES = ("prompt", "image", "last_image", "duration", "resolution", "ratio", "seed")
IMAGE_FORMATS = ("image_uri", "image_uris")


class CatalogError(ValueError):
    """A catalog file that cannot be read as a model specification."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One input field of a model, as its JSON schema describes it."""

    name: str
    type: str | None = None
    title: str = ""
    description: str = ""
    enum: tuple[Any, ...] | None = None
    default: Any = None
    has_default: bool = False
    max_length: int | None = None
    min_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    items_type: str | None = None
    required: bool = False
    is_image: bool = False
    rules: tuple[ImageRule, ...] = ()
    image_formats: tuple[str, ...] | None = None

    @property
    def limits(self) -> ImageLimits:
        """The image size box this field's validation rules allow."""
        return ImageLimits.from_rules(self.rules)

    def allowed_text(self) -> str | None:
        """What values are allowed, in words, for error messages."""
        if self.enum is not None:
            return "allowed: " + ", ".join(_show(v) for v in self.enum)
        bounds = []
        if self.minimum is not None:
            bounds.append(f">= {_show(self.minimum)}")
        if self.maximum is not None:
            bounds.append(f"<= {_show(self.maximum)}")
        if bounds:
            return "allowed: " + " and ".join(bounds)
        return None


@dataclass(frozen=True, slots=True)
class Alias:
    """How one universal input name maps to a model's native field."""

    universal: str
    field: str
    wrap_list: bool = False
    values: Mapping[str, Any] | None = None

    def translate(self, value: Any) -> tuple[bool, Any]:
        """Map a universal value to the native one: ``(ok, native_value)``.

        Without a value table every value passes through unchanged; with one, a value
        missing from the table is not ok, and a value that is already native is kept.
        """
        if self.values is None:
            return True, value
        key = _show(value)
        if key in self.values:
            return True, self.values[key]
        if value in self.values.values():
            return True, value
        return False, value


@dataclass(frozen=True, slots=True)
class Price:
    """A model's list price: ``usd`` per ``unit`` (``second`` of video, or ``output``)."""

    usd: float
    unit: str = "second"
    note: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """Everything the tool knows about one model: fields, aliases, price, slug."""

    model_id: str
    display_name: str
    slug: str
    fields: Mapping[str, FieldSpec]
    aliases: Mapping[str, Alias]
    price: Price | None = None
    pricing_note: str = ""
    source: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @cached_property
    def required(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self.fields.items() if spec.required)

    @cached_property
    def image_fields(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self.fields.items() if spec.is_image)

    def native_name(self, name: str) -> str | None:
        """The native field a universal or native name refers to, if the model has it."""
        if name in self.fields:
            return name
        alias = self.aliases.get(name)
        return alias.field if alias else None

    def universal_name(self, native: str) -> str | None:
        """The universal name of a native field, if it has one."""
        for alias in self.aliases.values():
            if alias.field == native:
                return alias.universal
        return None

    def input_names(self) -> list[str]:
        """Every name a manifest may use for this model: native fields and universal aliases."""
        return sorted(set(self.fields) | set(self.aliases))

    def inputs_text(self) -> str:
        """The inputs in words, universal name first: ``prompt, image (first_frame_image_url)``."""
        names = []
        for name in self.fields:
            universal = self.universal_name(name)
            names.append(f"{universal} ({name})" if universal and universal != name else name)
        return ", ".join(names)

    def duration_seconds(self, payload: Mapping[str, Any]) -> float | None:
        """Video length in seconds the payload asks for (schema default when unset).

        >>> from orchestrator.catalog import builtin_catalog
        >>> dreamina = builtin_catalog().require("bytedance/dreamina-3-0/pro/image-to-video")
        >>> dreamina.duration_seconds({"frames": 241})
        10.0
        """
        alias = self.aliases.get("duration")
        if alias is None:
            return None
        spec = self.fields.get(alias.field)
        value = payload.get(alias.field, spec.default if spec else None)
        if value is None or isinstance(value, bool):
            return None
        if alias.values:
            for seconds, native in alias.values.items():
                if native == value:
                    return float(seconds)
            return None
        return float(value) if isinstance(value, int | float) else None


def model_slug(model_id: str) -> str:
    """A short folder-safe name for a model id that has no catalog ``slug``.

    >>> model_slug("acme/wonder-video/v2/image-to-video")
    'wonder-video-v2'
    """
    parts = [p for p in model_id.split("/") if p]
    if len(parts) > 1:
        parts = parts[1:]
    if len(parts) > 1 and parts[-1] in ("image-to-video", "text-to-video", "video"):
        parts = parts[:-1]
    return re.sub(r"[^A-Za-z0-9.-]+", "-", "-".join(parts)).strip("-.") or "model"


def parse_field(
    name: str, raw: Mapping[str, Any], required: bool, formats: tuple[str, ...] | None
) -> FieldSpec:
    """Read one property of an input schema."""
    items = raw.get("items") if isinstance(raw.get("items"), Mapping) else {}
    fmt = raw.get("format") or (items or {}).get("format")
    validations = raw.get("validations") or []
    try:
        rules = parse_rules(validations)
    except ValueError as exc:
        raise CatalogError(f"field {name!r}: {exc}") from exc
    enum = raw.get("enum")
    return FieldSpec(
        name=name,
        type=raw.get("type"),
        title=str(raw.get("title") or ""),
        description=str(raw.get("description") or ""),
        enum=tuple(enum) if isinstance(enum, list) else None,
        default=raw.get("default"),
        has_default="default" in raw,
        max_length=raw.get("maxLength"),
        min_length=raw.get("minLength"),
        minimum=raw.get("minimum"),
        maximum=raw.get("maximum"),
        min_items=raw.get("minItems"),
        max_items=raw.get("maxItems"),
        items_type=(items or {}).get("type"),
        required=required,
        is_image=bool(rules) or fmt in IMAGE_FORMATS,
        rules=rules,
        image_formats=formats,
    )


def parse_model(entry: Mapping[str, Any], origin: str = "") -> ModelSpec:
    """Build a :class:`ModelSpec` from one catalog entry; raise :class:`CatalogError`."""
    where = f"{origin}: " if origin else ""
    model_id = entry.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        raise CatalogError(f"{where}catalog entry has no model_id")
    schema = entry.get("input_schema") or {}
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping):
        raise CatalogError(f"{where}{model_id}: input_schema has no properties")
    required = set(schema.get("required") or [])
    formats = entry.get("image_formats") or {}
    universal_map = entry.get("universal") or {}
    for what, value in (("image_formats", formats), ("universal", universal_map)):
        if not isinstance(value, Mapping):
            raise CatalogError(f"{where}{model_id}: {what!r} must be a JSON object")
    fields = {}
    for name, prop in properties.items():
        if not isinstance(prop, Mapping):
            raise CatalogError(f"{where}{model_id}: property {name!r} must be a JSON object")
        try:
            fields[name] = parse_field(
                name, prop, name in required, tuple(formats[name]) if name in formats else None
            )
        except CatalogError as exc:
            raise CatalogError(f"{where}{model_id}: {exc}") from exc
    aliases: dict[str, Alias] = {}
    for universal, target in universal_map.items():
        native: Any = target.get("field") if isinstance(target, Mapping) else None
        if native not in fields:
            raise CatalogError(
                f"{where}{model_id}: universal {universal!r} maps to unknown field {native!r}"
            )
        values = target.get("values")
        if values is not None and not isinstance(values, Mapping):
            raise CatalogError(
                f"{where}{model_id}: universal {universal!r}: 'values' must be a JSON object"
            )
        aliases[universal] = Alias(
            universal=universal,
            field=native,
            wrap_list=target.get("wrap") == "list",
            values={str(k): v for k, v in values.items()} if values else None,
        )
    base = entry.get("base_price_usd")
    price = None
    if isinstance(base, int | float) and not isinstance(base, bool):
        price = Price(usd=float(base), unit=str(entry.get("price_unit") or "second"))
    return ModelSpec(
        model_id=model_id,
        display_name=str(entry.get("display_name") or model_id),
        slug=str(entry.get("slug") or model_slug(model_id)),
        fields=fields,
        aliases=aliases,
        price=price,
        pricing_note=str(entry.get("pricing_note") or ""),
        source=str(entry.get("source") or origin),
        raw=entry,
    )


def load_model_file(path: Path) -> ModelSpec:
    """Read one catalog JSON file."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read catalog file: {exc}") from exc
    if not isinstance(entry, dict):
        raise CatalogError(f"{path}: a catalog file holds one JSON object")
    return parse_model(entry, origin=str(path))


def _show(value: Any) -> str:
    """A value as a user would type it (``5`` not ``5.0``, ``true`` not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
