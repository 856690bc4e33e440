"""The scheduler's tables: the leader lease and the record of every run.

The scheduler reads and writes them with SQL of its own (``lease.py``,
``run_log.py``); they are declared here so that Alembic knows them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    Uuid,
)

from ..db import Base

# One row per registry: who leads, since which election (the epoch) and until when.
scheduler_lease = Table(
    "scheduler_lease",
    Base.metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("renewed_at", DateTime(timezone=True), nullable=False),
    # Makes the epoch a key column: a takeover (an epoch change) then conflicts with
    # the FOR KEY SHARE lock a fenced transaction holds, a renewal does not.
    UniqueConstraint("name", "epoch", name="uq_scheduler_lease_name_epoch"),
)

# One row per run of a fire (attempt 2 re-runs a fire whose leader died mid-run).
scheduler_runs = Table(
    "scheduler_runs",
    Base.metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("registry", String(200), nullable=False),
    Column("job_id", String(63), nullable=False),
    Column("run_id", Uuid, nullable=False),
    Column("fire_time", DateTime(timezone=True), nullable=True),
    Column("attempt", SmallInteger, nullable=False, server_default="1"),
    Column("epoch", BigInteger, nullable=False),
    Column("holder", String(200), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("outcome", String(16), nullable=True),
    Column("error_type", String(200), nullable=True),
    Column("duration", Float, nullable=True),
    UniqueConstraint("registry", "job_id", "fire_time", "attempt", name="uq_scheduler_runs_fire"),
    Index("ix_scheduler_runs_started", "registry", "job_id", "started_at"),
)
