"""This process's scheduler: APScheduler 3 running the registry while this process leads.

With PostgreSQL, a background task campaigns for the leader lock (``leader.py``):
it tries every ``SCHEDULER_LEADER_RETRY_INTERVAL`` seconds; once elected it starts
an ``AsyncIOScheduler`` (in-memory job store, every job added with
``replace_existing=True``, ``coalesce=True``, ``max_instances=1`` and
``SCHEDULER_MISFIRE_GRACE_TIME``), checks the lock's session every interval and
before every run, and steps down when the session fails. With SQLite (one process)
this process always leads. With ``HEARTBEAT_SYNC_MONITORS`` each lead starts by
syncing the jobs' Healthchecks checks in the background (``monitor_sync.py``);
a failure is logged, never fatal.

Stopping (lifespan shutdown or stepping down): pause the scheduler so no new run
starts, wait up to ``SCHEDULER_SHUTDOWN_TIMEOUT`` seconds for runs in flight, cancel
what is left, shut the scheduler down, and only then release the lock, so that no
two processes ever run a job at once and another replica can take over at once.
``AsyncIOScheduler.shutdown(wait=True)`` would not do: it cancels coroutine jobs.
At lifespan shutdown the pings still pending are then flushed within the same
deadline (at least ``HEARTBEAT_FLUSH_TIMEOUT``): ``server.shutdown_bounds`` lists
every bound of the stop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_RUNNING

from ..db import Database
from ..health import HealthCheck
from ..heartbeat_targets import HeartbeatTarget, unmonitored_jobs
from ..metrics import Metrics
from ..settings import Settings
from .health import job_check, scheduler_check
from .heartbeat import Heartbeat
from .leader import AdvisoryLock
from .registry import JobRegistry
from .runner import JobRunner
from .state import JobStates

logger = logging.getLogger(__name__)


class _HideCancelledRuns(logging.Filter):
    # APScheduler 3 catches BaseException around a coroutine job and logs a run
    # cancelled at shutdown as 'Job ... raised an exception' at ERROR; the wrapper
    # has already logged the cancellation as such, and a deploy must not alert.
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)


_HIDE_CANCELLED_RUNS = _HideCancelledRuns()


class JobScheduler:
    """Schedules the jobs of ``jobs`` in this process while it is the leader.

    Args:
        targets: each job's heartbeat target (``resolve_targets``).
    """

    def __init__(
        self,
        *,
        jobs: JobRegistry,
        settings: Settings,
        database: Database,
        metrics: Metrics,
        targets: Mapping[str, HeartbeatTarget | None],
    ) -> None:
        self.jobs = jobs
        self.settings = settings
        self.states = JobStates(job.id for job in jobs)
        # Jobs that must have a heartbeat monitor and have none: a warn in their checks.
        self.unmonitored = unmonitored_jobs(targets, settings.environment)
        self.heartbeat = Heartbeat(
            metrics=metrics,
            timeout=settings.heartbeat_timeout,
            retries=settings.heartbeat_retries,
        )
        self.runner = JobRunner(
            jobs=jobs,
            targets=targets,
            heartbeat=self.heartbeat,
            states=self.states,
            metrics=metrics,
            settings=settings,
            database=database,
        )
        self.lock: AdvisoryLock | None = None
        if settings.database_dsn.startswith("postgresql"):
            self.lock = AdvisoryLock(
                settings.database_dsn,
                key=jobs.lock_key,
                timeout=settings.database_connect_timeout,
                application_name=f"{jobs.name} scheduler"[:63],
            )
        self._scheduler: Any = None
        self._campaign: asyncio.Task[None] | None = None
        self._monitor_sync: asyncio.Task[None] | None = None
        # Fire time of each submitted run, from APScheduler's submission event
        # until the run starts: APScheduler 3 does not pass it to the job.
        self._fire_times: dict[str, datetime] = {}

    @property
    def enabled(self) -> bool:
        """``SCHEDULER_ENABLED``: whether this process may schedule jobs at all."""
        return self.settings.scheduler_enabled

    @property
    def is_leader(self) -> bool:
        """Whether this process is the one that runs the jobs (always, with SQLite)."""
        if not self.enabled:
            return False
        return self.lock.held if self.lock is not None else self._scheduler is not None

    @property
    def running(self) -> bool:
        """Whether the scheduler is running and not paused."""
        return self._scheduler is not None and self._scheduler.state == STATE_RUNNING

    @property
    def campaigning(self) -> bool:
        """Whether the task taking and checking the leader lock is alive (PostgreSQL)."""
        return self._campaign is not None and not self._campaign.done()

    def next_run_time(self, job_id: str) -> datetime | None:
        """The next fire time of ``job_id`` while this process schedules it."""
        job = self._scheduler.get_job(job_id) if self._scheduler is not None else None
        return job.next_run_time if job is not None else None

    def health_checks(self) -> list[HealthCheck]:
        """The ``scheduler`` check, then one check per job (none when disabled)."""
        checks = [scheduler_check(self)]
        if self.enabled:
            checks.extend(job_check(self, job) for job in self.jobs)
        return checks

    async def start(self) -> None:
        """Start scheduling (SQLite) or campaigning for the leader lock (PostgreSQL)."""
        if not self.enabled:
            logger.info("scheduler disabled in this process (SCHEDULER_ENABLED=false)")
            return
        if self.lock is None:
            self._start_scheduler()
        else:
            self._campaign = asyncio.create_task(self._lead(), name="scheduler-leader")

    async def stop(self) -> None:
        """Stop campaigning, drain and stop the scheduler, release the lock, flush pings.

        Runs in flight get up to ``SCHEDULER_SHUTDOWN_TIMEOUT`` seconds; pings still
        pending then get what is left of that time, at least ``HEARTBEAT_FLUSH_TIMEOUT``
        (a start ping without its success would page once the monitor's grace time is over).
        """
        deadline = time.monotonic() + self.settings.scheduler_shutdown_timeout
        for task in (self._campaign, self._monitor_sync):
            if task is not None:
                task.cancel()
                await asyncio.wait({task})
        await self._stop_scheduler()
        if self.lock is not None:
            await self.lock.aclose()
        flush = max(deadline - time.monotonic(), self.settings.heartbeat_flush_timeout)
        await self.heartbeat.drain(flush)
        await self.heartbeat.aclose()

    async def _lead(self) -> None:
        assert self.lock is not None
        interval = self.settings.scheduler_leader_retry_interval
        while True:
            try:
                if await self.lock.try_acquire():
                    logger.info("this process is now the scheduler leader (%s)", self.jobs.name)
                    await self._hold(interval)
                    reason = "the scheduler stopped" if self.lock.held else "the lock is lost"
                    logger.error("stepping down as scheduler leader: %s", reason)
            except Exception:
                logger.exception("scheduler failed while leading; stepping down")
            if self._scheduler is not None or self.lock.held:
                await self._stop_scheduler()
                await self.lock.release()
            await asyncio.sleep(interval)

    async def _hold(self, interval: float) -> None:
        assert self.lock is not None
        self._start_scheduler()
        while True:
            await asyncio.sleep(interval)
            if not (self.running and await self.lock.alive()):
                return

    def _start_scheduler(self) -> None:
        executor_logger = logging.getLogger("apscheduler.executors.default")
        if _HIDE_CANCELLED_RUNS not in executor_logger.filters:
            executor_logger.addFilter(_HIDE_CANCELLED_RUNS)
        scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": self.settings.scheduler_misfire_grace_time,
            },
        )
        scheduler.add_listener(
            functools.partial(self._on_fire, scheduler),
            EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED,
        )
        for job in self.jobs:
            scheduler.add_job(
                self._fire,
                trigger=job.trigger,
                args=(job.id,),
                id=job.id,
                name=job.id,
                replace_existing=True,
            )
        scheduler.start()
        self._scheduler = scheduler
        for job in self.jobs:
            self.states[job.id].next_run_time = self.next_run_time(job.id)
        logger.info("scheduler started with %d job(s)", len(self.jobs))
        if self.settings.heartbeat_sync_monitors:
            self._monitor_sync = asyncio.create_task(self._sync_monitors(), name="sync-monitors")

    async def _sync_monitors(self) -> None:
        # HEARTBEAT_SYNC_MONITORS: once per lead, in the background, never fatal. Imported
        # here: the Management API client is not needed to serve (cold start, memory).
        from .monitor_sync import SyncError, sync_monitors

        def report(line: str) -> None:
            logger.info("heartbeat monitors: %s", line)

        try:
            await sync_monitors(self.jobs, self.settings, report=report)
        except SyncError as error:
            logger.warning("heartbeat monitors not synced: %s", error)
        except Exception:
            logger.exception("heartbeat monitors not synced")

    async def _stop_scheduler(self) -> None:
        # Safe to call again after a cancellation: the stop resumes where it was.
        scheduler = self._scheduler
        if scheduler is None:
            return
        if scheduler.state == STATE_RUNNING:
            scheduler.pause()
        await self.runner.drain(self.settings.scheduler_shutdown_timeout)
        if self._scheduler is scheduler:
            self._scheduler = None
            self._fire_times.clear()
            self.states.unschedule()
            scheduler.shutdown(wait=False)
            # AsyncIOScheduler.shutdown only queues the work on the event loop.
            await asyncio.sleep(0)
            logger.info("scheduler stopped")

    def _on_fire(self, scheduler: Any, event: Any) -> None:
        if event.code == EVENT_JOB_MISSED:
            # Recorded when it was submitted; the run never started.
            self._fire_times.pop(event.job_id, None)
            return
        scheduled_at: datetime = event.scheduled_run_times[-1]
        if event.code == EVENT_JOB_SUBMITTED:
            self._fire_times[event.job_id] = scheduled_at
        job = scheduler.get_job(event.job_id)
        self.states[event.job_id].fired(scheduled_at, job.next_run_time if job else None)

    async def _fire(self, job_id: str) -> None:
        scheduled_at = self._fire_times.pop(job_id, None)
        # The lock's session answering now proves no other process holds the lock, so
        # no other process runs this fire: a takeover only schedules fires after it.
        if self.lock is not None and not await self.lock.alive():
            logger.error("job %s fire at %s skipped: the leader lock is lost", job_id, scheduled_at)
            return
        if not self.running:
            logger.info("job %s fire at %s skipped: the scheduler stops", job_id, scheduled_at)
            return
        await self.runner.run(job_id, scheduled_at=scheduled_at)
