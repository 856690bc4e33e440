"""Job health in ``/health``: the ``scheduler`` check and one check per job.

None of them gates ``/health/ready``: readiness is about serving traffic, and a
failing job is no reason to take a replica out of the load balancer.

Every replica judges every job from the same state: with PostgreSQL the runs the
leader recorded in the database (``status.py``: one query for all jobs per
``HEALTH_CACHE_TTL``), with SQLite this process's memory. An uptime monitor that
lands on any replica behind a Service sees the same verdicts.

A job's check (key ``<job_id>:lastSuccess``, observed value: seconds since the last
success):

- ``fail`` when the job is overdue: the earliest fire not followed by a success
  is more than the job's grace time in the past. That covers a job that hangs,
  keeps failing, or silently stopped being fired (its next run time passed
  without a fire).
- ``fail`` after ``FAILURES_TO_FAIL`` failed runs in a row.
- ``warn`` after a failed run while still within the grace time.
- ``warn`` in staging and production, on every replica, for a job with no heartbeat
  monitor at all: nothing outside would notice it stop.
- ``warn`` when the job state cannot be read (the database is down: readiness
  reports that).
- ``pass`` otherwise.

The ``scheduler`` check says what this process does (``leader``, ``follower`` or
``disabled``) and which replica leads (``leaderId``, the lease's holder, and its
``epoch``); it warns on every replica while no replica holds a live lease.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from ..health import CheckResult, HealthCheck, Status
from ..health.model import utcnow
from .registry import Job
from .state import JobState
from .status import SchedulerStatus, SchedulerView, StatusSource

FAILURES_TO_FAIL = 2


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def deadline(state: JobState, grace: timedelta) -> datetime | None:
    """When the job's next success is due (aware UTC), or ``None`` before its first fire.

    The earliest fire not followed by a success (``due_since``), else the next fire
    after the last one (``next_run_time``: with no run since the last success, the
    first fire after it), plus ``grace``. Past it the job is overdue: ``assess_job``
    fails it, and ``job_deadline_timestamp_seconds`` (``metrics_state.py``) says when.
    """
    due = state.due_since or state.next_run_time
    return due + grace if due is not None else None


def assess_job(
    state: JobState,
    *,
    grace: timedelta,
    now: datetime,
    leader: bool = True,
    monitored: bool = True,
) -> CheckResult:
    """Judge one job at ``now`` (aware UTC) from its state; see the module docstring.

    ``monitored`` is false for a job that must have a heartbeat monitor and has none.

    The result's extra fields give the state: ``lastStart``, ``lastSuccess``,
    ``lastFailure``, ``nextRunTime`` (ISO 8601), ``consecutiveFailures``,
    ``lastDurationSeconds``, ``graceSeconds`` and ``running``. The last error type
    is in ``output``, shown only with ``HEALTH_SHOW_DETAILS`` like all error text.
    """
    extra: dict[str, Any] = {
        "lastStart": _iso(state.last_start),
        "lastSuccess": _iso(state.last_success),
        "lastFailure": _iso(state.last_failure),
        "consecutiveFailures": state.consecutive_failures,
        "nextRunTime": _iso(state.next_run_time),
        "lastDurationSeconds": state.last_duration,
        "graceSeconds": grace.total_seconds(),
        "running": state.running > 0,
    }
    age = None
    if state.last_success is not None:
        age = round((now - state.last_success).total_seconds(), 3)

    def result(status: Status, output: str | None = None) -> CheckResult:
        unit = "s" if age is not None else None
        return CheckResult(
            status, observed_value=age, observed_unit=unit, output=output, time=now, extra=extra
        )

    unwatched = "no heartbeat monitor configured"
    if not leader:
        if not monitored:
            return result(Status.WARN, unwatched)
        return result(Status.PASS, "runs on the scheduler leader, not in this process")
    # A next run time in the past is a fire the scheduler has not made.
    due_at = deadline(state, grace)
    if due_at is not None and now > due_at:
        return result(
            Status.FAIL,
            f"overdue: no success since the fire at {(due_at - grace).isoformat()} "
            f"and its grace of {grace.total_seconds():g} s",
        )
    if state.consecutive_failures >= FAILURES_TO_FAIL:
        return result(
            Status.FAIL,
            f"failed {state.consecutive_failures} runs in a row, last with {state.last_error_type}",
        )
    if state.consecutive_failures:
        return result(Status.WARN, f"last run failed with {state.last_error_type}")
    if not monitored:
        return result(Status.WARN, unwatched)
    return result(Status.PASS)


def assess_scheduler(scheduler: SchedulerView, status: SchedulerStatus) -> CheckResult:
    """``fail`` when this process should run the scheduler and does not.

    Observed value: ``leader``, ``follower`` or ``disabled``; extra fields ``leader``
    (this process leads), and with PostgreSQL ``leaderId`` and ``epoch`` (the lease's
    holder and term, from ``status``). A follower warns while it cannot reach the
    database to try the lease (it could not take over), and fails when its election
    loop has stopped. Every replica warns while no replica holds a live lease.
    """
    if not scheduler.enabled:
        return CheckResult(Status.PASS, observed_value="disabled", extra={"leader": False})
    leader = scheduler.is_leader
    extra: dict[str, Any] = {"leader": leader}
    if status.shared:
        extra |= {"leaderId": status.leader if status.lease_live else None, "epoch": status.epoch}
    if leader or scheduler.election is None:
        if scheduler.running:
            return CheckResult(
                Status.PASS,
                observed_value="leader",
                extra=extra | {"jobs": len(scheduler.jobs)},
            )
        return CheckResult(
            Status.FAIL,
            observed_value="leader" if leader else "stopped",
            output="this process should run the scheduler but it is not running",
            extra=extra,
        )
    if not scheduler.campaigning:
        return CheckResult(
            Status.FAIL,
            observed_value="follower",
            output="this process stopped trying to take the scheduler lease",
            extra=extra,
        )
    assert scheduler.lease is not None
    if scheduler.lease.last_error is not None:
        return CheckResult(
            Status.WARN,
            observed_value="follower",
            output=f"cannot try the scheduler lease: {scheduler.lease.last_error}",
            extra=extra,
        )
    if status.error is None and not status.lease_live and status.jobs:
        return CheckResult(
            Status.WARN,
            observed_value="follower",
            output="no replica holds the scheduler lease",
            extra=extra,
        )
    return CheckResult(Status.PASS, observed_value="follower", extra=extra)


def scheduler_check(scheduler: SchedulerView, status: StatusSource) -> HealthCheck:
    """The ``scheduler`` check (``/health`` only, never cached itself)."""

    async def run() -> CheckResult:
        return assess_scheduler(scheduler, await status.get())

    return HealthCheck(
        key="scheduler", component_type="component", run=run, readiness=False, cacheable=False
    )


def job_check(
    status: StatusSource, job: Job, unmonitored: Collection[str], *, cacheable: bool = True
) -> HealthCheck:
    """The ``<job_id>:lastSuccess`` check of ``job`` (``/health`` only).

    ``cacheable``: cached like every check when the state is read from the database
    (the read is shared by all job checks); not when it is this process's memory.
    """

    async def run() -> CheckResult:
        snapshot = await status.get()
        monitored = job.id not in unmonitored
        if snapshot.error is not None:
            return CheckResult(
                Status.WARN,
                output=f"job state unavailable: {snapshot.error}",
                time=utcnow(),
            )
        return assess_job(
            snapshot.jobs.get(job.id) or JobState(),
            grace=job.grace,
            now=utcnow(),
            monitored=monitored,
        )

    return HealthCheck(
        key=f"{job.id}:lastSuccess",
        component_type="job",
        run=run,
        readiness=False,
        cacheable=cacheable,
    )
