"""Create the scheduler's lease and runs tables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scheduler_lease",
        sa.Column("name", sa.String(length=200), primary_key=True),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", "epoch", name="uq_scheduler_lease_name_epoch"),
    )
    op.create_table(
        "scheduler_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("registry", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.String(length=63), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("fire_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt", sa.SmallInteger(), nullable=False, server_default="1"),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("error_type", sa.String(length=200), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.UniqueConstraint(
            "registry", "job_id", "fire_time", "attempt", name="uq_scheduler_runs_fire"
        ),
    )
    op.create_index(
        "ix_scheduler_runs_started", "scheduler_runs", ["registry", "job_id", "started_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_scheduler_runs_started", table_name="scheduler_runs")
    op.drop_table("scheduler_runs")
    op.drop_table("scheduler_lease")
