"""The state the scrape reports (``metrics.py``'s state series), from the snapshots the
health endpoints already keep: no query of its own.

At each scrape the health checks run through their cache (at most one round-trip per
dependency per ``HEALTH_CACHE_TTL``, each bounded by ``HEALTH_CHECK_TIMEOUT``) and the
jobs' state is the scheduler's status snapshot (with PostgreSQL one query for all jobs
per ``HEALTH_CACHE_TTL``, shared with the job checks), so a follower reports the same
jobs as the leader. The checks and the status live on the event loop; the metrics
server (``METRICS_PORT``) scrapes from a thread of its own, which waits for them on the
loop for at most ``HEALTH_CHECK_TIMEOUT`` plus ``MARGIN`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from .health import HealthChecks, Status
from .health.model import worst
from .metrics import JobSeries, ServiceState
from .scheduling import JobRegistry
from .scheduling.health import deadline
from .scheduling.status import SchedulerStatus, StatusSource

logger = logging.getLogger(__name__)

# Seconds a scrape's thread waits beyond the checks' own timeout for the loop to answer.
MARGIN = 1.0


class ScheduledJobs(Protocol):
    """What the scrape reads of the scheduler (``scheduling.scheduler.JobScheduler``)."""

    status: StatusSource

    @property
    def jobs(self) -> JobRegistry: ...

    @property
    def enabled(self) -> bool: ...

    @property
    def is_leader(self) -> bool: ...


def job_series(jobs: JobRegistry, status: SchedulerStatus) -> dict[str, JobSeries]:
    """Each job's series from a status snapshot; none while it could not be read."""
    if status.error is not None:
        return {}
    series = {}
    for job in jobs:
        state = status.jobs.get(job.id)
        if state is None:
            continue
        due = deadline(state, job.grace)
        series[job.id] = JobSeries(
            last_success=state.last_success.timestamp() if state.last_success else None,
            deadline=due.timestamp() if due is not None else None,
            consecutive_failures=state.consecutive_failures,
        )
    return series


class ScrapeState:
    """The ``metrics.StateSource`` of an app: its checks and its scheduler's status.

    Args:
        health: the app's checks (``app.state.health``).
        scheduler: the app's scheduler.
        loop: the event loop the checks run on.
        timeout: seconds each check may take (``HEALTH_CHECK_TIMEOUT``).
    """

    def __init__(
        self,
        *,
        health: HealthChecks,
        scheduler: ScheduledJobs,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
    ) -> None:
        self.health = health
        self.scheduler = scheduler
        self.loop = loop
        self.timeout = timeout
        self._latest: ServiceState | None = None

    async def refresh(self) -> None:
        """Run the checks through their cache and read the status snapshot, together."""
        results, status = await asyncio.gather(
            self.health.run(readiness_only=False), self._status()
        )
        readiness = [result.status for check, result in results if check.readiness]
        self._latest = ServiceState(
            checks={check.key: result.status.value for check, result in results},
            ready=worst(readiness) is not Status.FAIL,
            # No job series rather than stale ones when the status is late: readiness says why.
            jobs=job_series(self.scheduler.jobs, status) if status is not None else {},
            leader=self.scheduler.is_leader if self.scheduler.enabled else None,
            epoch=status.epoch if status is not None else None,
        )

    async def _status(self) -> SchedulerStatus | None:
        # One read per cache period, shared with the job checks running beside it.
        try:
            return await asyncio.wait_for(asyncio.shield(self.scheduler.status.get()), self.timeout)
        except TimeoutError:
            return None

    def read(self) -> ServiceState | None:
        """The state, refreshed first unless called on the loop itself (the ``/metrics``
        route refreshes before it renders); the last one known if the loop does not
        answer in time."""
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if not on_loop and self.loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self.refresh(), self.loop)
            try:
                future.result(self.timeout + MARGIN)
            except TimeoutError:
                future.cancel()
                logger.warning(
                    "metrics: the state took over %.1f s; scraped the last one",
                    self.timeout + MARGIN,
                )
            except Exception:
                logger.exception("metrics: the state could not be read")
        return self._latest
