"""The Healthchecks check each job should have: a pure function of the job registry.

Sources: Healthchecks' Management API v3 (https://healthchecks.io/docs/api/, the
``Spec`` model in ``hc/api/views.py``): ``timeout`` and ``grace`` are whole seconds
from 60 to 31,536,000; ``schedule`` is a cron expression of five fields that cronsim
evaluates like Debian's cron (day-of-month and day-of-week are ORed unless one of
them starts with ``*``); ``tz`` an IANA zone name; ``slug`` at most 100 characters.

An ``IntervalTrigger`` becomes a *simple* check (``timeout`` = the interval), a
``CronTrigger`` a *cron* check (``schedule`` and ``tz``). What a check cannot say
exactly is not guessed: the job is reported with the reason and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.cron.expressions import (
    AllExpression,
    LastDayOfMonthExpression,
    RangeExpression,
    WeekdayPositionExpression,
)
from apscheduler.triggers.interval import IntervalTrigger

from .targets import SLUG_MAX_LENGTH, job_slug

# Healthchecks' bounds of timeout and grace, in seconds.
SECONDS_MIN = 60
SECONDS_MAX = 31_536_000
# Cron's day-of-week names, Sunday first (APScheduler counts from Monday = 0).
CRON_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


class MonitoredJob(Protocol):
    """A declared job as its check sees it (``scheduling.registry.Job`` is one).

    ``trigger`` is an APScheduler 3 trigger; ``grace`` the job's grace time.
    """

    @property
    def id(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def trigger(self) -> Any: ...

    @property
    def grace(self) -> timedelta: ...


class Inexpressible(Exception):
    """A trigger a Healthchecks check cannot state exactly; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """The check of one job: ``fields`` as the Management API takes them.

    ``fields`` holds ``name``, ``slug``, ``tags``, ``desc``, ``grace`` and either
    ``timeout`` or ``schedule`` and ``tz``; ``payload(channels)`` adds ``channels``
    (``HEALTHCHECKS_CHANNELS``: ``"*"`` every integration of the project, ``""``
    none, or names and ids) and ``unique: ["slug"]`` (an upsert).
    """

    slug: str
    fields: dict[str, Any]

    def payload(self, channels: str = "*") -> dict[str, Any]:
        return {**self.fields, "channels": channels, "unique": ["slug"]}

    def differences(self, check: dict[str, Any], channels: list[str]) -> list[Change]:
        """The fields whose value in ``check`` (as the API returns it) differs, with the
        value the check has (``None``: it has none) and the value it should have.

        ``channels`` are the codes of the integrations the check must have (what
        ``HEALTHCHECKS_CHANNELS`` names), and what its comma-separated ``channels``
        must hold (both given as sorted lists of codes). A check of the other kind
        (simple or cron) has ``timeout`` or ``schedule`` changed to ``None``.
        """
        changed = [
            Change(key, check.get(key), value)
            for key, value in self.fields.items()
            if key != "tags" and check.get(key) != value
        ]
        if set(str(check.get("tags", "")).split()) != set(self.fields["tags"].split()):
            changed.append(Change("tags", check.get("tags"), self.fields["tags"]))
        if "timeout" in self.fields and "schedule" in check:
            changed.append(Change("schedule", check["schedule"], None))
        if "schedule" in self.fields and "timeout" in check:
            changed.append(Change("timeout", check["timeout"], None))
        assigned = sorted(code for code in str(check.get("channels", "")).split(",") if code)
        if assigned != sorted(channels):
            changed.append(Change("channels", assigned, sorted(channels)))
        return changed


class Change(NamedTuple):
    """One field of a check that differs from its spec: ``old`` as the API returned it
    (``None`` when absent), ``new`` as the spec has it (``None``: to be dropped)."""

    field: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class Skipped:
    """A job whose check is not provisioned, and why."""

    slug: str
    reason: str


def service_tags(service: str, environment: str) -> str:
    """The tags of the service's checks: its slug, then the environment."""
    return f"{service} {environment}"


def check_spec(job: MonitoredJob, *, service: str, environment: str) -> CheckSpec | Skipped:
    """The check ``job`` should have, or why it has none (see the module docstring)."""
    slug = job_slug(job.id)
    try:
        if len(slug) > SLUG_MAX_LENGTH:
            raise Inexpressible(f"the slug is longer than {SLUG_MAX_LENGTH} characters")
        fields: dict[str, Any] = {
            "name": slug,
            "slug": slug,
            "tags": service_tags(service, environment),
            "desc": job.description,
            "grace": _seconds("grace", job.grace),
        }
        fields.update(_schedule(job.trigger, job.grace))
    except Inexpressible as error:
        return Skipped(slug, str(error))
    return CheckSpec(slug, fields)


def _seconds(name: str, duration: timedelta) -> int:
    seconds = duration.total_seconds()
    if seconds != int(seconds) or not SECONDS_MIN <= seconds <= SECONDS_MAX:
        raise Inexpressible(
            f"{name} of {seconds:g} s: Healthchecks takes whole seconds "
            f"from {SECONDS_MIN} to {SECONDS_MAX}"
        )
    return int(seconds)


def _schedule(trigger: Any, grace: timedelta) -> dict[str, Any]:
    if getattr(trigger, "end_date", None) is not None:
        raise Inexpressible("the trigger has an end_date: the check would alert once it is over")
    jitter = getattr(trigger, "jitter", None)
    if jitter and jitter > grace.total_seconds():
        raise Inexpressible(f"a jitter of {jitter} s is longer than the grace time")
    if isinstance(trigger, IntervalTrigger):
        return {"timeout": _seconds("the interval", trigger.interval)}
    if isinstance(trigger, CronTrigger):
        return {"schedule": cron_expression(trigger), "tz": _zone(trigger.timezone)}
    raise Inexpressible(
        f"a {type(trigger).__name__}: Healthchecks checks follow a period or a cron schedule"
    )


def _zone(zone: Any) -> str:
    if isinstance(zone, ZoneInfo):
        return zone.key
    if zone is UTC:
        return "UTC"
    raise Inexpressible(f"the time zone {zone}: not an IANA zone name")


def cron_expression(trigger: CronTrigger) -> str:
    """The five-field cron expression firing exactly when ``trigger`` does.

    Raises:
        Inexpressible: a ``year``, ``week`` or ``second`` field (cron has none), or a
            combination cron evaluates differently from APScheduler.
    """
    fields = {field.name: field for field in trigger.fields}
    for name in ("year", "week"):
        if str(fields[name]) != "*":
            raise Inexpressible(f"{name}='{fields[name]}': cron has no {name} field")
    if str(fields["second"]) != "0":
        raise Inexpressible(f"second='{fields['second']}': cron fires on whole minutes")
    minute, hour, month = (_plain(fields[name]) for name in ("minute", "hour", "month"))
    day, position = _day(fields["day"])
    weekday = _weekdays(fields["day_of_week"])
    if position is not None:
        if weekday != "*":
            raise Inexpressible(f"day='{fields['day']}' together with day_of_week")
        weekday = position
    elif not (day.startswith("*") or weekday.startswith("*")):
        # Debian cron (and cronsim) fire on either field; APScheduler on both.
        raise Inexpressible(
            f"day='{fields['day']}' and day_of_week='{fields['day_of_week']}': "
            "cron fires on either, APScheduler on both"
        )
    return f"{minute} {hour} {day} {month} {weekday}"


def _cron_like(expression: Any) -> bool:
    # *, */n, a, a-b, a/n and a-b/n (month names included): written as cron writes them.
    return type(expression) is AllExpression or isinstance(expression, RangeExpression)


def _plain(field: Any) -> str:
    """The minute, hour or month field, as APScheduler writes it."""
    if not all(_cron_like(expression) for expression in field.expressions):
        raise Inexpressible(f"{field.name}='{field}' has no cron equivalent")
    return str(field)


def _day(field: Any) -> tuple[str, str | None]:
    """The day-of-month field, or ``*`` and a day-of-week position (``FRI#2``, ``5L``)."""
    expressions = field.expressions
    if len(expressions) == 1 and isinstance(expressions[0], WeekdayPositionExpression):
        expression = expressions[0]
        cron_day = (expression.weekday + 1) % 7
        if expression.option_num == len(expression.options) - 1:  # "last <day>"
            return "*", f"{cron_day}L"
        return "*", f"{CRON_DAYS[cron_day]}#{expression.option_num + 1}"
    parts = []
    for expression in expressions:
        if isinstance(expression, LastDayOfMonthExpression):
            parts.append("L")
        elif _cron_like(expression):
            parts.append(str(expression))
        else:
            raise Inexpressible(f"day='{field}' has no cron equivalent")
    return ",".join(parts), None


def _weekdays(field: Any) -> str:
    """Cron's day-of-week for APScheduler's (Monday = 0), as names: ``MON-FRI``."""
    if str(field) == "*":
        return "*"
    days: set[int] = set()
    for expression in field.expressions:
        if not _cron_like(expression):
            raise Inexpressible(f"day_of_week='{field}' has no cron equivalent")
        # The days themselves: cron's numbers differ, so a step cannot be copied.
        step = expression.step or 1
        first, last = 0, 6
        if isinstance(expression, RangeExpression):
            first = expression.first
            last = (
                expression.last if expression.last is not None else 6 if expression.step else first
            )
        days.update(range(first, last + 1, step))
    cron_days = sorted((day + 1) % 7 for day in days)
    if len(cron_days) == 7:
        return "*"
    return ",".join(_runs(cron_days))


def _runs(days: list[int]) -> list[str]:
    """``[1, 2, 3, 4, 5]`` as ``["MON-FRI"]``; runs of three days or more as ranges."""
    runs: list[list[int]] = []
    for day in days:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    out: list[str] = []
    for run in runs:
        if len(run) >= 3:
            out.append(f"{CRON_DAYS[run[0]]}-{CRON_DAYS[run[-1]]}")
        else:
            out.extend(CRON_DAYS[day] for day in run)
    return out
