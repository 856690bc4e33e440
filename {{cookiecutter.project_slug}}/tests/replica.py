"""One replica of the service for the exactly-once test, run as ``python tests/replica.py``.

It runs the service's real lifespan (leader election, scheduler, wrapper) from the
environment, like ``python -m {{ cookiecutter.package_name }}`` does, with one job that fires every
second and records each run in the ``replica_runs`` table: its fire time, its run
id and this process's id. ``REPLICA_REGISTRY`` names the registry, and so the
leader lock. It stops gracefully on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from datetime import UTC, datetime, timedelta

import asyncpg
from apscheduler.triggers.interval import IntervalTrigger

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.postgres import libpq_dsn
from {{ cookiecutter.package_name }}.scheduling import (
    JobContext,
    JobRegistry,
)
from {{ cookiecutter.package_name }}.settings import load_settings

# A start date shared by every replica puts the fires of all of them on whole
# seconds, so a fire run twice would show as two rows with the same time.
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
RECORD = "INSERT INTO replica_runs (scheduled_at, run_id, pid) VALUES ($1, $2, $3)"


def replica_jobs(name: str) -> JobRegistry:
    jobs = JobRegistry(name)

    @jobs.scheduled(
        "tick", IntervalTrigger(seconds=1, start_date=EPOCH), grace=timedelta(seconds=5)
    )
    async def tick(context: JobContext) -> None:
        # A connection of its own: the record is about the fire, whichever ORM the service uses.
        connection = await asyncpg.connect(libpq_dsn(context.settings.database_dsn))
        try:
            await connection.execute(RECORD, context.scheduled_at, context.run_id, os.getpid())
        finally:
            await connection.close()

    return jobs


async def serve() -> None:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    app = create_app(settings, jobs=replica_jobs(os.environ["REPLICA_REGISTRY"]))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with app.router.lifespan_context(app):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve())
