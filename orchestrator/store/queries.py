"""Core SQL behind :class:`~orchestrator.store.store.Store`.

Every function runs inside a transaction its caller owns (``Store.write()`` /
``Store.read()``), so several of them compose into one atomic step. Bulk paths use Core
``executemany`` rather than ORM objects: enqueueing 100,000 jobs is a few statements.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, Row, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from orchestrator.store.database import dump_json
from orchestrator.store.records import BatchView, EnqueueResult, EventView, JobView, NewJob
from orchestrator.store.states import EventKind, JobState
from orchestrator.store.tables import BATCHES, EVENTS, JOBS
from orchestrator.store.transitions import event_row, record_events

if TYPE_CHECKING:
    from datetime import datetime

BATCH_NAME: Final = re.compile(r"[A-Za-z0-9._-]+")
JOB_KEY: Final = re.compile(r"[0-9a-f]{64}")
ENQUEUE_CHUNK: Final = 2_000
"""Rows per INSERT round; bounds memory and statement size, not the transaction."""
# Plain strings: enum attribute access is measurable at 100k rows.
PENDING: Final = JobState.PENDING.value
ENQUEUED: Final = EventKind.ENQUEUED.value


def check_batch_name(name: str) -> None:
    """Batch names become folder names: ``[A-Za-z0-9._-]+`` and not ``.`` or ``..``."""
    if not BATCH_NAME.fullmatch(name) or set(name) == {"."}:
        raise ValueError(f"invalid batch name {name!r}: use letters, digits, '.', '_' or '-'")


def upsert_batch(
    connection: Connection,
    name: str,
    *,
    manifest_path: str,
    output_root: str,
    settings: Mapping[str, Any],
    now: datetime,
) -> None:
    """Insert a batch, or refresh its ``settings`` and ``updated_at``."""
    check_batch_name(name)
    statement = _dialect_insert(connection, BATCHES).values(
        name=name,
        manifest_path=manifest_path,
        output_root=output_root,
        settings=dict(settings),
        created_at=now,
        updated_at=now,
    )
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[BATCHES.c.name],
            set_={"settings": statement.excluded.settings, "updated_at": now},
        )
    )


def canonical_payload(job: NewJob) -> str:
    """The payload as canonical JSON, refusing embedded images (data URIs)."""
    try:
        text = dump_json(job.payload)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"job {job.name!r}: payload is not JSON: {exc}") from exc
    # Fast path: JSON strings start with a quote, so no '"data:' means no data URI.
    if '"data:' in text.lower():
        where = _find_data_uri(job.payload, "payload")
        if where is not None:
            raise ValueError(
                f"job {job.name!r}: {where} is a data URI; store images as "
                '{"$image": {"path": ..., "sha256": ...}} references (data URIs are built '
                "at submit time)"
            )
    return text


def insert_jobs(
    connection: Connection, batch: str, jobs: Iterable[NewJob], now: datetime
) -> EnqueueResult:
    """Add the jobs whose key is new to ``batch``; see :meth:`Store.enqueue` for the rules.

    ``jobs`` is consumed in chunks, so a 100,000-job batch never holds all its rows in
    memory at once; everything still happens in the caller's one transaction.
    """
    stored = connection.execute(select(JOBS.c.key, JOBS.c.name).where(JOBS.c.batch == batch))
    known_keys: set[str] = set()
    taken_names: set[str] = set()
    for key, name in stored:
        known_keys.add(key)
        taken_names.add(name)

    renamed: dict[str, tuple[str, str]] = {}
    inserted_keys: set[str] = set()
    seen = 0
    # ON CONFLICT names its target: a key already stored (a concurrent enqueue on
    # PostgreSQL) is skipped, while a name clash still fails loudly instead of vanishing.
    statement = (
        _dialect_insert(connection, JOBS)
        .on_conflict_do_nothing(index_elements=[JOBS.c.batch, JOBS.c.key])
        .returning(JOBS.c.id, JOBS.c.key, sort_by_parameter_order=False)
    )
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        inserted = connection.execute(statement, rows).all()
        record_events(connection, [_enqueued_event(batch, row, renamed, now) for row in inserted])
        inserted_keys.update(row.key for row in inserted)
        rows.clear()

    for job in jobs:
        seen += 1
        if job.key in known_keys:
            continue
        _check_job(job)
        name, output_path = job.name, job.output_path
        if name in taken_names:
            name, output_path = _disambiguate(job, taken_names)
            renamed[job.key] = (job.name, name)
        known_keys.add(job.key)
        taken_names.add(name)
        rows.append(
            {
                "batch": batch,
                "name": name,
                "key": job.key,
                "model_id": job.model_id,
                "state": PENDING,
                "payload": canonical_payload(job),
                "output_path": output_path,
                "attempts": 0,
                "max_attempts": job.max_attempts,
                "estimated_cost_usd": job.estimated_cost_usd,
                "quoted_cost_usd": job.estimated_cost_usd,
                "created_at": now,
                "updated_at": now,
            }
        )
        if len(rows) >= ENQUEUE_CHUNK:
            flush()
    if rows:
        flush()
    return EnqueueResult(
        added=len(inserted_keys),
        existing=seen - len(inserted_keys),
        renamed=tuple(pair for key, pair in renamed.items() if key in inserted_keys),
    )


def job_views(
    connection: Connection,
    *,
    batch: str | None,
    state: str | None,
    model: str | None,
    limit: int | None,
    offset: int,
) -> list[JobView]:
    """Jobs in insertion order, optionally filtered; one query."""
    query = select(JOBS).order_by(JOBS.c.id).offset(offset).limit(limit)
    if batch is not None:
        query = query.where(JOBS.c.batch == batch)
    if state is not None:
        query = query.where(JOBS.c.state == JobState(state).value)
    if model is not None:
        query = query.where(JOBS.c.model_id == model)
    return [_job_view(row) for row in connection.execute(query)]


def batch_views(connection: Connection, name: str | None = None) -> list[BatchView]:
    """Every batch (or only the one called ``name``), oldest first, with its job count."""
    job_count = select(func.count()).where(JOBS.c.batch == BATCHES.c.name).scalar_subquery()
    query = select(BATCHES, job_count.label("job_count")).order_by(
        BATCHES.c.created_at, BATCHES.c.name
    )
    if name is not None:
        query = query.where(BATCHES.c.name == name)
    return [
        BatchView(
            name=row.name,
            manifest_path=row.manifest_path,
            output_root=row.output_root,
            settings=row.settings,
            created_at=row.created_at,
            updated_at=row.updated_at,
            job_count=row.job_count,
        )
        for row in connection.execute(query)
    ]


def event_views(
    connection: Connection, *, batch: str | None, job_id: int | None
) -> list[EventView]:
    """Events in the order they were written."""
    query = select(EVENTS).order_by(EVENTS.c.id)
    if batch is not None:
        query = query.where(EVENTS.c.batch == batch)
    if job_id is not None:
        query = query.where(EVENTS.c.job_id == job_id)
    return [
        EventView(
            id=row.id,
            job_id=row.job_id,
            batch=row.batch,
            at=row.at,
            kind=row.kind,
            from_state=row.from_state,
            to_state=row.to_state,
            detail=row.detail,
        )
        for row in connection.execute(query)
    ]


def late_request_ids(
    connection: Connection, *, batch: str | None
) -> dict[tuple[str, str], list[str]]:
    """(batch, job name) -> request ids RunComfy gave a worker whose lease had already moved
    on, for jobs waiting in ``needs_reconcile``: the submit was accepted, so the person
    reconciling should look the job up instead of paying for it again."""
    query = (
        select(JOBS.c.batch, JOBS.c.name, EVENTS.c.detail)
        .join(EVENTS, EVENTS.c.job_id == JOBS.c.id)
        .where(
            EVENTS.c.kind == EventKind.STALE_WRITE.value,
            JOBS.c.state == JobState.NEEDS_RECONCILE.value,
        )
        .order_by(EVENTS.c.id)
    )
    if batch is not None:
        query = query.where(JOBS.c.batch == batch)
    found: dict[tuple[str, str], list[str]] = {}
    for row in connection.execute(query):
        request_id = (row.detail or {}).get("request_id")
        if request_id:
            ids = found.setdefault((row.batch, row.name), [])
            if request_id not in ids:
                ids.append(request_id)
    return found


def _job_view(row: Row[Any]) -> JobView:
    return JobView(
        id=row.name,
        key=row.key,
        batch=row.batch,
        model=row.model_id,
        state=JobState(row.state),
        request_id=row.request_id,
        output_path=row.output_path,
        sha256=row.sha256,
        cost=row.cost_usd,
        error=row.error,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        remote_status=row.remote_status,
        queue_position=row.queue_position,
        estimated_cost=row.estimated_cost_usd,
        size_bytes=row.size_bytes,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        submitted_at=row.submitted_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        downloaded_at=row.downloaded_at,
        row_id=row.id,
    )


def _enqueued_event(
    batch: str, row: Row[Any], renamed: Mapping[str, tuple[str, str]], now: datetime
) -> dict[str, Any]:
    rename = renamed.get(row.key)
    return event_row(
        kind=ENQUEUED,
        at=now,
        job_id=row.id,
        batch=batch,
        to_state=PENDING,
        detail={"renamed_from": rename[0]} if rename else None,
    )


def _check_job(job: NewJob) -> None:
    if not JOB_KEY.fullmatch(job.key):
        raise ValueError(f"job {job.name!r}: key must be 64 lowercase hex digits, got {job.key!r}")
    if not job.name:
        raise ValueError(f"job with key {job.key[:12]}...: empty name")
    # Plain string checks: this runs for every job of a 100k enqueue.
    path = job.output_path
    if not path or path.startswith(("/", "\\")) or ".." in path.replace("\\", "/").split("/"):
        raise ValueError(
            f"job {job.name!r}: output_path {job.output_path!r} must stay inside the output root"
        )
    if job.max_attempts < 1:
        raise ValueError(f"job {job.name!r}: max_attempts must be at least 1")


def _disambiguate(job: NewJob, taken_names: set[str]) -> tuple[str, str]:
    """A free ``name-<key prefix>`` and the output path tagged the same way."""
    path = PurePosixPath(job.output_path)
    for width in (8, 16, 64):
        tag = job.key[:width]
        name = f"{job.name}-{tag}"
        if name not in taken_names:
            return name, str(path.with_name(f"{path.stem}-{tag}{path.suffix}"))
    raise ValueError(f"job {job.name!r}: no free name for key {job.key}")  # pragma: no cover


def _find_data_uri(value: object, where: str) -> str | None:
    """Where the first string starting with ``data:`` is, if any (URI schemes ignore case)."""
    if isinstance(value, str):
        return where if value[:5].lower() == "data:" else None
    if isinstance(value, Mapping):
        items: Iterator[tuple[object, object]] = iter(value.items())
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _find_data_uri(item, f"{where}[{key!r}]")
        if found is not None:
            return found
    return None


def _dialect_insert(connection: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    """``INSERT`` with ``ON CONFLICT`` support for the connection's dialect."""
    name = connection.dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"the store supports SQLite and PostgreSQL, not {name}")
