"""``python -m {{ cookiecutter.package_name }} jobs list``, ``jobs run <job_id>`` and ``jobs sync-monitors``.

For operators, e.g. through ``kubectl exec``. ``jobs run`` goes through the same
wrapper as a scheduled run (heartbeat pings, job state, metrics) and exits 1 when
the job fails. It does not take the leader lease, is not recorded in
``scheduler_runs`` and is not fenced: it is an explicit request to run now,
whatever the scheduler is doing. ``jobs sync-monitors [--dry-run] [--prune]``
provisions the jobs' Healthchecks checks (``heartbeats/monitor_sync.py``), one line per check
(what a new check gets, the fields an update changes, old -> new), and exits 1,
with one line, when the API refuses or cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from ..db import open_database
from ..heartbeats.monitor_sync import SyncError, sync_monitors
from ..heartbeats.sender import Heartbeat
from ..heartbeats.targets import resolve_targets
from ..metrics import Metrics
from ..settings import Settings
from .registry import JobRegistry
from .runner import JobRunner, RunOutcome
from .state import JobStates


def add_jobs_command(commands: Any) -> None:
    """Add ``jobs list`` and ``jobs run <job_id>`` to argparse ``commands`` (subparsers)."""
    jobs = commands.add_parser("jobs", help="list the scheduled jobs, or run one now")
    actions = jobs.add_subparsers(
        dest="jobs_command", required=True, metavar="{list,run,sync-monitors}"
    )
    actions.add_parser("list", help="list the jobs: trigger, grace time, next fire, heartbeat")
    run = actions.add_parser("run", help="run one job now through the heartbeat wrapper")
    run.add_argument("job_id")
    sync = actions.add_parser(
        "sync-monitors", help="create or update each job's Healthchecks check (Management API)"
    )
    sync.add_argument(
        "--dry-run",
        action="store_true",
        help="print what each check would get or which fields would change; change nothing",
    )
    sync.add_argument(
        "--prune", action="store_true", help="delete the service's checks that match no job"
    )


def jobs_command(
    args: argparse.Namespace, *, settings: Settings, jobs: JobRegistry, out: TextIO | None = None
) -> int:
    """Run the parsed ``jobs`` command; returns the exit status.

    Writes the result to ``out`` (standard output when omitted). Exit status: 0 on
    success, 1 when the job failed or the monitors' API refused, 2 for an unknown
    job id.

    Raises:
        ConfigurationError: a job's heartbeat URL or protocol is invalid.
    """
    out = out if out is not None else sys.stdout
    if args.jobs_command == "list":
        return list_jobs(jobs, settings=settings, out=out)
    if args.jobs_command == "sync-monitors":
        return sync_command(
            jobs, settings=settings, out=out, dry_run=args.dry_run, prune=args.prune
        )
    if args.job_id not in jobs:
        known = ", ".join(job.id for job in jobs) or "none"
        print(f"unknown job {args.job_id!r}; jobs: {known}", file=sys.stderr)
        return 2
    outcome = asyncio.run(run_job(args.job_id, jobs=jobs, settings=settings))
    print(f"{args.job_id}: {outcome.value}", file=out)
    return 0 if outcome is RunOutcome.SUCCESS else 1


def list_jobs(jobs: JobRegistry, *, settings: Settings, out: TextIO) -> int:
    """Print one line per job: id, trigger, grace (s), next fire (UTC), heartbeat.

    The heartbeat column shows the protocol, the redacted URL (never the token) and
    the setting it comes from, or ``none``.
    """
    targets = resolve_targets((job.id for job in jobs), settings)
    now = datetime.now(UTC)
    rows = [("JOB", "TRIGGER", "GRACE", "NEXT FIRE (UTC)", "HEARTBEAT")]
    for job in jobs:
        next_fire = job.trigger.get_next_fire_time(None, now)
        target = targets[job.id]
        heartbeat = (
            f"{target.protocol.value} {target.redacted} ({target.source})"
            if target is not None
            else f"none (set {job.id.upper()}_HEARTBEAT_URL or HEALTHCHECKS_PING_KEY)"
        )
        rows.append(
            (
                job.id,
                str(job.trigger),
                f"{job.grace.total_seconds():g} s",
                next_fire.astimezone(UTC).isoformat(timespec="seconds") if next_fire else "-",
                heartbeat,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]), file=out)
    return 0


def sync_command(
    jobs: JobRegistry, *, settings: Settings, out: TextIO, dry_run: bool, prune: bool
) -> int:
    """``jobs sync-monitors``: one line per check on ``out``; 1 and one line on error."""

    def report(line: str) -> None:
        print(line, file=out)

    def warn(line: str) -> None:
        print(f"jobs sync-monitors: {line}", file=sys.stderr)

    # One line per check is the output; httpx's line per request would bury it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        asyncio.run(
            sync_monitors(jobs, settings, report=report, warn=warn, dry_run=dry_run, prune=prune)
        )
    except SyncError as error:
        print(f"jobs sync-monitors: {error}", file=sys.stderr)
        return 1
    return 0


async def run_job(job_id: str, *, jobs: JobRegistry, settings: Settings) -> RunOutcome:
    """Run ``job_id`` once through the wrapper, then wait for its heartbeat pings.

    Raises:
        KeyError: no such job.
        ConfigurationError: a job's heartbeat URL or protocol is invalid.
    """
    targets = resolve_targets((job.id for job in jobs), settings)
    metrics = Metrics()
    heartbeat = Heartbeat(
        metrics=metrics, timeout=settings.heartbeat_timeout, retries=settings.heartbeat_retries
    )
    try:
        async with open_database(settings) as database:
            runner = JobRunner(
                jobs=jobs,
                targets=targets,
                heartbeat=heartbeat,
                states=JobStates(job.id for job in jobs),
                metrics=metrics,
                settings=settings,
                database=database,
            )
            return await runner.run(job_id)
    finally:
        await heartbeat.drain(None)
        await heartbeat.aclose()
