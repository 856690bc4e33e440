"""The job registry: declarations it refuses, the lock key, the example jobs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from {{ cookiecutter.package_name }}.scheduling import (
    JobContext,
    JobRegistry,
    default_jobs,
)

HOURLY = IntervalTrigger(hours=1)


async def nothing(context: JobContext) -> None:
    """Does nothing."""


@pytest.mark.parametrize(
    ("job_id", "trigger", "grace", "message"),
    [
        ("Nightly", HOURLY, timedelta(hours=1), "must match"),
        ("nightly-report", HOURLY, timedelta(hours=1), "must match"),
        ("9lives", HOURLY, timedelta(hours=1), "must match"),
        ("nightly", "0 2 * * *", timedelta(hours=1), "must be an APScheduler trigger"),
        ("nightly", HOURLY, timedelta(0), "grace must be positive"),
    ],
)
def test_registry_refuses_bad_declarations(
    job_id: str, trigger: object, grace: timedelta, message: str
) -> None:
    jobs = JobRegistry("test")
    with pytest.raises(ValueError, match=message):
        jobs.scheduled(job_id, trigger, grace=grace)(nothing)


def test_registry_refuses_a_duplicate_id() -> None:
    jobs = JobRegistry("test")
    jobs.scheduled("nightly", HOURLY, grace=timedelta(hours=1))(nothing)
    with pytest.raises(ValueError, match="already registered"):
        jobs.scheduled("nightly", CronTrigger(hour=2), grace=timedelta(hours=1))(nothing)
    assert [job.id for job in jobs] == ["nightly"]
    assert jobs.get("nightly").description == "Does nothing."


def test_the_example_jobs_are_declared() -> None:
    # A subset: the jobs you add to jobs.py join these.
    jobs = default_jobs()
    assert {"cleanup_items", "heartbeat_example"} <= {job.id for job in jobs}
    assert jobs.get("cleanup_items").grace == timedelta(hours=1)
