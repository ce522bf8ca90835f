"""Sample.chip_throttling: whether the chip's own tools reported throttling during a benchmark run.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add sample.chip_throttling (boolean, NULL when the tools said nothing)."""
    with op.batch_alter_table("sample") as batch:
        batch.add_column(sa.Column("chip_throttling", sa.Boolean(), nullable=True))


def downgrade() -> None:
    """Drop sample.chip_throttling."""
    with op.batch_alter_table("sample") as batch:
        batch.drop_column("chip_throttling")
