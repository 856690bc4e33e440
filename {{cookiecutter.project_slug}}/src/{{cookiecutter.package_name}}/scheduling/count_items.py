"""The example of a job declared as a Kubernetes CronJob: a nightly count of the items.

Small on purpose: it shows the path (``runs_in="cronjob"``, the rendered CronJob in
``k8s/base/cronjobs.yaml``, the same heartbeat and ``/health`` check) in every bake.
Remove it: delete this file and its import line in ``jobs.py``, then ``make cronjobs``.
"""

from __future__ import annotations

import logging
from datetime import UTC, timedelta

from apscheduler.triggers.cron import CronTrigger

from ..db import fetch_all
from .registry import JobContext, scheduled

logger = logging.getLogger(__name__)


@scheduled(
    "count_items",
    CronTrigger(hour=1, minute=43, timezone=UTC),
    grace=timedelta(minutes=30),
    runs_in="cronjob",
)
async def count_items(context: JobContext) -> None:
    """Log how many items there are: the example of a job that runs as a CronJob."""
    rows = await fetch_all(context.database, "SELECT count(*) AS count FROM items")
    count = int(rows[0]["count"])
    logger.info("count_items: %d items at the fire of %s", count, context.scheduled_at)
