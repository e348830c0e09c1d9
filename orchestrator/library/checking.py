"""The checks a batch goes through before anything is stored or paid for, typed.

These are the functions the manifest commands use, without the command line: the live
catalog a batch is checked against (:func:`open_live_catalog`), the expansion with the
output side checked (:func:`expand_checked`), and the store, opened only when it exists
(:func:`existing_store`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from orchestrator.catalog import Catalog, CatalogError, Price, PriceTable
from orchestrator.catalog.pricing import load_price_file
from orchestrator.defaults import DEFAULT_CATALOG_TTL
from orchestrator.livecatalog import ApiFetcher, Fetcher, LiveCatalog, open_catalog
from orchestrator.outputs.preflight import check_outputs, estimate_batch_bytes
from orchestrator.planning import output_root
from orchestrator.problems import InputError, Problem
from orchestrator.store import Store
from orchestrator.store.catalog import CatalogCache
from orchestrator.store.database import store_exists

if TYPE_CHECKING:
    from orchestrator.engine.runner import Connection
    from orchestrator.manifest import Expansion
    from orchestrator.media import ImageInfo

NO_TOKEN = "no API token (set RUNCOMFY_API_TOKEN for RunComfy's live catalog)"


@dataclass(frozen=True)
class CatalogOptions:
    """Where a batch's models are looked up, and how its images are checked."""

    catalog_dir: str | Path | None = None
    """A folder of extra model schema files (``*.json``) added to the built-in catalog."""
    prices: str | Path | Mapping[str, Price] | None = None
    """A price table (a YAML file: model id -> USD per second) over the catalog's."""
    offline: bool = False
    """Never ask the API for schemas and prices: the store's cache, then the files."""
    catalog_ttl: float = DEFAULT_CATALOG_TTL
    """Seconds a cached catalog entry is used before the API is asked again."""
    probe_urls: bool = False
    """Download https image URLs once to check them against the model's rules."""
    allow_unknown_model: bool = False
    """Send a model id nobody knows, its inputs as written (default: refuse it)."""


def api_host(api_base: str) -> str:
    """The host a cache entry belongs to (entries are kept per API host)."""
    return httpx.URL(api_base).host or api_base


def catalog_for(
    store: Store | None,
    connection: Connection | None,
    options: CatalogOptions,
    *,
    ttl: float | None = None,
    refresh: bool = False,
    offline_reason: str = "offline",
    transport: httpx.AsyncBaseTransport | None = None,
) -> LiveCatalog:
    """:func:`open_live_catalog` as the command line uses it: ``refresh`` fetches every
    model asked for now, ``offline_reason`` is what an offline catalog says it is when
    ``options.offline``, and a bad catalog folder is a :class:`CatalogError`."""
    fetcher: Fetcher | None = None
    reason = NO_TOKEN
    if options.offline:
        reason = offline_reason
    elif connection is not None and connection.token:
        fetcher = ApiFetcher(connection.api_base, connection.token, transport=transport)
    base = connection.api_base if connection is not None else None
    cache = CatalogCache(store, api_host(base)) if store is not None and base else None
    return open_catalog(
        user_dir=options.catalog_dir,
        fetcher=fetcher,
        cache=cache,
        ttl=options.catalog_ttl if ttl is None else ttl,
        refresh=refresh,
        offline_reason=reason,
    )


def open_live_catalog(
    store: Store | None,
    connection: Connection | None,
    options: CatalogOptions,
    *,
    ttl: float | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> LiveCatalog:
    """The catalog a batch is checked against: the API of ``connection`` (unless offline or
    without one), the store's cache of that API when a store is given, the shipped files."""
    if not options.catalog_ttl >= 0:
        raise InputError(
            [Problem("must be 0 or more seconds", file="<options>", field="catalog_ttl")]
        )
    try:
        return catalog_for(store, connection, options, ttl=ttl, transport=transport)
    except CatalogError as exc:
        raise InputError([Problem(str(exc), file=str(options.catalog_dir))]) from exc


def remember(live: LiveCatalog, store: Store, connection: Connection | None) -> int:
    """Cache in ``store`` what ``live`` fetched from the API (entries are the API's,
    whatever the batch says, so this holds even for a refused batch)."""
    if connection is None:
        return 0
    return live.save_fetched(CatalogCache(store, api_host(connection.api_base)))


def price_table(prices: str | Path | Mapping[str, Price] | None) -> PriceTable:
    """The caller's price table (a YAML file, read with the manifest's bounds, or model id
    -> :class:`~orchestrator.catalog.Price`), or an empty one."""
    if prices is None:
        return PriceTable()
    return PriceTable(prices if isinstance(prices, Mapping) else load_price_file(Path(prices)))


def expand_checked(
    load: Callable[..., Expansion],
    catalog: Catalog,
    options: CatalogOptions,
    out: str | Path | None,
) -> Expansion:
    """Expand a batch with ``load`` against ``catalog``, then check its output side (names
    and paths that fit the file system, a writable folder, a warning when the free space
    looks short): everything before anything is stored or paid for."""
    probe: Callable[[str], ImageInfo] | None = None
    if options.probe_urls:
        from orchestrator.media.remote import probe_url

        probe = probe_url
    expansion = load(
        catalog=catalog,
        prices=price_table(options.prices),
        probe_url=probe,
        allow_unknown_model=options.allow_unknown_model,
    )
    preflight = check_outputs(
        output_root(expansion, None if out is None else str(out)),
        expansion.jobs,
        estimated_bytes=estimate_batch_bytes(expansion.jobs, catalog),
        source=expansion.settings.manifest_path,
    )
    if preflight.problems:
        raise InputError(preflight.problems)
    expansion.warnings.extend(preflight.warnings)
    return expansion


@contextmanager
def existing_store(db: str | Path | Store | None) -> Iterator[Store | None]:
    """The store when it exists already (or is given open), else None: what only reads
    never creates an empty store."""
    if db is None:
        yield None
    elif isinstance(db, Store):
        yield db
    elif not store_exists(str(db)):
        yield None
    else:
        with Store.open(str(db)) as store:
            yield store


@contextmanager
def writable_store(db: str | Path | Store) -> Iterator[Store]:
    """The store (created when missing); one given open stays open."""
    if isinstance(db, Store):
        yield db
        return
    with Store.open(str(db)) as store:
        yield store
