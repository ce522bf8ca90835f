"""Measuring as the field report measured: per-run telemetry, the Pi each run sat in, pre-flight findings.

sample: PCIe link (current and max speed in GT/s and width), device power state and ASPM, host CMA,
the Pi's SoC temperature and ARM clock, and the chip-side CMA allocation failures seen in the
runtime log taken after that run. run: the Pi's own serial and model (a HAT moves between Pis).
unit: the chip's extended identity as reported. phase: what the pre-flight found, and how long the
node took to become ready after boot.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _sample_columns() -> tuple[sa.Column, ...]:
    """sample's new columns (fresh objects each time: a Column belongs to one table)."""
    return (
        sa.Column("pcie_speed", sa.Float(), nullable=True),
        sa.Column("pcie_width", sa.Integer(), nullable=True),
        sa.Column("pcie_max_speed", sa.Float(), nullable=True),
        sa.Column("pcie_max_width", sa.Integer(), nullable=True),
        sa.Column("power_state", sa.String(length=16), nullable=True),
        sa.Column("aspm", sa.String(length=64), nullable=True),
        sa.Column("cma_free_kb", sa.BigInteger(), nullable=True),
        sa.Column("cma_total_kb", sa.BigInteger(), nullable=True),
        sa.Column("soc_temp", sa.Float(), nullable=True),
        sa.Column("arm_clock_mhz", sa.Float(), nullable=True),
        sa.Column("cma_errors", sa.Integer(), nullable=True),
    )


def _run_columns() -> tuple[sa.Column, ...]:
    """run's new columns."""
    return (
        sa.Column("host_serial", sa.String(length=64), nullable=True),
        sa.Column("host_model", sa.String(length=128), nullable=True),
    )


def upgrade() -> None:
    """Add the telemetry columns to sample, the host to run, identity to unit, pre-flight to phase."""
    with op.batch_alter_table("sample") as batch:
        for column in _sample_columns():
            batch.add_column(column)
    with op.batch_alter_table("run") as batch:
        for column in _run_columns():
            batch.add_column(column)
    with op.batch_alter_table("unit") as batch:
        batch.add_column(sa.Column("identity", sa.JSON(), nullable=True))
    with op.batch_alter_table("phase") as batch:
        batch.add_column(sa.Column("preflight", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("ready_s", sa.Float(), nullable=True))


def downgrade() -> None:
    """Drop what upgrade added."""
    with op.batch_alter_table("phase") as batch:
        batch.drop_column("ready_s")
        batch.drop_column("preflight")
    with op.batch_alter_table("unit") as batch:
        batch.drop_column("identity")
    with op.batch_alter_table("run") as batch:
        for column in reversed(_run_columns()):
            batch.drop_column(column.name)
    with op.batch_alter_table("sample") as batch:
        for column in reversed(_sample_columns()):
            batch.drop_column(column.name)
