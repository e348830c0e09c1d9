"""The commands that do paid work: ``run`` and ``work`` (parse, call, print)."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import click

from orchestrator.cli.base import command
from orchestrator.cli.catalog import live_catalog, show_sources
from orchestrator.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from orchestrator.cli.hints import hinted, rerun_command
from orchestrator.cli.manifests import ManifestOptions, expand
from orchestrator.cli.options import (
    batch_option,
    catalog_option,
    db_option,
    engine_options,
    hosts_of,
    json_option,
    manifest_options,
)
from orchestrator.cli.stores import existing_store
from orchestrator.defaults import DEFAULT_API_BASE, DEFAULT_SIM_TIME_SCALE

if TYPE_CHECKING:
    from orchestrator.catalog import Catalog
    from orchestrator.cli.base import Session
    from orchestrator.engine.pool import EngineReport
    from orchestrator.engine.progress import ProgressReporter
    from orchestrator.engine.runner import Connection
    from orchestrator.engine.settings import EngineSettings
    from orchestrator.livecatalog import LiveCatalog
    from orchestrator.manifest import BatchSettings, Expansion
    from orchestrator.store import Store


class Unpriced(ValueError):
    """A spend cap without a price for every model to submit (exit 2)."""


@dataclass(frozen=True)
class EngineOptions:
    """The options of ``run`` and ``work`` (see ``engine_options``)."""

    db: str
    api_base: str = DEFAULT_API_BASE
    simulate: bool = False
    sim_profile: str = "calm"
    sim_time_scale: float = DEFAULT_SIM_TIME_SCALE
    max_in_flight: int | None = None
    max_spend: float | None = None
    trust_host: str | None = None
    poll_min: float | None = None
    poll_max: float | None = None
    fetch_patience: float | None = None
    lease_seconds: float | None = None
    quiet: bool = False
    cancel_on_exit: bool = False

    @classmethod
    def of(cls, params: dict[str, Any]) -> EngineOptions:
        names = cls.__dataclass_fields__
        return cls(**{name: params[name] for name in names if name in params})

    def settings(self, batch: str | None, manifest: BatchSettings | None) -> EngineSettings:
        from orchestrator.library.settings import RunOptions, engine_settings

        options = RunOptions(
            max_in_flight=self.max_in_flight,
            max_spend=self.max_spend,
            poll_min=self.poll_min,
            poll_max=self.poll_max,
            fetch_patience=self.fetch_patience,
            lease_seconds=self.lease_seconds,
            cancel_on_exit=self.cancel_on_exit,
        )
        scale = self.sim_time_scale if self.simulate else None
        return engine_settings(batch, manifest, options, time_scale=scale)


def connection_for(
    *,
    simulate: bool = False,
    sim_profile: str = "calm",
    sim_time_scale: float = DEFAULT_SIM_TIME_SCALE,
    api_base: str = DEFAULT_API_BASE,
    trust_host: str | None = None,
) -> AbstractContextManager[Connection]:
    """The simulator (``--simulate``) or the real API with the token from the environment."""
    from orchestrator.engine.runner import Connection, simulated_api, token_from_environment

    if simulate:
        return simulated_api(sim_profile, sim_time_scale, None)
    return nullcontext(Connection(api_base, token_from_environment(), hosts_of(trust_host)))


def _connection(options: EngineOptions) -> AbstractContextManager[Connection]:
    return connection_for(
        simulate=options.simulate,
        sim_profile=options.sim_profile,
        sim_time_scale=options.sim_time_scale,
        api_base=options.api_base,
        trust_host=options.trust_host,
    )


@command("run", "Enqueue a manifest and work until it is done.")
@manifest_options
@engine_options
@click.pass_obj
def run(session: Session, /, **params: Any) -> int:
    """Enqueue a manifest and work until every job of the batch is finished.

    The manifest is checked against the catalog of the API the run talks to (the simulator
    with --simulate, whose catalog is always asked afresh) before anything is stored.
    """
    from orchestrator.engine.runner import MissingToken
    from orchestrator.library.checking import remember
    from orchestrator.store import Store
    from orchestrator.store.database import store_exists

    manifest, options = ManifestOptions.of(params), EngineOptions.of(params)
    try:
        ttl = 0.0 if options.simulate else None
        with _connection(options) as connection:
            existing = Store.open(options.db) if store_exists(options.db) else None
            with existing if existing is not None else nullcontext():
                live = live_catalog(manifest.catalog, existing, connection, ttl=ttl)
                try:
                    expansion = expand(manifest, live)
                finally:  # what the API said holds whatever the manifest says
                    if existing is not None:
                        remember(live, existing, connection)
            return _run_expanded(manifest, options, session.out, expansion, live, connection)
    except (MissingToken, Unpriced) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _run_expanded(
    manifest: ManifestOptions,
    options: EngineOptions,
    out: TextIO,
    expansion: Expansion,
    live: LiveCatalog,
    connection: Connection,
) -> int:
    from orchestrator.engine.runner import drain
    from orchestrator.library.checking import remember
    from orchestrator.library.settings import with_spend_cap
    from orchestrator.logs import configure_logging
    from orchestrator.planning import enqueue, output_root, stored_output_root
    from orchestrator.store import Store
    from orchestrator.store.work import WorkQueue

    root = output_root(expansion, manifest.out)
    batch = expansion.settings.batch
    settings = options.settings(batch, expansion.settings)
    expansion = with_spend_cap(expansion, settings.max_spend)  # --max-spend
    with Store.open(options.db) as store:
        remember(live, store, connection)
        show_sources(live, list(expansion.by_model()), out)
        result = enqueue(store, expansion, root)
        out.write(f"batch {batch!r}: {result.added} new job(s), {result.existing} already stored\n")
        out.flush()
        catalog = live.snapshot()
        _price_for_cap(store, batch, settings, connection, catalog, out)
        log_file = Path(stored_output_root(store, batch) or root) / "logs" / f"{batch}.jsonl"
        progress = progress_for(options, store, batch)
        # A live panel owns the terminal: log lines then go only to the batch log file.
        configure_logging(
            stream=cast("TextIO", _Discard()) if progress is not None and progress.live else None,
            json_file=log_file,
        )
        out.write(f"log: {log_file}\n")
        try:
            report = drain(WorkQueue(store), catalog, connection, settings, progress=progress)
        finally:
            configure_logging()  # closes the batch log file
        again = rerun_command(
            report,
            db=options.db,
            manifest=expansion.settings.manifest_path,
            out=manifest.out,
            prices=manifest.prices,
            simulate=options.simulate,
            api_base=options.api_base,
            trust_host=options.trust_host,
        )
        return _finish(store, batch, report, out, settings, again, options.db)


class _Discard:
    """A write-only stream that drops everything (console logs under a live panel)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


def progress_for(
    options: EngineOptions, store: Store, batch: str | None
) -> ProgressReporter | None:
    """Live progress on stderr unless ``--quiet``: a panel on a terminal, else a line every
    30 s (every 2 s with ``--simulate``, whose minutes pass in seconds)."""
    from orchestrator.engine.progress import ProgressReporter

    if options.quiet:
        return None
    return ProgressReporter(store, batch, sys.stderr, interval=2.0 if options.simulate else 30.0)


@command("work")
@db_option
@json_option
@batch_option(required=False)
@catalog_option
@engine_options
@click.pass_obj
def work(
    session: Session, /, as_json: bool, batch: str | None, catalog: str | None, **params: Any
) -> int:
    """Drain whatever is queued (every batch, or --batch)."""
    from orchestrator.engine.runner import MissingToken, drain
    from orchestrator.library.checking import api_host
    from orchestrator.livecatalog import cached_catalog
    from orchestrator.planning import stored_settings
    from orchestrator.store.catalog import CatalogCache
    from orchestrator.store.work import WorkQueue

    options = EngineOptions.of(params)
    try:
        with _connection(options) as connection, existing_store(options.db) as store:
            # A batch's own limits and retries, as its manifest set them, on every host.
            stored = stored_settings(store, batch) if batch else None
            settings = options.settings(batch, stored)
            progress = progress_for(options, store, batch)
            # What the batch was validated against: the cache of this API, the files.
            cache = CatalogCache(store, api_host(connection.api_base))
            known = cached_catalog(catalog, cache)
            _price_for_cap(store, batch, settings, connection, known, session.out)
            report = drain(WorkQueue(store), known, connection, settings, progress=progress)
            again = rerun_command(
                report,
                db=options.db,
                batch=batch,
                simulate=options.simulate,
                api_base=options.api_base,
                trust_host=options.trust_host,
            )
            return _finish(store, batch, report, session.out, settings, again, options.db)
    except (MissingToken, Unpriced) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _price_for_cap(
    store: Store,
    batch: str | None,
    settings: EngineSettings,
    connection: Connection,
    catalog: Catalog,
    out: TextIO,
) -> None:
    """Under a spend cap, every job that may be submitted needs a price before the first
    submit (see :mod:`orchestrator.engine.prices`); refuse to start (exit 2) otherwise."""
    import anyio

    from orchestrator.library.running import price_jobs, unpriced_problem
    from orchestrator.store.work import WorkQueue

    capped = settings.max_spend is not None or (
        batch is None and any(_stored_cap(view.settings) is not None for view in store.batches())
    )
    if not capped:
        return
    pricing = anyio.run(price_jobs, WorkQueue(store), catalog, connection, batch)
    for model_id, source in sorted(pricing.sources.items()):
        out.write(f"price of {model_id}: {source}\n")
    if pricing.unpriced:
        raise Unpriced(unpriced_problem(pricing.unpriced, "--prices FILE").message)


def _stored_cap(settings: Any) -> float | None:
    limits = settings.get("limits") if isinstance(settings, dict) else None
    cap = limits.get("max_spend") if isinstance(limits, dict) else None
    return float(cap) if isinstance(cap, int | float) and not isinstance(cap, bool) else None


def _finish(
    store: Store,
    batch: str | None,
    report: EngineReport,
    out: TextIO,
    settings: EngineSettings,
    fetch_command: str,
    db: str,
) -> int:
    from orchestrator.store import JobState
    from orchestrator.views import print_run_summary

    if batch is not None:
        _write_report(store, batch)
    with hinted(out, db) as summary:
        print_run_summary(
            store, batch, report, summary, cap=settings.max_spend, fetch_command=fetch_command
        )
    if report.stopped_by == "interrupted":
        return EXIT_INTERRUPTED
    if report.auth_error or report.lease_lost or report.storage_error:
        return EXIT_FAILED
    counts = store.counts(batch)
    total = sum(counts.values())
    return EXIT_OK if total and counts[JobState.SUCCEEDED.value] == total else EXIT_FAILED


def _write_report(store: Store, batch: str) -> None:
    """Refresh the batch's review page; a report problem never fails a finished run."""
    from orchestrator.library.running import write_report_safely

    for warning in write_report_safely(store, batch):
        print(f"warning: {warning}", file=sys.stderr)


COMMANDS = [run, work]
