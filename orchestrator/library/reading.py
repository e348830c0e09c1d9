"""Reading a store from Python: ``status``, ``jobs``, ``export``, ``report``.

None of them creates a store: a path where there is none is an
:class:`~orchestrator.problems.InputError` naming it, as is a batch the store does not
hold (with the ones it does).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from orchestrator.catalog import load_catalog
from orchestrator.library.batch import Db, db_of
from orchestrator.library.results import Status
from orchestrator.planning import stored_settings
from orchestrator.problems import InputError, Problem, closest, show_value
from orchestrator.store import JobState, JobView, Store
from orchestrator.store.database import store_exists
from orchestrator.store.money import money
from orchestrator.store.work import WorkQueue
from orchestrator.store.workers import WorkerRegistry

if TYPE_CHECKING:
    from collections.abc import Iterator

    from orchestrator.outputs.export import ExportResult
    from orchestrator.outputs.report import ReportResult

ExportFormat = Literal["jsonl", "csv", "hf"]


class NoStore(InputError):
    """No store at ``path``: what only reads never creates one."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__([Problem(f"no store at {path}: enqueue or run a batch first", field="db")])


class UnknownBatch(InputError):
    """A batch the store does not hold; ``names`` are the ones it does."""

    def __init__(self, batch: str, names: list[str]) -> None:
        self.batch, self.names = batch, names
        near = closest(batch, names)
        super().__init__(
            [
                Problem(
                    f"no batch {show_value(batch)} in this store; it holds: "
                    + (", ".join(names) if names else "no batch yet"),
                    field="batch",
                    hint=f"did you mean {near!r}?" if near else None,
                )
            ]
        )


@contextmanager
def open_existing(db: Db) -> Iterator[Store]:
    """The store at ``db`` (never created here; :class:`NoStore` when there is none); one
    given open stays open."""
    target = db_of(db)
    if isinstance(target, Store):
        yield target
        return
    assert target is not None
    if not store_exists(target):
        raise NoStore(target)
    with Store.open(target) as store:
        yield store


def known_batch(store: Store, batch: str | None) -> None:
    """Nothing when ``batch`` is None or stored; else :class:`UnknownBatch`, listing the
    batches the store holds."""
    if batch is None:
        return
    names = [view.name for view in store.batches()]
    if batch not in names:
        raise UnknownBatch(batch, names)


def batch_cap(store: Store, batch: str | None) -> float | None:
    """The spend cap stored with ``batch`` (None for no cap, or no batch named)."""
    if batch is None:
        return None
    settings = stored_settings(store, batch)
    return settings.limits.max_spend if settings is not None else None


def status(db: Db, batch: str | None = None) -> Status:
    """Counts by state, spend, cost per model and live workers, of ``batch`` or of every
    batch in the store."""
    with open_existing(db) as store:
        known_batch(store, batch)
        cap = batch_cap(store, batch)
        return Status(
            batch=batch,
            counts=store.counts(batch),
            spend_usd=store.spend(batch),
            batches=[b for b in store.batches() if batch is None or b.name == batch],
            by_model=store.counts_by_model(batch),
            money=money(store, batch),
            cost_by_model=store.cost_by_model(batch),
            workers=WorkerRegistry(WorkQueue(store)).live(),
            cap=cap,
        )


def jobs(
    db: Db,
    batch: str | None = None,
    *,
    state: JobState | str | None = None,
    model: str | None = None,
    limit: int | None = None,
) -> list[JobView]:
    """Jobs in enqueue order, filtered by batch, state and model id."""
    wanted = state.value if isinstance(state, JobState) else state
    if wanted is not None and wanted not in {s.value for s in JobState}:
        raise InputError(
            [
                Problem(
                    f"unknown state {show_value(wanted)}; known: "
                    + ", ".join(s.value for s in JobState),
                    field="state",
                )
            ]
        )
    with open_existing(db) as store:
        known_batch(store, batch)
        return store.list_jobs(batch=batch, state=wanted, model=model, limit=limit)


def export(
    db: Db,
    batch: str,
    format: ExportFormat = "jsonl",
    *,
    dest: str | os.PathLike[str] | None = None,
    catalog_dir: str | os.PathLike[str] | None = None,
) -> ExportResult:
    """Write the batch's videos as a dataset: ``jsonl``, ``csv`` or ``hf`` (a Hugging Face
    videofolder), to ``dest`` or beside the batch's videos."""
    from orchestrator.outputs.export import ExportError, export_batch

    with open_existing(db) as store:
        known_batch(store, batch)
        try:
            return export_batch(
                store,
                batch,
                format,
                None if dest is None else Path(dest),
                load_catalog(None if catalog_dir is None else os.fspath(catalog_dir)),
            )
        except ExportError as exc:
            raise InputError([Problem(str(exc), field="format")]) from exc


def report(db: Db, batch: str, *, dest: str | os.PathLike[str] | None = None) -> ReportResult:
    """Write the batch's static HTML review page (``<videos>/<batch>/report.html``)."""
    from orchestrator.outputs.report import ReportError, write_report

    with open_existing(db) as store:
        known_batch(store, batch)
        try:
            return write_report(store, batch, None if dest is None else Path(dest))
        except ReportError as exc:
            raise InputError([Problem(str(exc), field="dest")]) from exc
