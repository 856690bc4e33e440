"""The service's scheduled jobs. Declare a job here with ``@scheduled``; nothing else.

Each job gets ``<JOB_ID>_HEARTBEAT_URL`` (optional), a ``/health`` check, metrics and
one run per fire across all replicas. Give triggers an explicit ``timezone``:
APScheduler 3 triggers otherwise use the host's local zone.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ..items.store import open_item_store
from . import count_items  # noqa: F401  (the example CronJob job: remove with its file)
from .registry import JobContext, scheduled

logger = logging.getLogger(__name__)


# Daily, off the top of the hour when many other schedules pile onto a database.
@scheduled("cleanup_items", CronTrigger(hour=3, minute=17, timezone=UTC), grace=timedelta(hours=1))
async def cleanup_items(context: JobContext) -> None:
    """Delete the items created more than ``ITEMS_RETENTION_DAYS`` days before the fire."""
    # Measured from the fire time, so a late or repeated run deletes the same rows.
    reference = context.scheduled_at or datetime.now(UTC)
    cutoff = reference - timedelta(days=context.settings.items_retention_days)
    async with open_item_store(context.database) as store:
        # The fence runs first in the DELETE's transaction: a leader whose term has
        # ended deletes nothing (StaleLeaderError, the run recorded as superseded).
        deleted = await store.delete_created_before(cutoff, fence=context.fence)
    logger.info("cleanup_items deleted %d items created before %s", deleted, cutoff)


@scheduled(
    "heartbeat_example",
    IntervalTrigger(minutes=5, timezone=UTC),
    grace=timedelta(minutes=5),
)
async def heartbeat_example(context: JobContext) -> None:
    """Do nothing: the heartbeat is the point. Its monitor alerts when no replica schedules."""
