"""The live catalog on the command line: its options, the catalog a command uses, ``models``.

``validate``, ``plan``, ``enqueue`` and ``run`` validate and price against the freshest
schema: with a token, each model the manifest names is fetched from the API unless the
store's cache holds an entry younger than ``--catalog-ttl``; without one (or
``--offline``), the cache and then the shipped files are used. Each command says where each
model came from.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx

from orchestrator.cli_options import DEFAULT_API_BASE, TOKEN_VARIABLES, OptionError, catalog_ttl
from orchestrator.livecatalog import (
    ApiFetcher,
    Fetcher,
    FetchFailed,
    LiveCatalog,
    open_catalog,
)
from orchestrator.redact import MIN_SECRET_LENGTH
from orchestrator.store import Store
from orchestrator.store.catalog import CatalogCache
from orchestrator.store.database import store_exists
from orchestrator.views_catalog import print_models, print_remote_models, print_sources

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def environment_token() -> str | None:
    """The API token from the environment; None when unset or too short to mask (the
    catalog is then read offline: ``run`` refuses such a token with the reason)."""
    for name in TOKEN_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return value if len(value) >= MIN_SECRET_LENGTH else None
    return None


def live_catalog(
    args: argparse.Namespace,
    store: Store | None,
    *,
    api_base: str | None = None,
    token: str | None = None,
    ttl: float | None = None,
    refresh: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> LiveCatalog:
    """The catalog for a command: the API at ``api_base`` (default ``--api-base``) with
    ``token`` (default the environment's), unless ``--offline``; the store's cache when a
    store is given."""
    base = api_base or getattr(args, "api_base", None) or DEFAULT_API_BASE
    token = token or environment_token()
    fetcher: Fetcher | None = None
    reason = "no API token (set RUNCOMFY_API_TOKEN for RunComfy's live catalog)"
    if getattr(args, "offline", False):
        reason = "--offline"
    elif token:
        fetcher = ApiFetcher(base, token, transport=transport)
    cache = CatalogCache(store, _host(base)) if store is not None else None
    return open_catalog(
        user_dir=getattr(args, "catalog", None),
        fetcher=fetcher,
        cache=cache,
        ttl=catalog_ttl(args) if ttl is None else ttl,
        refresh=refresh,
        offline_reason=reason,
    )


def remember(live: LiveCatalog, store: Store, api_base: str) -> int:
    """Cache what ``live`` fetched in ``store`` (after the store exists)."""
    return live.save_fetched(CatalogCache(store, _host(api_base)))


def _host(api_base: str) -> str:
    return httpx.URL(api_base).host or api_base


def cmd_models(args: argparse.Namespace, out: TextIO) -> int:
    """``models``: the catalog with each model's source; ``--refresh`` fetches every known
    model now; ``--remote`` lists what the API offers for image-to-video."""
    try:
        ttl = catalog_ttl(args)
    except OptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if (args.remote or args.refresh) and (environment_token() is None or args.offline):
        why = "--offline" if args.offline else "no API token"
        print(
            f"error: {'--remote' if args.remote else '--refresh'} asks the API, but "
            f"{why}: set RUNCOMFY_API_TOKEN (or RUNCOMFY_TOKEN)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.remote:
        return _remote(args, out)
    # Only --refresh writes (and so may create the store); a listing reads what is there.
    store = Store.open(args.db) if args.refresh or store_exists(args.db) else None
    with store if store is not None else nullcontext():
        live = live_catalog(args, store, ttl=ttl, refresh=args.refresh)
        cached = {entry.model_id for entry in live.cache.load_all()} if live.cache else set()
        for model_id in sorted({m.model_id for m in live} | cached):
            live.get(model_id)
        if store is not None:
            remember(live, store, args.api_base)
        print_models(live, out, as_json=args.json, now=datetime.now(UTC))
    if live.offline_reason and args.refresh:
        print(f"error: {live.offline_reason}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _remote(args: argparse.Namespace, out: TextIO) -> int:
    token = environment_token()
    assert token is not None  # checked by the caller
    try:
        found = ApiFetcher(args.api_base, token).listing(args.search)
    except FetchFailed as exc:
        print(f"error: RunComfy's catalog could not be listed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print_remote_models(found, out, as_json=args.json)
    return EXIT_OK


def show_sources(live: LiveCatalog, model_ids: list[str], out: TextIO) -> None:
    """Where each model of the manifest came from (text output of the manifest commands)."""
    print_sources(live, model_ids, out, now=datetime.now(UTC))


def sources_json(live: LiveCatalog, model_ids: list[str]) -> list[dict[str, Any]]:
    return [live.sources[m].as_dict() for m in model_ids if m in live.sources]


def dump(data: Any, out: TextIO) -> None:
    json.dump(data, out, indent=2)
    out.write("\n")
