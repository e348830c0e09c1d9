"""The simulator's model catalog routes, as plain values (:mod:`.app` turns them into HTTP).

``GET /v1/models/{id}`` gives one entry (404001 for an unknown id); ``GET /v1/models``
lists them with ``search``, ``category``, ``kind``, ``include_schema``, ``limit`` (1-500)
and ``offset``, as ``{"models": [...], "total": n}``; ``GET /v1/models/categories`` names
the categories (``docs/runcomfy-api.md`` section 1.5).

>>> from orchestrator.simulator.profile import Profile
>>> from orchestrator.simulator.state import Simulator
>>> sim = Simulator(Profile())
>>> page = list_models(sim, {"search": "runway", "include_schema": "false"})
>>> page["total"], "input_schema" in page["models"][0]
(1, False)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.simulator.served import price_of
from orchestrator.simulator.state import ApiError, Simulator

if TYPE_CHECKING:
    from collections.abc import Mapping

    from orchestrator.catalog import ModelSpec

DEFAULT_LIMIT, MAX_LIMIT = 50, 500
DEFAULT_CATEGORY = "image-to-video"


def catalog_entry(
    sim: Simulator, model: ModelSpec, *, include_schema: bool = True
) -> dict[str, Any]:
    """One model as ``GET /v1/models/{id}`` describes it (price: :func:`.served.price_of`)."""
    price = price_of(sim.profile, model)
    entry: dict[str, Any] = {
        "model_id": model.model_id,
        "display_name": model.display_name,
        "categories": categories_of(model),
        "kind": "model",
        "base_price_usd": price.usd if sim.profile.publish_prices else None,
        "price_unit": price.unit,
        "pricing_note": price.note,
        "model_url": f"{sim.api_base}/v1/models/{model.model_id}",
    }
    if include_schema:
        entry["input_schema"] = model.raw.get("input_schema")
    return entry


def categories_of(model: ModelSpec) -> list[str]:
    found = model.raw.get("categories")
    if isinstance(found, list) and all(isinstance(c, str) for c in found):
        return list(found)
    return [DEFAULT_CATEGORY]


def list_models(sim: Simulator, params: Mapping[str, str]) -> dict[str, Any]:
    """A page of the catalog; raises a 422 :class:`ApiError` for a bad limit or offset."""
    limit = _whole(params.get("limit"), DEFAULT_LIMIT, "limit", low=1, high=MAX_LIMIT)
    offset = _whole(params.get("offset"), 0, "offset", low=0, high=10**9)
    search = (params.get("search") or "").strip().lower()
    category = (params.get("category") or "").strip()
    kind = (params.get("kind") or "").strip()
    include_schema = (params.get("include_schema") or "false").lower() in ("1", "true", "yes")
    matches = [
        model
        for model in sorted(sim.catalog, key=lambda m: m.model_id)
        if (not search or search in model.model_id.lower() or search in model.display_name.lower())
        and (not category or category in categories_of(model))
        and (not kind or kind == "model")
    ]
    page = matches[offset : offset + limit]
    return {
        "models": [catalog_entry(sim, m, include_schema=include_schema) for m in page],
        "total": len(matches),
    }


def categories(sim: Simulator) -> dict[str, Any]:
    return {"categories": sorted({c for model in sim.catalog for c in categories_of(model)})}


def _whole(value: str | None, default: int, name: str, *, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        detail = [
            {
                "loc": ["query", name],
                "msg": f"{name} must be a whole number from {low} to {high}",
                "type": "value_error",
            }
        ]
        raise ApiError(422, 422001, "Validation Error", detail)
    return number
