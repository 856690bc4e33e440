"""``jobs sync-monitors``: checks provisioned from the registry through the Management API.

The cron translation is checked against cronsim, the evaluator Healthchecks itself
uses; the sync against a loopback server that answers as the API documents
(``healthchecks_api.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from cronsim import CronSim
from pytest_httpserver import HTTPServer

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.heartbeats.monitor_spec import (
    Inexpressible,
    cron_expression,
)
from {{ cookiecutter.package_name }}.heartbeats.monitor_sync import (
    SyncError,
    sync_monitors,
)
from {{ cookiecutter.package_name }}.heartbeats.targets import SERVICE_ID
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.scheduling import (
    JobContext,
    JobRegistry,
    default_jobs,
)
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import app_client, make_settings, wait_until
from .healthchecks_api import API_KEY, HealthchecksApi

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "fields",
    [
        {"hour": 3, "minute": 17},
        {"minute": "*/15"},
        {"minute": "5/10", "hour": "8-18"},
        {"hour": "*/2", "day_of_week": "mon-fri"},
        {"hour": 9, "day_of_week": "sat,sun"},
        {"hour": 9, "day_of_week": "*/2"},
        {"hour": 9, "day_of_week": "4-6"},
        {"day": "last", "hour": 23, "minute": 30},
        {"day": "last fri", "hour": 6},
        {"day": "2nd mon", "hour": 6},
        {"day": "1,15", "month": "jan-mar"},
        {"day": "*/3", "day_of_week": "mon"},
        {"month": "*/4", "day": 1},
    ],
)
def test_cron_triggers_become_expressions_healthchecks_fires_identically(
    fields: dict[str, Any],
) -> None:
    trigger = CronTrigger(timezone=UTC, **fields)
    expression = cron_expression(trigger)
    theirs = CronSim(expression, START - timedelta(seconds=1))
    now = START
    for _ in range(40):
        fire = trigger.get_next_fire_time(None, now)
        assert fire is not None
        assert next(theirs) == fire, expression
        now = fire + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"second": "*/10"}, "second='*/10': cron fires on whole minutes"),
        ({"year": 2030}, "year='2030': cron has no year field"),
        ({"week": 3}, "week='3': cron has no week field"),
        ({"day": "1-7", "day_of_week": "mon"}, "cron fires on either, APScheduler on both"),
    ],
)
def test_what_cron_cannot_say_is_refused_with_the_reason(
    fields: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Inexpressible, match=reason.replace("*", r"\*")):
        cron_expression(CronTrigger(timezone=UTC, **fields))


async def noop(context: JobContext) -> None:
    """Refresh the report cache."""


def registry() -> JobRegistry:
    jobs = JobRegistry("test")
    jobs.scheduled(
        "nightly_report", CronTrigger(hour=2, minute=30, timezone=UTC), grace=timedelta(hours=1)
    )(noop)
    jobs.scheduled("refresh_cache", IntervalTrigger(minutes=10), grace=timedelta(minutes=5))(noop)
    jobs.scheduled("once", DateTrigger(datetime(2030, 1, 1, tzinfo=UTC)), grace=timedelta(hours=1))(
        noop
    )
    return jobs


@pytest.fixture
def healthchecks(monitor_server: HTTPServer) -> HealthchecksApi:
    monitor_server.clear()
    return HealthchecksApi(monitor_server)


def settings_for(api: HealthchecksApi, **values: Any) -> Settings:
    return Settings(
        _env_file=None,
        environment="development",
        healthchecks_api_url=api.url,
        healthchecks_api_key=API_KEY,
        **values,
    )


async def sync(api: HealthchecksApi, jobs: JobRegistry, **options: Any) -> list[str]:
    lines: list[str] = []
    await sync_monitors(jobs, settings_for(api), report=lines.append, **options)
    return lines


def ours(stderr: str) -> list[str]:
    """The lines the command wrote, without the test server's access log (same process)."""
    return [line for line in stderr.splitlines() if "werkzeug" not in line]


def slug(job_id: str) -> str:
    return f"{SERVICE_ID}-{job_id.replace('_', '-')}"


async def test_sync_creates_each_check_then_changes_nothing(
    healthchecks: HealthchecksApi,
) -> None:
    jobs = registry()
    first = await sync(healthchecks, jobs)
    tags = f'tags "{SERVICE_ID} development"'
    assert first == [
        f'created {slug("nightly_report")}: schedule "30 2 * * *", tz "UTC", grace 3600 s, {tags}',
        f"created {slug('refresh_cache')}: timeout 600 s, grace 300 s, {tags}",
        f"skipped {slug('once')}: a DateTrigger: Healthchecks checks follow a period or a cron schedule",
    ]
    by_slug = {check["slug"]: check for check in healthchecks.checks.values()}
    nightly = by_slug[slug("nightly_report")]
    assert nightly["name"] == slug("nightly_report")
    assert nightly["tags"] == f"{SERVICE_ID} development"
    assert nightly["desc"] == "Refresh the report cache."
    assert (nightly["schedule"], nightly["tz"], nightly["grace"]) == ("30 2 * * *", "UTC", 3600)
    refresh = by_slug[slug("refresh_cache")]
    assert (refresh["timeout"], refresh["grace"]) == (600, 300)
    assert sorted(refresh["channels"]) == sorted(healthchecks.channels)
    posts = [path for method, path in healthchecks.requests if method == "POST"]

    second = await sync(healthchecks, jobs)
    assert second == [
        f"unchanged {slug('nightly_report')}",
        f"unchanged {slug('refresh_cache')}",
        f"skipped {slug('once')}: a DateTrigger: Healthchecks checks follow a period or a cron schedule",
    ]
    assert [path for method, path in healthchecks.requests if method == "POST"] == posts


async def test_a_changed_job_updates_its_check_and_dry_run_changes_nothing(
    healthchecks: HealthchecksApi,
) -> None:
    await sync(healthchecks, registry())
    # A check auto-created by a ping (?create=1): the job's slug, no tags.
    healthchecks.add(name="x", slug=slug("created_by_ping"))
    jobs = JobRegistry("test")
    jobs.scheduled("nightly_report", CronTrigger(hour=4, timezone=UTC), grace=timedelta(hours=2))(
        noop
    )
    jobs.scheduled("created_by_ping", IntervalTrigger(hours=1), grace=timedelta(hours=1))(noop)
    before = {code: dict(check) for code, check in healthchecks.checks.items()}
    healthchecks.requests.clear()

    planned = await sync(healthchecks, jobs, dry_run=True, prune=True)
    # Each field that changes, old -> new: the ping-created check lacks most of them.
    assert planned == [
        f"would update {slug('nightly_report')}: grace 3600 s -> 7200 s, "
        'schedule "30 2 * * *" -> "0 4 * * *"',
        f'would update {slug("created_by_ping")}: name "x" -> "{slug("created_by_ping")}", '
        'desc "" -> "Refresh the report cache.", timeout 86400 s -> 3600 s, '
        f'tags "" -> "{SERVICE_ID} development", channels 0 integrations -> 2 integrations',
        f"would delete {slug('refresh_cache')}",
    ]
    assert healthchecks.checks == before
    assert all(method == "GET" for method, _ in healthchecks.requests)

    done = await sync(healthchecks, jobs, prune=True)
    assert done == [line.replace("would update", "updated") for line in planned[:2]] + [
        f"deleted {slug('refresh_cache')}"
    ]
    assert sorted(check["slug"] for check in healthchecks.checks.values()) == sorted(
        [slug("nightly_report"), slug("created_by_ping")]
    )
    assert await sync(healthchecks, jobs, prune=True) == [
        f"unchanged {slug('nightly_report')}",
        f"unchanged {slug('created_by_ping')}",
    ]


async def test_checks_get_the_integrations_healthchecks_channels_names(
    healthchecks: HealthchecksApi,
) -> None:
    first, second = healthchecks.channels
    # A check created through the API has no integration unless the request names some.
    healthchecks.add(name="x", slug=slug("refresh_cache"), tags=f"{SERVICE_ID} development")
    jobs = registry()
    lines: list[str] = []

    async def sync_with(channels: str) -> list[str]:
        lines.clear()
        settings = settings_for(healthchecks, healthchecks_channels=channels)
        await sync_monitors(jobs, settings, report=lines.append)
        return lines

    await sync_with("integration-2")
    (refreshed,) = [line for line in lines if slug("refresh_cache") in line]
    assert refreshed.startswith(f"updated {slug('refresh_cache')}: ")
    assert refreshed.endswith("channels 0 integrations -> 1 integrations")
    assert {tuple(check["channels"]) for check in healthchecks.checks.values()} == {(second,)}
    # Ids and names alike, as Healthchecks reads them; a change of the setting is an update.
    await sync_with(f"{first},integration-2")
    assert f"updated {slug('nightly_report')}: channels 1 integrations -> 2 integrations" in lines
    assert {tuple(check["channels"]) for check in healthchecks.checks.values()} == {
        tuple(sorted([first, second]))
    }
    assert f"unchanged {slug('nightly_report')}" in await sync_with("*")
    await sync_with("")
    assert lines[0] == "warning: HEALTHCHECKS_CHANNELS is empty: the checks alert nobody"
    assert all(check["channels"] == [] for check in healthchecks.checks.values())


async def test_an_unknown_integration_is_one_line_naming_the_setting_before_any_change(
    healthchecks: HealthchecksApi,
) -> None:
    settings = settings_for(healthchecks, healthchecks_channels="integration-1,ops-slack")
    with pytest.raises(SyncError) as refused:
        await sync_monitors(registry(), settings, report=print)
    assert str(refused.value) == (
        "HEALTHCHECKS_CHANNELS: 'ops-slack' names no integration of the project "
        "(it has: integration-1, integration-2)"
    )
    assert healthchecks.checks == {}


async def test_the_stand_in_refuses_channels_as_healthchecks_does(
    healthchecks: HealthchecksApi,
) -> None:
    healthchecks.integrations[1]["name"] = "integration-1"
    async with httpx.AsyncClient(headers={"X-Api-Key": API_KEY}) as client:
        for channels, error in (
            ("nope", "invalid channel identifier: nope"),
            ("integration-1", "non-unique channel identifier: integration-1"),
            (f"{healthchecks.channels[0]},", "empty channel identifier"),
        ):
            body = {"name": "x", "slug": "x", "channels": channels, "unique": ["slug"]}
            response = await client.post(f"{healthchecks.url}/checks/", json=body)
            assert (response.status_code, response.json()) == (400, {"error": error})
    assert healthchecks.checks == {}


def test_a_project_without_integrations_is_one_warning_line(
    monitor_server: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monitor_server.clear()
    healthchecks = HealthchecksApi(monitor_server, channels=0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("HEALTHCHECKS_API_URL", healthchecks.url)
    monkeypatch.setenv("HEALTHCHECKS_API_KEY", API_KEY)

    assert main(["jobs", "sync-monitors"]) == 0
    captured = capsys.readouterr()
    assert ours(captured.err) == [
        "jobs sync-monitors: warning: the Healthchecks project has no integration, so its "
        "checks alert nobody: add one (Integrations in Healthchecks), then sync again"
    ]
    assert len(captured.out.splitlines()) == len(default_jobs())
    assert healthchecks.checks


async def test_a_job_changing_kind_says_which_field_goes(healthchecks: HealthchecksApi) -> None:
    await sync(healthchecks, registry())
    jobs = JobRegistry("test")
    every_ten_minutes = CronTrigger(minute="*/10", timezone=UTC)
    jobs.scheduled("refresh_cache", every_ten_minutes, grace=timedelta(minutes=5))(noop)
    assert await sync(healthchecks, jobs) == [
        f'updated {slug("refresh_cache")}: schedule none -> "*/10 * * * *", '
        'tz none -> "UTC", timeout 600 s -> none'
    ]
    (check,) = [c for c in healthchecks.checks.values() if c["slug"] == slug("refresh_cache")]
    assert (check["schedule"], check["tz"], "timeout" in check) == ("*/10 * * * *", "UTC", False)


async def test_prune_leaves_other_services_checks_alone(healthchecks: HealthchecksApi) -> None:
    other = healthchecks.add(name="backup", slug="other-service-backup", tags="other-service")
    untagged = healthchecks.add(name="manual", slug="manual")
    await sync(healthchecks, registry(), prune=True)
    remaining = list(healthchecks.checks.values())
    assert other in remaining
    assert untagged in remaining


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("short", "HEALTHCHECKS_API_KEY was refused by 127.0.0.1 (401)"),
        ("w" * 32, "HEALTHCHECKS_API_KEY was refused by 127.0.0.1 (401)"),
    ],
)
def test_a_refused_key_ends_with_one_line_and_status_1(
    healthchecks: HealthchecksApi,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    key: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("HEALTHCHECKS_API_URL", healthchecks.url)
    monkeypatch.setenv("HEALTHCHECKS_API_KEY", key)

    assert main(["jobs", "sync-monitors"]) == 1

    captured = capsys.readouterr()
    (line,) = ours(captured.err)
    assert line.startswith(f"jobs sync-monitors: {message}")
    assert key not in captured.err
    assert captured.out == ""


def test_an_unreachable_api_or_a_4xx_ends_with_one_line_and_status_1(
    healthchecks: HealthchecksApi,
    refused_port: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("HEALTHCHECKS_API_KEY", API_KEY)
    monkeypatch.setenv("HEALTHCHECKS_API_URL", f"http://127.0.0.1:{refused_port}/api/v3")
    assert main(["jobs", "sync-monitors"]) == 1
    assert ours(capsys.readouterr().err) == [
        "jobs sync-monitors: cannot reach HEALTHCHECKS_API_URL (127.0.0.1): ConnectError"
    ]

    # The project's check limit reached: Healthchecks answers 403.
    healthchecks.check_limit = 0
    monkeypatch.setenv("HEALTHCHECKS_API_URL", healthchecks.url)
    assert main(["jobs", "sync-monitors"]) == 1
    (line,) = ours(capsys.readouterr().err)
    assert line.startswith("jobs sync-monitors: POST checks/ answered 403")

    monkeypatch.delenv("HEALTHCHECKS_API_KEY")
    assert main(["jobs", "sync-monitors"]) == 1
    assert "HEALTHCHECKS_API_KEY is not set" in capsys.readouterr().err


def test_the_example_jobs_sync_as_the_readme_shows(
    healthchecks: HealthchecksApi,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("HEALTHCHECKS_API_URL", healthchecks.url)
    monkeypatch.setenv("HEALTHCHECKS_API_KEY", API_KEY)

    assert main(["jobs", "sync-monitors", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # One line per job, saying what its check would get; jobs the service adds later
    # have lines of their own.
    tags = f'tags "{SERVICE_ID} development"'
    cleanup = f'{slug("cleanup_items")}: schedule "17 3 * * *", tz "UTC", grace 3600 s, {tags}'
    example = f"{slug('heartbeat_example')}: timeout 300 s, grace 300 s, {tags}"
    assert len(lines) == len(default_jobs())
    assert f"would create {cleanup}" in lines
    assert f"would create {example}" in lines
    assert healthchecks.checks == {}
    assert main(["jobs", "sync-monitors"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(default_jobs())
    assert f"created {cleanup}" in lines
    assert f"created {example}" in lines
    schedules = {c["slug"]: c.get("schedule") for c in healthchecks.checks.values()}
    assert schedules[slug("cleanup_items")] == "17 3 * * *"
    # A job run by a Kubernetes CronJob (the example, unless removed) is provisioned as any other.
    assert schedules.get(slug("count_items"), "43 1 * * *") == "43 1 * * *"


@pytest.mark.parametrize("key", [API_KEY, "w" * 32])
async def test_the_leader_syncs_once_when_it_takes_the_lead_and_survives_a_refusal(
    healthchecks: HealthchecksApi, tmp_path: Path, caplog: pytest.LogCaptureFixture, key: str
) -> None:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'service.db'}",
        heartbeat_sync_monitors=True,
        healthchecks_api_url=healthchecks.url,
        healthchecks_api_key=key,
    )
    jobs = registry()
    app = create_app(settings, jobs=jobs)
    async with app.router.lifespan_context(app), app_client(app) as http:
        # The sync reports job by job, in declaration order: "once" (skipped) is its last line.
        await wait_until(
            lambda: f"skipped {slug('once')}" in caplog.text or "not synced" in caplog.text,
            within=10,
            message="the sync's last line",
        )
        assert (await http.get("/health/live")).status_code == 200
    if key == API_KEY:
        assert sorted(check["slug"] for check in healthchecks.checks.values()) == [
            slug("nightly_report"),
            slug("refresh_cache"),
        ]
        assert f"heartbeat monitors: created {slug('nightly_report')}" in caplog.text
    else:
        assert healthchecks.checks == {}
        assert "heartbeat monitors not synced: HEALTHCHECKS_API_KEY was refused" in caplog.text
