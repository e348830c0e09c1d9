"""Prices for cost estimates: the catalog's list prices, overridden by a user's table.

The stored RunComfy pages publish no prices for the five seed models, so estimates are
"unknown" until a price is known, either from a catalog file's ``base_price_usd`` or from
a price table a user passes with ``--prices``::

    # USD per second of video unless "per" says otherwise
    bytedance/seedance-1-0/pro/image-to-video: 0.12
    runwayml/runway-gen-4/turbo/image-to-video: {usd: 0.05, per: second}

>>> from orchestrator.catalog import builtin_catalog
>>> table = PriceTable.from_catalog(builtin_catalog())
>>> table.merged({"bytedance/seedance-1-0/pro/image-to-video": Price(0.1)}).estimate(
...     builtin_catalog().require("bytedance/seedance-1-0/pro/image-to-video"), {"duration": 10})
1.0
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from orchestrator.catalog.spec import ModelSpec, Price
from orchestrator.inputfiles import FileRefused, read_bounded
from orchestrator.problems import InputError, Problem

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from orchestrator.catalog.registry import Catalog

UNITS = ("second", "output")
#: A price table lists a few models; a larger file is not one.
MAX_PRICE_FILE_BYTES = 1024 * 1024


class PriceTable:
    """USD prices by model id."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self.prices: dict[str, Price] = dict(prices or {})

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> PriceTable:
        return cls({m.model_id: m.price for m in catalog if m.price is not None})

    def merged(self, overrides: Mapping[str, Price]) -> PriceTable:
        return PriceTable({**self.prices, **overrides})

    def price(self, model_id: str) -> Price | None:
        return self.prices.get(model_id)

    def price_of(self, model: ModelSpec) -> Price | None:
        """The table's price for ``model``, else the one its catalog entry publishes."""
        return self.prices.get(model.model_id) or model.price

    def estimate(self, model: ModelSpec | None, payload: Mapping[str, Any]) -> float | None:
        """Estimated USD for one job, or ``None`` when the price (or duration) is unknown.

        The table's own price wins (a negotiated rate); without one, the model's published
        price (``base_price_usd`` per ``price_unit`` of its catalog entry) is used.
        """
        if model is None:
            return None
        price = self.price_of(model)
        if price is None:
            return None
        if price.unit == "output":
            return price.usd
        seconds = model.duration_seconds(payload)
        return None if seconds is None else round(price.usd * seconds, 6)


def load_price_file(path: Path) -> dict[str, Price]:
    """Read a user's price table (YAML or JSON); raise :class:`InputError` naming the entry."""
    # Read and parsed with the manifest's bounds (a regular file of at most 1 MiB; depth,
    # nodes and aliases limited while parsing); imported here: the manifest needs the
    # catalog.
    from orchestrator.manifest.yamlsafe import load_yaml

    where = str(path)
    try:
        text = read_bounded(path, MAX_PRICE_FILE_BYTES).decode("utf-8")
    except FileRefused as exc:
        raise InputError([Problem(f"cannot read price table: {exc.reason}", file=where)]) from exc
    except UnicodeDecodeError as exc:
        raise InputError(
            [Problem(f"cannot read price table: not UTF-8 text ({exc.reason})", file=where)]
        ) from exc
    raw = load_yaml(text, where)
    if not isinstance(raw, dict):
        raise InputError([Problem("a price table maps model ids to prices", file=where)])
    prices: dict[str, Price] = {}
    problems: list[Problem] = []
    for model_id, value in raw.items():
        usd: Any = value
        unit = "second"
        if isinstance(value, dict):
            usd = value.get("usd")
            unit = str(value.get("per", "second"))
        if isinstance(usd, bool) or not isinstance(usd, int | float) or not 0 <= usd < math.inf:
            problems.append(
                Problem(
                    f"price must be a number of USD >= 0, got {usd!r}",
                    file=where,
                    field=str(model_id),
                )
            )
            continue
        if unit not in UNITS:
            problems.append(
                Problem(
                    f"unknown price unit {unit!r}; allowed: {', '.join(UNITS)}",
                    file=where,
                    field=str(model_id),
                )
            )
            continue
        prices[str(model_id)] = Price(usd=float(usd), unit=unit, note=f"from {path.name}")
    if problems:
        raise InputError(problems)
    return prices
