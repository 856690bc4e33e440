"""The job registry: ``@scheduled(job_id, trigger, grace=...)`` and what a job receives.

Declaring a job is the whole contract: the decorator gives it heartbeats, metrics,
a ``/health`` check and exactly-once runs across replicas. The service's jobs are
declared in ``jobs.py`` on the default registry ``JOBS``; tests build their own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from apscheduler.triggers.base import BaseTrigger

from ..db import Database, Transaction, fetch_in
from ..settings import Settings
from .lease import CURRENT_TERM, StaleLeaderError

# Job ids become environment variable names (``<JOB_ID>_HEARTBEAT_URL``) and metric labels.
JOB_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job receives for one run.

    ``scheduled_at`` is the fire time the scheduler ran it for (UTC), or ``None`` when
    an operator ran it by hand (``jobs run``). ``run_id`` is also the heartbeat's
    ``rid``, so the monitor's events and the service's logs can be matched.
    ``database`` is the service's database (``db.py``), as routes use it.
    ``epoch`` is the leader's term this run belongs to (the fencing token, see
    ``lease.py``), ``None`` with SQLite (one process) and for runs by hand.
    """

    job_id: str
    run_id: uuid.UUID
    scheduled_at: datetime | None
    settings: Settings
    database: Database
    epoch: int | None = None
    lease_name: str | None = None
    # Seconds a fenced transaction may sit idle (SCHEDULER_LEASE_TTL / 3).
    fence_idle_timeout: float = 5.0

    async def fence(self, transaction: Transaction) -> None:
        """Make ``transaction`` (the job's own, open) commit only under this run's term.

        Checks in the transaction that the term is still current and locks the lease
        row (``FOR KEY SHARE``) until the transaction ends: a takeover waits for it,
        and once another replica has taken over the check fails. Call it first in
        every transaction whose writes must not come from a stale leader, and keep
        the transaction short: it may not sit idle (an HTTP call inside it) for more
        than ``fence_idle_timeout`` seconds, after which PostgreSQL ends it. Does
        nothing when ``epoch`` is ``None``. Fences the database only: calls to other
        systems are not (see ``docs/leader-lease.md``).

        Raises:
            StaleLeaderError: the term has ended; roll back (leaving the block does).
        """
        if self.epoch is None or self.lease_name is None:
            return
        idle_ms = str(max(round(self.fence_idle_timeout * 1000), 1))
        if not await fetch_in(transaction, CURRENT_TERM, self.lease_name, self.epoch, idle_ms):
            raise StaleLeaderError(
                f"job {self.job_id} run {self.run_id}: the leader's term {self.epoch} has ended"
            )


JobFunction = Callable[[JobContext], Awaitable[None]]

# Where a job runs: in the service's scheduler (on the lease holder), or in a pod of a
# Kubernetes CronJob of its own (``cronjob.py`` renders it; ``jobs run --cronjob``).
RunsIn = Literal["service", "cronjob"]


@dataclass(frozen=True, slots=True)
class Job:
    """A declared job.

    ``trigger`` is an APScheduler 3 trigger (``CronTrigger``, ``IntervalTrigger``...).
    ``grace`` is how late a success may come after a fire before ``/health`` fails
    the job; give the heartbeat monitor the same grace time. ``runs_in`` is where it
    runs: ``service`` (the scheduler of the replica that leads) or ``cronjob`` (a
    Kubernetes CronJob rendered from it, see ``docs/jobs-and-monitoring.md``).
    """

    id: str
    func: JobFunction
    trigger: Any = field(compare=False)
    grace: timedelta
    runs_in: RunsIn = "service"

    @property
    def description(self) -> str:
        """The first line of the job function's docstring."""
        return (self.func.__doc__ or "").strip().split("\n", 1)[0]


class JobRegistry:
    """The jobs of one service, in declaration order.

    ``name`` identifies the set of jobs that must run once across replicas: it is
    the key of their leader lease and the ``registry`` of their recorded runs.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        """Register ``job``.

        Raises:
            ValueError: the id is not lower-case ``[a-z][a-z0-9_]*`` (at most 63
                characters), is already registered, the trigger is not an
                APScheduler trigger, or ``grace`` is not positive.
        """
        if not JOB_ID.match(job.id):
            raise ValueError(f"job id {job.id!r} must match {JOB_ID.pattern}")
        if job.id in self._jobs:
            raise ValueError(f"job id {job.id!r} is already registered")
        if not isinstance(job.trigger, BaseTrigger):
            raise ValueError(f"job {job.id!r}: trigger must be an APScheduler trigger")
        if job.grace <= timedelta(0):
            raise ValueError(f"job {job.id!r}: grace must be positive")
        if job.runs_in not in ("service", "cronjob"):
            raise ValueError(f"job {job.id!r}: runs_in must be 'service' or 'cronjob'")
        self._jobs[job.id] = job

    def scheduled(
        self, job_id: str, trigger: Any, *, grace: timedelta, runs_in: RunsIn = "service"
    ) -> Callable[[JobFunction], JobFunction]:
        """Decorator registering an ``async def job(context: JobContext) -> None``.

        Example, with ``scheduled = JOBS.scheduled``::

            @scheduled("nightly_cleanup", CronTrigger(hour=2), grace=timedelta(hours=1))
            async def nightly_cleanup(context: JobContext) -> None: ...

        ``runs_in="cronjob"`` hands the job to a Kubernetes CronJob of its own.

        Raises:
            ValueError: as ``add``.
        """

        def register(func: JobFunction) -> JobFunction:
            self.add(Job(id=job_id, func=func, trigger=trigger, grace=grace, runs_in=runs_in))
            return func

        return register

    def get(self, job_id: str) -> Job:
        """The job ``job_id``.

        Raises:
            KeyError: no such job.
        """
        return self._jobs[job_id]

    def runs_in(self, where: RunsIn) -> list[Job]:
        """The jobs that run ``where``, in declaration order."""
        return [job for job in self._jobs.values() if job.runs_in == where]

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)


JOBS = JobRegistry("{{ cookiecutter.project_slug }}")
scheduled = JOBS.scheduled
