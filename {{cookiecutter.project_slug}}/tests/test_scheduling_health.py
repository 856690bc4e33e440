"""Job health in ``/health``: pure judgements with a fixed clock, then real schedules."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from apscheduler.triggers.interval import IntervalTrigger

from {{ cookiecutter.package_name }}.health import Status
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.scheduling import (
    JobContext,
    JobRegistry,
)
from {{ cookiecutter.package_name }}.scheduling.health import assess_job
from {{ cookiecutter.package_name }}.scheduling.state import JobState

from .conftest import app_client, make_settings, wait_until

FIRE = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("state", "now", "leader", "expected"),
    [
        pytest.param(JobState(next_run_time=FIRE), FIRE - MINUTE, True, Status.PASS, id="not-due"),
        pytest.param(
            JobState(last_success=FIRE + MINUTE, next_run_time=FIRE + DAY),
            FIRE + 2 * HOUR,
            True,
            Status.PASS,
            id="succeeded-since-the-fire",
        ),
        pytest.param(
            JobState(due_since=FIRE, last_start=FIRE, running=1, next_run_time=FIRE + DAY),
            FIRE + 30 * MINUTE,
            True,
            Status.PASS,
            id="running-within-grace",
        ),
        pytest.param(
            JobState(
                due_since=FIRE,
                last_failure=FIRE + MINUTE,
                last_error_type="OSError",
                consecutive_failures=1,
                next_run_time=FIRE + DAY,
            ),
            FIRE + 30 * MINUTE,
            True,
            Status.WARN,
            id="failed-once-within-grace",
        ),
        pytest.param(
            JobState(
                due_since=FIRE,
                last_success=FIRE - DAY,
                last_failure=FIRE + MINUTE,
                consecutive_failures=1,
                next_run_time=FIRE + DAY,
            ),
            FIRE + HOUR + MINUTE,
            True,
            Status.FAIL,
            id="failed-once-past-grace",
        ),
        pytest.param(
            JobState(
                due_since=FIRE,
                last_failure=FIRE + MINUTE,
                consecutive_failures=2,
                next_run_time=FIRE + DAY,
            ),
            FIRE + 2 * MINUTE,
            True,
            Status.FAIL,
            id="failed-twice-in-a-row",
        ),
        pytest.param(
            JobState(due_since=FIRE, last_success=FIRE - DAY, running=1),
            FIRE + HOUR + MINUTE,
            True,
            Status.FAIL,
            id="hung-past-grace",
        ),
        pytest.param(
            # Fired every minute, skipped each time because a run is stuck.
            JobState(due_since=FIRE, running=1, next_run_time=FIRE + HOUR + 2 * MINUTE),
            FIRE + HOUR + MINUTE,
            True,
            Status.FAIL,
            id="fires-often-never-succeeds",
        ),
        pytest.param(
            JobState(last_success=FIRE - DAY, next_run_time=FIRE),
            FIRE + 30 * MINUTE,
            True,
            Status.PASS,
            id="not-fired-yet-within-grace",
        ),
        pytest.param(
            JobState(last_success=FIRE - DAY, next_run_time=FIRE),
            FIRE + HOUR + MINUTE,
            True,
            Status.FAIL,
            id="silently-not-fired-past-grace",
        ),
        pytest.param(
            JobState(due_since=FIRE, consecutive_failures=5),
            FIRE + DAY,
            False,
            Status.PASS,
            id="follower-does-not-judge",
        ),
    ],
)
def test_job_is_judged_against_its_fire_times_and_grace(
    state: JobState, now: datetime, leader: bool, expected: Status
) -> None:
    result = assess_job(state, grace=HOUR, now=now, leader=leader)
    assert result.status is expected, result.output
    if state.last_success is not None:
        assert result.observed_value == (now - state.last_success).total_seconds()
        assert result.observed_unit == "s"


@pytest.mark.parametrize(
    ("state", "now", "leader", "expected"),
    [
        pytest.param(
            JobState(next_run_time=FIRE), FIRE - MINUTE, True, Status.WARN, id="due-later"
        ),
        pytest.param(JobState(due_since=FIRE), FIRE + DAY, False, Status.WARN, id="follower"),
        pytest.param(
            JobState(due_since=FIRE, consecutive_failures=1, last_error_type="OSError"),
            FIRE + MINUTE,
            True,
            Status.WARN,
            id="failed-once",
        ),
        pytest.param(JobState(due_since=FIRE), FIRE + DAY, True, Status.FAIL, id="overdue"),
    ],
)
def test_a_job_without_a_monitor_warns_and_still_fails_when_overdue(
    state: JobState, now: datetime, leader: bool, expected: Status
) -> None:
    result = assess_job(state, grace=HOUR, now=now, leader=leader, monitored=False)
    assert result.status is expected, result.output
    if expected is Status.WARN and not state.consecutive_failures:
        assert result.output == "no heartbeat monitor configured"


def test_the_report_shows_the_job_state() -> None:
    state = JobState(
        due_since=FIRE,
        last_start=FIRE,
        last_failure=FIRE + MINUTE,
        last_error_type="TimeoutError",
        last_duration=60.0,
        consecutive_failures=1,
        next_run_time=FIRE + DAY,
    )
    result = assess_job(state, grace=HOUR, now=FIRE + 2 * MINUTE)
    assert result.render("job", show_details=True) == {
        "componentType": "job",
        "status": "warn",
        "time": (FIRE + 2 * MINUTE).isoformat(),
        "lastStart": FIRE.isoformat(),
        "lastSuccess": None,
        "lastFailure": (FIRE + MINUTE).isoformat(),
        "consecutiveFailures": 1,
        "nextRunTime": (FIRE + DAY).isoformat(),
        "lastDurationSeconds": 60.0,
        "graceSeconds": 3600.0,
        "running": False,
        "output": "last run failed with TimeoutError",
    }
    assert "output" not in result.render("job", show_details=False)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"


def registry() -> JobRegistry:
    return JobRegistry(f"test-{uuid.uuid4().hex[:8]}")


async def check_of(http: httpx.AsyncClient, key: str) -> tuple[int, dict[str, Any]]:
    response = await http.get("/health")
    (check,) = response.json()["checks"][key]
    return response.status_code, check


def statuses_are_monotonic(statuses: list[str]) -> bool:
    order = ["pass", "warn", "fail"]
    ranks = [order.index(status) for status in statuses]
    return ranks == sorted(ranks)


async def test_a_failing_job_turns_warn_then_fail_while_readiness_stays_up(tmp_path: Path) -> None:
    jobs = registry()

    @jobs.scheduled("flaky", IntervalTrigger(seconds=0.4), grace=timedelta(minutes=5))
    async def flaky(context: JobContext) -> None:
        raise RuntimeError("upstream down")

    app = create_app(make_settings(sqlite_url(tmp_path), health_show_details=True), jobs=jobs)
    seen: list[str] = []

    def reaches(status: str) -> Callable[[], Any]:
        async def probe() -> bool:
            code, check = await check_of(http, "flaky:lastSuccess")
            seen.append(check["status"])
            assert code == (503 if check["status"] == "fail" else 200)
            return bool(check["status"] == status)

        return probe

    async with app.router.lifespan_context(app), app_client(app) as http:
        await wait_until(reaches("warn"), within=10, message="warn after the first failure")
        _, check = await check_of(http, "flaky:lastSuccess")
        assert check["output"] == "last run failed with RuntimeError"
        assert (await http.get("/health/ready")).status_code == 200
        await wait_until(reaches("fail"), within=10, message="fail after the second failure")
        _, check = await check_of(http, "flaky:lastSuccess")
        assert check["consecutiveFailures"] >= 2
        assert check["lastSuccess"] is None
        ready = await http.get("/health/ready")
        assert ready.status_code == 200, "jobs do not gate readiness"
        assert "flaky:lastSuccess" not in ready.json()["checks"]
    assert statuses_are_monotonic(seen), seen


async def test_a_job_that_stops_succeeding_fails_once_overdue(tmp_path: Path) -> None:
    jobs = registry()
    runs = 0

    @jobs.scheduled("stuck", IntervalTrigger(seconds=0.2), grace=timedelta(seconds=0.5))
    async def stuck(context: JobContext) -> None:
        nonlocal runs
        runs += 1
        if runs > 1:
            await asyncio.sleep(3600)  # hangs from the second run on

    settings = make_settings(
        sqlite_url(tmp_path), health_show_details=True, scheduler_shutdown_timeout=0.1
    )
    app = create_app(settings, jobs=jobs)
    seen: list[str] = []

    async def overdue() -> bool:
        _, check = await check_of(http, "stuck:lastSuccess")
        seen.append(check["status"])
        return bool(check["status"] == "fail")

    async with app.router.lifespan_context(app), app_client(app) as http:
        await wait_until(lambda: runs >= 1, within=10, message="the first run")
        await wait_until(overdue, within=10, message="fail once the grace time is over")
        code, check = await check_of(http, "stuck:lastSuccess")
        assert code == 503
        assert check["output"].startswith("overdue: no success since the fire at")
        assert check["running"] is True
        assert check["lastSuccess"] is not None
    assert seen[0] == "pass", "the first run succeeded"
    assert statuses_are_monotonic(seen), seen


async def test_sqlite_process_leads_and_the_scheduler_check_says_so(tmp_path: Path) -> None:
    jobs = registry()

    @jobs.scheduled("noop", IntervalTrigger(hours=1), grace=timedelta(minutes=5))
    async def noop(context: JobContext) -> None:
        return None

    app = create_app(make_settings(sqlite_url(tmp_path)), jobs=jobs)
    async with app.router.lifespan_context(app), app_client(app) as http:
        _, scheduler = await check_of(http, "scheduler")
        _, job = await check_of(http, "noop:lastSuccess")
    assert scheduler["status"] == "pass"
    assert scheduler["observedValue"] == "leader"
    assert scheduler["leader"] is True
    assert job["status"] == "pass"
    next_run = datetime.fromisoformat(job["nextRunTime"])
    assert timedelta(minutes=59) < next_run - datetime.now(UTC) <= HOUR


@pytest.mark.parametrize("monitored", [True, False], ids=["a-target", "no-target"])
async def test_the_heartbeat_client_is_made_at_start_only_when_a_job_has_a_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, monitored: bool
) -> None:
    jobs = registry()

    @jobs.scheduled("noop", IntervalTrigger(hours=1), grace=timedelta(minutes=5))
    async def noop(context: JobContext) -> None:
        return None

    if monitored:
        # Never pinged: the job's next fire is an hour away.
        monkeypatch.setenv("NOOP_HEARTBEAT_URL", "http://127.0.0.1:9/ping/noop")
    app = create_app(make_settings(sqlite_url(tmp_path)), jobs=jobs)
    async with app.router.lifespan_context(app):
        opened = app.state.scheduler.heartbeat.client_open
    assert opened is monitored


async def test_scheduler_disabled_runs_nothing_and_reports_it(tmp_path: Path) -> None:
    jobs = registry()
    runs = 0

    @jobs.scheduled("often", IntervalTrigger(seconds=0.05), grace=timedelta(minutes=5))
    async def often(context: JobContext) -> None:
        nonlocal runs
        runs += 1

    app = create_app(make_settings(sqlite_url(tmp_path), scheduler_enabled=False), jobs=jobs)
    async with app.router.lifespan_context(app), app_client(app) as http:
        await asyncio.sleep(0.3)
        body = (await http.get("/health")).json()
    assert runs == 0
    assert body["checks"]["scheduler"][0]["observedValue"] == "disabled"
    assert body["checks"]["scheduler"][0]["leader"] is False
    assert "often:lastSuccess" not in body["checks"]


async def test_in_staging_a_job_without_a_monitor_warns_in_health_and_at_start_up(
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("WATCHED_HEARTBEAT_URL", "https://hc-ping.com/5bf66975")
    jobs = registry()

    @jobs.scheduled("watched", IntervalTrigger(hours=1), grace=timedelta(minutes=5))
    async def watched(context: JobContext) -> None:
        return None

    @jobs.scheduled("unwatched", IntervalTrigger(hours=1), grace=timedelta(minutes=5))
    async def unwatched(context: JobContext) -> None:
        return None

    settings = make_settings(postgres_url, environment="staging", health_show_details=True)
    app = create_app(settings, jobs=jobs)
    async with app.router.lifespan_context(app), app_client(app) as http:
        code, lonely = await check_of(http, "unwatched:lastSuccess")
        _, fine = await check_of(http, "watched:lastSuccess")
    assert code == 200, "a warn, not a failure"
    assert lonely["status"] == "warn"
    assert lonely["output"] == "no heartbeat monitor configured"
    assert fine["status"] == "pass"
    (warning,) = [r for r in caplog.records if "without a heartbeat monitor" in r.getMessage()]
    assert warning.levelname == "WARNING"
    assert "unwatched" in warning.getMessage()
    assert "watched," not in warning.getMessage()
