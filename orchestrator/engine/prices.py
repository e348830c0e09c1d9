"""The price of every job a spend cap may let through, known before the first submit.

A cap with unknown prices is no cap: a $1.00 limit once spent $4.50 because unpriced jobs
counted as free. Before a capped run submits anything, every job that may still be
submitted gets an estimate, from the first source that has one:

1. the price table (``--prices``) or the catalog file: already stored at enqueue;
2. RunComfy's published price, ``GET /v1/models/{id}`` (``base_price_usd`` per
   ``price_unit``), times the clip's duration for per-second prices;
3. the most RunComfy ever reported for one job of the model (``include_cost``), a cautious
   stand-in for a model the API will not price.

What is still unpriced after that is returned, and the command refuses to start (exit 2).
The bound on a wrong estimate: once RunComfy reports a higher cost, the model's remaining
estimates are raised (:func:`~orchestrator.engine.paidwork.raised_estimate_ratio`), so a
low price can overrun the cap by at most the jobs in flight when the first cost arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import structlog

from orchestrator.api import RunComfyClient, RunComfyError
from orchestrator.catalog import Catalog, PriceTable
from orchestrator.catalog.spec import Price

if TYPE_CHECKING:
    from orchestrator.store.prices import PriceBook

log = structlog.get_logger("orchestrator.prices")
UNITS = ("second", "output")


@dataclass
class Pricing:
    """Where each model's price came from, and which models still have none."""

    sources: dict[str, str] = field(default_factory=dict)
    """Model id -> a short description of the price used (for the run's output)."""
    unpriced: list[str] = field(default_factory=list)


async def price_unpriced(
    book: PriceBook, api: RunComfyClient, catalog: Catalog, batch: str | None
) -> Pricing:
    """Give every job of ``batch`` that may still be submitted an estimate (see above)."""
    pricing = Pricing()
    waiting = await anyio.to_thread.run_sync(book.unpriced, batch)
    for model_id, jobs in sorted(waiting.items()):
        spec = catalog.get(model_id)
        estimates: list[tuple[int, float]] = []
        price = await _published_price(api, model_id)
        if price is not None and spec is not None:
            table = PriceTable({model_id: price})
            for row_id, payload in jobs:
                usd = table.estimate(spec, payload)
                if usd is not None:
                    estimates.append((row_id, usd))
            if len(estimates) == len(jobs):
                pricing.sources[model_id] = f"${price.usd:g} per {price.unit} ({price.note})"
        if len(estimates) < len(jobs):
            seen = await anyio.to_thread.run_sync(book.highest_cost, model_id)
            if seen is None:
                pricing.unpriced.append(model_id)
                continue
            done = {row_id for row_id, _usd in estimates}
            estimates += [(row_id, seen) for row_id, _payload in jobs if row_id not in done]
            pricing.sources[model_id] = (
                f"${seen:,.2f} per job (the most RunComfy has billed for one of its jobs)"
            )
        await anyio.to_thread.run_sync(book.set_estimates, estimates)
    return pricing


async def _published_price(api: RunComfyClient, model_id: str) -> Price | None:
    try:
        info = await api.model_info(model_id)
    except RunComfyError as exc:
        log.warning("no published price", model=model_id, error=str(exc))
        return None
    if info.base_price_usd is None or info.base_price_usd < 0 or info.price_unit not in UNITS:
        return None
    return Price(usd=info.base_price_usd, unit=info.price_unit, note="RunComfy's catalog")
