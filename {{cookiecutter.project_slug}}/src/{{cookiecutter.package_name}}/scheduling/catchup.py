"""What a new leader runs first: each job's latest fire missed while nobody led, once.

Pure: a function of each job's trigger, its latest recorded fire
(``Lease.last_fires``), the runs the old term left without an outcome
(``Lease.supersede_stale``) and the time. A job's latest fire after its recorded one
that is already due runs once (missed fires coalesce, as APScheduler coalesces
them); when there is none and the recorded fire was interrupted by the old leader's
loss, that fire runs again as its next attempt. Never twice for one fire time: the
run's record is unique per fire and attempt (``lease.py``). A fire more than
``SCHEDULER_MISFIRE_GRACE_TIME`` in the past is reported ``late`` and not run.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .lease import LastFire
from .registry import Job

# Fires examined at most when looking for the latest missed fire of a job.
MAX_MISSED_FIRES = 100_000


@dataclass(frozen=True, slots=True)
class MissedFire:
    """A fire the new leader owes: ``attempt`` above 1 runs an interrupted fire again.

    ``late``: more than the misfire grace time ago; it is logged, not run.
    """

    job_id: str
    fire_time: datetime
    attempt: int
    late: bool


def latest_missed(trigger: Any, last_fire: datetime, now: datetime) -> datetime | None:
    """The latest fire of ``trigger`` after ``last_fire`` that is due at ``now``, if any."""
    latest = None
    fire = trigger.get_next_fire_time(last_fire, now)
    for _ in range(MAX_MISSED_FIRES):
        if fire is None or fire > now:
            break
        latest = fire
        fire = trigger.get_next_fire_time(fire, now)
    return latest


def missed_fires(
    jobs: Iterable[Job],
    last_fires: Mapping[str, LastFire],
    interrupted: Collection[tuple[str, datetime | None, int]],
    *,
    now: datetime,
    grace: timedelta,
) -> list[MissedFire]:
    """The fire each job is owed at a takeover at ``now`` (aware UTC), in the jobs' order.

    ``interrupted`` holds ``(job id, fire time, attempt)`` of the runs the old term
    left without an outcome; ``grace`` is ``SCHEDULER_MISFIRE_GRACE_TIME``. A job
    never fired, or owed nothing, is absent.
    """
    stale = set(interrupted)
    owed: list[MissedFire] = []
    for job in jobs:
        last = last_fires.get(job.id)
        if last is None:
            continue
        fire, attempt = latest_missed(job.trigger, last.fire_time, now), 1
        if fire is None and (job.id, last.fire_time, last.attempt) in stale:
            fire, attempt = last.fire_time, last.attempt + 1
        if fire is None:
            continue
        owed.append(MissedFire(job.id, fire, attempt, late=now - fire > grace))
    return owed
