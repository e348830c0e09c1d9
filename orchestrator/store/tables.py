"""The SQLModel tables of the queue: batches, jobs, attempts and an append-only event log.

Every timestamp is a timezone-aware UTC ``datetime`` (:class:`UTCDateTime`). Constraints
and indexes carry explicit names so later migrations (SQLite batch mode included) can
refer to them. ``migrations/versions/0001_initial.py`` spells out the same schema, and
``tests/test_migrations.py`` checks the two never drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from orchestrator.store.states import JobState

_BindProcessor = Callable[[Any], Any]


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that only accepts aware values and returns UTC ones.

    SQLite keeps no zone, so values are normalised to UTC on the way in (which also keeps
    the stored text sortable) and tagged as UTC on the way out.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware UTC times only")
        return value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> _BindProcessor | None:
        # A bulk insert binds the same `now` to every row (3 columns x 100k rows); converting
        # it once per distinct object saves about a second. datetimes are immutable, and the
        # (value, result) pair is swapped atomically, so sharing across threads is safe.
        convert = super().bind_processor(dialect)
        if convert is None:
            return None
        last: tuple[object, Any] = (object(), None)

        def process(value: Any) -> Any:
            nonlocal last
            seen, result = last
            if value is not seen:
                result = convert(value)
                last = (value, result)
            return result

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Batch(SQLModel, table=True):
    """A named group of jobs from one manifest; names the output folder."""

    __tablename__: ClassVar[str] = "batches"

    name: str = Field(primary_key=True)
    manifest_path: str
    output_root: str
    settings: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    """limits / retry / output pattern, as given by the manifest."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Job(SQLModel, table=True):
    """One concrete generation: a model and a native payload, tracked to a verified video."""

    __tablename__: ClassVar[str] = "jobs"
    __table_args__ = (
        ForeignKeyConstraint(["batch"], ["batches.name"], name="fk_jobs_batch"),
        UniqueConstraint("batch", "key", name="uq_jobs_batch_key"),
        UniqueConstraint("batch", "name", name="uq_jobs_batch_name"),
        Index("ix_jobs_batch_state", "batch", "state"),
        Index("ix_jobs_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_jobs_model_id_state", "model_id", "state"),
        Index("ix_jobs_request_id", "request_id"),
        Index("ix_jobs_worker_id_state", "worker_id", "state"),
        # Never reuse an id, so event and attempt rows can't point at a recycled job.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    batch: str
    name: str
    """The job id users see (``jobs --json`` ``id``); unique in its batch."""
    key: str
    """64 hex digits: hash of model, canonical payload and replicate index."""
    model_id: str
    state: str = Field(default=JobState.PENDING.value)
    payload: str = Field(sa_type=Text)
    """Canonical JSON of the native payload; images as ``{"$image": {path, sha256}}``."""
    output_path: str
    """Relative to the batch's output root."""
    attempts: int = 0
    max_attempts: int
    request_id: str | None = None
    remote_status: str | None = None
    queue_position: int | None = None
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    estimated_cost_usd: float | None = None
    """What the spend cap counts for the job: raised when RunComfy bills more."""
    quoted_cost_usd: float | None = None
    """The estimate as first priced, never raised: what ``status`` compares the bill with."""
    cost_usd: float | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    submitted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    downloaded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    worker_id: str | None = None
    """The worker process holding the job while it is in flight (the last one after)."""
    lease_token: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """Fencing token: bumped by every claim, takeover and user action; every write by a
    worker names the token it holds, so a writer whose lease moved on changes nothing."""
    fetch_failures: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """Failed fetches of a rendered (paid) video in a row; decides the fetch backoff and
    when the job pauses in ``fetch_paused``. Reset by a success, a re-run or a retry."""


class Attempt(SQLModel, table=True):
    """One paid submission of a job (first submit, re-roll or user-approved resubmit)."""

    __tablename__: ClassVar[str] = "attempts"
    __table_args__ = (
        ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_attempts_job"),
        UniqueConstraint("job_id", "number", name="uq_attempts_job_number"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: int
    number: int
    """1-based, per job."""
    kind: str
    """An :class:`~orchestrator.store.states.AttemptKind` value."""
    request_id: str | None = None
    outcome: str | None = None
    error: str | None = Field(default=None, sa_type=Text)
    cost_usd: float | None = None
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Event(SQLModel, table=True):
    """Append-only audit log: rows are inserted, never updated or deleted."""

    __tablename__: ClassVar[str] = "events"
    __table_args__ = (
        ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_events_job"),
        ForeignKeyConstraint(["batch"], ["batches.name"], name="fk_events_batch"),
        Index("ix_events_job_id_id", "job_id", "id"),
        # Ids order the log; AUTOINCREMENT keeps them strictly increasing.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: int | None = None
    batch: str | None = None
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    kind: str
    from_state: str | None = None
    to_state: str | None = None
    # none_as_null: a missing detail is SQL NULL, not the JSON text 'null'.
    detail: dict[str, Any] | None = Field(default=None, sa_type=JSON(none_as_null=True))


class Worker(SQLModel, table=True):
    """One worker process (``run`` or ``work``) and its heartbeat, in database time."""

    __tablename__: ClassVar[str] = "workers"

    id: str = Field(primary_key=True)
    host: str
    pid: int
    machine: str
    """Host, boot and pid namespace: workers with the same one can see each other's pids."""
    batch: str | None = None
    lease_seconds: float
    """How long the worker's jobs stay its own without a heartbeat."""
    started_at: datetime = Field(sa_type=UTCDateTime)
    heartbeat_at: datetime = Field(sa_type=UTCDateTime)
    stopped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    stop_reason: str | None = None


class Pacer(SQLModel, table=True):
    """A shared rate limit: the next moment a submit may start, for every worker."""

    __tablename__: ClassVar[str] = "pacers"

    name: str = Field(primary_key=True)
    next_at: datetime = Field(sa_type=UTCDateTime)


class StoreMeta(SQLModel, table=True):
    """Facts about the store itself (``store_id``: written into every sidecar, so a video
    this store wrote is told apart from a user's file or another store's video)."""

    __tablename__: ClassVar[str] = "store_meta"

    key: str = Field(primary_key=True)
    value: str


class RunTime(SQLModel, table=True):
    """A learned run time for one key (model, clip length, resolution; opaque here), shared
    by every worker and every night's batch; written by :mod:`orchestrator.store.runtimes`."""

    __tablename__: ClassVar[str] = "run_times"

    key: str = Field(primary_key=True, sa_type=Text)
    model_id: str = Field(sa_type=Text)
    typical_s: float
    spread_s: float
    samples: int
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CatalogEntry(SQLModel, table=True):
    """A model's catalog entry as one API host answered it (``GET /v1/models/{id}``), with
    the time it was fetched; written by :mod:`orchestrator.store.catalog`."""

    __tablename__: ClassVar[str] = "catalog_entries"

    api_host: str = Field(primary_key=True, sa_type=Text)
    model_id: str = Field(primary_key=True, sa_type=Text)
    entry: str = Field(sa_type=Text)
    fetched_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


metadata = SQLModel.metadata
"""The metadata Alembic compares migrations against."""

BATCHES: Table = metadata.tables["batches"]
JOBS: Table = metadata.tables["jobs"]
ATTEMPTS: Table = metadata.tables["attempts"]
EVENTS: Table = metadata.tables["events"]
WORKERS: Table = metadata.tables["workers"]
PACERS: Table = metadata.tables["pacers"]
STORE_META: Table = metadata.tables["store_meta"]
RUN_TIMES: Table = metadata.tables["run_times"]
CATALOG_ENTRIES: Table = metadata.tables["catalog_entries"]
