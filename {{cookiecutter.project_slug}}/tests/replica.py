"""One replica of the service for the multi-process tests, run as ``python tests/replica.py``.

It serves the real app (lifespan, leader lease, scheduler, wrapper, ``/health``) on
``PORT`` with uvicorn, like ``python -m {{ cookiecutter.package_name }}`` does, with
two jobs that fire every second (``REPLICA_REGISTRY`` names their registry, and so
the lease):

- ``tick`` works for ``TICK_STEPS`` steps of 0.1 s. Each step is a transaction
  fenced by ``JobContext.fence`` that records the step in ``replica_steps`` (run
  id, fire time, this process's id, the database's clock): the steps show when a
  process really ran a job under a current term.
- ``broken`` always fails (a failing job, seen from every replica's ``/health``).

It stops gracefully on SIGTERM (exit status 0).
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.interval import IntervalTrigger

from {{ cookiecutter.package_name }}.db import begin, fetch_in
from {{ cookiecutter.package_name }}.logs import configure_logging
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.scheduling import (
    JobContext,
    JobRegistry,
)
from {{ cookiecutter.package_name }}.server import ServerOptions, serve
from {{ cookiecutter.package_name }}.settings import load_settings

# A start date shared by every replica puts the fires of all of them on whole
# seconds, so a fire run twice would show as two runs with the same time.
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
TICK_STEPS = 5
STEP = 0.1
RECORD_STEP = (
    "INSERT INTO replica_steps (run_id, fire_time, pid, epoch, at)"
    " VALUES ($1, $2, $3, $4, clock_timestamp()) RETURNING at"
)


def replica_jobs(name: str) -> JobRegistry:
    jobs = JobRegistry(name)
    every_second = {"seconds": 1, "start_date": EPOCH}

    @jobs.scheduled("tick", IntervalTrigger(**every_second), grace=timedelta(seconds=30))
    async def tick(context: JobContext) -> None:
        for _ in range(TICK_STEPS):
            async with begin(context.database) as transaction:
                await context.fence(transaction)
                await fetch_in(
                    transaction,
                    RECORD_STEP,
                    context.run_id,
                    context.scheduled_at,
                    os.getpid(),
                    context.epoch,
                )
            await asyncio.sleep(STEP)

    @jobs.scheduled("broken", IntervalTrigger(**every_second), grace=timedelta(seconds=60))
    async def broken(context: JobContext) -> None:
        raise RuntimeError("this job always fails")

    return jobs


def main() -> int:
    settings = load_settings()
    configure_logging(settings)
    app = create_app(settings, jobs=replica_jobs(os.environ["REPLICA_REGISTRY"]))
    return serve(app, ServerOptions(host=settings.host, port=settings.port, log_level="warning"))


if __name__ == "__main__":
    raise SystemExit(main())
