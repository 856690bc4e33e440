"""What a job run tells a Sentry Crons monitor: pure functions of the run, no I/O.

A run sends two check-ins through the SDK (``sentry.py``; Sentry's Crons docs,
https://docs.sentry.io/product/crons/): ``in_progress`` before the job's body, then
``ok`` or ``error`` with the run's duration (seconds), both under one check-in ID,
the run ID's hex. Both carry ``monitor_config``, so Sentry creates the monitor on
the first check-in and keeps it in step with the code (the Crons "upsert"):

- ``schedule``: ``{"type": "crontab", "value": "<5-field cron>"}`` for a
  ``CronTrigger`` (``monitor_spec.cron_expression``), ``{"type": "interval",
  "value": n, "unit": "minute" | "hour" | "day" | "week"}`` for an
  ``IntervalTrigger`` of whole minutes (the largest unit that divides it);
- ``timezone``: the trigger's IANA zone;
- ``checkin_margin`` and ``max_runtime``: the job's grace, in whole minutes rounded
  up: a run that starts later, or runs longer, than the grace is what ``/health``
  already calls late.

A trigger Sentry cannot state exactly (seconds, a year field, a ``DateTrigger``...)
gets no ``monitor_config``: its check-ins still arrive, to a monitor made by hand.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .monitor_spec import Inexpressible, MonitoredJob, cron_expression

# Sentry's interval units that a whole number of seconds can be said in, largest first.
INTERVAL_UNITS = (("week", 7 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60))


class CheckInStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CheckIn:
    """One check-in, as ``sentry_sdk.crons.capture_checkin`` takes it.

    ``check_in_id`` is 32 hex digits, the same for a run's check-ins; ``duration`` in
    seconds (``None`` on ``in_progress``); ``monitor_config`` as the module docstring
    says, or ``None``.
    """

    monitor_slug: str
    status: CheckInStatus
    check_in_id: str
    duration: float | None = None
    monitor_config: dict[str, Any] | None = None


def monitor_config(job: MonitoredJob) -> dict[str, Any]:
    """The ``monitor_config`` of ``job``'s monitor (see the module docstring).

    Raises:
        Inexpressible: the trigger has no Sentry schedule; ``str()`` says why.
    """
    trigger = job.trigger
    schedule: dict[str, Any]
    if isinstance(trigger, CronTrigger):
        schedule = {"type": "crontab", "value": cron_expression(trigger)}
    elif isinstance(trigger, IntervalTrigger):
        schedule = _interval(trigger.interval.total_seconds())
    else:
        raise Inexpressible(
            f"a {type(trigger).__name__}: Sentry monitors follow a crontab or an interval"
        )
    minutes = max(1, math.ceil(job.grace.total_seconds() / 60))
    return {
        "schedule": schedule,
        "timezone": _zone_name(trigger.timezone),
        "checkin_margin": minutes,
        "max_runtime": minutes,
    }


def _interval(seconds: float) -> dict[str, Any]:
    for unit, size in INTERVAL_UNITS:
        if seconds >= size and seconds % size == 0:
            return {"type": "interval", "value": int(seconds // size), "unit": unit}
    raise Inexpressible(f"an interval of {seconds:g} s: Sentry counts whole minutes")


def _zone_name(zone: Any) -> str:
    if isinstance(zone, ZoneInfo):
        return zone.key
    if zone is UTC:
        return "UTC"
    raise Inexpressible(f"the time zone {zone}: not an IANA zone name")


def started(slug: str, run_id: uuid.UUID, config: dict[str, Any] | None) -> CheckIn:
    """The ``in_progress`` check-in of run ``run_id``."""
    return CheckIn(slug, CheckInStatus.IN_PROGRESS, run_id.hex, None, config)


def finished(
    slug: str, run_id: uuid.UUID, config: dict[str, Any] | None, *, ok: bool, duration: float
) -> CheckIn:
    """The ``ok`` or ``error`` check-in ending run ``run_id``; ``duration`` in seconds."""
    status = CheckInStatus.OK if ok else CheckInStatus.ERROR
    return CheckIn(slug, status, run_id.hex, duration, config)
