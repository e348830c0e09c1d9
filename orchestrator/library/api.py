"""The checking functions: each takes a :class:`Batch` or a manifest path
(``orchestrator.plan("manifest.yaml")`` is ``Batch.from_manifest("manifest.yaml").plan()``;
``run`` and ``run_async`` are in :mod:`.running`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.library.batch import Api, BatchLike, Db, as_batch

if TYPE_CHECKING:
    from orchestrator.library.results import Enqueued, Plan, Validation


def validate(batch: BatchLike, *, db: Db | None = None, api: Api = None) -> Validation:
    """Check a batch; its problems are returned (see :meth:`Batch.validate`)."""
    return as_batch(batch).validate(db=db, api=api)


def plan(batch: BatchLike, *, db: Db | None = None, api: Api = None) -> Plan:
    """Jobs per model, new / stored / done, and the cost (see :meth:`Batch.plan`)."""
    return as_batch(batch).plan(db=db, api=api)


def enqueue(batch: BatchLike, *, db: Db, api: Api = None) -> Enqueued:
    """Add a batch's new jobs to the store; submits nothing (see :meth:`Batch.enqueue`)."""
    return as_batch(batch).enqueue(db=db, api=api)
