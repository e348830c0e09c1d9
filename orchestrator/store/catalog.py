"""The catalog cache: each model's entry as an API host answered it, with its fetch time.

``plan`` and ``run`` validate and price against the freshest schema RunComfy publishes
(``GET /v1/models/{id}``). The raw JSON is kept here so a later command (another worker,
tomorrow's ``work``, a run while the API is down) sees the same schema and price without
fetching again, and knows how old it is. Rows are keyed by API host: the simulator's
catalog never stands in for RunComfy's.

An entry is stored only when it is a JSON object naming the same model id and no larger
than :data:`MAX_ENTRY_CHARS`; anything else is skipped, not written.

>>> from datetime import UTC, datetime
>>> from orchestrator.store import Store
>>> with Store.open(":memory:") as store:
...     cache = CatalogCache(store, "model-api.runcomfy.net")
...     cache.save({"model_id": "a/b", "base_price_usd": 0.1})
...     found = cache.load("a/b")
...     found.entry["base_price_usd"], found.fetched_at.tzinfo is UTC, cache.load("c/d")
True
(0.1, True, None)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from orchestrator.store.tables import CATALOG_ENTRIES

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from orchestrator.store.store import Store

MAX_ENTRY_CHARS: Final = 2_000_000
"""A catalog entry is a schema of a few dozen fields; a larger one is not cached."""

MAX_MODEL_ID: Final = 300


def _upsert(dialect: Any) -> Any:
    statement = dialect.insert(CATALOG_ENTRIES)
    return statement.on_conflict_do_update(
        index_elements=[CATALOG_ENTRIES.c.api_host, CATALOG_ENTRIES.c.model_id],
        set_={"entry": statement.excluded.entry, "fetched_at": statement.excluded.fetched_at},
    )


_UPSERTS: Final = {"sqlite": _upsert(sqlite), "postgresql": _upsert(postgresql)}


@dataclass(frozen=True, slots=True)
class CachedEntry:
    """One cached catalog entry and when it was fetched (timezone-aware UTC)."""

    model_id: str
    entry: Mapping[str, Any]
    fetched_at: datetime

    def age_seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.fetched_at).total_seconds())


class CatalogCache:
    """Cached catalog entries of one API host. Synchronous like the rest of the store."""

    def __init__(self, store: Store, api_host: str) -> None:
        self.store = store
        self.api_host = api_host

    def save(self, entry: Mapping[str, Any]) -> bool:
        """Store ``entry`` (fetched now) in place of any older one; False when it is not
        fit to store (no model id, too large, not JSON)."""
        model_id = entry.get("model_id")
        if not isinstance(model_id, str) or not 0 < len(model_id) <= MAX_MODEL_ID:
            return False
        try:
            text = json.dumps(entry, ensure_ascii=False, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError):
            return False
        if len(text) > MAX_ENTRY_CHARS:
            return False
        row = {
            "api_host": self.api_host,
            "model_id": model_id,
            "entry": text,
            "fetched_at": self.store.now(),
        }
        with self.store.write() as connection:
            connection.execute(_UPSERTS[self.store.engine.dialect.name], [row])
        return True

    def load(self, model_id: str) -> CachedEntry | None:
        """The cached entry of ``model_id``, or None (never cached, or unreadable)."""
        query = select(CATALOG_ENTRIES.c.entry, CATALOG_ENTRIES.c.fetched_at).where(
            CATALOG_ENTRIES.c.api_host == self.api_host, CATALOG_ENTRIES.c.model_id == model_id
        )
        with self.store.read() as connection:
            found = connection.execute(query).first()
        return None if found is None else _cached(model_id, found[0], found[1])

    def load_all(self) -> list[CachedEntry]:
        """Every readable cached entry of this host, by model id."""
        query = (
            select(
                CATALOG_ENTRIES.c.model_id, CATALOG_ENTRIES.c.entry, CATALOG_ENTRIES.c.fetched_at
            )
            .where(CATALOG_ENTRIES.c.api_host == self.api_host)
            .order_by(CATALOG_ENTRIES.c.model_id)
        )
        with self.store.read() as connection:
            rows = list(connection.execute(query))
        cached = (_cached(model_id, text, fetched) for model_id, text, fetched in rows)
        return [entry for entry in cached if entry is not None]

    def forget(self, model_id: str | None = None) -> int:
        """Drop one model's entry, or every entry of this host. Returns how many."""
        statement = delete(CATALOG_ENTRIES).where(CATALOG_ENTRIES.c.api_host == self.api_host)
        if model_id is not None:
            statement = statement.where(CATALOG_ENTRIES.c.model_id == model_id)
        with self.store.write() as connection:
            return int(connection.execute(statement).rowcount)


def _cached(model_id: str, text: str, fetched_at: datetime) -> CachedEntry | None:
    # Hand-edited or truncated rows are skipped, as if never cached: the API or the shipped
    # file is asked instead.
    try:
        entry = json.loads(text)
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("model_id") != model_id:
        return None
    return CachedEntry(model_id, entry, fetched_at)
