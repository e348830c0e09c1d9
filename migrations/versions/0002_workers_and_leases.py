"""Workers, leases and shared pacing: several worker processes on one queue.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

- ``workers``: one row per worker process, with its heartbeat (database time) and how long
  its lease lasts without one;
- ``jobs.worker_id`` / ``jobs.lease_token``: who holds a job in flight, and the fencing
  token bumped on every claim or takeover (every later write checks it);
- ``pacers``: the next free submit slot, shared by every worker (the global rate limit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op

if TYPE_CHECKING:
    from collections.abc import Sequence

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("machine", sa.String(), nullable=False),
        sa.Column("batch", sa.String(), nullable=True),
        sa.Column("lease_seconds", sa.Float(), nullable=False),
        _timestamp("started_at", nullable=False),
        _timestamp("heartbeat_at", nullable=False),
        _timestamp("stopped_at", nullable=True),
        sa.Column("stop_reason", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "pacers",
        sa.Column("name", sa.String(), nullable=False),
        _timestamp("next_at", nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # Plain ADD COLUMN on both engines (SQLite needs no table rebuild for these).
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("worker_id", sa.String(), nullable=True))
        jobs.add_column(sa.Column("lease_token", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_jobs_worker_id_state", "jobs", ["worker_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_jobs_worker_id_state", table_name="jobs")
    with op.batch_alter_table("jobs") as jobs:
        jobs.drop_column("lease_token")
        jobs.drop_column("worker_id")
    op.drop_table("pacers")
    op.drop_table("workers")
