"""The state of every job as ``/health`` judges it, the same on every replica.

With PostgreSQL the state is read from ``scheduler_runs`` and ``scheduler_lease``
(written by the leader, ``lease.py``) through the app's own pool, in one query for
all jobs, at most once per ``HEALTH_CACHE_TTL`` (concurrent reads share one query).
Every replica therefore shows the same job verdicts and which replica leads. With
SQLite (one process) it is this process's memory (``state.py``).

The query reads, per job, the latest success and the runs since then (at most
``MAX_RUNS_SINCE_SUCCESS``), through the index on (registry, job_id, started_at)
and the unique key on fire times: its cost does not grow with the retention.
A job's next fire time is its trigger's next after its latest recorded fire.

A CronJob pod's run (epoch 0, no lease) is running until its time limit
(``<JOB_ID>_TIME_LIMIT``) has passed since its start; a run still without an end
then (its pod was killed with SIGKILL, or lost the database) counts as a failure
ending at that moment, with the error type ``NoEndWithinTimeLimit``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..db import Database, fetch_all
from ..health.model import utcnow
from .leader import LeaderElection
from .lease import Lease
from .registry import JobRegistry
from .state import JobState, JobStates

MAX_RUNS_SINCE_SUCCESS = 1000

STATUS_QUERY = """
WITH lease AS (
    SELECT holder, epoch, expires_at FROM scheduler_lease WHERE name = $1
)
SELECT
    j.job_id,
    s.started_at AS success_started,
    s.ended_at AS last_success,
    s.duration AS success_duration,
    s.fire_time AS success_fire,
    f.last_start,
    f.last_failure,
    f.last_error_type,
    f.failure_duration,
    coalesce(f.failures, 0) AS failures,
    f.due_since,
    coalesce(f.running, 0) AS running,
    f.last_fire,
    (SELECT holder FROM lease) AS leader,
    (SELECT epoch FROM lease) AS epoch,
    (SELECT expires_at > clock_timestamp() FROM lease) AS lease_live,
    clock_timestamp() AS now
FROM unnest($2::varchar[], $4::double precision[]) AS j (job_id, time_limit)
LEFT JOIN LATERAL (
    SELECT started_at, ended_at, duration, fire_time FROM scheduler_runs
    WHERE registry = $1 AND job_id = j.job_id AND outcome = 'success'
    ORDER BY started_at DESC
    LIMIT 1
) AS s ON true
LEFT JOIN LATERAL (
    SELECT
        max(started_at) AS last_start,
        max(ended_at) FILTER (WHERE outcome = 'failure') AS last_failure,
        (array_agg(error_type ORDER BY started_at DESC)
            FILTER (WHERE outcome = 'failure'))[1] AS last_error_type,
        (array_agg(duration ORDER BY started_at DESC)
            FILTER (WHERE outcome = 'failure'))[1] AS failure_duration,
        count(*) FILTER (WHERE outcome = 'failure') AS failures,
        min(fire_time) AS due_since,
        count(*) FILTER (
            WHERE outcome IS NULL AND (epoch = 0 OR (
                epoch = (SELECT epoch FROM lease)
                AND (SELECT expires_at FROM lease) > clock_timestamp()
            ))
        ) AS running,
        max(fire_time) AS last_fire
    FROM (
        SELECT
            started_at, fire_time, epoch,
            CASE WHEN lost THEN 'failure' ELSE outcome END AS outcome,
            CASE WHEN lost THEN deadline ELSE ended_at END AS ended_at,
            CASE WHEN lost THEN 'NoEndWithinTimeLimit' ELSE error_type END AS error_type,
            CASE WHEN lost THEN j.time_limit ELSE duration END AS duration
        FROM (
            SELECT *,
                started_at + make_interval(secs => j.time_limit) AS deadline,
                outcome IS NULL AND epoch = 0
                    AND started_at + make_interval(secs => j.time_limit) <= clock_timestamp()
                    AS lost
            FROM scheduler_runs
            WHERE registry = $1 AND job_id = j.job_id
                AND started_at > coalesce(s.started_at, '-infinity')
            ORDER BY started_at DESC
            LIMIT $3
        ) AS latest
    ) AS recent
) AS f ON true
"""


@dataclass(frozen=True, slots=True)
class SchedulerStatus:
    """A read-only snapshot: each job's state, who leads, and when it was read.

    ``leader`` is the lease's holder (``None``: never elected), ``lease_live``
    whether its lease is current, ``error`` the error type when the state could
    not be read (``jobs`` is then empty).
    """

    jobs: Mapping[str, JobState]
    now: datetime
    leader: str | None = None
    epoch: int | None = None
    lease_live: bool = False
    error: str | None = None
    shared: bool = field(default=True)


class StatusSource(Protocol):
    """Where the health checks read the scheduler's state from."""

    async def get(self) -> SchedulerStatus: ...


class SchedulerView(Protocol):
    """What the status and the job health checks read of this process's scheduler.

    Read-only: ``scheduler.JobScheduler`` writes it and satisfies this Protocol (mypy
    checks it where the scheduler hands itself over), so the readers never import the
    writer. ``lease`` and ``election`` are ``None`` with SQLite.
    """

    @property
    def jobs(self) -> JobRegistry: ...

    @property
    def states(self) -> JobStates: ...

    @property
    def lease(self) -> Lease | None: ...

    @property
    def election(self) -> LeaderElection | None: ...

    @property
    def enabled(self) -> bool: ...

    @property
    def is_leader(self) -> bool: ...

    @property
    def running(self) -> bool: ...

    @property
    def campaigning(self) -> bool: ...


class LocalStatus:
    """This process's own state (SQLite: the process that leads is the only one)."""

    def __init__(self, scheduler: SchedulerView) -> None:
        self._scheduler = scheduler

    async def get(self) -> SchedulerStatus:
        scheduler = self._scheduler
        jobs = {job.id: scheduler.states[job.id] for job in scheduler.jobs}
        return SchedulerStatus(
            jobs=jobs,
            now=utcnow(),
            lease_live=scheduler.is_leader,
            shared=False,
        )


class SharedStatus:
    """The state recorded in PostgreSQL, read through the app's pool.

    Args:
        cache_ttl: seconds a snapshot is reused (``HEALTH_CACHE_TTL``).
        time_limits: seconds each CronJob job may run (``cronjob.time_limits``).
    """

    def __init__(
        self,
        *,
        database: Database,
        jobs: JobRegistry,
        cache_ttl: float,
        time_limits: Mapping[str, float] | None = None,
    ) -> None:
        self.database = database
        self.jobs = jobs
        self.cache_ttl = cache_ttl
        self.time_limits = dict(time_limits or {})
        self.queries = 0
        self._cached: SchedulerStatus | None = None
        self._expires_at = 0.0
        self._flight: asyncio.Future[SchedulerStatus] | None = None

    async def get(self) -> SchedulerStatus:
        """A snapshot at most ``cache_ttl`` s old; never raises (``error`` says why)."""
        if self._cached is not None and time.monotonic() < self._expires_at:
            return self._cached
        if self._flight is None:
            self._flight = asyncio.ensure_future(self._read())
        # Shielded: a check that times out must not cancel the read other checks share.
        return await asyncio.shield(self._flight)

    async def _read(self) -> SchedulerStatus:
        try:
            self.queries += 1
            rows = await fetch_all(
                self.database,
                STATUS_QUERY,
                self.jobs.name,
                [job.id for job in self.jobs],
                MAX_RUNS_SINCE_SUCCESS,
                [self.time_limits.get(job.id) for job in self.jobs],
            )
            status = self._snapshot(rows)
        except Exception as error:
            status = SchedulerStatus(jobs={}, now=utcnow(), error=type(error).__name__)
        finally:
            self._flight = None
        self._cached = status
        self._expires_at = time.monotonic() + self.cache_ttl
        return status

    def _snapshot(self, rows: Sequence[Mapping[str, Any]]) -> SchedulerStatus:
        states: dict[str, JobState] = {}
        first = rows[0] if rows else None
        for row in rows:
            job = self.jobs.get(row["job_id"])
            last_fire = row["last_fire"] or row["success_fire"]
            failed_last = row["last_failure"] is not None and (
                row["last_success"] is None or row["last_failure"] > row["last_success"]
            )
            states[job.id] = JobState(
                last_start=row["last_start"] or row["success_started"],
                last_success=row["last_success"],
                last_failure=row["last_failure"],
                last_error_type=row["last_error_type"],
                consecutive_failures=int(row["failures"]),
                next_run_time=(
                    job.trigger.get_next_fire_time(last_fire, last_fire) if last_fire else None
                ),
                due_since=row["due_since"],
                last_duration=row["failure_duration"] if failed_last else row["success_duration"],
                running=int(row["running"]),
            )
        return SchedulerStatus(
            jobs=states,
            now=first["now"] if first is not None else utcnow(),
            leader=first["leader"] if first is not None else None,
            epoch=first["epoch"] if first is not None else None,
            lease_live=bool(first["lease_live"]) if first is not None else False,
        )
