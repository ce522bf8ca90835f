"""Campaign settings: what `lab resume` needs to rebuild a campaign's plan (scenario path, pinned stacks, limit).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add campaign.settings (JSON)."""
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(sa.Column("settings", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop campaign.settings."""
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("settings")
