"""Learned run times: what a model takes per clip and resolution, kept between runs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08

- ``run_times``: one row per run-time key (model, clip length, resolution; the store
  treats it as opaque text) with the typical run time, its spread and how many runs the
  estimate rests on, so a resumed run and the next night's batch poll from what was
  learned instead of starting blind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op

if TYPE_CHECKING:
    from collections.abc import Sequence

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_times",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("typical_s", sa.Float(), nullable=False),
        sa.Column("spread_s", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("run_times")
