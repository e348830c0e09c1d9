"""The durable queue: SQLModel tables, engine set-up with SQLite durability, and :class:`Store`.

``Store.open(path_or_url)`` creates and migrates the database; every ``Store`` method is
one short transaction. States live in :mod:`orchestrator.store.states`; multi-statement
atomic steps use ``Store.write()`` with :mod:`orchestrator.store.queries` and
:mod:`orchestrator.store.transitions` (the row steps the queue's modules share). Modules
depend downwards only: ``transitions`` <- ``claims`` <- ``work`` <- ``workers``/``fetches``.
"""

from __future__ import annotations

from orchestrator.store.database import DatabaseError, make_engine, migrations_dir, upgrade
from orchestrator.store.records import BatchView, EnqueueResult, EventView, JobView, NewJob
from orchestrator.store.states import IN_FLIGHT, TERMINAL, AttemptKind, EventKind, JobState
from orchestrator.store.store import Store
from orchestrator.store.transitions import record_event

__all__ = [
    "IN_FLIGHT",
    "TERMINAL",
    "AttemptKind",
    "BatchView",
    "DatabaseError",
    "EnqueueResult",
    "EventKind",
    "EventView",
    "JobState",
    "JobView",
    "NewJob",
    "Store",
    "make_engine",
    "migrations_dir",
    "record_event",
    "upgrade",
]
