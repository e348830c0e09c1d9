"""The catalog the simulator serves: the tool's five shipped models plus invented ones.

The invented models (``catalog/*.json`` beside this module) exist only in the simulator,
never in the tool's shipped catalog, so a client can only learn them from
``GET /v1/models``. Each is an entry of the shape ``GET /v1/models/{id}`` answers, with
its own native field names and no ``universal`` mapping, plus one key of the simulator's
own that is never served::

    "simulator": {
        "duration_field": "clip_seconds",               # the field giving the clip's seconds
        "price_factors": {"resolution": {"1080p": 2}}   # cost x 2 when resolution is 1080p
    }

**Clip length** (what is rendered and billed per second): the field
``simulator.duration_field`` names, else the universal ``duration`` mapping (the five),
else a field named ``duration``; its value (or the schema default) is read as seconds,
numeric text (``"10"``) included. :mod:`.state` falls back to 5 s when none is found.

**Prices**: a model the profile's ``prices`` names explicitly, or whose entry has no
``base_price_usd`` (the five), costs the profile's price and publishes a simulated
``pricing_note``; any other model costs its entry's ``base_price_usd`` and publishes its
own note. The unit is always the entry's ``price_unit``: ``second`` (x clip seconds) or
``output`` (once per video).

>>> catalog = default_catalog()
>>> len(catalog), "acme/flipbook/image-to-video" in catalog
(8, True)
>>> clip_seconds(catalog.require("acme/wonder-video/v2/image-to-video"), {"clip_seconds": 8})
8.0
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from orchestrator.catalog import Catalog, CatalogError, ModelSpec, builtin_catalog
from orchestrator.catalog.parse import parse_model

if TYPE_CHECKING:
    from orchestrator.simulator.profile import Profile

SIM_KEY = "simulator"
#: Schema keywords a schema change may set (``null`` removes the keyword).
CHANGEABLE = ("enum", "minimum", "maximum", "minLength", "maxLength", "default")
SCALARS = (str, int, float, bool)


class SchemaChangeError(ValueError):
    """A schema change naming an unknown model or field, or a value the schema cannot hold."""


@dataclass(frozen=True, slots=True)
class ServedPrice:
    """What one model costs and how its catalog entry says so."""

    usd: float
    unit: str  # "second" (x the clip's seconds) or "output" (once per video)
    note: str


@cache
def invented_models() -> tuple[ModelSpec, ...]:
    """The simulator-only models of ``catalog/`` (read once per process)."""
    folder = resources.files("orchestrator.simulator") / "catalog"
    models = []
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".json"):
            origin = f"simulator/catalog/{item.name}"
            model = parse_model(json.loads(item.read_text("utf-8")), origin=origin)
            settings_of(model)  # a bad simulator key fails here, not in the middle of a submit
            models.append(model)
    return tuple(models)


def default_catalog() -> Catalog:
    """What a :class:`~orchestrator.simulator.state.Simulator` serves unless told otherwise."""
    return Catalog([*builtin_catalog(), *invented_models()])


def settings_of(model: ModelSpec) -> Mapping[str, Any]:
    """The entry's ``simulator`` key, checked against the model's fields."""
    settings = model.raw.get(SIM_KEY) or {}
    where = f"{model.model_id}: {SIM_KEY}"
    if not isinstance(settings, Mapping):
        raise CatalogError(f"{where} must be a JSON object")
    named = settings.get("duration_field")
    if named is not None and named not in model.fields:
        raise CatalogError(f"{where}.duration_field names no field of the model: {named!r}")
    factors = settings.get("price_factors") or {}
    if not isinstance(factors, Mapping):
        raise CatalogError(f"{where}.price_factors must map fields to {{value: factor}}")
    for name, table in factors.items():
        numbers = isinstance(table, Mapping) and all(
            isinstance(f, int | float) and not isinstance(f, bool) and f >= 0
            for f in table.values()
        )
        if name not in model.fields or not numbers:
            raise CatalogError(f"{where}.price_factors.{name}: a field and {{value: factor >= 0}}")
    return settings


def clip_seconds(model: ModelSpec, body: Mapping[str, Any]) -> float | None:
    """The seconds of video ``body`` asks for, or None when the model does not say."""
    name = settings_of(model).get("duration_field")
    if name is None and "duration" in model.aliases:
        # The five: their universal mapping (frames 241 means 10 s). The simulator's own key
        # wins over it, so a mapping derived for an invented model cannot change its clips.
        seconds = model.duration_seconds(body)
        if seconds is not None:
            return seconds
    if name is None and "duration" in model.fields:
        name = "duration"
    if name is None:
        return None
    value = body.get(name, model.fields[name].default)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return None
    return float(value)


def price_of(profile: Profile, model: ModelSpec) -> ServedPrice:
    """The model's price as the simulator bills and publishes it (see the module doc)."""
    unit = "output" if model.raw.get("price_unit") == "output" else "second"
    if model.model_id in profile.prices or model.price is None:
        per = "second of video" if unit == "second" else "video"
        return ServedPrice(
            profile.price_for(model.model_id), unit, f"simulated price, USD per {per}"
        )
    return ServedPrice(model.price.usd, unit, model.pricing_note)


def cost_of(profile: Profile, model: ModelSpec, body: Mapping[str, Any], seconds: float) -> float:
    """What one accepted submit costs: price x seconds (or once), x any price factors."""
    price = price_of(profile, model)
    cost = price.usd * seconds if price.unit == "second" else price.usd
    factors: Mapping[str, Mapping[str, float]] = settings_of(model).get("price_factors") or {}
    for name, table in factors.items():
        value = body.get(name, model.fields[name].default)
        cost *= table.get(str(value), 1.0)
    return round(cost, 6)


# -- schema changes ------------------------------------------------------------------------


def check_change(changes: Any, where: str) -> dict[str, Any]:
    """One field's change (``{enum: [...], maximum: n, ...}``) checked for shape."""
    if not isinstance(changes, Mapping) or not changes:
        raise SchemaChangeError(f"{where} must map schema keywords ({', '.join(CHANGEABLE)})")
    unknown = sorted(str(key) for key in changes if key not in CHANGEABLE)
    if unknown:
        raise SchemaChangeError(
            f"{where}: cannot change {', '.join(unknown)}; changeable: {', '.join(CHANGEABLE)}"
        )
    for key, value in changes.items():
        at = f"{where}.{key}"
        if value is None:
            continue  # removes the keyword
        if key == "enum":
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(v, SCALARS) for v in value)
            ):
                raise SchemaChangeError(f"{at} must be a non-empty list of values, got {value!r}")
        elif key in ("minimum", "maximum"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SchemaChangeError(f"{at} must be a number, got {value!r}")
        elif key in ("minLength", "maxLength"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SchemaChangeError(f"{at} must be a whole number >= 0, got {value!r}")
        elif not isinstance(value, SCALARS):
            raise SchemaChangeError(f"{at} must be a single value, got {value!r}")
    return dict(changes)


def change_field(model: ModelSpec, field: str, changes: Mapping[str, Any]) -> ModelSpec:
    """A copy of ``model`` whose ``field`` has the schema keywords ``changes`` sets."""
    where = f"{model.model_id}.{field}"
    if field not in model.fields:
        raise SchemaChangeError(
            f"{model.model_id} has no field {field!r}; its fields: {', '.join(model.fields)}"
        )
    checked = check_change(changes, where)
    # A deep copy: the shipped models' raw entries are shared by every catalog in the process.
    entry = copy.deepcopy(dict(model.raw))
    schema = entry["input_schema"]["properties"][field]
    for key, value in checked.items():
        if value is None:
            schema.pop(key, None)
        else:
            schema[key] = value
    try:
        return parse_model(entry, origin=model.source)
    except CatalogError as exc:
        raise SchemaChangeError(f"{where}: {exc}") from exc


def apply_changes(catalog: Catalog, changes: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace each model of ``{model_id: {field: {keyword: value}}}`` in ``catalog``."""
    for model_id, fields in changes.items():
        model = catalog.get(model_id)
        if model is None:
            near = catalog.suggest(model_id)
            hint = f"; did you mean {near!r}?" if near else ""
            raise SchemaChangeError(f"unknown model {model_id!r}{hint}")
        if not isinstance(fields, Mapping):
            raise SchemaChangeError(f"{model_id} must map field names to changes")
        for field, change in fields.items():
            model = change_field(model, str(field), change)
        catalog.add(model)
