"""A model specification from a live catalog entry (``GET /v1/models/{id}``).

The API's entry carries the schema, price and pricing note, but not the two keys of ours
(``universal``, ``image_formats``) nor a folder ``slug``. For the five models the tool
ships, those come from the shipped file, so the universal names keep their mapping while
the live schema decides what is valid; a universal name whose field the live schema no
longer has is dropped (its native names still work). For any other model the mapping is
derived from the schema (:mod:`orchestrator.catalog.derive`).

>>> from orchestrator.catalog import builtin_catalog
>>> shipped = builtin_catalog().require("bytedance/seedance-1-0/lite/image-to-video")
>>> entry = dict(shipped.raw, base_price_usd=0.05, universal=None, slug=None)
>>> live = spec_from_entry(entry, shipped, origin="RunComfy API")
>>> live.price, live.slug, live.native_name("image")
(Price(usd=0.05, unit='second', note=''), 'seedance-1-0-lite', 'first_frame_image_url')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.catalog.derive import with_derived_mapping
from orchestrator.catalog.parse import parse_model
from orchestrator.catalog.spec import CatalogError, ModelSpec

PRICE_UNITS = ("second", "output")
_OURS = ("universal", "image_formats", "slug")


def spec_from_entry(
    entry: Mapping[str, Any], shipped: ModelSpec | None, *, origin: str
) -> ModelSpec:
    """The specification of one live entry; raise :class:`CatalogError` (naming the model
    and the field) when its schema cannot be read."""
    if not isinstance(entry, Mapping):
        raise CatalogError(f"{origin}: a catalog entry is a JSON object")
    merged = {key: value for key, value in entry.items() if key not in _OURS or value}
    if shipped is not None:
        merged = _with_shipped_mapping(merged, shipped)
    merged = with_derived_mapping(merged)
    unit = merged.get("price_unit")
    if merged.get("base_price_usd") is not None and unit not in PRICE_UNITS:
        # A price per something we cannot count (an image? a token?) is no estimate at all.
        merged["base_price_usd"] = None
        merged["pricing_note"] = (
            f"{merged.get('pricing_note') or ''} (price unit {str(unit)[:40]!r} is not "
            f"one of: {', '.join(PRICE_UNITS)})"
        ).strip()
    merged["source"] = origin
    return parse_model(merged, origin=origin)


def _with_shipped_mapping(entry: dict[str, Any], shipped: ModelSpec) -> dict[str, Any]:
    schema = entry.get("input_schema")
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    fields = set(properties) if isinstance(properties, Mapping) else set()
    universal = shipped.raw.get("universal") or {}
    formats = shipped.raw.get("image_formats") or {}
    entry.setdefault(
        "universal",
        {
            name: target
            for name, target in universal.items()
            if isinstance(target, Mapping) and target.get("field") in fields
        },
    )
    entry.setdefault(
        "image_formats", {name: kinds for name, kinds in formats.items() if name in fields}
    )
    entry.setdefault("slug", shipped.slug)
    return entry
