"""Value objects that cross the store boundary: what goes in, and read-only views out.

Views are frozen snapshots of one short read transaction; they never hold a session.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.store.states import JobState


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    return value


@dataclass(frozen=True, slots=True)
class NewJob:
    """One expanded manifest job, ready to enqueue.

    ``payload`` is the model's native payload with images as references
    (``{"$image": {"path": ..., "sha256": ...}}``), never bytes or data URIs.
    ``output_path`` is relative to the batch's output root.
    """

    key: str
    name: str
    model_id: str
    payload: dict[str, Any]
    output_path: str
    max_attempts: int
    estimated_cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What :meth:`Store.enqueue` did.

    ``renamed`` lists ``(requested_name, stored_name)`` for new jobs whose name was already
    taken in the batch by a job with a different key (see :meth:`Store.enqueue`).
    """

    added: int
    existing: int
    renamed: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as ``jobs --json`` shows it (``id`` is the user-facing job name)."""

    id: str
    key: str
    batch: str
    model: str
    state: JobState
    request_id: str | None
    output_path: str
    sha256: str | None
    cost: float | None
    error: str | None
    attempts: int
    max_attempts: int
    remote_status: str | None
    queue_position: int | None
    estimated_cost: float | None
    size_bytes: int | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    downloaded_at: datetime | None
    row_id: int = field(repr=False)
    """The database primary key (for internal references such as events)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601 strings with ``+00:00``."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class BatchView:
    """A batch with its settings and how many jobs it holds."""

    name: str
    manifest_path: str
    output_root: str
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    job_count: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601 strings."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class EventView:
    """One row of the append-only audit log."""

    id: int
    job_id: int | None
    batch: str | None
    at: datetime
    kind: str
    from_state: str | None
    to_state: str | None
    detail: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601 strings."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}
