"""The commands that read a manifest before anything runs: ``validate``, ``plan`` and
``enqueue`` (and :func:`expand`, shared with ``run``)."""

from __future__ import annotations

import functools
import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.base import command
from orchestrator.cli.catalog import environment_connection, live_catalog, show_sources
from orchestrator.cli.catalog import sources_json as _sources_json
from orchestrator.cli.exits import EXIT_OK
from orchestrator.cli.options import api_base_option, flag, manifest_options
from orchestrator.cli.stores import store_if_any
from orchestrator.defaults import DEFAULT_API_BASE

if TYPE_CHECKING:
    from collections.abc import Iterator

    from orchestrator.catalog import Catalog
    from orchestrator.cli.base import Session
    from orchestrator.engine.runner import Connection
    from orchestrator.library.checking import CatalogOptions
    from orchestrator.livecatalog import LiveCatalog
    from orchestrator.manifest import Expansion
    from orchestrator.store import Store


@dataclass(frozen=True)
class ManifestOptions:
    """The options of a command that reads a manifest (see ``manifest_options``)."""

    manifest: str
    db: str
    as_json: bool
    out: str | None
    api_base: str
    catalog: CatalogOptions
    """``--catalog``, ``--prices``, ``--offline``, ``--catalog-ttl``, ``--probe-urls``,
    ``--allow-unknown-model``, as the library takes them."""

    @classmethod
    def of(cls, params: dict[str, Any]) -> ManifestOptions:
        """From a command's parameters (what is not a manifest option is left for it)."""
        from orchestrator.library.checking import CatalogOptions

        return cls(
            manifest=params["manifest"],
            db=params["db"],
            as_json=params["as_json"],
            out=params["out"],
            api_base=params.get("api_base") or DEFAULT_API_BASE,
            catalog=CatalogOptions(
                catalog_dir=params["catalog"],
                prices=params["prices"] or None,
                offline=params["offline"],
                catalog_ttl=params["catalog_ttl"],
                probe_urls=params["probe_urls"],
                allow_unknown_model=params["allow_unknown_model"],
            ),
        )

    @property
    def prices(self) -> str | None:
        """``--prices FILE``."""
        prices = self.catalog.prices
        return None if prices is None else str(prices)


def expand(options: ManifestOptions, catalog: Catalog) -> Expansion:
    """Read and check the manifest against ``catalog``, and check the output side, before
    anything is stored or paid for (the library's :func:`expand_checked`)."""
    from orchestrator.library.checking import expand_checked
    from orchestrator.manifest import load_manifest

    load = functools.partial(load_manifest, options.manifest)
    return expand_checked(load, catalog, options.catalog, options.out)


def sources_json(live: LiveCatalog, expansion: Expansion) -> list[dict[str, Any]]:
    return _sources_json(live, list(expansion.by_model()))


@command("validate", "Check a manifest (nothing stored or sent).")
@manifest_options
@api_base_option
@click.pass_obj
def validate(session: Session, /, **params: Any) -> int:
    """Check a manifest and its images against the catalog (nothing stored or submitted)."""
    from orchestrator.views import print_problems

    options, out = ManifestOptions.of(params), session.out
    # Reads the store's cache when there is one, and never writes (nothing is stored).
    with store_if_any(options.db) as store:
        live = live_catalog(options.catalog, store, environment_connection(options.api_base))
        expansion = expand(options, live)
    by_model = expansion.by_model()
    if options.as_json:
        json.dump(
            {
                "ok": True,
                "batch": expansion.settings.batch,
                "jobs": len(expansion.jobs),
                "models": {m: len(j) for m, j in by_model.items()},
                "catalog": sources_json(live, expansion),
                "warnings": [w.as_dict() for w in expansion.warnings],
                "problems": [],
            },
            out,
            indent=2,
        )
        out.write("\n")
        return EXIT_OK
    print_problems([], expansion.warnings, out, as_json=False)
    models = ", ".join(f"{len(j)} x {m}" for m, j in by_model.items())
    out.write(
        f"ok: {options.manifest}: batch {expansion.settings.batch!r}, "
        f"{len(expansion.jobs)} job(s): {models}\n"
    )
    show_sources(live, list(by_model), out)
    return EXIT_OK


@command("plan", "The jobs of a manifest, the diff, the cost.")
@manifest_options
@api_base_option
@flag(
    "--list/--first-20",
    "ORCHESTRATOR_LIST",
    "list every job (default: the first 20)",
    dest="list_all",
)
@click.pass_obj
def plan(session: Session, /, list_all: bool, **params: Any) -> int:
    """Show the jobs a manifest creates, the diff with the store and the cost."""
    from orchestrator.planning import output_root, summarize
    from orchestrator.views import print_plan

    options, out = ManifestOptions.of(params), session.out
    states: dict[str, str] = {}
    connection = environment_connection(options.api_base)
    with store_if_any(options.db) as store:
        live = live_catalog(options.catalog, store, connection)
        with _remembered(live, store, connection):
            expansion = expand(options, live)
        if store is not None:
            states = {k: v.value for k, v in store.states_by_key(expansion.settings.batch).items()}
    summary = summarize(expansion, states)
    print_plan(
        expansion,
        summary,
        states,
        output_root(expansion, options.out),
        out,
        as_json=options.as_json,
        list_all=list_all,
        extra={"catalog": sources_json(live, expansion)} if options.as_json else None,
    )
    if not options.as_json:
        show_sources(live, [*expansion.by_model()], out)
    return EXIT_OK


@command("enqueue", "Add a manifest's new jobs to the store.")
@manifest_options
@api_base_option
@click.pass_obj
def enqueue(session: Session, /, **params: Any) -> int:
    """Validate a manifest and add its new jobs to the store (submits nothing)."""
    from orchestrator.planning import enqueue as add_jobs
    from orchestrator.planning import output_root, stored_output_root
    from orchestrator.store import Store

    options, out = ManifestOptions.of(params), session.out
    from orchestrator.library.checking import remember

    connection = environment_connection(options.api_base)
    with store_if_any(options.db) as existing:
        live = live_catalog(options.catalog, existing, connection)
        with _remembered(live, existing, connection):
            expansion = expand(options, live)
    root = output_root(expansion, options.out)
    with Store.open(options.db) as store:
        remember(live, store, connection)
        kept_root = stored_output_root(store, expansion.settings.batch)
        result = add_jobs(store, expansion, root)
    if kept_root is not None and kept_root != str(root):
        print(
            f"note: batch {expansion.settings.batch!r} keeps the output folder it was first "
            f"enqueued with: {kept_root} (not {root})",
            file=sys.stderr,
        )
    if options.as_json:
        json.dump(
            {
                "batch": expansion.settings.batch,
                "added": result.added,
                "existing": result.existing,
                "renamed": [[*pair] for pair in result.renamed],
                "catalog": sources_json(live, expansion),
            },
            out,
        )
        out.write("\n")
        return EXIT_OK
    out.write(
        f"batch {expansion.settings.batch!r}: {result.added} job(s) added, "
        f"{result.existing} already stored\n"
    )
    for old, new in result.renamed:
        out.write(f"  note: {old!r} is taken by an earlier version of the job; stored as {new!r}\n")
    show_sources(live, [*expansion.by_model()], out)
    return EXIT_OK


@contextmanager
def _remembered(live: LiveCatalog, store: Store | None, connection: Connection) -> Iterator[None]:
    """Cache what was fetched once the block ends, even when the manifest was refused: the
    entries are the API's, whatever the manifest says."""
    from orchestrator.library.checking import remember

    try:
        yield
    finally:
        if store is not None:
            remember(live, store, connection)


COMMANDS = [validate, plan, enqueue]
