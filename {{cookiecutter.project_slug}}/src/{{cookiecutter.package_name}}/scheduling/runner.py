"""The wrapper every run goes through, scheduled or run by hand.

One run: a run id (UUID4), the start ping (the body waits for the monitor to take
it, at most ``HEARTBEAT_START_TIMEOUT`` seconds, so the monitor measures the whole
run), the job, then its outcome recorded in the job state and the metrics and the
success or failure ping. The job's exception
is caught, logged and reported, so the next run is unaffected. A run cancelled at
shutdown re-raises ``CancelledError`` and is reported as neither: a deploy must
not page anyone.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from ..db import Database
from ..health.model import utcnow
from ..heartbeat_targets import HeartbeatTarget
from ..metrics import Metrics
from ..settings import Settings
from .heartbeat import Heartbeat
from .pings import FailureReport
from .registry import JobContext, JobRegistry
from .state import JobStates

logger = logging.getLogger(__name__)


class RunOutcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class _JobSeries:
    # Resolved once per job: ``labels()`` takes a lock and a lookup on every call.
    success: Counter
    failure: Counter
    cancelled: Counter
    duration: Histogram
    last_success: Gauge


class JobRunner:
    """Runs the jobs of ``jobs`` through the wrapper.

    Args:
        targets: each job's heartbeat target, ``None`` for a job without a URL.
    """

    def __init__(
        self,
        *,
        jobs: JobRegistry,
        targets: Mapping[str, HeartbeatTarget | None],
        heartbeat: Heartbeat,
        states: JobStates,
        metrics: Metrics,
        settings: Settings,
        database: Database,
    ) -> None:
        self.jobs = jobs
        self.targets = targets
        self.heartbeat = heartbeat
        self.states = states
        self.settings = settings
        self.database = database
        heartbeat.hide_in_logs(target for target in targets.values() if target is not None)
        metrics.declare_jobs(job.id for job in jobs)
        self._series = {
            job.id: _JobSeries(
                success=metrics.job_runs.labels(job.id, "success"),
                failure=metrics.job_runs.labels(job.id, "failure"),
                cancelled=metrics.job_runs.labels(job.id, "cancelled"),
                duration=metrics.job_duration.labels(job.id),
                last_success=metrics.job_last_success.labels(job.id),
            )
            for job in jobs
        }
        self._in_flight: set[asyncio.Task[Any]] = set()

    @property
    def in_flight(self) -> int:
        """Runs started and not finished."""
        return len(self._in_flight)

    async def run(self, job_id: str, *, scheduled_at: datetime | None = None) -> RunOutcome:
        """Run the job ``job_id`` once; ``scheduled_at`` is its fire time, if scheduled.

        Returns the outcome; the job's own exception is logged, never raised.

        Raises:
            KeyError: no such job.
            asyncio.CancelledError: the run was cancelled (shutdown); nothing is
                reported to the monitor and no failure is recorded.
        """
        job = self.jobs.get(job_id)
        series = self._series[job_id]
        state = self.states[job_id]
        target = self.targets.get(job_id)
        run_id = uuid.uuid4()
        if target is None:
            logger.debug("job %s has no heartbeat monitor", job_id)
            pings = None
        else:
            pings = await self.heartbeat.begin(
                job_id, target, run_id, wait=self.settings.heartbeat_start_timeout
            )
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        state.started(utcnow())
        context = JobContext(
            job_id=job_id,
            run_id=run_id,
            scheduled_at=scheduled_at,
            settings=self.settings,
            database=self.database,
        )
        began = time.perf_counter()
        try:
            await job.func(context)
        except asyncio.CancelledError:
            state.cancelled()
            series.cancelled.inc()
            logger.warning(
                "job %s run %s cancelled after %.3f s",
                job_id,
                run_id,
                time.perf_counter() - began,
            )
            raise
        except Exception as error:
            duration = time.perf_counter() - began
            state.failed(utcnow(), type(error).__name__, duration)
            series.failure.inc()
            series.duration.observe(duration)
            logger.exception("job %s run %s failed after %.3f s", job_id, run_id, duration)
            if pings is not None:
                pings.failed(FailureReport.of(error, self.settings.heartbeat_failure_body))
            return RunOutcome.FAILURE
        else:
            duration = time.perf_counter() - began
            finished = utcnow()
            state.succeeded(finished, duration)
            series.success.inc()
            series.duration.observe(duration)
            series.last_success.set(finished.timestamp())
            logger.debug("job %s run %s succeeded in %.3f s", job_id, run_id, duration)
            if pings is not None:
                pings.succeeded(duration)
            return RunOutcome.SUCCESS
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def drain(self, limit: float) -> None:
        """Wait up to ``limit`` seconds for runs in flight, then cancel the rest.

        Cancelled runs get ``SCHEDULER_UNWIND_TIMEOUT`` seconds to unwind before they
        are left behind.
        """
        if not self._in_flight:
            return
        logger.info("waiting up to %.1f s for %d job run(s)", limit, len(self._in_flight))
        _, late = await asyncio.wait(set(self._in_flight), timeout=limit)
        if late:
            logger.warning("cancelling %d job run(s) still going after %.1f s", len(late), limit)
            for task in late:
                task.cancel()
            await asyncio.wait(late, timeout=self.settings.scheduler_unwind_timeout)
