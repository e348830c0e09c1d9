"""The live catalog on the command line: the catalog a command uses, and ``models``.

``validate``, ``plan``, ``enqueue`` and ``run`` validate and price against the freshest
schema: with a token, each model the manifest names is fetched from the API unless the
store's cache holds an entry younger than ``--catalog-ttl``; without one (or
``--offline``), the cache and then the shipped files are used. Each command says where each
model came from.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, TextIO

import click

from orchestrator.cli.base import command
from orchestrator.cli.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from orchestrator.cli.options import (
    api_base_option,
    db_option,
    flag,
    json_option,
    live_catalog_options,
    option,
)
from orchestrator.defaults import TOKEN_VARIABLES

if TYPE_CHECKING:
    from orchestrator.cli.base import Session
    from orchestrator.engine.runner import Connection
    from orchestrator.library.checking import CatalogOptions
    from orchestrator.livecatalog import LiveCatalog
    from orchestrator.store import Store


def environment_token() -> str | None:
    """The API token from the environment; None when unset or too short to mask (the
    catalog is then read offline: ``run`` refuses such a token with the reason)."""
    from orchestrator.redact import MIN_SECRET_LENGTH

    for name in TOKEN_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return value if len(value) >= MIN_SECRET_LENGTH else None
    return None


def environment_connection(api_base: str) -> Connection:
    """The API at ``api_base`` with the environment's token ("" when there is none: the
    catalog is then read offline)."""
    from orchestrator.engine.runner import Connection

    return Connection(api_base, environment_token() or "")


def live_catalog(
    options: CatalogOptions,
    store: Store | None,
    connection: Connection,
    *,
    ttl: float | None = None,
    refresh: bool = False,
) -> LiveCatalog:
    """The catalog for a command: the API of ``connection`` unless ``--offline``; the
    store's cache when a store is given (the library's, offline saying ``--offline``)."""
    from orchestrator.library.checking import catalog_for

    return catalog_for(
        store, connection, options, ttl=ttl, refresh=refresh, offline_reason="--offline"
    )


def show_sources(live: LiveCatalog, model_ids: list[str], out: TextIO) -> None:
    """Where each model of the manifest came from (text output of the manifest commands)."""
    from datetime import UTC, datetime

    from orchestrator.views_catalog import print_sources

    print_sources(live, model_ids, out, now=datetime.now(UTC))


def sources_json(live: LiveCatalog, model_ids: list[str]) -> list[dict[str, Any]]:
    return [live.sources[m].as_dict() for m in model_ids if m in live.sources]


@command("models", "The model catalog: sources and prices.")
@db_option
@json_option
@api_base_option
@live_catalog_options
@flag(
    "--refresh/--no-refresh",
    "ORCHESTRATOR_REFRESH",
    "fetch every known model's schema and price from the API now, into the store's cache",
)
@flag(
    "--remote/--local",
    "ORCHESTRATOR_REMOTE",
    "list the image-to-video models the API offers (id, name, price)",
)
@option(
    "--search",
    envvar="ORCHESTRATOR_SEARCH",
    help="with --remote: only models whose id or name contains this text",
)
@click.pass_obj
def models(
    session: Session,
    /,
    db: str,
    as_json: bool,
    api_base: str,
    catalog: str | None,
    offline: bool,
    catalog_ttl: float,
    refresh: bool,
    remote: bool,
    search: str | None,
) -> int:
    """List the model catalog, where each model came from, and its price.

    --refresh fetches every known model now; --remote lists what the API offers for
    image-to-video."""
    from datetime import UTC, datetime

    from orchestrator.library.checking import CatalogOptions, remember
    from orchestrator.store import Store
    from orchestrator.store.database import store_exists
    from orchestrator.views_catalog import print_models

    out = session.out
    if (remote or refresh) and (environment_token() is None or offline):
        why = "--offline" if offline else "no API token"
        print(
            f"error: {'--remote' if remote else '--refresh'} asks the API, but "
            f"{why}: set RUNCOMFY_API_TOKEN (or RUNCOMFY_TOKEN)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if remote:
        return _remote(api_base, search, as_json, out)
    options = CatalogOptions(catalog_dir=catalog, offline=offline, catalog_ttl=catalog_ttl)
    connection = environment_connection(api_base)
    # Only --refresh writes (and so may create the store); a listing reads what is there.
    store = Store.open(db) if refresh or store_exists(db) else None
    with store if store is not None else nullcontext():
        live = live_catalog(options, store, connection, refresh=refresh)
        cached = {entry.model_id for entry in live.cache.load_all()} if live.cache else set()
        for model_id in sorted({m.model_id for m in live} | cached):
            live.get(model_id)
        if store is not None:
            remember(live, store, connection)
        print_models(live, out, as_json=as_json, now=datetime.now(UTC))
    if live.offline_reason and refresh:
        print(f"error: {live.offline_reason}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _remote(api_base: str, search: str | None, as_json: bool, out: TextIO) -> int:
    from orchestrator.livecatalog import ApiFetcher, FetchFailed
    from orchestrator.views_catalog import print_remote_models

    token = environment_token()
    assert token is not None  # checked by the caller
    try:
        found = ApiFetcher(api_base, token).listing(search)
    except FetchFailed as exc:
        print(f"error: RunComfy's catalog could not be listed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print_remote_models(found, out, as_json=as_json)
    return EXIT_OK


COMMANDS = [models]
