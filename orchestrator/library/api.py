"""The public functions: each takes a :class:`Batch` or a manifest path.

``orchestrator.run("manifest.yaml", db="runs.db", api=sim)`` is
``Batch.from_manifest("manifest.yaml").run(db="runs.db", api=sim)``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from orchestrator.library.batch import Api, Batch, Db
from orchestrator.library.results import Enqueued, Plan, RunResult, Validation
from orchestrator.library.settings import RunOptions

if TYPE_CHECKING:
    from typing import TextIO


#: A batch, or the path of its manifest.
BatchLike = Batch | str | os.PathLike[str]


def as_batch(batch: BatchLike) -> Batch:
    """``batch`` itself, or the batch its manifest path describes."""
    return batch if isinstance(batch, Batch) else Batch.from_manifest(batch)


def validate(batch: BatchLike, *, db: Db | None = None, api: Api = None) -> Validation:
    """Check a batch; its problems are returned (see :meth:`Batch.validate`)."""
    return as_batch(batch).validate(db=db, api=api)


def plan(batch: BatchLike, *, db: Db | None = None, api: Api = None) -> Plan:
    """Jobs per model, new / stored / done, and the cost (see :meth:`Batch.plan`)."""
    return as_batch(batch).plan(db=db, api=api)


def enqueue(batch: BatchLike, *, db: Db, api: Api = None) -> Enqueued:
    """Add a batch's new jobs to the store; submits nothing (see :meth:`Batch.enqueue`)."""
    return as_batch(batch).enqueue(db=db, api=api)


def run(
    batch: BatchLike,
    *,
    db: Db,
    api: Api = None,
    options: RunOptions | None = None,
    stop_on_signals: bool = False,
    progress: TextIO | None = None,
) -> RunResult:
    """Enqueue a batch and work until every job of it is finished (see :meth:`Batch.run`);
    inside a running event loop it runs in a worker thread and blocks until done."""
    return as_batch(batch).run(
        db=db, api=api, options=options, stop_on_signals=stop_on_signals, progress=progress
    )


async def run_async(
    batch: BatchLike,
    *,
    db: Db,
    api: Api = None,
    options: RunOptions | None = None,
    progress: TextIO | None = None,
) -> RunResult:
    """:func:`run`, awaited in the caller's event loop (a notebook's included)."""
    return await as_batch(batch).run_async(db=db, api=api, options=options, progress=progress)
