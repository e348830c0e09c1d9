"""The :class:`Store`: the narrow, synchronous queue interface the rest of the program uses.

Every method is one short transaction and returns plain values, so the async engine can
call it through ``anyio.to_thread.run_sync`` and never holds a transaction across network
I/O. Composite steps that must be atomic use :meth:`Store.write` with the functions in
:mod:`orchestrator.store.queries`.

>>> with Store.open(":memory:") as store:
...     store.ensure_batch("demo", manifest_path="m.yaml", output_root="out", settings={})
...     store.counts("demo")["pending"]
0
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import Connection, Engine, func, select

from orchestrator.store import money, queries
from orchestrator.store.database import (
    make_engine,
    read_transaction,
    sqlite_file,
    to_url,
    upgrade,
    write_transaction,
)
from orchestrator.store.states import JobState
from orchestrator.store.tables import JOBS, utcnow
from orchestrator.store.transitions import record_event

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from contextlib import AbstractContextManager
    from types import TracebackType

    from orchestrator.store.records import BatchView, EnqueueResult, EventView, JobView, NewJob


class Store:
    """Batches, jobs and their audit log in SQLite (default) or PostgreSQL."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        """Wrap an engine from :func:`~orchestrator.store.database.make_engine` (migrated)."""
        self._engine = engine
        self._clock = clock

    @classmethod
    def open(cls, url_or_path: str, *, clock: Callable[[], datetime] = utcnow) -> Self:
        """Open (creating file and parent folder if needed) and migrate to the latest schema."""
        path = sqlite_file(to_url(url_or_path))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(url_or_path)
        try:
            upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, clock=clock)

    @property
    def engine(self) -> Engine:
        """The underlying engine (for tests and for queries the store does not offer yet)."""
        return self._engine

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def write(self) -> AbstractContextManager[Connection]:
        """A short write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success."""
        return write_transaction(self._engine)

    def read(self) -> AbstractContextManager[Connection]:
        """A short read-only transaction (deferred on SQLite, so it never waits for writers)."""
        return read_transaction(self._engine)

    def now(self) -> datetime:
        """The store's clock (UTC, aware); injectable for deterministic tests."""
        return self._clock()

    # --- writes -------------------------------------------------------------------------

    def ensure_batch(
        self, name: str, *, manifest_path: str, output_root: str, settings: Mapping[str, Any]
    ) -> None:
        """Create the batch, or refresh its ``settings`` and ``updated_at``.

        ``manifest_path`` and ``output_root`` keep their first values: stored
        ``output_path`` values are relative to that root, so silently moving it would
        orphan videos already downloaded. Raises ValueError for an invalid batch name.
        """
        with self.write() as connection:
            queries.upsert_batch(
                connection,
                name,
                manifest_path=manifest_path,
                output_root=output_root,
                settings=settings,
                now=self.now(),
            )

    def enqueue(self, batch: str, jobs: Iterable[NewJob]) -> EnqueueResult:
        """Add the jobs not yet stored, in one write transaction; idempotent by job key.

        - A job whose key the batch already holds counts as ``existing``; nothing about
          the stored row changes (its state, attempts and outputs are kept).
        - Each added job starts ``pending`` with an ``enqueued`` event, in the same
          transaction, so a crash leaves either all of them or none.
        - **Name collisions.** A new key whose name is already used in the batch by a
          different key (the user edited that job's prompt, say) is stored as
          ``"<name>-<first 8 hex of key>"`` with the same tag on its output file
          (``beach.mp4`` -> ``beach-1a2b3c4d.mp4``). The old row keeps its name, state and
          video, so nothing paid for is lost or overwritten. ``EnqueueResult.renamed``
          and the event's ``detail.renamed_from`` report it.
        - Raises ValueError (and stores nothing) if a key is not 64 lowercase hex digits,
          an ``output_path`` escapes the output root, or a payload holds a data URI or
          non-JSON value. The batch must exist (:meth:`ensure_batch`).
        """
        with self.write() as connection:
            return queries.insert_jobs(connection, batch, jobs, self.now())

    def record_event(
        self,
        kind: str,
        *,
        job_id: int | None = None,
        batch: str | None = None,
        from_state: str | None = None,
        to_state: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one audit event in its own transaction (see
        :func:`~orchestrator.store.transitions.record_event`)."""
        with self.write() as connection:
            record_event(
                connection,
                kind=kind,
                at=self.now(),
                job_id=job_id,
                batch=batch,
                from_state=from_state,
                to_state=to_state,
                detail=detail,
            )

    # --- reads --------------------------------------------------------------------------

    def states_by_key(self, batch: str) -> dict[str, JobState]:
        """Job key -> state for a whole batch (for ``plan``'s new / stored / done diff)."""
        query = select(JOBS.c.key, JOBS.c.state).where(JOBS.c.batch == batch)
        with self.read() as connection:
            return {key: JobState(state) for key, state in connection.execute(query)}

    def counts(self, batch: str | None = None) -> dict[str, int]:
        """State -> number of jobs (every state present, zeros included, lifecycle order)."""
        query = select(JOBS.c.state, func.count()).group_by(JOBS.c.state)
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        with self.read() as connection:
            found: dict[str, int] = dict(connection.execute(query).all())
        return {state.value: found.get(state.value, 0) for state in JobState}

    def counts_by_model(self, batch: str | None = None) -> dict[str, dict[str, int]]:
        """Model id -> state -> number (every state present for each model listed)."""
        query = select(JOBS.c.model_id, JOBS.c.state, func.count()).group_by(
            JOBS.c.model_id, JOBS.c.state
        )
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        by_model: dict[str, dict[str, int]] = {}
        with self.read() as connection:
            for model_id, state, number in connection.execute(query):
                counts = by_model.setdefault(model_id, {s.value: 0 for s in JobState})
                counts[state] = number
        return dict(sorted(by_model.items()))

    def list_jobs(
        self,
        batch: str | None = None,
        state: str | None = None,
        model: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[JobView]:
        """Jobs in enqueue order, filtered by batch, state and model id.

        Raises ValueError for a ``state`` that is not a :class:`JobState` value.
        """
        with self.read() as connection:
            return queries.job_views(
                connection, batch=batch, state=state, model=model, limit=limit, offset=offset
            )

    def batches(self) -> list[BatchView]:
        """Every batch, oldest first."""
        with self.read() as connection:
            return queries.batch_views(connection)

    def batch(self, name: str) -> BatchView | None:
        """The batch called ``name``, or None when the store holds no such batch."""
        with self.read() as connection:
            found = queries.batch_views(connection, name)
        return found[0] if found else None

    def payloads(self, batch: str) -> dict[int, str]:
        """Job row id -> its stored native payload (canonical JSON text) for one batch;
        the job views do not carry payloads, which can be large."""
        query = select(JOBS.c.id, JOBS.c.payload).where(JOBS.c.batch == batch)
        with self.read() as connection:
            return dict(connection.execute(query).all())

    def spend(self, batch: str | None = None) -> float:
        """Actual cost recorded so far in USD (sum of ``cost_usd``; 0.0 when none)."""
        query = select(func.coalesce(func.sum(JOBS.c.cost_usd), 0.0))
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        with self.read() as connection:
            return float(connection.execute(query).scalar_one())

    def estimated_total(self, batch: str | None = None) -> float | None:
        """What the batch should cost in all: recorded costs, plus estimates for jobs that
        have none yet (cancelled jobs excluded). None when nothing has a price."""
        amount = func.coalesce(JOBS.c.cost_usd, JOBS.c.estimated_cost_usd)
        query = select(func.sum(amount)).where(JOBS.c.state != JobState.CANCELLED.value)
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        with self.read() as connection:
            value = connection.execute(query).scalar_one()
        return float(value) if value is not None else None

    def cost_by_model(self, batch: str | None = None) -> list[money.ModelCost]:
        """Per model, by id: its jobs, those billed, their estimates against what RunComfy
        billed, and the ratio (see :class:`~orchestrator.store.money.ModelCost`)."""
        with self.read() as connection:
            return money.cost_by_model(connection, batch)

    def span(self, batch: str | None = None) -> tuple[datetime | None, datetime | None]:
        """When the batch's first job was enqueued and its last one last changed."""
        query = select(func.min(JOBS.c.created_at), func.max(JOBS.c.updated_at))
        if batch is not None:
            query = query.where(JOBS.c.batch == batch)
        with self.read() as connection:
            first, last = connection.execute(query).one()
        return _aware(first), _aware(last)

    def late_request_ids(self, batch: str | None = None) -> dict[tuple[str, str], list[str]]:
        """Request ids fenced-off workers received for jobs now in ``needs_reconcile``."""
        with self.read() as connection:
            return queries.late_request_ids(connection, batch=batch)

    def events(self, batch: str | None = None, job_id: int | None = None) -> list[EventView]:
        """The audit log, oldest first, optionally for one batch or one job (``row_id``)."""
        with self.read() as connection:
            return queries.event_views(connection, batch=batch, job_id=job_id)


def _aware(value: Any) -> datetime | None:
    """Aggregates bypass the column type: SQLite hands back text or naive datetimes."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
