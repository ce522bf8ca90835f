"""Power control: every power cycle the controller made during a campaign, with its reason and outcome.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _fk(column: str, table: str) -> sa.ForeignKeyConstraint:
    """A foreign key named by the models' naming convention."""
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], name=f"fk_power_event_{column}_{table}", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "power_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("phase_id", sa.Integer(), nullable=True),
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("recovery", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("waited_s", sa.Float(), nullable=True),
        _fk("campaign_id", "campaign"),
        _fk("phase_id", "phase"),
        _fk("run_id", "run"),
        sa.PrimaryKeyConstraint("id", name="pk_power_event"),
    )
    op.create_index("ix_power_event_campaign_id", "power_event", ["campaign_id"])
    op.create_index("ix_power_event_run_id", "power_event", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_power_event_run_id", table_name="power_event")
    op.drop_index("ix_power_event_campaign_id", table_name="power_event")
    op.drop_table("power_event")
