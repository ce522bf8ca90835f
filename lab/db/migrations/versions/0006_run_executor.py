"""Run.executor: the execution node a run's phases went through (NULL: the controller reached its node itself).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add run.executor (the inventory name of the node's lab_executor, NULL without one)."""
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("executor", sa.String(length=255), nullable=True))


def downgrade() -> None:
    """Drop run.executor."""
    with op.batch_alter_table("run") as batch:
        batch.drop_column("executor")
