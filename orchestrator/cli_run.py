"""The commands that do paid work: ``run``, ``work`` and ``reconcile`` (parse, call, print)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO, cast

import httpx

from orchestrator.catalog import Catalog
from orchestrator.cli_catalog import live_catalog, remember, show_sources
from orchestrator.cli_options import DEFAULT_API_BASE, OptionError
from orchestrator.engine.decisions import PollPolicy
from orchestrator.engine.paidwork import FetchPolicy
from orchestrator.engine.pool import EngineReport
from orchestrator.engine.progress import ProgressReporter
from orchestrator.engine.runner import (
    EXIT_INTERRUPTED,
    Connection,
    MissingToken,
    check_prices,
    drain,
    simulated_api,
    token_from_environment,
)
from orchestrator.engine.settings import EngineSettings
from orchestrator.livecatalog import LiveCatalog, cached_catalog
from orchestrator.logs import configure_logging
from orchestrator.manifest import BatchSettings
from orchestrator.planning import enqueue, output_root, stored_output_root, stored_settings
from orchestrator.store import JobState, Store
from orchestrator.store.catalog import CatalogCache
from orchestrator.store.database import store_exists
from orchestrator.store.work import WorkQueue
from orchestrator.views import print_run_summary, table

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_FETCH_PATIENCE = 1200.0


def engine_settings(
    args: argparse.Namespace, batch: str | None, manifest: BatchSettings | None
) -> EngineSettings:
    limits = manifest.limits if manifest else None
    retry = manifest.retry if manifest else None
    max_in_flight = _option(args.max_in_flight, int, "--max-in-flight", minimum=1) or (
        limits.max_in_flight if limits else 8
    )
    max_spend = _option(args.max_spend, float, "--max-spend", minimum=0)
    if max_spend is None and limits is not None:
        max_spend = limits.max_spend
    lease = _option(getattr(args, "lease_seconds", None), float, "--lease-seconds", minimum=1)
    patience = (
        _option(getattr(args, "fetch_patience", None), float, "--fetch-patience", minimum=0.01)
        or DEFAULT_FETCH_PATIENCE
    )
    fast = args.simulate  # simulated minutes last seconds: poll accordingly
    scale = _sim_scale(args) if fast else 1.0
    return EngineSettings(
        batch=batch,
        max_in_flight=max_in_flight,
        max_in_flight_per_model=limits.max_in_flight_per_model if limits else None,
        submits_per_second=limits.submits_per_second if limits else None,
        max_downloads=limits.max_downloads if limits else 4,
        max_spend=max_spend,
        base_delay=0.05 if fast else (retry.base_delay if retry else 2.0),
        max_delay=2.0 if fast else (retry.max_delay if retry else 300.0),
        poll=poll_policy(args),
        # Fetches of paid videos outlast an outage (20 minutes by default) before they
        # pause: simulated minutes with --simulate.
        fetch=FetchPolicy.lasting(patience * scale),
        idle_check=0.1 if fast else 0.5,
        cancel_on_exit=bool(args.cancel_on_exit),
        lease_seconds=lease or 60.0,
    )


class UsageError(ValueError):
    """An option value that cannot be used (exit status 2)."""


def _option(value: str | None, kind: type[int] | type[float], name: str, *, minimum: float) -> Any:
    """A numeric option from the command line or its environment variable, checked."""
    if value is None or value == "":
        return None
    try:
        number = kind(value)
    except ValueError:
        raise UsageError(f"{name} needs a number, got {value!r}") from None
    if number < minimum:
        raise UsageError(f"{name} must be at least {minimum:g}, got {value!r}")
    return number


def _sim_scale(args: argparse.Namespace) -> float:
    return float(_option(args.sim_time_scale, float, "--sim-time-scale", minimum=1e-6) or 0.02)


def poll_policy(args: argparse.Namespace) -> PollPolicy:
    """Poll bounds: the defaults suit real run times (a minute or more); ``--simulate``
    runs minutes in seconds and polls accordingly; ``--poll-min``/``--poll-max`` override."""
    policy = PollPolicy()
    if args.simulate:  # the simulator's seconds are shorter: the same schedule, scaled
        policy = policy.scaled(_sim_scale(args))
    low = _option(args.poll_min, float, "--poll-min", minimum=0.001) or policy.minimum
    high = _option(args.poll_max, float, "--poll-max", minimum=0.001) or max(policy.maximum, low)
    return replace(policy, minimum=low, maximum=max(low, high))


def connection_for(args: argparse.Namespace) -> AbstractContextManager[Connection]:
    """The simulator (``--simulate``) or the real API with the token from the environment."""
    if args.simulate:
        return simulated_api(args.sim_profile, _sim_scale(args), None)
    hosts = [h.strip() for h in (args.trust_host or "").split(",") if h.strip()]
    return nullcontext(Connection(args.api_base, token_from_environment(), hosts))


def run_batch(args: argparse.Namespace, out: TextIO, expand: Callable[[Catalog], Any]) -> int:
    """``run MANIFEST``: validate, enqueue, drain the batch, print the summary.

    The manifest is checked against the catalog of the API the run talks to (the simulator
    with ``--simulate``, whose catalog is always asked afresh) before anything is stored.
    """
    try:
        ttl = 0.0 if args.simulate else None
        with connection_for(args) as connection:
            existing = Store.open(args.db) if store_exists(args.db) else None
            with existing if existing is not None else nullcontext():
                live = live_catalog(
                    args, existing, api_base=connection.api_base, token=connection.token, ttl=ttl
                )
                try:
                    expansion = expand(live)
                finally:  # what the API said holds whatever the manifest says
                    if existing is not None:
                        remember(live, existing, connection.api_base)
            return _run_expanded(args, out, expansion, live, connection)
    except (MissingToken, UsageError, OptionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _run_expanded(
    args: argparse.Namespace,
    out: TextIO,
    expansion: Any,
    live: LiveCatalog,
    connection: Connection,
) -> int:
    root = output_root(expansion, args.out)
    batch = expansion.settings.batch
    settings = engine_settings(args, batch, expansion.settings)
    if settings.max_spend != expansion.settings.limits.max_spend:
        # --max-spend is stored with the batch: every worker draining it holds it too.
        limits = replace(expansion.settings.limits, max_spend=settings.max_spend)
        expansion = replace(expansion, settings=replace(expansion.settings, limits=limits))
    with Store.open(args.db) as store:
        remember(live, store, connection.api_base)
        show_sources(live, list(expansion.by_model()), out)
        result = enqueue(store, expansion, root)
        out.write(f"batch {batch!r}: {result.added} new job(s), {result.existing} already stored\n")
        out.flush()
        catalog = live.snapshot()
        _price_for_cap(store, batch, settings, connection, catalog, out)
        log_file = Path(stored_output_root(store, batch) or root) / "logs" / f"{batch}.jsonl"
        progress = progress_for(args, store, batch)
        # A live panel owns the terminal: log lines then go only to the batch log file.
        configure_logging(
            stream=cast(TextIO, _Discard()) if progress is not None and progress.live else None,
            json_file=log_file,
        )
        out.write(f"log: {log_file}\n")
        try:
            report = drain(WorkQueue(store), catalog, connection, settings, progress=progress)
        finally:
            configure_logging()  # closes the batch log file
        again = rerun_command(args, report, manifest=expansion.settings.manifest_path)
        return _finish(store, batch, report, out, settings, again)


class _Discard:
    """A write-only stream that drops everything (console logs under a live panel)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


def progress_for(
    args: argparse.Namespace, store: Store, batch: str | None
) -> ProgressReporter | None:
    """Live progress on stderr unless ``--quiet``: a panel on a terminal, else a line every
    30 s (every 2 s with ``--simulate``, whose minutes pass in seconds)."""
    if args.quiet:
        return None
    return ProgressReporter(store, batch, sys.stderr, interval=2.0 if args.simulate else 30.0)


def work(args: argparse.Namespace, out: TextIO) -> int:
    """``work``: drain whatever is queued (every batch, or ``--batch``)."""
    try:
        with connection_for(args) as connection, Store.open(args.db) as store:
            # A batch's own limits and retries, as its manifest set them, on every host.
            stored = stored_settings(store, args.batch) if args.batch else None
            settings = engine_settings(args, args.batch, stored)
            progress = progress_for(args, store, args.batch)
            # What the batch was validated against: the cache of this API, the files.
            cache = CatalogCache(store, httpx.URL(connection.api_base).host)
            catalog = cached_catalog(getattr(args, "catalog", None), cache)
            _price_for_cap(store, args.batch, settings, connection, catalog, out)
            report = drain(WorkQueue(store), catalog, connection, settings, progress=progress)
            return _finish(store, args.batch, report, out, settings, rerun_command(args, report))
    except (MissingToken, UsageError) as exc:
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
    capped = settings.max_spend is not None or (
        batch is None and any(_stored_cap(view.settings) is not None for view in store.batches())
    )
    if not capped:
        return
    pricing = check_prices(WorkQueue(store), catalog, connection, batch)
    for model_id, source in sorted(pricing.sources.items()):
        out.write(f"price of {model_id}: {source}\n")
    if pricing.unpriced:
        raise UsageError(
            "a spend cap is set, but no price is known for "
            + ", ".join(pricing.unpriced)
            + ": the price table has none, RunComfy's catalog (GET /v1/models/{id}) gives "
            "none, and RunComfy has billed no job of them yet. Pass --prices FILE (YAML: "
            "model id -> USD per second of video; see manifests/prices.example.yaml), or "
            "run without a cap. Nothing was submitted."
        )


def _stored_cap(settings: Any) -> float | None:
    limits = settings.get("limits") if isinstance(settings, dict) else None
    cap = limits.get("max_spend") if isinstance(limits, dict) else None
    return float(cap) if isinstance(cap, int | float) and not isinstance(cap, bool) else None


def rerun_command(
    args: argparse.Namespace, report: EngineReport, *, manifest: str | None = None
) -> str:
    """The command that fetches what this run paid for and could not fetch (a re-run),
    with the options it needs, the trust a host-not-allowed breaker asks for included."""
    parts = ["orchestrator"]
    if manifest is not None:
        parts += ["run", shlex.quote(manifest)]
    else:
        parts += ["work"] + (["--batch", shlex.quote(args.batch)] if args.batch else [])
    parts += ["--db", shlex.quote(str(args.db))]
    if args.simulate:
        parts.append("--simulate")
    elif args.api_base != DEFAULT_API_BASE:
        parts += ["--api-base", shlex.quote(args.api_base)]
    hosts = [h.strip() for h in (args.trust_host or "").split(",") if h.strip()]
    # A host-not-allowed breaker stays open (a setting must change): the run keeps it.
    wanted = report.breaker.host if report.breaker is not None else None
    if wanted is not None and wanted not in hosts:
        hosts.append(wanted)
    if hosts:
        parts += ["--trust-host", shlex.quote(",".join(hosts))]
    return " ".join(parts)


def _finish(
    store: Store,
    batch: str | None,
    report: EngineReport,
    out: TextIO,
    settings: EngineSettings,
    fetch_command: str,
) -> int:
    if batch is not None:
        _write_report(store, batch)
    print_run_summary(
        store, batch, report, out, cap=settings.max_spend, fetch_command=fetch_command
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
    from orchestrator.outputs.report import write_report

    try:
        write_report(store, batch)
    except Exception as exc:  # the videos and the store are what matter here
        print(f"warning: the report could not be written: {exc}", file=sys.stderr)


def reconcile(args: argparse.Namespace, out: TextIO) -> int:
    """``reconcile``: list jobs whose submit outcome is unknown; ``--resubmit`` re-queues
    them as new paid attempts (after you checked RunComfy's dashboard)."""
    with Store.open(args.db) as store:
        waiting = store.list_jobs(batch=args.batch, state=JobState.NEEDS_RECONCILE.value)
        late = store.late_request_ids(args.batch)
        names = [n.strip() for n in (args.ids or "").split(",") if n.strip()] or None
        if names:
            waiting = [j for j in waiting if j.id in names]
        moved: list[str] = []
        if args.resubmit:
            queue = WorkQueue(store)
            for batch in sorted({j.batch for j in waiting}):
                moved += queue.user_action(
                    batch,
                    [j.id for j in waiting if j.batch == batch],
                    [JobState.NEEDS_RECONCILE],
                    JobState.PENDING,
                    "resubmit",
                    {"error": None},
                )
    if args.json:
        json.dump(
            {
                "needs_reconcile": [
                    {**j.as_dict(), "late_request_ids": late.get((j.batch, j.id), [])}
                    for j in waiting
                ],
                "resubmitted": moved,
            },
            out,
            indent=2,
            default=str,
        )
        out.write("\n")
        return EXIT_OK
    if not waiting:
        out.write("no job needs reconciling\n")
        return EXIT_OK
    rows = [[j.batch, j.id, j.model, j.attempts, j.error or ""] for j in waiting]
    out.write(table(rows, ["batch", "job", "model", "tries", "why"], {3}) + "\n")
    for (batch, name), ids in sorted(late.items()):
        # A worker paused past its lease got these after its job was parked: RunComfy
        # accepted the submit, so it is paid for and can be looked up, not resubmitted.
        out.write(
            f"{batch}/{name}: RunComfy accepted it as request {', '.join(ids)} "
            "(answer reached a worker that had lost its lease)\n"
        )
    if args.resubmit:
        out.write(
            f"{len(moved)} job(s) queued again as new paid attempts; "
            "'orchestrator work' or 'run' submits them\n"
        )
    else:
        out.write(
            "These submits may have reached RunComfy (and may be billed). Check your "
            "RunComfy generations, then: orchestrator reconcile --resubmit [--ids a,b]\n"
        )
    return EXIT_OK
