"""Text and JSON renderings of the catalog: models, their sources and prices, the API's list."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TextIO

from orchestrator.livecatalog import LiveCatalog
from orchestrator.views import table

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from orchestrator.catalog import Catalog, ModelSpec


def price_text(model: ModelSpec) -> str:
    """``$0.1 per second (simulated price)`` or ``price unknown``."""
    if model.price is None:
        return "price unknown"
    note = f" ({model.pricing_note})" if model.pricing_note else ""
    return f"${model.price.usd:g} per {model.price.unit}{note}"


def print_sources(
    live: LiveCatalog, model_ids: Iterable[str], out: TextIO, *, now: datetime
) -> None:
    """One line per model: where its schema and price came from."""
    for model_id in dict.fromkeys(model_ids):
        source = live.sources.get(model_id)
        model = live.get(model_id) if source is not None else None
        if source is None or model is None:
            continue
        out.write(f"catalog: {model_id}: {source.describe(now)}; {price_text(model)}\n")
    for warning in live.warnings:
        out.write(f"warning: {warning}\n")


def print_models(catalog: Catalog, out: TextIO, *, as_json: bool, now: datetime) -> None:
    """The catalog: id, name, source, inputs, universal names and price."""
    sources = catalog.sources if isinstance(catalog, LiveCatalog) else {}
    if as_json:
        rows = []
        for model in catalog:
            row = _model_dict(model)
            source = sources.get(model.model_id)
            row["source"] = source.as_dict() if source else None
            rows.append(row)
        json.dump(rows, out, indent=2)
        out.write("\n")
        return
    for model in catalog:
        out.write(
            f"{model.model_id}  ({model.display_name}, folder '{model.slug}', "
            f"{price_text(model)})\n"
        )
        source = sources.get(model.model_id)
        if source is not None:
            out.write(f"    source: {source.describe(now)}\n")
        for name, spec in model.fields.items():
            universal = model.universal_name(name)
            alias = f" [{universal}]" if universal and universal != name else ""
            need = "required" if spec.required else "optional"
            allowed = spec.allowed_text() or (
                f"max {spec.max_length} chars" if spec.max_length else ""
            )
            kind = "image" if spec.is_image else (spec.type or "any")
            extra = f"; {allowed}" if allowed else ""
            rules = f"; rules {', '.join(r.text for r in spec.rules)}" if spec.rules else ""
            out.write(f"    {name}{alias}: {kind}, {need}{extra}{rules}\n")
        out.write("\n")
    for warning in getattr(catalog, "warnings", []):
        out.write(f"warning: {warning}\n")


def _model_dict(model: ModelSpec) -> dict[str, Any]:
    return {
        "model_id": model.model_id,
        "display_name": model.display_name,
        "slug": model.slug,
        "base_price_usd": model.price.usd if model.price else None,
        "price_unit": model.price.unit if model.price else None,
        "pricing_note": model.pricing_note or None,
        "required": list(model.required),
        "image_fields": list(model.image_fields),
        "universal": {u: a.field for u, a in model.aliases.items()},
        "input_schema": model.raw.get("input_schema"),
    }


def print_remote_models(entries: list[Mapping[str, Any]], out: TextIO, *, as_json: bool) -> None:
    """What the API lists for image-to-video: id, name and price."""
    rows = [
        {
            "model_id": _short(entry.get("model_id"), 200),
            "display_name": _short(entry.get("display_name"), 80),
            "base_price_usd": _price(entry.get("base_price_usd")),
            "price_unit": _short(entry.get("price_unit"), 20),
            "pricing_note": _short(entry.get("pricing_note"), 120),
        }
        for entry in entries
    ]
    if as_json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return
    lines = [
        [
            row["model_id"],
            row["display_name"] or "",
            f"${row['base_price_usd']:g} per {row['price_unit'] or 'second'}"
            if row["base_price_usd"] is not None
            else "price unknown",
        ]
        for row in rows
    ]
    out.write(table(lines, ["model", "name", "price"], set()) + "\n")
    out.write(f"{len(rows)} model(s) from RunComfy's catalog\n")


def _short(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _price(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value >= 0 else None
