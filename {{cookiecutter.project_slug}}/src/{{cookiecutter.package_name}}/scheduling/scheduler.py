"""This process's scheduler: APScheduler 3 running the registry while this process leads.

Who leads is decided in ``leader.py`` (the election over the lease row of ``lease.py``);
this module only schedules. With PostgreSQL the election calls ``_elected(term)``: this process
marks the unfinished runs of older terms superseded, prunes runs older than
``SCHEDULER_RUN_RETENTION_DAYS``, starts an ``AsyncIOScheduler`` (in-memory job
store, every job added with ``replace_existing=True``, ``coalesce=True``,
``max_instances=1`` and ``SCHEDULER_MISFIRE_GRACE_TIME``) and runs once each fire
missed while nobody led (or interrupted by the old leader's death) that is still
within the misfire grace time (``catchup.py``). Every run is recorded under the term
(``runner.py``). ``_lost(term, reason)`` stops starting runs and cancels those in
flight at once (``superseded``). With SQLite (one process) this process always
leads and job state stays in memory. With ``HEARTBEAT_SYNC_MONITORS`` each lead
starts by syncing the jobs' Healthchecks checks in the background
(``heartbeats/monitor_sync.py``); a failure is logged, never fatal.

Stopping at lifespan shutdown: pause the scheduler so no new run starts, wait up
to ``SCHEDULER_SHUTDOWN_TIMEOUT`` seconds for runs in flight (the lease is still
renewed meanwhile), cancel what is left, shut the scheduler down, and only then
release the lease, so that another replica can take over at its next try.
``AsyncIOScheduler.shutdown(wait=True)`` would not do: it cancels coroutine jobs.
At lifespan shutdown the pings still pending are then flushed within the same
deadline (at least ``HEARTBEAT_FLUSH_TIMEOUT``): ``server.shutdown_bounds`` lists
every bound of the stop.

APScheduler's scheduler is imported when this process starts scheduling, not at
import (its import reads the entry points of every installed package): with
PostgreSQL that is when this process is elected, and a follower never loads it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED

from ..db import Database
from ..health import HealthCheck
from ..health.model import utcnow
from ..heartbeats.sender import Heartbeat
from ..heartbeats.targets import Target, unmonitored_jobs
from ..metrics import Metrics
from ..settings import Settings
from .catchup import missed_fires
from .health import job_check, scheduler_check
from .leader import LeaderElection, Term
from .lease import Lease, process_identity
from .registry import JobRegistry
from .runner import JobRunner
from .state import JobStates
from .status import LocalStatus, SharedStatus, StatusSource

logger = logging.getLogger(__name__)


class _HideCancelledRuns(logging.Filter):
    # APScheduler 3 catches BaseException around a coroutine job and logs a run
    # cancelled at shutdown as 'Job ... raised an exception' at ERROR; the wrapper
    # has already logged the cancellation as such, and a deploy must not alert.
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)


_HIDE_CANCELLED_RUNS = _HideCancelledRuns()


def _is_running(scheduler: Any) -> bool:
    # Called with a scheduler made by _start_scheduler only: APScheduler's module is loaded.
    from apscheduler.schedulers.base import STATE_RUNNING

    return bool(scheduler.state == STATE_RUNNING)


# Seconds between two prunings of old runs while leading.
PRUNE_INTERVAL = 6 * 3600.0


class JobScheduler:
    """Schedules the jobs of ``jobs`` in this process while it is the leader.

    Args:
        targets: each job's heartbeat target (``resolve_targets``).
        time_limits: seconds each CronJob job may run (``cronjob.time_limits``): its
            run without an end is a failure past it.
    """

    def __init__(
        self,
        *,
        jobs: JobRegistry,
        settings: Settings,
        database: Database,
        metrics: Metrics,
        targets: Mapping[str, Target | None],
        time_limits: Mapping[str, float] | None = None,
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
        self.lease: Lease | None = None
        self.election: LeaderElection | None = None
        self.status: StatusSource = LocalStatus(self)
        if settings.database_dsn.startswith("postgresql"):
            self.lease = Lease(
                settings.database_dsn,
                name=jobs.name,
                holder=process_identity(),
                ttl=settings.scheduler_lease_ttl,
                connect_timeout=settings.database_connect_timeout,
                statement_timeout=settings.database_statement_timeout,
                # The pid first: tests find the session of one replica by it.
                application_name=f"scheduler {os.getpid()} {jobs.name}"[:63],
            )
            self.election = LeaderElection(
                self.lease,
                retry_interval=settings.scheduler_leader_retry_interval,
                on_elected=self._elected,
                on_lost=self._lost,
            )
            self.status = SharedStatus(
                database=database,
                jobs=jobs,
                cache_ttl=settings.health_cache_ttl,
                time_limits=time_limits,
            )
        self.runner = JobRunner(
            jobs=jobs,
            targets=targets,
            heartbeat=self.heartbeat,
            states=self.states,
            metrics=metrics,
            settings=settings,
            database=database,
            lease=self.lease,
        )
        self._scheduler: Any = None
        self._term: Term | None = None
        self._monitor_sync: asyncio.Task[None] | None = None
        self._prune_task: asyncio.Task[None] | None = None
        # Runs of missed fires, started by ``_elected``.
        self._background: set[asyncio.Task[Any]] = set()
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
        if self.election is not None:
            # Elected and scheduling: ``_elected`` has started the scheduler.
            term = self.election.term
            return term is not None and term == self._term
        return self._scheduler is not None

    @property
    def running(self) -> bool:
        """Whether the scheduler is running and not paused."""
        return self._scheduler is not None and _is_running(self._scheduler)

    @property
    def campaigning(self) -> bool:
        """Whether the election loop for the lease is alive (PostgreSQL)."""
        return self.election is not None and self.election.campaigning

    def next_run_time(self, job_id: str) -> datetime | None:
        """The next fire time of ``job_id`` while this process schedules it."""
        job = self._scheduler.get_job(job_id) if self._scheduler is not None else None
        return job.next_run_time if job is not None else None

    def health_checks(self) -> list[HealthCheck]:
        """The ``scheduler`` check, then one check per job (none when disabled)."""
        checks = [scheduler_check(self, self.status)]
        if self.enabled:
            shared = self.lease is not None
            checks.extend(
                job_check(self.status, job, self.unmonitored, cacheable=shared) for job in self.jobs
            )
        return checks

    async def start(self) -> None:
        """Start scheduling (SQLite) or campaigning for the lease (PostgreSQL)."""
        if not self.enabled:
            logger.info("scheduler disabled in this process (SCHEDULER_ENABLED=false)")
            return
        if any(target is not None for target in self.runner.targets.values()):
            self.heartbeat.open()
        if self.election is None:
            self._start_scheduler()
        else:
            self.election.start()

    async def stop(self) -> None:
        """Drain and stop the scheduler, then release the lease and flush pings.

        Runs in flight get up to ``SCHEDULER_SHUTDOWN_TIMEOUT`` seconds; pings still
        pending then get what is left of that time, at least ``HEARTBEAT_FLUSH_TIMEOUT``
        (a start ping without its success would page once the monitor's grace time is over).
        """
        deadline = time.monotonic() + self.settings.scheduler_shutdown_timeout
        for task in (self._monitor_sync, self._prune_task):
            if task is not None:
                task.cancel()
                await asyncio.wait({task})
        # The election keeps renewing the lease while runs drain.
        await self._stop_scheduler()
        if self.election is not None:
            await self.election.stop()
        flush = max(deadline - time.monotonic(), self.settings.heartbeat_flush_timeout)
        await self.heartbeat.drain(flush)
        await self.heartbeat.aclose()

    async def _elected(self, term: Term) -> None:
        assert self.lease is not None
        stale = await self.lease.supersede_stale(term.epoch)
        for job_id, fire_time, attempt in stale:
            logger.warning(
                "job %s fire at %s attempt %d superseded: its leader lost its term mid-run",
                job_id,
                fire_time,
                attempt,
            )
        last_fires = await self.lease.last_fires([job.id for job in self.jobs.runs_in("service")])
        self._start_scheduler()
        self._term = term
        self._prune_task = asyncio.create_task(self._prune(), name="scheduler-prune")
        grace = timedelta(seconds=self.settings.scheduler_misfire_grace_time)
        in_service = self.jobs.runs_in("service")
        for missed in missed_fires(in_service, last_fires, stale, now=utcnow(), grace=grace):
            job_id, fire = missed.job_id, missed.fire_time
            if missed.late:
                logger.warning(
                    "job %s fire at %s missed during the takeover, past its misfire grace time",
                    job_id,
                    fire.isoformat(),
                )
                continue
            logger.info("job %s: running fire at %s missed during the takeover", job_id, fire)
            self.states[job_id].fired(fire, self.next_run_time(job_id))
            self._spawn(self._fire_at(job_id, fire, missed.attempt, term), f"catch-up:{job_id}")

    async def _lost(self, term: Term, reason: str) -> None:
        # Stop starting runs at once, then cancel those in flight: another replica may
        # lead within a third of the TTL.
        if self._scheduler is not None and _is_running(self._scheduler):
            self._scheduler.pause()
        if self._prune_task is not None:
            self._prune_task.cancel()
        await self.runner.supersede()
        await self._stop_scheduler()
        self._term = None

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _prune(self) -> None:
        assert self.lease is not None
        while True:
            try:
                deleted = await self.lease.prune(self.settings.scheduler_run_retention_days)
                if deleted:
                    logger.info("pruned %d scheduler run record(s)", deleted)
            except Exception as error:
                logger.warning("scheduler runs not pruned: %s", type(error).__name__)
            await asyncio.sleep(PRUNE_INTERVAL)

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

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
        # A job declared ``runs_in="cronjob"`` is fired by Kubernetes, never here.
        for job in self.jobs.runs_in("service"):
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
        logger.info("scheduler started with %d job(s)", len(self.jobs.runs_in("service")))
        if self.settings.heartbeat_sync_monitors:
            self._monitor_sync = asyncio.create_task(self._sync_monitors(), name="sync-monitors")

    async def _sync_monitors(self) -> None:
        # HEARTBEAT_SYNC_MONITORS: once per lead, in the background, never fatal. Imported
        # here: the Management API client is not needed to serve (cold start, memory).
        from ..heartbeats.monitor_sync import SyncError, sync_monitors

        def report(line: str) -> None:
            logger.info("heartbeat monitors: %s", line)

        def warn(line: str) -> None:
            logger.warning("heartbeat monitors: %s", line)

        try:
            await sync_monitors(self.jobs, self.settings, report=report, warn=warn)
        except SyncError as error:
            logger.warning("heartbeat monitors not synced: %s", error)
        except Exception:
            logger.exception("heartbeat monitors not synced")

    async def _stop_scheduler(self) -> None:
        # Safe to call again after a cancellation: the stop resumes where it was.
        scheduler = self._scheduler
        if scheduler is None:
            return
        if _is_running(scheduler):
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
        if not self.running:
            logger.info("job %s fire at %s skipped: the scheduler stops", job_id, scheduled_at)
            return
        await self._fire_at(job_id, scheduled_at, 1, self._term)

    async def _fire_at(
        self, job_id: str, scheduled_at: datetime | None, attempt: int, term: Term | None
    ) -> None:
        # The term as this process knows it; the database checks it again (lease.py).
        if self.election is not None and (term is None or self.election.term != term):
            logger.error("job %s fire at %s skipped: not the leader", job_id, scheduled_at)
            return
        if self.runner.busy(job_id):
            logger.warning(
                "job %s fire at %s skipped: its previous run is still going", job_id, scheduled_at
            )
            return
        await self.runner.run(job_id, scheduled_at=scheduled_at, term=term, attempt=attempt)
