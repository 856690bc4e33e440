"""The scheduler's tables: the leader lease and the record of every run.

The scheduler reads and writes them with SQL of its own (``lease.py``,
``run_log.py``); they are declared here so that Aerich knows them.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class SchedulerLease(Model):
    """One row per registry: who leads, since which election (the epoch) and until when."""

    name = fields.CharField(max_length=200, primary_key=True)
    holder = fields.CharField(max_length=200)
    epoch = fields.BigIntField()
    expires_at = fields.DatetimeField()
    renewed_at = fields.DatetimeField()

    class Meta:
        table = "scheduler_lease"
        # Makes the epoch a key column: a takeover (an epoch change) then conflicts with
        # the FOR KEY SHARE lock a fenced transaction holds, a renewal does not.
        unique_together = (("name", "epoch"),)


class SchedulerRun(Model):
    """One row per run of a fire (attempt 2 re-runs a fire whose leader died mid-run)."""

    id = fields.BigIntField(primary_key=True)
    registry = fields.CharField(max_length=200)
    job_id = fields.CharField(max_length=63)
    run_id = fields.UUIDField()
    fire_time = fields.DatetimeField(null=True)
    attempt = fields.SmallIntField(default=1)
    epoch = fields.BigIntField()
    holder = fields.CharField(max_length=200)
    started_at = fields.DatetimeField()
    ended_at = fields.DatetimeField(null=True)
    outcome = fields.CharField(max_length=16, null=True)
    error_type = fields.CharField(max_length=200, null=True)
    duration = fields.FloatField(null=True)

    class Meta:
        table = "scheduler_runs"
        unique_together = (("registry", "job_id", "fire_time", "attempt"),)
        indexes = (("registry", "job_id", "started_at"),)
