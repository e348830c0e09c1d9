"""A live entry read as a model specification: the shipped mapping kept for the five
models, dropped where the live schema lost the field, and prices only in units we count."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from model_ids import DREAMINA, PRO, RUNWAY

from orchestrator.catalog import CatalogError, PriceTable, builtin_catalog
from orchestrator.catalog.live import spec_from_entry


def live(model_id: str, **changes: Any) -> dict[str, Any]:
    """The API's entry for a shipped model: its schema, none of our keys."""
    raw = copy.deepcopy(dict(builtin_catalog().require(model_id).raw))
    for ours in ("universal", "image_formats", "slug", "source"):
        raw.pop(ours, None)
    return raw | changes


def test_the_five_keep_their_universal_names_and_folders() -> None:
    for model in builtin_catalog():
        spec = spec_from_entry(live(model.model_id), model, origin="RunComfy API")
        assert {u: a.field for u, a in spec.aliases.items()} == {
            u: a.field for u, a in model.aliases.items()
        }
        assert spec.slug == model.slug
        assert spec.source == "RunComfy API"


def test_a_universal_name_whose_field_the_live_schema_dropped_is_dropped() -> None:
    entry = live(RUNWAY)
    del entry["input_schema"]["properties"]["seed"]
    spec = spec_from_entry(entry, builtin_catalog().require(RUNWAY), origin="api")
    assert "seed" not in spec.aliases
    assert spec.native_name("prompt") == "promptText"


def test_a_value_table_survives_and_the_live_enum_decides() -> None:
    entry = live(DREAMINA)
    entry["input_schema"]["properties"]["frames"]["enum"] = [121]
    spec = spec_from_entry(entry, builtin_catalog().require(DREAMINA), origin="api")
    assert spec.aliases["duration"].translate(5) == (True, 121)
    assert spec.fields["frames"].enum == (121,)


@pytest.mark.parametrize(
    ("unit", "usd", "estimate"),
    [("second", 0.1, 0.5), ("output", 0.4, 0.4), ("image", 0.1, None), (None, 0.1, None)],
)
def test_prices_only_in_units_that_can_be_counted(
    unit: str | None, usd: float, estimate: float | None
) -> None:
    entry = live(PRO, base_price_usd=usd, price_unit=unit, pricing_note="list")
    spec = spec_from_entry(entry, builtin_catalog().require(PRO), origin="api")
    assert PriceTable().estimate(spec, {"duration": 5}) == estimate
    if estimate is None:
        assert "is not one of: second, output" in spec.pricing_note


def test_an_entry_that_is_not_an_object_is_a_catalog_error() -> None:
    with pytest.raises(CatalogError, match="a catalog entry is a JSON object"):
        spec_from_entry(["not", "an", "entry"], None, origin="api")  # type: ignore[arg-type]
