"""What a new leader owes at a takeover: the latest missed fire of each job, once.

Pure (``scheduling/catchup.py``); the takeover itself, with real replicas, is in
``test_scheduling_replicas.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.interval import IntervalTrigger

from {{ cookiecutter.package_name }}.scheduling import (
    JobContext,
    JobRegistry,
)
from {{ cookiecutter.package_name }}.scheduling.catchup import (
    MissedFire,
    missed_fires,
)
from {{ cookiecutter.package_name }}.scheduling.lease import LastFire

START = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
GRACE = timedelta(seconds=60)


async def nothing(context: JobContext) -> None:
    """Does nothing."""


def every_minute(*job_ids: str) -> JobRegistry:
    jobs = JobRegistry("test")
    for job_id in job_ids:
        trigger = IntervalTrigger(minutes=1, start_date=START, timezone=UTC)
        jobs.scheduled(job_id, trigger, grace=GRACE)(nothing)
    return jobs


def test_the_latest_due_fire_is_owed_once_and_a_job_never_fired_nothing() -> None:
    jobs = every_minute("fired", "never_fired")
    last = {"fired": LastFire(START, 1, "success")}
    now = START + timedelta(minutes=5, seconds=30)
    owed = missed_fires(jobs, last, [], now=now, grace=GRACE)
    assert owed == [MissedFire("fired", START + timedelta(minutes=5), 1, late=False)]


def test_an_interrupted_fire_runs_again_as_its_next_attempt() -> None:
    jobs = every_minute("job")
    last = {"job": LastFire(START, 1, None)}
    now = START + timedelta(seconds=30)
    assert missed_fires(jobs, last, [("job", START, 1)], now=now, grace=GRACE) == [
        MissedFire("job", START, 2, late=False)
    ]
    assert missed_fires(jobs, last, [], now=now, grace=GRACE) == [], "not interrupted: done"


def test_a_fire_past_the_misfire_grace_time_is_late() -> None:
    jobs = every_minute("job")
    last = {"job": LastFire(START, 1, "success")}
    now = START + timedelta(minutes=3, seconds=1)
    owed = missed_fires(jobs, last, [], now=now, grace=timedelta(seconds=0.5))
    assert owed == [MissedFire("job", START + timedelta(minutes=3), 1, late=True)]
