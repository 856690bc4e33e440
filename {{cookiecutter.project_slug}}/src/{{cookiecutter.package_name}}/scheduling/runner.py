"""The wrapper every run goes through, scheduled or run by hand.

One run: a run id (UUID4), with PostgreSQL its start recorded in ``scheduler_runs``
under the leader's term (refused when the term has ended or the fire already ran:
the run then does not start, see ``lease.py``), the start ping (the body waits for the monitor to take
it, at most ``HEARTBEAT_START_TIMEOUT`` seconds, so the monitor measures the whole
run), the job, then its outcome recorded in the job state and the metrics and the
success or failure ping. The job's exception
is caught, logged and reported, so the next run is unaffected. A run cancelled at
shutdown re-raises ``CancelledError`` and is reported as neither: a deploy must
not page anyone. A run cancelled because its leader stepped down is recorded as
``superseded``, and is not reported either; nor is a run whose record a new leader
has already marked superseded when it ends.

A CronJob pod's run (``cronjob=True``, ``jobs run --cronjob``) is recorded without a
lease (``Lease.start_cronjob_run``), is cancelled past its ``time_limit`` (a failure,
``TimeLimitExceeded``), and a cancellation (SIGTERM) is recorded ``cancelled`` and
reported to the monitor as a failure whose body says why: nobody else would.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram

from ..db import Database
from ..health.model import utcnow
from ..heartbeats.pings import FailureReport
from ..heartbeats.sender import Heartbeat
from ..heartbeats.targets import Target
from ..metrics import Metrics
from ..settings import Settings
from ..tracing import job_run_span
from .leader import Term
from .lease import Lease, StaleLeaderError
from .registry import JobContext, JobRegistry
from .state import JobStates
from .time_limit import call_within

logger = logging.getLogger(__name__)


class RunOutcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    # Not started: the leader's term ended, or this fire's attempt was already recorded.
    REFUSED = "refused"
    # Ended without a report: a new leader superseded it.
    SUPERSEDED = "superseded"
    # Cancelled (a CronJob pod's SIGTERM); with ``cronjob=True`` reported as a failure.
    CANCELLED = "cancelled"


# Seconds allowed to record the end of a cancelled run before it unwinds anyway.
RECORD_CANCELLED_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class _JobSeries:
    # Resolved once per job: ``labels()`` takes a lock and a lookup on every call.
    success: Counter
    failure: Counter
    cancelled: Counter
    duration: Histogram


class JobRunner:
    """Runs the jobs of ``jobs`` through the wrapper.

    Args:
        targets: each job's heartbeat target, ``None`` for a job without a URL.
    """

    def __init__(
        self,
        *,
        jobs: JobRegistry,
        targets: Mapping[str, Target | None],
        heartbeat: Heartbeat,
        states: JobStates,
        metrics: Metrics,
        settings: Settings,
        database: Database,
        lease: Lease | None = None,
    ) -> None:
        self.jobs = jobs
        self.lease = lease
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
            )
            for job in jobs
        }
        self._in_flight: dict[asyncio.Task[Any], str] = {}
        # Why a run in flight was cancelled: recorded as its outcome.
        self._cancel_reasons: dict[asyncio.Task[Any], str] = {}
        # What a cancelled CronJob run's failure ping says.
        self._cancel_details: dict[asyncio.Task[Any], str] = {}

    @property
    def in_flight(self) -> int:
        """Runs started and not finished."""
        return len(self._in_flight)

    def busy(self, job_id: str) -> bool:
        """Whether a run of ``job_id`` is in flight."""
        return job_id in self._in_flight.values()

    async def run(
        self,
        job_id: str,
        *,
        scheduled_at: datetime | None = None,
        term: Term | None = None,
        attempt: int = 1,
        cronjob: bool = False,
        time_limit: float | None = None,
    ) -> RunOutcome:
        """Run the job ``job_id`` once; ``scheduled_at`` is its fire time, if scheduled.

        With a lease and a ``term`` the run is recorded, and starts only if its start
        could be recorded under ``term`` (``attempt`` of the fire ``scheduled_at``).
        With a lease and ``cronjob`` it is recorded as a CronJob pod's run (no term); a
        start that cannot be recorded is then a ``FAILURE``, reported to the monitor.
        ``time_limit`` (seconds): past it the run is cancelled and fails with
        ``TimeLimitExceeded``.

        Returns the outcome; the job's own exception is logged, never raised.

        Raises:
            KeyError: no such job.
            asyncio.CancelledError: the run was cancelled (shutdown, or its leader
                stepped down); nothing is reported to the monitor and no failure is
                recorded.
        """
        run_id = uuid.uuid4()
        with job_run_span(job_id, run_id, scheduled_at) as record_outcome:
            outcome = await self._run(
                job_id,
                run_id,
                scheduled_at=scheduled_at,
                term=term,
                attempt=attempt,
                cronjob=cronjob,
                time_limit=time_limit,
            )
            record_outcome(outcome)
            return outcome

    async def _run(
        self,
        job_id: str,
        run_id: uuid.UUID,
        *,
        scheduled_at: datetime | None,
        term: Term | None,
        attempt: int,
        cronjob: bool,
        time_limit: float | None,
    ) -> RunOutcome:
        job = self.jobs.get(job_id)
        series = self._series[job_id]
        state = self.states[job_id]
        target = self.targets.get(job_id)
        recorded = self.lease is not None and (term is not None or cronjob)
        try:
            if recorded and not await self._record_start(
                job_id, run_id, scheduled_at, attempt, term, cronjob
            ):
                return RunOutcome.REFUSED
        except Exception as error:
            # A CronJob pod's start that could not be recorded (the database is down):
            # a failure, reported, since no scheduler will try again.
            series.failure.inc()
            if target is not None:
                unrecorded = await self.heartbeat.begin(
                    job_id, target, run_id, wait=self.settings.heartbeat_start_timeout
                )
                unrecorded.failed(FailureReport.of(error, self.settings.heartbeat_failure_body))
            return RunOutcome.FAILURE
        if target is None:
            logger.debug("job %s has no heartbeat monitor", job_id)
            pings = None
        else:
            pings = await self.heartbeat.begin(
                job_id, target, run_id, wait=self.settings.heartbeat_start_timeout, job=job
            )
        task = asyncio.current_task()
        if task is not None:
            self._in_flight[task] = job_id
        state.started(utcnow())
        context = JobContext(
            job_id=job_id,
            run_id=run_id,
            scheduled_at=scheduled_at,
            settings=self.settings,
            database=self.database,
            epoch=term.epoch if term is not None and recorded else None,
            lease_name=self.lease.name if self.lease is not None and recorded else None,
            fence_idle_timeout=self.settings.scheduler_lease_ttl / 3,
        )
        began = time.perf_counter()
        try:
            await call_within(time_limit, job.func, context)
        except asyncio.CancelledError:
            duration = time.perf_counter() - began
            state.cancelled()
            series.cancelled.inc()
            reason = self._cancel_reasons.get(task, "cancelled") if task else "cancelled"
            logger.warning("job %s run %s %s after %.3f s", job_id, run_id, reason, duration)
            if recorded:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    async with asyncio.timeout(RECORD_CANCELLED_TIMEOUT):
                        await self._record_end(run_id, reason, None, duration)
            if cronjob and pings is not None:
                detail = self._cancel_details.get(task, "the run was cancelled") if task else ""
                pings.failed(FailureReport(f"cancelled after {duration:.3f} s: {detail}"))
            raise
        except StaleLeaderError as error:
            # The job's fence found the term over: superseded, not a failure of the job.
            duration = time.perf_counter() - began
            state.cancelled()
            series.cancelled.inc()
            logger.warning("job %s run %s superseded: %s", job_id, run_id, error)
            if recorded:
                await self._record_end(run_id, RunOutcome.SUPERSEDED, None, duration)
            return RunOutcome.SUPERSEDED
        except Exception as error:
            duration = time.perf_counter() - began
            state.failed(utcnow(), type(error).__name__, duration)
            series.failure.inc()
            series.duration.observe(duration)
            # The extra fields tag the run's Sentry event (sentry.py) and its JSON log line.
            logger.exception(
                "job %s run %s failed after %.3f s",
                job_id,
                run_id,
                duration,
                extra={"job_id": job_id, "run_id": str(run_id)},
            )
            if recorded and not await self._record_end(
                run_id, RunOutcome.FAILURE, type(error).__name__, duration
            ):
                return RunOutcome.SUPERSEDED
            if pings is not None:
                pings.failed(
                    FailureReport.of(error, self.settings.heartbeat_failure_body), duration
                )
            return RunOutcome.FAILURE
        else:
            duration = time.perf_counter() - began
            finished = utcnow()
            state.succeeded(finished, duration)
            series.success.inc()
            series.duration.observe(duration)
            logger.debug("job %s run %s succeeded in %.3f s", job_id, run_id, duration)
            if recorded and not await self._record_end(run_id, RunOutcome.SUCCESS, None, duration):
                return RunOutcome.SUPERSEDED
            if pings is not None:
                pings.succeeded(duration)
            return RunOutcome.SUCCESS
        finally:
            if task is not None:
                self._in_flight.pop(task, None)
                self._cancel_reasons.pop(task, None)
                self._cancel_details.pop(task, None)

    async def _record_start(
        self,
        job_id: str,
        run_id: uuid.UUID,
        scheduled_at: datetime | None,
        attempt: int,
        term: Term | None,
        cronjob: bool,
    ) -> bool:
        assert self.lease is not None
        try:
            if cronjob:
                started = await self.lease.start_cronjob_run(job_id, run_id, scheduled_at)
            else:
                assert term is not None
                started = await self.lease.start_run(
                    job_id, run_id, scheduled_at, attempt, term.epoch
                )
        except Exception as error:
            logger.error(
                "job %s fire at %s not run: its start could not be recorded (%s)",
                job_id,
                scheduled_at,
                type(error).__name__,
            )
            if cronjob:
                raise
            return False
        if not started and cronjob:
            logger.warning(
                "job %s fire at %s not run: it is already recorded", job_id, scheduled_at
            )
        elif not started:
            assert term is not None
            logger.warning(
                "job %s fire at %s not run: the leader's term %d has ended "
                "or this fire already ran",
                job_id,
                scheduled_at,
                term.epoch,
            )
        return started

    async def _record_end(
        self, run_id: uuid.UUID, outcome: str, error_type: str | None, duration: float
    ) -> bool:
        # False only when a new leader has already marked the run superseded.
        assert self.lease is not None
        try:
            finished = await self.lease.finish_run(run_id, outcome, error_type, duration)
        except Exception as error:
            logger.warning("run %s end not recorded (%s)", run_id, type(error).__name__)
            return True
        if not finished:
            logger.warning("run %s ended after a new leader superseded it: not reported", run_id)
        return finished

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
            await self._cancel(late, "cancelled")

    async def supersede(self) -> None:
        """Cancel every run in flight at once, recorded as ``superseded`` (the leader
        stepped down); they get ``SCHEDULER_UNWIND_TIMEOUT`` seconds to unwind."""
        if self._in_flight:
            logger.warning("cancelling %d job run(s): superseded", len(self._in_flight))
            await self._cancel(set(self._in_flight), RunOutcome.SUPERSEDED)

    async def interrupt(self, detail: str) -> None:
        """Cancel every run in flight, recorded ``cancelled``; ``detail`` says why (SIGTERM).

        A CronJob run reports it in its failure ping. Runs get
        ``SCHEDULER_UNWIND_TIMEOUT`` seconds to unwind.
        """
        tasks = set(self._in_flight)
        for task in tasks:
            self._cancel_details[task] = detail
        if tasks:
            logger.warning("cancelling %d job run(s): %s", len(tasks), detail)
            await self._cancel(tasks, RunOutcome.CANCELLED)

    async def _cancel(self, tasks: set[asyncio.Task[Any]], reason: str) -> None:
        for task in tasks:
            self._cancel_reasons[task] = reason
            task.cancel()
        await asyncio.wait(tasks, timeout=self.settings.scheduler_unwind_timeout)
