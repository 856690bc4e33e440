"""``python -m {{ cookiecutter.package_name }} jobs list``, ``jobs run <job_id>``, ``jobs sync-monitors``, ``jobs cronjobs``.

For operators, e.g. through ``kubectl exec``. ``jobs run`` goes through the same
wrapper as a scheduled run (heartbeat pings, job state, metrics) and exits 1 when
the job fails. It does not take the leader lease, is not recorded in
``scheduler_runs`` and is not fenced: it is an explicit request to run now,
whatever the scheduler is doing. ``jobs sync-monitors [--dry-run] [--prune]``
provisions the jobs' Healthchecks checks (``heartbeats/monitor_sync.py``), one line per check
(what a new check gets, the fields an update changes, old -> new), and exits 1,
with one line, when the API refuses or cannot be reached.

``jobs run --cronjob <job_id>`` is what a CronJob's pod runs (``cronjob.py``): the
run is recorded under the fire time derived from the trigger, a second pod for that
fire runs nothing (exit 0), ``<JOB_ID>_TIME_LIMIT`` bounds it, and SIGTERM cancels
it (recorded ``cancelled``, a failure ping saying why; exit 1). ``jobs cronjobs
[--check]`` writes ``k8s/base/cronjobs.yaml`` from the registry (``--check``: exit 1
when the file differs, writing nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ..db import open_database
from ..heartbeats.monitor_sync import SyncError, sync_monitors
from ..heartbeats.sender import Heartbeat
from ..heartbeats.targets import resolve_targets
from ..metrics import Metrics
from ..settings import Settings
from .cronjob import fire_time, load_cronjob_settings
from .lease import Lease, process_identity
from .registry import JobRegistry
from .runner import JobRunner, RunOutcome
from .state import JobStates


def add_jobs_command(commands: Any) -> None:
    """Add ``jobs list`` and ``jobs run <job_id>`` to argparse ``commands`` (subparsers)."""
    jobs = commands.add_parser("jobs", help="list the scheduled jobs, or run one now")
    actions = jobs.add_subparsers(
        dest="jobs_command", required=True, metavar="{list,run,sync-monitors,cronjobs}"
    )
    actions.add_parser(
        "list", help="list the jobs: where they run, trigger, grace time, next fire, heartbeat"
    )
    run = actions.add_parser("run", help="run one job now through the heartbeat wrapper")
    run.add_argument("job_id")
    run.add_argument(
        "--cronjob",
        action="store_true",
        help="run as a CronJob's pod: record the fire due now, time limit, SIGTERM cancels",
    )
    run.add_argument(
        "--fire-time",
        type=_aware_datetime,
        default=None,
        help="with --cronjob: the fire to record (ISO 8601 with offset) instead of the one due now",
    )
    cronjobs = actions.add_parser(
        "cronjobs", help="write k8s/base/cronjobs.yaml from the jobs declared runs_in='cronjob'"
    )
    cronjobs.add_argument("--output", type=Path, default=None, help="the file to write")
    cronjobs.add_argument(
        "--check", action="store_true", help="exit 1 when the file is stale; write nothing"
    )
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
    if args.jobs_command == "cronjobs":
        return cronjobs_command(jobs, out=out, output=args.output, check=args.check)
    if args.jobs_command == "sync-monitors":
        return sync_command(
            jobs, settings=settings, out=out, dry_run=args.dry_run, prune=args.prune
        )
    if args.job_id not in jobs:
        known = ", ".join(job.id for job in jobs) or "none"
        print(f"unknown job {args.job_id!r}; jobs: {known}", file=sys.stderr)
        return 2
    if args.cronjob:
        time_limit = load_cronjob_settings(args.job_id).time_limit
        outcome = asyncio.run(
            run_cronjob(
                args.job_id,
                jobs=jobs,
                settings=settings,
                time_limit=time_limit,
                scheduled_at=args.fire_time,
            )
        )
        print(f"{args.job_id}: {outcome.value}", file=out)
        # Refused: another pod runs (or ran) this fire; not this pod's failure.
        return 0 if outcome in (RunOutcome.SUCCESS, RunOutcome.REFUSED) else 1
    outcome = asyncio.run(run_job(args.job_id, jobs=jobs, settings=settings))
    print(f"{args.job_id}: {outcome.value}", file=out)
    return 0 if outcome is RunOutcome.SUCCESS else 1


def list_jobs(jobs: JobRegistry, *, settings: Settings, out: TextIO) -> int:
    """Print one line per job: id, where it runs, trigger, grace (s), next fire (UTC), heartbeat.

    The heartbeat column shows the protocol, the redacted URL (never the token) and
    the setting it comes from, or ``none``.
    """
    targets = resolve_targets((job.id for job in jobs), settings)
    now = datetime.now(UTC)
    rows = [("JOB", "RUNS IN", "TRIGGER", "GRACE", "NEXT FIRE (UTC)", "HEARTBEAT")]
    for job in jobs:
        next_fire = job.trigger.get_next_fire_time(None, now)
        target = targets[job.id]
        heartbeat = (
            f"{target.protocol.value} {target.redacted} ({target.source})"
            if target is not None
            else f"none (set {job.id.upper()}_HEARTBEAT_URL, HEALTHCHECKS_PING_KEY or HEARTBEAT_PROTOCOL=sentry)"
        )
        rows.append(
            (
                job.id,
                job.runs_in,
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
    httpx_logger = logging.getLogger("httpx")
    level = httpx_logger.level
    httpx_logger.setLevel(logging.WARNING)
    try:
        asyncio.run(
            sync_monitors(jobs, settings, report=report, warn=warn, dry_run=dry_run, prune=prune)
        )
    except SyncError as error:
        print(f"jobs sync-monitors: {error}", file=sys.stderr)
        return 1
    finally:
        httpx_logger.setLevel(level)
    return 0


@dataclass
class _Pings:
    """How long the end of a one-off run waits for its pending pings, in seconds.

    ``None`` (the default) waits for every ping's retries to end.
    """

    flush_timeout: float | None = None


@asynccontextmanager
async def _one_off_runner(
    jobs: JobRegistry, settings: Settings, *, lease: Lease | None = None
) -> AsyncIterator[tuple[JobRunner, _Pings]]:
    """A ``JobRunner`` as the scheduler's, for a run outside it, with its database open.

    Sentry is started first when ``SENTRY_DSN`` is set. On exit the pending pings are
    drained (for ``_Pings.flush_timeout`` seconds), the lease is closed and Sentry is
    flushed (for ``HEARTBEAT_TIMEOUT`` seconds).

    Raises:
        ConfigurationError: a job's heartbeat URL or protocol is invalid.
    """
    targets = resolve_targets((job.id for job in jobs), settings)
    if settings.sentry_dsn is not None:
        from ..sentry import start_sentry

        start_sentry(settings, targets=targets)
    metrics = Metrics()
    heartbeat = Heartbeat(
        metrics=metrics, timeout=settings.heartbeat_timeout, retries=settings.heartbeat_retries
    )
    pings = _Pings()
    try:
        async with open_database(settings) as database:
            yield (
                JobRunner(
                    jobs=jobs,
                    targets=targets,
                    heartbeat=heartbeat,
                    states=JobStates(job.id for job in jobs),
                    metrics=metrics,
                    settings=settings,
                    database=database,
                    lease=lease,
                ),
                pings,
            )
    finally:
        await heartbeat.drain(pings.flush_timeout)
        await heartbeat.aclose()
        if lease is not None:
            await lease.aclose()
        if settings.sentry_dsn is not None:
            from ..sentry import flush

            flush(settings.heartbeat_timeout)


async def run_job(job_id: str, *, jobs: JobRegistry, settings: Settings) -> RunOutcome:
    """Run ``job_id`` once through the wrapper, then wait for its heartbeat pings.

    Raises:
        KeyError: no such job.
        ConfigurationError: a job's heartbeat URL or protocol is invalid.
    """
    async with _one_off_runner(jobs, settings) as (runner, _):
        return await runner.run(job_id)


def cronjobs_command(jobs: JobRegistry, *, out: TextIO, output: Path | None, check: bool) -> int:
    """``jobs cronjobs``: write (or ``check``) the CronJobs file; 1 with one line on error."""
    from .cronjob_manifest import MANIFEST, ManifestError, render_cronjobs

    path = output if output is not None else MANIFEST
    try:
        text = render_cronjobs(jobs)
    except ManifestError as error:
        print(f"jobs cronjobs: {error}", file=sys.stderr)
        return 1
    if check:
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != text:
            print(f"jobs cronjobs: {path} is stale: run make cronjobs", file=sys.stderr)
            return 1
        print(f"{path}: up to date", file=out)
        return 0
    path.write_text(text, encoding="utf-8")
    count = len(jobs.runs_in("cronjob"))
    print(f"{path}: {count} CronJob(s)", file=out)
    return 0


async def run_cronjob(
    job_id: str,
    *,
    jobs: JobRegistry,
    settings: Settings,
    time_limit: float,
    scheduled_at: datetime | None = None,
) -> RunOutcome:
    """Run ``job_id`` as its CronJob's pod does; see the module docstring.

    ``scheduled_at``: the fire to record; derived from the trigger when omitted
    (``cronjob.fire_time``).

    Returns the outcome (``CANCELLED`` after SIGTERM). Waits at most
    ``HEARTBEAT_FLUSH_TIMEOUT`` seconds for the pings after a SIGTERM.

    Raises:
        KeyError: no such job.
        ConfigurationError: a job's heartbeat URL or protocol is invalid.
    """
    job = jobs.get(job_id)
    if scheduled_at is None:
        scheduled_at = fire_time(job, datetime.now(UTC))
    if scheduled_at is None:
        logging.getLogger(__name__).info(
            "job %s: no fire within its grace time of %g s; run by hand, without a fire time",
            job_id,
            job.grace.total_seconds(),
        )
    lease = None
    if settings.database_dsn.startswith("postgresql"):
        lease = Lease(
            settings.database_dsn,
            name=jobs.name,
            holder=f"cronjob:{process_identity()}"[:200],
            ttl=settings.scheduler_lease_ttl,
            connect_timeout=settings.database_connect_timeout,
            statement_timeout=settings.database_statement_timeout,
            application_name=f"cronjob {job_id}"[:63],
        )
    loop = asyncio.get_running_loop()
    terminated = False
    interrupts: list[asyncio.Task[None]] = []
    async with _one_off_runner(jobs, settings, lease=lease) as (runner, pings):
        run = asyncio.create_task(
            runner.run(job_id, scheduled_at=scheduled_at, cronjob=True, time_limit=time_limit)
        )

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            pings.flush_timeout = settings.heartbeat_flush_timeout
            reason = "SIGTERM: the pod was stopped (node drain, eviction or activeDeadlineSeconds)"
            interrupts.append(loop.create_task(runner.interrupt(reason)))

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            return await run
        except asyncio.CancelledError:
            if not terminated:
                raise
            return RunOutcome.CANCELLED
        finally:
            loop.remove_signal_handler(signal.SIGTERM)


def _aware_datetime(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset")
    return moment.astimezone(UTC)
