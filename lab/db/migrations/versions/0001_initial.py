"""Initial schema: campaign, unit, stack, run, phase, sample, log_event, artifact.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Hand-checked against lab/db/models.py; tests/unit/test_db_migrations.py proves that
`upgrade head` followed by an autogenerate comparison finds no difference.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column:
    """A timestamp column (models.UTCDateTime stores UTC in DateTime(timezone=True))."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _fk(column: str, table: str, owner: str, cascade: bool = True) -> sa.ForeignKeyConstraint:
    """A foreign key named by the models' naming convention."""
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], name=f"fk_{owner}_{column}_{table}",
                                   ondelete="CASCADE" if cascade else None)


def upgrade() -> None:
    """Create every table of the results database."""
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("scenario_name", sa.String(length=64), nullable=False),
        sa.Column("scenario_text", sa.Text(), nullable=False),
        sa.Column("inventory", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _ts("started_at", nullable=False),
        _ts("finished_at"),
        sa.Column("command_line", sa.Text(), nullable=True),
        sa.Column("exit_status", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_campaign"),
        sa.UniqueConstraint("name", name="uq_campaign_name"),
    )
    op.create_table(
        "stack",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("chip", sa.String(length=16), nullable=True),
        sa.Column("hailort", sa.String(length=64), nullable=False),
        sa.Column("driver", sa.String(length=64), nullable=False),
        sa.Column("firmware", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stack"),
        sa.UniqueConstraint("name", "hailort", "driver", "firmware", name="uq_stack_name_hailort_driver_firmware"),
    )
    op.create_table(
        "unit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("soc_id", sa.String(length=128), nullable=True),
        sa.Column("chip", sa.String(length=16), nullable=True),
        sa.Column("board", sa.String(length=64), nullable=True),
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_unit"),
        sa.UniqueConstraint("key", name="uq_unit_key"),
    )
    op.create_table(
        "run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("stack_id", sa.Integer(), nullable=False),
        sa.Column("repeat", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("started_at"),
        _ts("finished_at"),
        _fk("campaign_id", "campaign", "run"),
        _fk("stack_id", "stack", "run", cascade=False),
        _fk("unit_id", "unit", "run", cascade=False),
        sa.PrimaryKeyConstraint("id", name="pk_run"),
        sa.UniqueConstraint("campaign_id", "index", name="uq_run_campaign_id_index"),
        sa.UniqueConstraint("campaign_id", "node", "stack_id", "repeat",
                            name="uq_run_campaign_id_node_stack_id_repeat"),
    )
    op.create_index("ix_run_stack_id", "run", ["stack_id"])
    op.create_index("ix_run_unit_id", "run", ["unit_id"])
    op.create_table(
        "phase",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("boot_id", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("started_at"),
        _ts("finished_at"),
        _fk("run_id", "run", "phase"),
        sa.PrimaryKeyConstraint("id", name="pk_phase"),
        sa.UniqueConstraint("run_id", "index", name="uq_phase_run_id_index"),
    )
    op.create_table(
        "sample",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("phase_id", sa.Integer(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=True),
        sa.Column("run_index", sa.Integer(), nullable=True),
        _ts("ts", nullable=False),
        sa.Column("fps", sa.Float(), nullable=True),
        sa.Column("temp", sa.Float(), nullable=True),
        sa.Column("temp_min", sa.Float(), nullable=True),
        sa.Column("temp_max", sa.Float(), nullable=True),
        sa.Column("configure_count", sa.Integer(), nullable=True),
        sa.Column("boot_id", sa.String(length=64), nullable=True),
        sa.Column("uptime", sa.Float(), nullable=True),
        sa.Column("nominal_s", sa.Float(), nullable=True),
        sa.Column("throttled", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        _fk("phase_id", "phase", "sample"),
        _fk("run_id", "run", "sample"),
        sa.PrimaryKeyConstraint("id", name="pk_sample"),
        sa.UniqueConstraint("run_id", "seq", name="uq_sample_run_id_seq"),
    )
    op.create_index("ix_sample_phase_id", "sample", ["phase_id"])
    op.create_table(
        "log_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("phase_id", sa.Integer(), nullable=True),
        sa.Column("node", sa.String(length=255), nullable=True),
        _ts("ts"),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        _fk("campaign_id", "campaign", "log_event"),
        _fk("phase_id", "phase", "log_event"),
        _fk("run_id", "run", "log_event"),
        sa.PrimaryKeyConstraint("id", name="pk_log_event"),
    )
    op.create_index("ix_log_event_campaign_id", "log_event", ["campaign_id"])
    op.create_index("ix_log_event_run_id", "log_event", ["run_id"])
    op.create_table(
        "artifact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("phase_id", sa.Integer(), nullable=True),
        sa.Column("node", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("blob", sa.LargeBinary(), nullable=True),
        _ts("created_at", nullable=False),
        _fk("campaign_id", "campaign", "artifact"),
        _fk("phase_id", "phase", "artifact"),
        _fk("run_id", "run", "artifact"),
        sa.PrimaryKeyConstraint("id", name="pk_artifact"),
    )
    op.create_index("ix_artifact_campaign_id_run_id_name", "artifact", ["campaign_id", "run_id", "name"])


def downgrade() -> None:
    """Drop every table, children first."""
    for table in ("artifact", "log_event", "sample", "phase", "run", "unit", "stack", "campaign"):
        op.drop_table(table)
