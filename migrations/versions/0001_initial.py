"""Initial schema: batches, jobs, attempts and the append-only events log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written out by hand (not imported from orchestrator.store.tables) so this revision keeps
describing the schema of its day however the models evolve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op

if TYPE_CHECKING:
    from collections.abc import Sequence

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("manifest_path", sa.String(), nullable=False),
        sa.Column("output_root", sa.String(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("model_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("output_path", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=True),
        sa.Column("remote_status", sa.String(), nullable=True),
        sa.Column("queue_position", sa.Integer(), nullable=True),
        _timestamp("next_attempt_at", nullable=True),
        sa.Column("estimated_cost_usd", sa.Float(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        _timestamp("submitted_at", nullable=True),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        _timestamp("downloaded_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["batch"], ["batches.name"], name="fk_jobs_batch"),
        sa.UniqueConstraint("batch", "key", name="uq_jobs_batch_key"),
        sa.UniqueConstraint("batch", "name", name="uq_jobs_batch_name"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_jobs_batch_state", "jobs", ["batch", "state"])
    op.create_index("ix_jobs_state_next_attempt_at", "jobs", ["state", "next_attempt_at"])
    op.create_index("ix_jobs_model_id_state", "jobs", ["model_id", "state"])
    op.create_index("ix_jobs_request_id", "jobs", ["request_id"])
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=True),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        _timestamp("started_at", nullable=False),
        _timestamp("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_attempts_job"),
        sa.UniqueConstraint("job_id", "number", name="uq_attempts_job_number"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("batch", sa.String(), nullable=True),
        _timestamp("at", nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("from_state", sa.String(), nullable=True),
        sa.Column("to_state", sa.String(), nullable=True),
        sa.Column("detail", sa.JSON(none_as_null=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_events_job"),
        sa.ForeignKeyConstraint(["batch"], ["batches.name"], name="fk_events_batch"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_job_id_id", "events", ["job_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_job_id_id", table_name="events")
    op.drop_table("events")
    op.drop_table("attempts")
    op.drop_index("ix_jobs_request_id", table_name="jobs")
    op.drop_index("ix_jobs_model_id_state", table_name="jobs")
    op.drop_index("ix_jobs_state_next_attempt_at", table_name="jobs")
    op.drop_index("ix_jobs_batch_state", table_name="jobs")
    op.drop_table("jobs")
    op.drop_table("batches")
