"""The live catalog: every model's schema and price from the API, cached in the store.

:func:`open_catalog` builds the catalog a command uses; :class:`LiveCatalog` resolves each
model on first use and records where it came from (:class:`ModelSource`);
:func:`cached_catalog` is the no-network view for commands that only drain the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.catalog import Catalog, builtin_catalog
from orchestrator.catalog.registry import closest_ids
from orchestrator.livecatalog.fetch import ApiFetcher, Fetcher, FetchFailed
from orchestrator.livecatalog.resolve import DEFAULT_TTL, LiveCatalog, ModelSource

if TYPE_CHECKING:
    from orchestrator.store.catalog import CatalogCache

__all__ = [
    "DEFAULT_TTL",
    "ApiFetcher",
    "FetchFailed",
    "Fetcher",
    "LiveCatalog",
    "ModelSource",
    "cached_catalog",
    "closest_ids",
    "open_catalog",
    "user_catalog",
]


def user_catalog(directory: str | Path | None) -> Catalog:
    """The models of a user's ``--catalog`` folder (empty without one)."""
    return Catalog().with_directory(Path(directory)) if directory else Catalog()


def open_catalog(
    *,
    user_dir: str | Path | None = None,
    fetcher: Fetcher | None = None,
    cache: CatalogCache | None = None,
    ttl: float = DEFAULT_TTL,
    refresh: bool = False,
    offline_reason: str = "no API token",
) -> LiveCatalog:
    """The catalog a command validates and prices with (see :mod:`.resolve`)."""
    return LiveCatalog(
        builtin_catalog(),
        user=user_catalog(user_dir),
        fetcher=fetcher,
        cache=cache,
        ttl=ttl,
        refresh=refresh,
        offline_reason=offline_reason,
    )


def cached_catalog(user_dir: str | Path | None, cache: CatalogCache | None) -> Catalog:
    """The shipped files, every cached entry of the cache's host on top, and the user's
    files over both: what ``work`` drains with, without asking the API.

    A cached entry whose schema cannot be read is left out (the shipped file, if any,
    stays)."""
    live = open_catalog(user_dir=user_dir, ttl=float("inf"))
    for cached in cache.load_all() if cache is not None else ():
        live.use_cached(cached)
    return live.snapshot()
