"""Paid work is fetched, never paid again: fetch backoff and the store's own identity.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

- ``jobs.fetch_failures``: failed fetches in a row of a rendered (paid) video, for the
  durable fetch backoff of the new ``fetch_wait`` / ``fetch_paused`` states (states are
  free text, so they need no change here);
- ``store_meta``: facts about the store; ``store_id`` (random, made here) is written into
  every sidecar so a file this store did not write is never overwritten.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op

if TYPE_CHECKING:
    from collections.abc import Sequence

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    meta = op.create_table(
        "store_meta",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.bulk_insert(meta, [{"key": "store_id", "value": secrets.token_hex(16)}])
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(
            sa.Column("fetch_failures", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as jobs:
        jobs.drop_column("fetch_failures")
    op.drop_table("store_meta")
