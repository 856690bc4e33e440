"""A job declared ``runs_in="cronjob"``: its time limit, its fire time and its cron schedule.

Such a job is fired by a Kubernetes CronJob of its own (``cronjob_manifest.py``
renders it into ``k8s/base/cronjobs.yaml``), never by the service's scheduler. Its
pod runs ``python -m {{ cookiecutter.package_name }} jobs run --cronjob <job_id>``:
the same wrapper as a scheduled run (pings, the run recorded in ``scheduler_runs``,
``/health``), under the fire time derived here, within ``<JOB_ID>_TIME_LIMIT``.

Kubernetes does not tell a pod which fire it was started for, so the fire time is
the trigger's latest fire at or before now, no older than the job's grace time (the
CronJob's ``startingDeadlineSeconds``: the controller starts no pod later than
that). A pod that finds no such fire (run by hand with ``kubectl create job
--from=cronjob/...`` between fires) runs without a fire time: recorded, never
refused. Two pods for one fire (Kubernetes may start a second one) share the
derived fire time, and the run table's unique key on (fire time, attempt) lets only
the first one run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..settings import DEFAULT_SECRETS_DIR, ENV_FILE, ConfigurationError, _describe
from .catchup import latest_missed
from .registry import Job, JobRegistry

# Seconds a CronJob's run may last by default (``<JOB_ID>_TIME_LIMIT``), and at most.
DEFAULT_TIME_LIMIT = 3600
MAX_TIME_LIMIT = 7 * 86400


class CronJobSettings(BaseSettings):
    """A CronJob job's own settings, ``<JOB_ID>_<SETTING>``, read like ``JobSettings``."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    #: Seconds a run may last (``<JOB_ID>_TIME_LIMIT``, 1 to 604800): past it the run
    #: is cancelled and is a failure. The CronJob's ``activeDeadlineSeconds`` is
    #: derived from it (``cronjob_manifest.active_deadline``).
    time_limit: int = Field(default=DEFAULT_TIME_LIMIT, ge=1, le=MAX_TIME_LIMIT)


def load_cronjob_settings(
    job_id: str, values: Mapping[str, str | None] | None = None
) -> CronJobSettings:
    """The settings of the CronJob job ``job_id`` (``<JOB_ID>_TIME_LIMIT``).

    Read from the environment, ``.env`` and ``SECRETS_DIR``, or only from ``values``
    (the variables of ``k8s/base/settings.env``) when given.

    Raises:
        ConfigurationError: a setting is invalid; one line naming it.
    """
    prefix = f"{job_id.upper()}_"
    try:
        if values is not None:
            fields = {
                name.removeprefix(prefix).lower(): value
                for name, value in values.items()
                if name.startswith(prefix) and value
            }
            return CronJobSettings.model_validate(
                {key: value for key, value in fields.items() if key in CronJobSettings.model_fields}
            )
        secrets_dir = Path(os.environ.get("SECRETS_DIR", DEFAULT_SECRETS_DIR))
        return CronJobSettings(
            _env_prefix=prefix,
            _secrets_dir=secrets_dir if secrets_dir.is_dir() else None,
        )
    except ValidationError as error:
        raise ConfigurationError(_describe(error, prefix=prefix)) from None


def time_limits(jobs: JobRegistry) -> dict[str, int]:
    """Seconds each CronJob job may run (``<JOB_ID>_TIME_LIMIT``); other jobs are absent.

    Raises:
        ConfigurationError: a time limit is invalid.
    """
    return {job.id: load_cronjob_settings(job.id).time_limit for job in jobs.runs_in("cronjob")}


def fire_time(job: Job, now: datetime) -> datetime | None:
    """The fire a CronJob pod started at ``now`` (aware) runs for, ``None``: by hand.

    The latest fire of the job's trigger after ``now - grace`` and at or before
    ``now``; see the module docstring.
    """
    return latest_missed(job.trigger, now - job.grace, now)


class CronScheduleError(ValueError):
    """The job's trigger cannot be a CronJob's ``schedule``; ``str()`` is one line."""


# APScheduler's CronTrigger field -> its position in a five-field cron line.
CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")


def cron_schedule(job: Job) -> tuple[str, str]:
    """``(schedule, timeZone)`` of the CronJob of ``job``, from its ``CronTrigger``.

    Raises:
        CronScheduleError: the trigger is not a ``CronTrigger``, or uses what a
            five-field cron line cannot say (seconds, years, weeks, numbered
            weekdays, ``last`` or ``xth``); the message names the job.
    """
    trigger = job.trigger
    if not isinstance(trigger, CronTrigger):
        raise CronScheduleError(
            f"job {job.id}: a CronJob needs a CronTrigger, not {type(trigger).__name__}"
        )
    fields = {field.name: str(field) for field in trigger.fields}
    for name, allowed in (("second", "0"), ("year", "*"), ("week", "*")):
        if fields[name] != allowed:
            raise CronScheduleError(
                f"job {job.id}: a CronJob's schedule has no {name} field "
                f"(the trigger says {name}={fields[name]!r})"
            )
    for name in CRON_FIELDS:
        value = fields[name]
        names_only = name in ("month", "day_of_week")
        digits = "" if name == "day_of_week" else "0123456789"
        letters = "abcdefghijklmnopqrstuvwxyz" if names_only else ""
        if not value or not set(value) <= set(f"*/,-{digits}{letters}"):
            hint = " (name the weekdays: mon-fri)" if name == "day_of_week" else ""
            raise CronScheduleError(
                f"job {job.id}: {name}={value!r} has no five-field cron form{hint}"
            )
    if trigger.start_date is not None or trigger.end_date is not None:
        raise CronScheduleError(f"job {job.id}: a CronJob has no start or end date")
    zone = getattr(trigger.timezone, "key", None) or getattr(trigger.timezone, "zone", None)
    zone = zone or str(trigger.timezone)
    return " ".join(fields[name] for name in CRON_FIELDS), zone


def starting_deadline(job: Job) -> int:
    """The CronJob's ``startingDeadlineSeconds``: the job's grace, in whole seconds."""
    return max(int(job.grace / timedelta(seconds=1)), 1)
