"""Jobs declared ``runs_in="cronjob"``: the rendered CronJobs, and their pod's command.

There is no cluster here: the manifests are checked against the registry (and, by the
template's tests, by schema and policy), and the pod's command runs as the pod would
run it, against the real PostgreSQL and a loopback heartbeat monitor, while a running
service reports each ending in ``/health``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
import yaml
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pytest_httpserver import HTTPServer

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.postgres import libpq_dsn
from {{ cookiecutter.package_name }}.scheduling import (
    JobContext,
    JobRegistry,
    default_jobs,
)
from {{ cookiecutter.package_name }}.scheduling.cli import cronjobs_command
from {{ cookiecutter.package_name }}.scheduling.cronjob import (
    DEFAULT_TIME_LIMIT,
    cron_schedule,
    fire_time,
    load_cronjob_settings,
)
from {{ cookiecutter.package_name }}.scheduling.cronjob_manifest import (
    POD_START_MARGIN,
    ManifestError,
    render_cronjob,
    render_cronjobs,
)
from {{ cookiecutter.package_name }}.settings import ConfigurationError

from .conftest import SLUG, app_client, execute, fetch, make_settings, wait_until

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "k8s" / "base" / "cronjobs.yaml"
SETTINGS_ENV = ROOT / "k8s" / "base" / "settings.env"
TOKEN = "cronjob-token-9f3a"
# The command of the example's CronJob, as rendered.
PACKAGE = "{{ cookiecutter.package_name }}"
COMMAND = ["python", "-m", PACKAGE, "jobs", "run", "--cronjob", "count_items"]
# COUNT_ITEMS_TIME_LIMIT for the pods and the service of the runtime tests.
TIME_LIMIT = 5
# Tests of the example job: removing it (the README says how) skips them.
example = pytest.mark.skipif(
    "count_items" not in default_jobs(),
    reason="the example CronJob job count_items is removed",
)


def registry() -> JobRegistry:
    return JobRegistry("test-cronjobs")


async def noop(context: JobContext) -> None:
    return None


def cronjobs(text: str) -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] == "CronJob"
    }


# The rendered file


def test_the_committed_cronjobs_match_the_registry() -> None:
    # As the lock files' test: `make cronjobs` after changing a CronJob job.
    assert MANIFEST.read_text() == render_cronjobs(default_jobs(), SETTINGS_ENV), (
        "k8s/base/cronjobs.yaml is stale: run make cronjobs"
    )


@example
def test_an_edited_trigger_makes_the_committed_file_stale(tmp_path: Path) -> None:
    jobs = registry()
    example = default_jobs().get("count_items")
    jobs.scheduled(
        "count_items", CronTrigger(hour=2, minute=43, timezone=UTC), grace=example.grace,
        runs_in="cronjob",
    )(example.func)  # fmt: skip
    assert render_cronjobs(jobs, SETTINGS_ENV) != MANIFEST.read_text()
    copy = tmp_path / "cronjobs.yaml"
    copy.write_text(MANIFEST.read_text())
    out = StringIO()
    assert cronjobs_command(jobs, out=out, output=copy, check=True) == 1
    assert cronjobs_command(default_jobs(), out=out, output=copy, check=True) == 0


@example
def test_the_example_cronjob_takes_its_fields_from_its_job() -> None:
    (cronjob,) = cronjobs(MANIFEST.read_text()).values()
    spec = cronjob["spec"]
    job_spec = spec["jobTemplate"]["spec"]
    (container,) = job_spec["template"]["spec"]["containers"]
    assert cronjob["metadata"]["name"] == f"{SLUG}-count-items"
    assert (spec["schedule"], spec["timeZone"]) == ("43 1 * * *", "UTC")
    assert spec["startingDeadlineSeconds"] == 30 * 60  # its grace
    assert spec["concurrencyPolicy"] == "Forbid"
    assert job_spec["activeDeadlineSeconds"] == DEFAULT_TIME_LIMIT + POD_START_MARGIN
    assert job_spec["backoffLimit"] == 0
    assert job_spec["ttlSecondsAfterFinished"] > 0
    assert container["command"] == COMMAND


def test_schedule_zone_deadlines_follow_the_trigger_grace_and_time_limit() -> None:
    jobs = registry()
    trigger = CronTrigger(
        day_of_week="mon-fri", hour="9-17", minute="*/15", timezone=ZoneInfo("Europe/Paris")
    )
    jobs.scheduled("report", trigger, grace=timedelta(minutes=10), runs_in="cronjob")(noop)
    text = render_cronjob(jobs.get("report"), {"REPORT_TIME_LIMIT": "600", "OTHER_TIME_LIMIT": "9"})
    (cronjob,) = cronjobs(text).values()
    assert cronjob["spec"]["schedule"] == "*/15 9-17 * * mon-fri"
    assert cronjob["spec"]["timeZone"] == "Europe/Paris"
    assert cronjob["spec"]["startingDeadlineSeconds"] == 600
    assert cronjob["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 600 + POD_START_MARGIN


@example
def test_the_pod_is_the_deployments() -> None:
    deployment = yaml.safe_load((ROOT / "k8s" / "base" / "deployment.yaml").read_text())
    served = deployment["spec"]["template"]["spec"]
    (app,) = served["containers"]
    (cronjob,) = cronjobs(MANIFEST.read_text()).values()
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (job,) = pod["containers"]
    for key in (
        "serviceAccountName",
        "automountServiceAccountToken",
        "enableServiceLinks",
        "securityContext",
        "volumes",
    ):
        assert pod[key] == served[key], key
    for key in ("image", "imagePullPolicy", "envFrom", "securityContext", "volumeMounts"):
        assert job[key] == app[key], key
    assert set(job["resources"]) == {"requests", "limits"}
    assert pod["restartPolicy"] == "Never"


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        (IntervalTrigger(minutes=5), "a CronJob needs a CronTrigger, not IntervalTrigger"),
        (DateTrigger(datetime(2030, 1, 1, tzinfo=UTC)), "a CronJob needs a CronTrigger, not DateTrigger"),
        (CronTrigger(second=30, timezone=UTC), "a CronJob's schedule has no second field"),
        (CronTrigger(day_of_week="0-4", timezone=UTC), "day_of_week='0-4' has no five-field cron form"),
        (CronTrigger(day="last", timezone=UTC), "day='last' has no five-field cron form"),
    ],
    ids=["interval", "date", "seconds", "numbered-weekdays", "last-day"],
)  # fmt: skip
def test_a_trigger_cron_cannot_express_is_refused_in_one_line_naming_the_job(
    trigger: Any, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    jobs = registry()
    jobs.scheduled("odd_one", trigger, grace=timedelta(minutes=5), runs_in="cronjob")(noop)
    with pytest.raises(ManifestError) as refused:
        render_cronjobs(jobs, SETTINGS_ENV)
    assert str(refused.value).startswith(f"job odd_one: {message}")
    assert "\n" not in str(refused.value)
    assert cronjobs_command(jobs, out=StringIO(), output=tmp_path / "c.yaml", check=False) == 1
    assert capsys.readouterr().err == f"jobs cronjobs: {refused.value}\n"
    assert not (tmp_path / "c.yaml").exists()


def test_a_service_job_needs_no_cron_form() -> None:
    jobs = registry()
    jobs.scheduled("often", IntervalTrigger(seconds=5), grace=timedelta(minutes=5))(noop)
    assert cronjobs(render_cronjobs(jobs, SETTINGS_ENV)) == {}
    with pytest.raises(ValueError, match="runs_in"):
        jobs.scheduled("where", IntervalTrigger(seconds=5), grace=timedelta(1), runs_in="x")(noop)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["0", "604801", "soon"])
def test_an_invalid_time_limit_is_one_line_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigurationError) as invalid:
        load_cronjob_settings("count_items", {"COUNT_ITEMS_TIME_LIMIT": value})
    assert str(invalid.value).startswith("COUNT_ITEMS_TIME_LIMIT: ")
    assert "\n" not in str(invalid.value)


@example
def test_the_fire_time_is_the_latest_fire_within_the_grace() -> None:
    job = default_jobs().get("count_items")  # 01:43 UTC, grace 30 min
    fire = datetime(2026, 12, 7, 1, 43, tzinfo=UTC)
    assert fire_time(job, fire) == fire
    assert fire_time(job, fire + timedelta(seconds=3)) == fire
    assert fire_time(job, fire + timedelta(minutes=29)) == fire
    # Past the starting deadline, or before the fire: a run by hand, without a fire time.
    assert fire_time(job, fire + timedelta(minutes=31)) is None
    assert fire_time(job, fire - timedelta(seconds=1)) is None
    assert cron_schedule(job) == ("43 1 * * *", "UTC")


# Where the job runs


async def test_the_service_scheduler_never_fires_a_cronjob_job(tmp_path: Path) -> None:
    jobs = registry()
    runs = {"often": 0, "elsewhere": 0}

    @jobs.scheduled("often", IntervalTrigger(seconds=0.05), grace=timedelta(minutes=5))
    async def often(context: JobContext) -> None:
        runs["often"] += 1

    @jobs.scheduled(
        "elsewhere", IntervalTrigger(seconds=0.05), grace=timedelta(minutes=5), runs_in="cronjob"
    )
    async def elsewhere(context: JobContext) -> None:
        runs["elsewhere"] += 1

    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 's.db'}"), jobs=jobs)
    async with app.router.lifespan_context(app), app_client(app) as http:
        await wait_until(lambda: runs["often"] >= 3, within=10, message="the service job runs")
        checks = (await http.get("/health")).json()["checks"]
    assert runs["elsewhere"] == 0
    assert "elsewhere:lastSuccess" in checks, "watched like any job"


# The pod's command, on the real PostgreSQL


async def start_pod(
    postgres_url: str, monitor: HTTPServer, cwd: Path, *extra: str, time_limit: int = TIME_LIMIT
) -> asyncio.subprocess.Process:
    """The CronJob's command, as its pod runs it (the ConfigMap's settings in the environment)."""
    executable, *args = COMMAND
    assert executable == "python"
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "SECRETS_DIR": str(cwd / "none"),
        "DATABASE_URL": postgres_url,
        "COUNT_ITEMS_HEARTBEAT_URL": monitor.url_for(f"/ping/{TOKEN}"),
        "COUNT_ITEMS_TIME_LIMIT": str(time_limit),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        *extra,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(pod: asyncio.subprocess.Process, within: float = 60) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(pod.communicate(), within)
    assert pod.returncode is not None
    return pod.returncode, out.decode(), err.decode()


async def runs_of(postgres_url: str) -> list[asyncpg.Record]:
    return await fetch(
        postgres_url,
        "SELECT fire_time, attempt, epoch, outcome, error_type, holder FROM scheduler_runs"
        " WHERE job_id = 'count_items' ORDER BY started_at",
    )


def pings(monitor: HTTPServer) -> list[tuple[str, str]]:
    return [
        (request.path.removeprefix(f"/ping/{TOKEN}"), request.get_data(as_text=True))
        for request, _ in monitor.log
    ]


@pytest.fixture
async def service(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """A running service on the same database: its ``/health`` judges the pods' runs."""
    await execute(postgres_url, "DELETE FROM scheduler_runs WHERE job_id = 'count_items'")
    monkeypatch.setenv("COUNT_ITEMS_TIME_LIMIT", str(TIME_LIMIT))
    # The tests' 0.5 s check timeout is for the health tests: here a loaded machine's slow
    # read of the run table would turn the job's check into a timeout without its fields.
    app = create_app(
        make_settings(postgres_url, health_show_details=True, health_check_timeout=5.0)
    )
    async with app.router.lifespan_context(app), app_client(app) as http:
        yield http


async def job_check(http: httpx.AsyncClient) -> dict[str, Any]:
    (check,) = (await http.get("/health")).json()["checks"]["count_items:lastSuccess"]
    return dict(check)


@pytest.fixture
async def locked_items(postgres_url: str) -> AsyncIterator[None]:
    """The items table locked by another session: the job's count waits, mid-run."""
    connection = await asyncpg.connect(libpq_dsn(postgres_url))
    transaction = connection.transaction()
    await transaction.start()
    await connection.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        await transaction.rollback()
        await connection.close()


async def started(postgres_url: str) -> bool:
    return len(await runs_of(postgres_url)) == 1


@example
async def test_a_pod_run_succeeds_pings_and_shows_in_health(
    service: httpx.AsyncClient, postgres_url: str, monitor: HTTPServer, tmp_path: Path
) -> None:
    example = default_jobs().get("count_items")
    due_before = fire_time(example, datetime.now(UTC))
    status, out, err = await finish(await start_pod(postgres_url, monitor, tmp_path))
    due_after = fire_time(example, datetime.now(UTC))
    (run,) = await runs_of(postgres_url)
    check = await job_check(service)

    assert (status, out) == (0, "count_items: success\n"), err
    assert " items at the fire of " in err
    assert (run["outcome"], run["epoch"], run["attempt"]) == ("success", 0, 1)
    assert run["holder"].startswith("cronjob:")
    assert run["fire_time"] in (due_before, due_after), "the fire due at the pod's start"
    assert [path for path, _ in pings(monitor)] == ["/start", ""]
    assert (check["status"], check["running"]) == ("pass", False)
    assert check["lastSuccess"] is not None


@example
async def test_a_second_pod_for_the_same_fire_runs_and_records_nothing(
    service: httpx.AsyncClient, postgres_url: str, monitor: HTTPServer, tmp_path: Path
) -> None:
    fire = "2026-12-07T01:43:00+00:00"
    first = await finish(await start_pod(postgres_url, monitor, tmp_path, "--fire-time", fire))
    pinged = len(monitor.log)
    second = await finish(await start_pod(postgres_url, monitor, tmp_path, "--fire-time", fire))
    (run,) = await runs_of(postgres_url)

    assert first[:2] == (0, "count_items: success\n"), first[2]
    assert second[:2] == (0, "count_items: refused\n"), second[2]
    assert "not run: it is already recorded" in second[2]
    assert " items at the fire of " not in second[2]
    assert len(monitor.log) == pinged == 2, "the second pod pings nothing"
    assert run["fire_time"] == datetime.fromisoformat(fire)
    assert (await job_check(service))["status"] == "pass"


@example
async def test_a_failing_pod_run_records_the_failure_and_pings_fail(
    service: httpx.AsyncClient, postgres_url: str, monitor: HTTPServer, tmp_path: Path
) -> None:
    await execute(postgres_url, "ALTER TABLE items RENAME TO items_away")
    try:
        status, out, err = await finish(await start_pod(postgres_url, monitor, tmp_path))
    finally:
        await execute(postgres_url, "ALTER TABLE items_away RENAME TO items")
    (run,) = await runs_of(postgres_url)
    check = await job_check(service)

    assert (status, out) == (1, "count_items: failure\n"), err
    assert run["outcome"] == "failure"
    assert run["error_type"] in ("ProgrammingError", "UndefinedTableError", "OperationalError")
    (start, _), (fail, body) = pings(monitor)
    assert (start, fail) == ("/start", "/fail")
    assert body.startswith(run["error_type"])
    assert (check["status"], check["consecutiveFailures"]) == ("warn", 1)
    assert check["output"] == f"last run failed with {run['error_type']}"


@example
async def test_a_pod_that_cannot_record_its_run_fails_and_pings_fail(
    monitor: HTTPServer, refused_port: int, tmp_path: Path
) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{refused_port}/postgres"
    status, out, err = await finish(await start_pod(unreachable, monitor, tmp_path))

    assert (status, out) == (1, "count_items: failure\n"), err
    assert "its start could not be recorded" in err
    (start, _), (fail, body) = pings(monitor)
    assert (start, fail) == ("/start", "/fail")
    assert body.split(":", 1)[0] in ("ConnectionRefusedError", "OSError")


@example
@pytest.mark.usefixtures("locked_items")
async def test_a_pod_run_past_its_time_limit_fails_instead_of_hanging(
    service: httpx.AsyncClient, postgres_url: str, monitor: HTTPServer, tmp_path: Path
) -> None:
    began = asyncio.get_running_loop().time()
    status, out, err = await finish(await start_pod(postgres_url, monitor, tmp_path, time_limit=1))
    took = asyncio.get_running_loop().time() - began
    (run,) = await runs_of(postgres_url)
    check = await job_check(service)

    assert (status, out) == (1, "count_items: failure\n"), err
    assert took < 20
    assert (run["outcome"], run["error_type"]) == ("failure", "TimeLimitExceeded")
    (_, _), (fail, body) = pings(monitor)
    assert fail == "/fail"
    assert body.startswith("TimeLimitExceeded: job count_items ran past its time limit of 1 s")
    assert check["output"] == "last run failed with TimeLimitExceeded"


@example
@pytest.mark.usefixtures("locked_items")
async def test_sigterm_mid_run_records_cancelled_and_pings_fail_saying_why(
    service: httpx.AsyncClient, postgres_url: str, monitor: HTTPServer, tmp_path: Path
) -> None:
    pod = await start_pod(postgres_url, monitor, tmp_path)
    await wait_until(lambda: started(postgres_url), within=30, message="the run starts")
    await wait_until(lambda: len(monitor.log) == 1, within=10, message="the start ping")
    running = await job_check(service)
    began = asyncio.get_running_loop().time()
    pod.send_signal(signal.SIGTERM)
    status, out, err = await finish(pod)
    took = asyncio.get_running_loop().time() - began
    (run,) = await runs_of(postgres_url)
    check = await job_check(service)

    assert running["running"] is True
    assert (status, out) == (1, "count_items: cancelled\n"), err
    assert took < 30, "within the pod's terminationGracePeriodSeconds"
    assert run["outcome"] == "cancelled"
    (start, _), (fail, body) = pings(monitor)
    assert (start, fail) == ("/start", "/fail")
    assert body.startswith("cancelled after ")
    assert "SIGTERM" in body
    assert check["running"] is False
    assert check["consecutiveFailures"] == 0


@example
@pytest.mark.usefixtures("locked_items")
async def test_a_killed_pods_run_fails_in_health_once_its_time_limit_is_over(
    service: httpx.AsyncClient, postgres_url: str, monitor: HTTPServer, tmp_path: Path
) -> None:
    pod = await start_pod(postgres_url, monitor, tmp_path)
    await wait_until(lambda: started(postgres_url), within=30, message="the run starts")
    pod.kill()
    await pod.wait()
    running = await job_check(service)

    async def reported_failed() -> bool:
        return bool((await job_check(service))["consecutiveFailures"] == 1)

    await wait_until(reported_failed, within=TIME_LIMIT + 10, message="failed after the limit")
    check = await job_check(service)
    (run,) = await runs_of(postgres_url)

    assert running["running"] is True
    assert run["outcome"] is None, "nothing wrote its end"
    assert check["running"] is False
    assert check["status"] == "warn"
    assert check["output"] == "last run failed with NoEndWithinTimeLimit"
    assert check["lastFailure"] is not None
