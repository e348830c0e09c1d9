"""Running a batch from Python: sync, or awaited in the caller's event loop.

:func:`run_async` runs the engine on the loop that awaits it (a notebook's, an async
application's): the blocking parts (reading the manifest and images, the store's writes)
go to worker threads, so the loop keeps serving while the batch runs. :func:`run` is
the same run on a loop of its own, started in a worker thread when the calling thread
already runs one (where ``anyio.run`` would fail with "Already running asyncio in this
thread"). :func:`drain_async` is the engine's run itself.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import structlog

from orchestrator.api import RunComfyClient
from orchestrator.engine.prices import Pricing, price_unpriced
from orchestrator.engine.runner import Connection, drain_async
from orchestrator.library.batch import Api, Batch, BatchLike, Checked, Db, as_batch, db_of
from orchestrator.library.checking import remember, writable_store
from orchestrator.library.loops import loop_running, off_the_loop
from orchestrator.library.results import RunResult
from orchestrator.library.settings import RunOptions, engine_settings, with_spend_cap
from orchestrator.library.simulation import Simulation
from orchestrator.logs import configure_logging, register_secret
from orchestrator.planning import enqueue, stored_output_root
from orchestrator.problems import InputError, Problem
from orchestrator.store.prices import PriceBook
from orchestrator.store.work import WorkQueue

if TYPE_CHECKING:
    from typing import TextIO

    from orchestrator.catalog import Catalog
    from orchestrator.store import Store


#: How :func:`unpriced_problem` tells a Python caller to give a price table.
PRICE_TABLE_HINT = "a price table"


async def price_jobs(
    queue: WorkQueue, catalog: Catalog, connection: Connection, batch: str | None
) -> Pricing:
    """Price every job of ``batch`` (every batch when None) that a spend cap may let
    through, asking the API where the table and the catalog have no price (see
    :mod:`orchestrator.engine.prices`); what is still unpriced is in the result."""
    register_secret(connection.token)
    async with RunComfyClient(connection.api_base, token=connection.token) as api:
        return await price_unpriced(PriceBook(queue), api, catalog, batch)


def unpriced_problem(unpriced: list[str], hint: str = PRICE_TABLE_HINT) -> Problem:
    """Why a capped run cannot start: ``unpriced`` models have no price; ``hint`` names how
    to give one (the command line says ``--prices FILE``)."""
    return Problem(
        "a spend cap is set, but no price is known for "
        + ", ".join(unpriced)
        + ": the price table has none, RunComfy's catalog (GET /v1/models/{id}) gives "
        f"none, and RunComfy has billed no job of them yet. Pass {hint} (YAML: model id "
        "-> USD per second of video; see manifests/prices.example.yaml), or run without a "
        "cap. Nothing was submitted.",
        field="max_spend",
    )


async def prices_for_cap(
    queue: WorkQueue, catalog: Catalog, connection: Connection, batch: str | None
) -> Pricing:
    """Under a spend cap every job that may be submitted needs a price before the first
    submit (see :mod:`orchestrator.engine.prices`); an :class:`InputError` when a model
    has none."""
    pricing = await price_jobs(queue, catalog, connection, batch)
    if pricing.unpriced:
        raise InputError([unpriced_problem(pricing.unpriced)])
    return pricing


async def run_async(
    batch: BatchLike,
    *,
    db: Db,
    api: Api = None,
    options: RunOptions | None = None,
    progress: TextIO | None = None,
    watch_signals: bool = False,
) -> RunResult:
    """Check and enqueue ``batch``, then work until every job of it is finished, on the
    loop that awaits this; ``progress``: a stream to show live progress on (a redrawn
    panel on a terminal, a line every 30 s elsewhere). Raises :class:`InputError` for
    input it cannot use (before anything is stored) and a missing token (set
    ``RUNCOMFY_API_TOKEN``, or pass ``api=`` a :func:`~orchestrator.simulate` simulator)."""
    options = options or RunOptions()
    if not structlog.is_configured():
        # Redacted log lines (the token masked), info and up, on stderr; a caller who set
        # structlog up keeps their own.
        configure_logging()
    time_scale = api.time_scale if isinstance(api, Simulation) else None
    batch = as_batch(batch)
    checked = await anyio.to_thread.run_sync(_checked_for_a_run, batch, db, api)
    expansion, live, connection = checked.expansion, checked.live, checked.connection
    name = expansion.settings.batch
    settings = engine_settings(name, expansion.settings, options, time_scale=time_scale)
    expansion = with_spend_cap(expansion, settings.max_spend)
    root = batch.root(expansion)
    with writable_store(db_of(db) or "") as store:

        def record() -> tuple[int, int, Path]:
            remember(live, store, connection)
            result = enqueue(store, expansion, root)
            return result.added, result.existing, Path(stored_output_root(store, name) or root)

        added, existing, kept = await anyio.to_thread.run_sync(record)
        catalog = live.snapshot()
        queue = WorkQueue(store)
        pricing = Pricing()
        if settings.max_spend is not None:
            pricing = await prices_for_cap(queue, catalog, connection, name)
        reporter = None
        if progress is not None:
            from orchestrator.engine.progress import ProgressReporter

            # A panel on a terminal, else a line every 30 s (2 s on the simulator's clock).
            interval = 30.0 if time_scale is None else 2.0
            reporter = ProgressReporter(store, name, progress, interval=interval)
        report = await drain_async(
            queue, catalog, connection, settings, watch_signals=watch_signals, progress=reporter
        )
        warnings = await anyio.to_thread.run_sync(write_report_safely, store, name)
        counts = await anyio.to_thread.run_sync(store.counts, name)
    return RunResult(
        batch=name,
        report=report,
        counts=counts,
        added=added,
        existing=existing,
        output_root=kept,
        prices=dict(pricing.sources),
        warnings=warnings,
    )


def run(
    batch: BatchLike,
    *,
    db: Db,
    api: Api = None,
    options: RunOptions | None = None,
    stop_on_signals: bool = False,
    progress: TextIO | None = None,
) -> RunResult:
    """:func:`run_async` on an event loop of its own; called where a loop runs
    already (a notebook cell), the run goes to a worker thread and this call blocks until
    it ends (``await batch.run_async(...)`` keeps the loop serving instead).

    ``stop_on_signals`` stops the run gracefully on SIGINT, SIGTERM or SIGHUP, as the
    command line does (the main thread only; a second signal exits the process).
    """
    # Signal handlers can only be installed by the main thread, outside a running loop.
    signals = (
        stop_on_signals
        and threading.current_thread() is threading.main_thread()
        and not loop_running()
    )
    work = functools.partial(
        run_async,
        batch,
        db=db,
        api=api,
        options=options,
        progress=progress,
        watch_signals=signals,
    )
    result: RunResult = off_the_loop(anyio.run, work)
    return result


def _checked_for_a_run(batch: Batch, db: Db, api: Api) -> Checked:
    """The batch checked against the catalog of the API the run talks to (a token
    needed)."""
    with batch.checked(db, api, required=True) as checked:
        return checked


def write_report_safely(store: Store, batch: str) -> list[str]:
    """Refresh the batch's review page; a report problem never fails a finished run (it
    is returned, as a warning to show)."""
    from orchestrator.outputs.report import write_report

    try:
        write_report(store, batch)
    except Exception as exc:  # the videos and the store are what matter here
        return [f"the report could not be written: {exc}"]
    return []
