"""The live catalog (each model's entry as the API answered it, with its fetch time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

- ``catalog_entries``: one row per API host and model id, holding the raw JSON of
  ``GET /v1/models/{model_id}`` (schema, price, pricing note) and when it was fetched, so
  ``plan`` and ``run`` validate and price against the freshest schema, and fall back to it
  when the API cannot be reached. Keyed by host so the simulator's catalog never stands in
  for RunComfy's.
- ``jobs.quoted_cost_usd``: the estimate as first priced. ``estimated_cost_usd`` is raised
  when RunComfy bills a model more than estimated (so the spend cap stays a bound), which
  overwrote the number ``status`` compares the bill with. Existing jobs start from their
  current estimate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op

if TYPE_CHECKING:
    from collections.abc import Sequence

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_entries",
        sa.Column("api_host", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("api_host", "model_id"),
    )
    op.add_column("jobs", sa.Column("quoted_cost_usd", sa.Float(), nullable=True))
    op.execute("UPDATE jobs SET quoted_cost_usd = estimated_cost_usd")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("quoted_cost_usd")
    op.drop_table("catalog_entries")
