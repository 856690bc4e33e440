"""Sentry, against a loopback ingestion endpoint that reads the SDK's envelopes.

A route's unhandled error and a failed job run each arrive once, with no secret in
them; the 503 of an outage does not arrive; a job whose monitor is Sentry's checks
in ``in_progress`` then ``ok`` or ``error`` under one check-in ID, with the
``monitor_config`` its trigger implies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from fastapi import FastAPI, HTTPException
from pytest_httpserver import HTTPServer

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.errors import DependencyUnavailable
from {{ cookiecutter.package_name }}.heartbeats.crons import monitor_config
from {{ cookiecutter.package_name }}.heartbeats.monitor_spec import Inexpressible
from {{ cookiecutter.package_name }}.heartbeats.targets import (
    SentryMonitor,
    job_slug,
    resolve_targets,
    unmonitored_jobs,
)
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.scheduling import (
    Job,
    JobContext,
    JobRegistry,
    default_jobs,
)
from {{ cookiecutter.package_name }}.scheduling.runner import RunOutcome
from {{ cookiecutter.package_name }}.sentry import start_sentry
from {{ cookiecutter.package_name }}.settings import (
    ConfigurationError,
    Environment,
    Settings,
    load_settings,
)

from .conftest import SLUG, app_client, job_runner, make_settings
from .sentry_ingest import SentryIngest
from .test_scheduling_cli import run_cli

# Secrets planted in the settings and in the failing code's local variables.
PUBLIC_KEY = "0123456789abcdef0123456789abcdef"
DB_PASSWORD = "planted-db-password-7f3a"
API_KEY = "planted-api-key-91c2e4"
LOCAL_TOKEN = "planted-local-token-55d0"


@pytest.fixture
def ingest() -> Iterator[SentryIngest]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    peer = SentryIngest(server)
    server.expect_request("/api/42/envelope/", method="POST").respond_with_handler(peer.handle)
    server.start()
    try:
        yield peer
    finally:
        server.clear()
        server.stop()


@pytest.fixture(autouse=True)
def sentry_off_afterwards() -> Iterator[None]:
    """Each test starts the SDK through the service; none leaves it on for the next."""
    yield
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=2)
    sentry_sdk.get_global_scope().set_client(None)


def sentry_settings(ingest: SentryIngest, **overrides: object) -> Settings:
    url = f"postgresql://svc:{DB_PASSWORD}@127.0.0.1:5432/svc"
    values: dict[str, object] = {
        "sentry_dsn": ingest.dsn(PUBLIC_KEY),
        "healthchecks_api_key": API_KEY,
        **overrides,
    }
    return make_settings(url, **values)


def flush() -> None:
    sentry_sdk.get_client().flush(timeout=5)


def assert_no_secret(ingest: SentryIngest) -> None:
    text = b"\n".join(ingest.raw).decode()
    for secret in (PUBLIC_KEY, DB_PASSWORD, API_KEY, LOCAL_TOKEN):
        assert secret not in text, f"{secret} reached Sentry"


def failing_app(ingest: SentryIngest) -> FastAPI:
    settings = sentry_settings(ingest)
    app = create_app(settings, jobs=JobRegistry("sentry-test"))

    @app.get("/boom")
    async def boom() -> None:
        # Locals the SDK serialises: by key (token) and by value (note, settings' repr).
        token = LOCAL_TOKEN
        note = f"api key {API_KEY}, dsn {settings.sentry_dsn and settings.sentry_dsn.get_secret_value()}"
        assert token
        assert note
        raise RuntimeError("the route broke")

    @app.get("/outage")
    async def outage() -> None:
        raise DependencyUnavailable("redis")

    @app.get("/unavailable")
    async def unavailable() -> None:
        raise HTTPException(503, "down for maintenance")

    return app


async def test_a_route_error_arrives_once_and_scrubbed(ingest: SentryIngest) -> None:
    app = failing_app(ingest)
    async with app_client(app) as http:
        with pytest.raises(RuntimeError):
            await http.get("/boom")
    flush()

    events = ingest.of_type("event")
    assert len(events) == 1, events
    (exception,) = events[0]["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("RuntimeError", "the route broke")
    assert events[0]["environment"] == "development"
    assert events[0]["release"].startswith(f"{SLUG}@")
    frame = exception["stacktrace"]["frames"][-1]
    assert frame["function"] == "boom"
    assert frame["vars"]["token"] == "[Filtered]"
    assert "[Filtered]" in frame["vars"]["note"]
    assert_no_secret(ingest)


async def test_an_outage_503_is_not_reported(ingest: SentryIngest) -> None:
    app = failing_app(ingest)
    async with app_client(app) as http:
        assert (await http.get("/outage")).status_code == 503
        assert (await http.get("/unavailable")).status_code == 503
    flush()
    kinds = {item.type for item in ingest.items}
    assert kinds <= {"sessions"}, "no event, no transaction: only release health's session counts"


def sentry_jobs() -> JobRegistry:
    jobs = JobRegistry("sentry-jobs")

    @jobs.scheduled(
        "nightly",
        CronTrigger(hour=2, minute=30, timezone="Europe/Paris"),
        grace=timedelta(minutes=90),
    )
    async def nightly(context: JobContext) -> None:
        """Succeeds."""

    @jobs.scheduled(
        "every_five", IntervalTrigger(minutes=5, timezone="UTC"), grace=timedelta(seconds=150)
    )
    async def every_five(context: JobContext) -> None:
        """Fails, with a secret in a local variable."""
        password = LOCAL_TOKEN
        detail = f"with key {API_KEY}"
        assert password
        assert detail
        raise ValueError("the job broke")

    return jobs


@pytest.fixture
async def sentry_runner(
    ingest: SentryIngest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    monkeypatch.setenv("HEARTBEAT_PROTOCOL", "sentry")
    settings = sentry_settings(ingest, heartbeat_protocol="sentry")
    jobs = sentry_jobs()
    targets = resolve_targets((job.id for job in jobs), settings)
    assert targets == {
        job.id: SentryMonitor(job_slug(job.id), "HEARTBEAT_PROTOCOL") for job in jobs
    }
    start_sentry(settings, targets=targets)
    async with job_runner(jobs, targets, settings=settings) as (runner, _):
        yield runner


def check_ins(ingest: SentryIngest, slug: str) -> list[dict[str, Any]]:
    return [item for item in ingest.of_type("check_in") if item["monitor_slug"] == slug]


async def test_a_failed_run_is_one_tagged_event_and_an_error_check_in(
    ingest: SentryIngest, sentry_runner: Any
) -> None:
    assert await sentry_runner.run("every_five") is RunOutcome.FAILURE
    flush()

    events = ingest.of_type("event")
    assert len(events) == 1, events
    event = events[0]
    (exception,) = event["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("ValueError", "the job broke")
    started, ended = check_ins(ingest, job_slug("every_five"))
    run_id = started["check_in_id"]
    assert event["tags"]["job_id"] == "every_five"
    assert event["tags"]["run_id"].replace("-", "") == run_id
    assert_no_secret(ingest)

    assert (started["status"], ended["status"]) == ("in_progress", "error")
    assert ended["check_in_id"] == run_id
    assert ended["duration"] >= 0
    expected = {
        "schedule": {"type": "interval", "value": 5, "unit": "minute"},
        "timezone": "UTC",
        "checkin_margin": 3,
        "max_runtime": 3,
    }
    assert started["monitor_config"] == expected
    assert ended["monitor_config"] == expected
    assert started["environment"] == "development"


async def test_a_successful_run_checks_in_ok_with_its_crontab(
    ingest: SentryIngest, sentry_runner: Any
) -> None:
    assert await sentry_runner.run("nightly") is RunOutcome.SUCCESS
    flush()

    assert ingest.of_type("event") == []
    started, ended = check_ins(ingest, job_slug("nightly"))
    assert (started["status"], ended["status"]) == ("in_progress", "ok")
    assert started["check_in_id"] == ended["check_in_id"]
    assert len(started["check_in_id"]) == 32
    assert "duration" not in started or started["duration"] is None
    assert 0 <= ended["duration"] < 5
    assert ended["monitor_config"] == {
        "schedule": {"type": "crontab", "value": "30 2 * * *"},
        "timezone": "Europe/Paris",
        "checkin_margin": 90,
        "max_runtime": 90,
    }


async def test_a_cancelled_run_is_not_an_error(ingest: SentryIngest) -> None:
    settings = sentry_settings(ingest)
    jobs = JobRegistry("sentry-cancel")
    started = asyncio.Event()

    @jobs.scheduled("slow", IntervalTrigger(minutes=5), grace=timedelta(minutes=5))
    async def slow(context: JobContext) -> None:
        started.set()
        await asyncio.sleep(60)

    targets = {"slow": None}
    start_sentry(settings, targets=targets)
    async with job_runner(jobs, targets, settings=settings) as (runner, _):
        task = asyncio.create_task(runner.run("slow"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    flush()
    assert ingest.of_type("event") == []


def test_an_error_line_without_an_exception_is_not_an_event(ingest: SentryIngest) -> None:
    start_sentry(sentry_settings(ingest), targets={})
    logging.getLogger("{{ cookiecutter.package_name }}.scheduling.runner").error(
        "job %s fire at %s not run: its start could not be recorded (%s)", "x", None, "OSError"
    )
    flush()
    assert ingest.of_type("event") == []


def test_sentry_protocol_needs_a_dsn_and_takes_no_url(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings("sqlite+aiosqlite:///:memory:", heartbeat_protocol="sentry")
    with pytest.raises(ConfigurationError) as error:
        resolve_targets(["nightly"], settings)
    assert str(error.value) == (
        "HEARTBEAT_PROTOCOL: sentry sends check-ins through SENTRY_DSN, which is not set"
    )
    monkeypatch.setenv("NIGHTLY_HEARTBEAT_URL", "https://hc-ping.com/abc")
    with_dsn = settings.model_copy(update={"sentry_dsn": sentry_settings_dsn()})
    with pytest.raises(
        ConfigurationError, match=r"^NIGHTLY_HEARTBEAT_URL: a Sentry Crons monitor takes no URL"
    ):
        resolve_targets(["nightly"], with_dsn)


def sentry_settings_dsn() -> Any:
    from pydantic import SecretStr

    return SecretStr(f"https://{PUBLIC_KEY}@sentry.example.com/1")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "SENTRY_TRACES_SAMPLE_RATE",
            "1.5",
            "SENTRY_TRACES_SAMPLE_RATE: Input should be less than or equal to 1",
        ),
        (
            "SENTRY_TRACES_SAMPLE_RATE",
            "nan",
            "SENTRY_TRACES_SAMPLE_RATE: Input should be a finite number",
        ),
        (
            "SENTRY_DSN",
            f"https://sentry.example.com/{PUBLIC_KEY}",
            "SENTRY_DSN: must be a Sentry DSN, https://<public key>@<host>/<project id>",
        ),
    ],
)
def test_bad_sentry_settings_are_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert str(error.value) == message


def test_jobs_list_and_sync_monitors_know_sentry_monitors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SENTRY_DSN", f"https://{PUBLIC_KEY}@sentry.example.com/1")
    monkeypatch.setenv("HEARTBEAT_PROTOCOL", "sentry")
    job_ids = [job.id for job in default_jobs()]

    assert main(["jobs", "list"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[0] for row in rows] == job_ids
    for job_id, row in zip(job_ids, rows, strict=True):
        assert row.endswith(f"sentry monitor {job_slug(job_id)} (HEARTBEAT_PROTOCOL)")

    # No HEALTHCHECKS_API_KEY is needed: there is no check to provision.
    httpx_logger = logging.getLogger("httpx")
    level = httpx_logger.level
    try:
        assert main(["jobs", "sync-monitors"]) == 0
    finally:
        # The command quiets httpx for the process; later tests read its lines.
        httpx_logger.setLevel(level)
    assert capsys.readouterr().out.splitlines() == [
        f"nothing to do for {job_slug(job_id)}: its monitor is Sentry Crons "
        "(HEARTBEAT_PROTOCOL=sentry), created and updated by the job's own check-ins"
        for job_id in job_ids
    ]


def test_a_sentry_monitored_job_is_watched_in_staging(ingest: SentryIngest) -> None:
    settings = sentry_settings(ingest, heartbeat_protocol="sentry")
    targets = resolve_targets(["nightly", "hourly"], settings)
    assert unmonitored_jobs(targets, Environment.STAGING) == frozenset()
    assert unmonitored_jobs(dict.fromkeys(targets), Environment.STAGING) == {"nightly", "hourly"}


async def test_jobs_run_reports_a_failed_run_from_its_own_process(
    ingest: SentryIngest, refused_port: int, tmp_path: Path
) -> None:
    status, out, err = await run_cli(
        "jobs",
        "run",
        "cleanup_items",
        env={
            "DATABASE_URL": f"postgresql://svc:{DB_PASSWORD}@127.0.0.1:{refused_port}/postgres",
            "SENTRY_DSN": ingest.dsn(PUBLIC_KEY),
            "CLEANUP_ITEMS_HEARTBEAT_PROTOCOL": "sentry",
        },
        cwd=tmp_path,
    )
    assert status == 1, err
    assert out == "cleanup_items: failure\n"
    (event,) = ingest.of_type("event")
    assert event["tags"]["job_id"] == "cleanup_items"
    started, ended = check_ins(ingest, job_slug("cleanup_items"))
    assert (started["status"], ended["status"]) == ("in_progress", "error")
    run_id = event["tags"]["run_id"].replace("-", "")
    assert started["check_in_id"] == ended["check_in_id"] == run_id
    assert ended["monitor_config"]["schedule"] == {"type": "crontab", "value": "17 3 * * *"}
    assert_no_secret(ingest)


@pytest.mark.parametrize(
    ("trigger", "schedule"),
    [
        (
            IntervalTrigger(hours=2, timezone="UTC"),
            {"type": "interval", "value": 2, "unit": "hour"},
        ),
        (IntervalTrigger(days=7, timezone="UTC"), {"type": "interval", "value": 1, "unit": "week"}),
        (
            IntervalTrigger(minutes=90, timezone="UTC"),
            {"type": "interval", "value": 90, "unit": "minute"},
        ),
        (
            CronTrigger(day_of_week="mon-fri", hour=6, timezone="UTC"),
            {"type": "crontab", "value": "0 6 * * MON-FRI"},
        ),
    ],
)
def test_monitor_config_follows_the_trigger(trigger: Any, schedule: dict[str, Any]) -> None:
    job = Job(id="some_job", func=noop, trigger=trigger, grace=timedelta(seconds=61))
    assert monitor_config(job) == {
        "schedule": schedule,
        "timezone": "UTC",
        "checkin_margin": 2,
        "max_runtime": 2,
    }


@pytest.mark.parametrize(
    "trigger",
    [
        IntervalTrigger(seconds=90, timezone="UTC"),
        CronTrigger(second=30, timezone="UTC"),
        DateTrigger(datetime(2030, 1, 1, tzinfo=UTC)),
    ],
    ids=["90 s", "a second field", "a date"],
)
def test_a_trigger_sentry_cannot_state_has_no_monitor_config(trigger: Any) -> None:
    job = Job(id="some_job", func=noop, trigger=trigger, grace=timedelta(minutes=5))
    with pytest.raises(Inexpressible):
        monitor_config(job)


async def noop(context: JobContext) -> None:
    return None
