"""The run wrapper and its heartbeat pings, against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from apscheduler.triggers.interval import IntervalTrigger
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from {{ cookiecutter.package_name }}.heartbeats import targets as heartbeat_targets
from {{ cookiecutter.package_name }}.heartbeats.pings import FAILURE_BODY_LIMIT, start_ping
from {{ cookiecutter.package_name }}.heartbeats.targets import (
    HeartbeatTarget,
    Target,
    resolve_targets,
)
from {{ cookiecutter.package_name }}.metrics import Metrics
from {{ cookiecutter.package_name }}.scheduling import (
    JobContext,
    JobRegistry,
)
from {{ cookiecutter.package_name }}.scheduling.runner import RunOutcome
from {{ cookiecutter.package_name }}.settings import (
    ConfigurationError,
    FailureBody,
    HeartbeatProtocol,
    Settings,
)

from .conftest import job_runner, make_settings, wait_until

HOURLY = IntervalTrigger(hours=1)
GRACE = timedelta(minutes=5)


def target(
    url: str, protocol: HeartbeatProtocol = HeartbeatProtocol.HEALTHCHECKS
) -> HeartbeatTarget:
    return HeartbeatTarget(url=httpx.URL(url), protocol=protocol)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def requests_of(server: HTTPServer) -> list[Request]:
    return [request for request, _ in server.log]


async def test_healthchecks_start_and_success_pings_share_the_run_id(monitor: HTTPServer) -> None:
    jobs = JobRegistry("test")
    run_ids: list[uuid.UUID] = []

    @jobs.scheduled("nightly", HOURLY, grace=GRACE)
    async def nightly(context: JobContext) -> None:
        run_ids.append(context.run_id)
        await asyncio.sleep(0.05)

    targets = {"nightly": target(monitor.url_for("/ping/check-uuid"))}
    async with job_runner(jobs, targets) as (runner, metrics):
        assert await runner.run("nightly") is RunOutcome.SUCCESS
        await runner.heartbeat.drain(None)

    (run_id,) = run_ids
    sent = [(r.method, r.path, r.args.get("rid")) for r in requests_of(monitor)]
    assert sent == [
        ("POST", "/ping/check-uuid/start", str(run_id)),
        ("POST", "/ping/check-uuid", str(run_id)),
    ]
    assert sample(metrics, "heartbeat_pings_total", job="nightly", outcome="success") == 2
    assert sample(metrics, "job_runs_total", job="nightly", outcome="success") == 1
    assert sample(metrics, "job_duration_seconds_count", job="nightly") == 1
    assert (sample(metrics, "job_duration_seconds_sum", job="nightly") or 0) >= 0.05
    # The last success is the job's state, which the scrape reads (metrics_state.py).
    assert runner.states["nightly"].last_success is not None


async def test_the_http_client_is_created_at_the_first_ping_and_closed_at_the_end(
    monitor: HTTPServer,
) -> None:
    # Lazy (cold start, memory): a job without a target never creates it.
    jobs = JobRegistry("test")

    @jobs.scheduled("watched", HOURLY, grace=GRACE)
    async def watched(context: JobContext) -> None:
        pass

    @jobs.scheduled("unwatched", HOURLY, grace=GRACE)
    async def unwatched(context: JobContext) -> None:
        pass

    watched_target = target(monitor.url_for("/ping/check-uuid"))
    async with job_runner(jobs, {"watched": watched_target, "unwatched": None}) as (
        runner,
        metrics,
    ):
        assert await runner.run("unwatched") is RunOutcome.SUCCESS
        assert not runner.heartbeat.client_open
        assert await runner.run("watched") is RunOutcome.SUCCESS
        await runner.heartbeat.drain(None)
        assert runner.heartbeat.client_open
        heartbeat = runner.heartbeat

    assert [r.path for r in requests_of(monitor)] == ["/ping/check-uuid/start", "/ping/check-uuid"]
    assert sample(metrics, "heartbeat_pings_total", job="watched", outcome="success") == 2
    assert not heartbeat.client_open
    # A ping after the close fails like one on httpx's closed client: counted, not raised.
    late = start_ping(watched_target, uuid.uuid4())
    assert late is not None
    done = heartbeat.enqueue("watched", watched_target, late)
    assert done is not None
    assert await done is False
    assert sample(metrics, "heartbeat_pings_total", job="watched", outcome="failure") == 1
    assert not heartbeat.client_open


async def test_a_ping_url_keeps_its_own_query(monitor: HTTPServer) -> None:
    jobs = JobRegistry("test")

    @jobs.scheduled("provisioned", HOURLY, grace=GRACE)
    async def provisioned(context: JobContext) -> None:
        return None

    @jobs.scheduled("tokened", HOURLY, grace=GRACE)
    async def tokened(context: JobContext) -> None:
        return None

    service = "{{ cookiecutter.project_slug }}"
    targets = {
        # Healthchecks' auto-provisioning flag, and a monitor whose token is in the query.
        "provisioned": target(monitor.url_for(f"/ping/key/{service}-provisioned") + "?create=1"),
        "tokened": target(monitor.url_for("/ping/beat") + "?token=abc", HeartbeatProtocol.PLAIN),
    }
    async with job_runner(jobs, targets) as (runner, _):
        assert await runner.run("provisioned") is RunOutcome.SUCCESS
        assert await runner.run("tokened") is RunOutcome.SUCCESS
        await runner.heartbeat.drain(None)

    sent = sorted((r.path, r.args.get("create"), r.args.get("token")) for r in requests_of(monitor))
    slug_path = f"/ping/key/{service}-provisioned"
    assert sent == [
        ("/ping/beat", None, "abc"),
        (slug_path, "1", None),
        (f"{slug_path}/start", "1", None),
    ]
    assert all("rid" in r.args for r in requests_of(monitor) if r.path.startswith("/ping/key/"))


async def test_uptime_kuma_gets_up_with_the_duration_and_down_with_the_error(
    monitor: HTTPServer,
) -> None:
    jobs = JobRegistry("test")
    runs = 0

    @jobs.scheduled("report", HOURLY, grace=GRACE)
    async def report(context: JobContext) -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        if runs == 2:
            raise ConnectionResetError("peer went away")

    # The push URL as Uptime Kuma displays it, with its example query.
    url = monitor.url_for("/ping/api/push/kuma-token") + "?status=up&msg=OK&ping="
    targets = {"report": target(url, HeartbeatProtocol.UPTIME_KUMA)}
    async with job_runner(jobs, targets) as (runner, _):
        assert await runner.run("report") is RunOutcome.SUCCESS
        await runner.heartbeat.drain(None)
        assert await runner.run("report") is RunOutcome.FAILURE
        await runner.heartbeat.drain(None)

    up, down = requests_of(monitor)
    assert up.path == down.path == "/ping/api/push/kuma-token"
    assert up.args["status"] == "up"
    assert up.args["msg"] == "OK"
    assert int(up.args["ping"]) >= 50
    assert dict(down.args) == {"status": "down", "msg": "ConnectionResetError: peer went away"}


async def test_plain_pings_on_success_only(monitor: HTTPServer) -> None:
    jobs = JobRegistry("test")
    outcomes = iter([None, ValueError("bad row")])

    @jobs.scheduled("export", HOURLY, grace=GRACE)
    async def export(context: JobContext) -> None:
        error = next(outcomes)
        if error is not None:
            raise error

    targets = {"export": target(monitor.url_for("/ping/vigil"), HeartbeatProtocol.PLAIN)}
    async with job_runner(jobs, targets) as (runner, _):
        assert await runner.run("export") is RunOutcome.SUCCESS
        assert await runner.run("export") is RunOutcome.FAILURE
        await runner.heartbeat.drain(None)

    assert [(r.method, r.path, r.query_string) for r in requests_of(monitor)] == [
        ("GET", "/ping/vigil", b"")
    ]


def write_report() -> None:
    raise RuntimeError("could not write the report")


async def test_a_failing_job_sends_fail_with_the_traceback_tail_and_the_next_run_is_unaffected(
    monitor: HTTPServer,
) -> None:
    jobs = JobRegistry("test")
    runs: list[uuid.UUID] = []

    @jobs.scheduled("reports", HOURLY, grace=GRACE)
    async def reports(context: JobContext) -> None:
        runs.append(context.run_id)
        if len(runs) == 1:
            try:
                # A long first cause makes the whole traceback exceed the body limit.
                raise ValueError("unreadable input " + "x" * 12_000)
            except ValueError as error:
                try:
                    write_report()
                except RuntimeError as wrapped:
                    raise wrapped from error

    targets = {"reports": target(monitor.url_for("/ping/reports"))}
    async with job_runner(jobs, targets) as (runner, metrics):
        assert await runner.run("reports") is RunOutcome.FAILURE
        await runner.heartbeat.drain(None)
        assert await runner.run("reports") is RunOutcome.SUCCESS
        await runner.heartbeat.drain(None)
        state = runner.states["reports"]

    first, second = (str(run_id) for run_id in runs)
    sent = requests_of(monitor)
    assert [(r.method, r.path, r.args["rid"]) for r in sent] == [
        ("POST", "/ping/reports/start", first),
        ("POST", "/ping/reports/fail", first),
        ("POST", "/ping/reports/start", second),
        ("POST", "/ping/reports", second),
    ]
    body = sent[1].get_data()
    assert len(body) <= FAILURE_BODY_LIMIT
    assert len(body) > FAILURE_BODY_LIMIT - 100, "the traceback was longer: its tail fills the body"
    assert body.startswith(b"RuntimeError: could not write the report\n")
    assert b"The above exception was the direct cause" in body
    assert b'raise RuntimeError("could not write the report")' in body
    assert body.endswith(b"RuntimeError: could not write the report\n")
    assert state.consecutive_failures == 0
    assert state.last_error_type == "RuntimeError"
    assert state.last_success is not None
    assert state.last_failure is not None
    assert state.last_success > state.last_failure
    assert sample(metrics, "job_runs_total", job="reports", outcome="failure") == 1
    assert sample(metrics, "job_runs_total", job="reports", outcome="success") == 1


def fail_with_body_limit(limit: int) -> Callable[[Request], Response]:
    def answer(request: Request) -> Response:
        # As Healthchecks' ping view: every answer says how much of a body it keeps.
        return Response("OK", headers={"Ping-Body-Limit": str(limit)})

    return answer


async def test_failure_bodies_shrink_to_the_monitors_ping_body_limit(
    monitor: HTTPServer,
) -> None:
    monitor.expect_request(re.compile(r"^/limited/")).respond_with_handler(
        fail_with_body_limit(120)
    )
    jobs = JobRegistry("test")

    @jobs.scheduled("limited", HOURLY, grace=GRACE)
    async def limited(context: JobContext) -> None:
        write_report()

    async with job_runner(jobs, {"limited": target(monitor.url_for("/limited/check"))}) as (
        runner,
        _,
    ):
        assert await runner.run("limited") is RunOutcome.FAILURE
        await runner.heartbeat.drain(None)

    start, fail = requests_of(monitor)
    assert start.path == "/limited/check/start"
    body = fail.get_data()
    assert len(body) <= 120
    # The type and message first, then as much of the traceback's end as fits.
    assert body.startswith(b"RuntimeError: could not write the report\n")
    assert body.endswith(b"RuntimeError: could not write the report\n")
    assert len(body) > 100


@pytest.mark.parametrize(
    ("detail", "body", "push_message"),
    [
        (
            FailureBody.MESSAGE,
            b"PermissionError: /srv/app/alice.csv",
            "PermissionError: /srv/app/alice.csv",
        ),
        (FailureBody.TYPE, b"PermissionError", "PermissionError"),
    ],
)
async def test_heartbeat_failure_body_limits_what_the_monitor_is_told(
    monitor: HTTPServer, detail: FailureBody, body: bytes, push_message: str
) -> None:
    jobs = JobRegistry("test")

    @jobs.scheduled("private", HOURLY, grace=GRACE)
    async def private(context: JobContext) -> None:
        raise PermissionError("/srv/app/alice.csv")

    targets = {
        "private": target(monitor.url_for("/ping/private")),
    }
    kuma = {"private": target(monitor.url_for("/ping/api/push/t"), HeartbeatProtocol.UPTIME_KUMA)}
    settings = Settings(_env_file=None, heartbeat_failure_body=detail)
    for each in (targets, kuma):
        async with job_runner(jobs, each, settings=settings) as (runner, _):
            assert await runner.run("private") is RunOutcome.FAILURE
            await runner.heartbeat.drain(None)

    _, fail, push = requests_of(monitor)
    assert fail.path == "/ping/private/fail"
    assert fail.get_data() == body
    assert push.args["msg"] == push_message


@pytest.mark.parametrize("fault", ["refused", "hung", "slow"])
async def test_an_unreachable_or_slow_monitor_delays_a_run_by_the_start_timeout_at_most(
    fault: str, monitor: HTTPServer, refused_port: int, blackhole_port: int
) -> None:
    answer = threading.Event()

    def slowly(request: Request) -> Response:
        answer.wait(10)  # answers only once the test is over
        return Response("OK")

    monitor.expect_request("/slow/token").respond_with_handler(slowly)
    url = {
        "refused": f"http://127.0.0.1:{refused_port}/token",
        "hung": f"http://127.0.0.1:{blackhole_port}/token",
        "slow": monitor.url_for("/slow/token"),
    }[fault]
    timeout = 0.6
    start_timeout = 0.2
    settings = Settings(_env_file=None, heartbeat_start_timeout=start_timeout)
    jobs = JobRegistry("test")
    started: list[float] = []

    @jobs.scheduled("sync", HOURLY, grace=GRACE)
    async def sync(context: JobContext) -> None:
        started.append(time.perf_counter())

    runner_ = job_runner(jobs, {"sync": target(url)}, settings=settings, ping_timeout=timeout)
    async with runner_ as (runner, metrics):
        began = time.perf_counter()
        outcome = await runner.run("sync")
        returned = time.perf_counter()
        assert outcome is RunOutcome.SUCCESS
        # Well below one ping attempt: the run gave up waiting for its start ping.
        assert started[0] - began < timeout, "the job waited for the start ping's timeout"
        assert returned - began < timeout, "the run waited for its pings"
        await runner.heartbeat.drain(None)
        # Start and success pings, each given up after two attempts.
        assert sample(metrics, "heartbeat_pings_total", job="sync", outcome="failure") == 2
        assert sample(metrics, "heartbeat_pings_total", job="sync", outcome="success") == 0
    answer.set()
    if fault == "slow":
        # Let the four held requests finish here, not in the log of a later test.
        await wait_until(lambda: len(monitor.log) == 4, within=10, message="slow requests done")


async def test_the_start_ping_reaches_the_monitor_before_the_body_runs(
    monitor: HTTPServer,
) -> None:
    received: dict[str, float] = {}

    def record(request: Request) -> Response:
        received[request.path.rsplit("/", 1)[-1]] = time.monotonic()
        return Response("OK")

    monitor.expect_request(re.compile(r"^/timed/")).respond_with_handler(record)
    jobs = JobRegistry("test")
    body: list[float] = []

    @jobs.scheduled("measured", HOURLY, grace=GRACE)
    async def measured(context: JobContext) -> None:
        body.append(time.monotonic())
        await asyncio.sleep(0.3)
        body.append(time.monotonic())

    async with job_runner(jobs, {"measured": target(monitor.url_for("/timed/check"))}) as (
        runner,
        _,
    ):
        assert await runner.run("measured") is RunOutcome.SUCCESS
        await runner.heartbeat.drain(None)

    assert received["start"] < body[0], "the body ran before the monitor had the start"
    # What the monitor measures (start to success) covers the whole body.
    assert received["check"] - received["start"] >= body[1] - body[0]


@pytest.mark.parametrize(
    ("status", "attempts", "outcome"), [(503, 2, "success"), (404, 1, "failure")]
)
async def test_server_errors_are_retried_and_client_errors_are_not(
    monitor: HTTPServer, status: int, attempts: int, outcome: str
) -> None:
    monitor.expect_oneshot_request("/ping/flaky").respond_with_data("no", status=status)
    jobs = JobRegistry("test")

    @jobs.scheduled("flaky", HOURLY, grace=GRACE)
    async def flaky(context: JobContext) -> None:
        return None

    targets = {"flaky": target(monitor.url_for("/ping/flaky"), HeartbeatProtocol.PLAIN)}
    async with job_runner(jobs, targets, retries=2) as (runner, metrics):
        await runner.run("flaky")
        await runner.heartbeat.drain(None)
        assert sample(metrics, "heartbeat_pings_total", job="flaky", outcome=outcome) == 1
    assert len(monitor.log) == attempts


async def test_pings_beyond_the_pending_cap_of_a_target_are_dropped_not_queued(
    blackhole_port: int, monitor: HTTPServer
) -> None:
    jobs = JobRegistry("test")

    @jobs.scheduled("busy", HOURLY, grace=GRACE)
    async def busy(context: JobContext) -> None:
        return None

    @jobs.scheduled("calm", HOURLY, grace=GRACE)
    async def calm(context: JobContext) -> None:
        return None

    targets = {
        "busy": target(f"http://127.0.0.1:{blackhole_port}/hung"),
        "calm": target(monitor.url_for("/ping/calm")),
    }
    # No wait for start pings: the runs queue all their pings before any is sent.
    settings = Settings(_env_file=None, heartbeat_start_timeout=0)
    capped = job_runner(
        jobs, targets, settings=settings, ping_timeout=0.3, retries=0, max_pending=2
    )
    async with capped as (runner, metrics):
        for _ in range(3):  # six pings to a hung monitor, two queued at a time
            assert await runner.run("busy") is RunOutcome.SUCCESS
        assert runner.heartbeat.pending == 2
        # Another target has a queue of its own: the hung one does not hold it up.
        assert await runner.run("calm") is RunOutcome.SUCCESS
        await wait_until(
            lambda: len(monitor.log) == 2, within=0.25, message="calm's pings sent meanwhile"
        )
    assert sample(metrics, "heartbeat_pings_total", job="busy", outcome="dropped") == 4
    assert sample(metrics, "heartbeat_pings_total", job="busy", outcome="failure") == 2
    assert sample(metrics, "heartbeat_pings_total", job="calm", outcome="success") == 2


async def test_the_token_never_appears_in_logs(
    monitor: HTTPServer, refused_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # httpx's own level too: whatever an earlier test in this process left it at.
    caplog.set_level(logging.INFO, logger="httpx")
    token = "hc-token-7f3a9c0e"
    monitor.expect_oneshot_request(f"/ping/{token}/fail").respond_with_data("", status=500)
    monitor.expect_oneshot_request(f"/ping/{token}/fail").respond_with_data("", status=500)
    jobs = JobRegistry("test")
    runs = 0

    @jobs.scheduled("secretive", HOURLY, grace=GRACE)
    async def secretive(context: JobContext) -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            raise OSError("disk full")

    @jobs.scheduled("unreachable", HOURLY, grace=GRACE)
    async def unreachable(context: JobContext) -> None:
        return None

    targets = {
        "secretive": target(monitor.url_for(f"/ping/{token}")),
        "unreachable": target(f"http://127.0.0.1:{refused_port}/{token}"),
    }
    async with job_runner(jobs, targets) as (runner, _):
        await runner.run("secretive")  # start and success pings answered 200
        await runner.run("secretive")  # the fail ping gets two 500s
        await runner.run("unreachable")
        await runner.heartbeat.drain(None)

    assert len(monitor.log) == 5
    # The monitor's own access log (werkzeug, in this process) is not the service's.
    ours = [record for record in caplog.records if record.name != "werkzeug"]
    # Formatted as a log handler would (tracebacks included), plus the raw arguments.
    logged = "\n".join(f"{caplog.handler.format(record)} {record.args!r}" for record in ours)
    assert token not in logged
    assert f"http://127.0.0.1:{monitor.port}/***" in caplog.text
    assert "HTTP Request: POST" in caplog.text, "httpx's request line is logged, redacted"
    assert "failed after 2 attempt(s): HTTP 500" in caplog.text
    assert "failed after 2 attempt(s): ConnectError" in caplog.text


async def test_a_cancelled_run_is_not_reported_as_a_failure(monitor: HTTPServer) -> None:
    jobs = JobRegistry("test")
    started = asyncio.Event()

    @jobs.scheduled("long", HOURLY, grace=GRACE)
    async def long(context: JobContext) -> None:
        started.set()
        await asyncio.sleep(3600)

    targets = {"long": target(monitor.url_for("/ping/long"))}
    async with job_runner(jobs, targets) as (runner, metrics):
        run = asyncio.create_task(runner.run("long"))
        await started.wait()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await runner.heartbeat.drain(None)
        state = runner.states["long"]

    assert [r.path for r in requests_of(monitor)] == ["/ping/long/start"]
    assert sample(metrics, "job_runs_total", job="long", outcome="cancelled") == 1
    assert sample(metrics, "job_runs_total", job="long", outcome="failure") == 0
    assert state.consecutive_failures == 0
    assert state.last_failure is None
    assert state.running == 0


def settings_for(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def where(resolved: Target | None) -> tuple[str, HeartbeatProtocol, str] | None:
    if resolved is None:
        return None
    assert isinstance(resolved, HeartbeatTarget)
    return (str(resolved.url), resolved.protocol, resolved.source)


def test_heartbeat_settings_come_from_the_environment_dotenv_and_secret_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("DOTENV_JOB_HEARTBEAT_URL=https://hc-ping.com/from-dotenv\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "file_job_heartbeat_url").write_text("https://hc-ping.com/from-file\n")
    monkeypatch.setenv("SECRETS_DIR", str(secrets))
    monkeypatch.setenv("ENV_JOB_HEARTBEAT_URL", "https://kuma.example.com/api/push/from-env")
    monkeypatch.setenv("ENV_JOB_HEARTBEAT_PROTOCOL", "uptime-kuma")

    targets = resolve_targets(["env_job", "dotenv_job", "file_job", "bare_job"], settings_for())

    assert where(targets["env_job"]) == (
        "https://kuma.example.com/api/push/from-env",
        HeartbeatProtocol.UPTIME_KUMA,
        "ENV_JOB_HEARTBEAT_URL",
    )
    assert where(targets["dotenv_job"]) == (
        "https://hc-ping.com/from-dotenv",
        HeartbeatProtocol.HEALTHCHECKS,
        "DOTENV_JOB_HEARTBEAT_URL",
    )
    assert where(targets["file_job"]) == (
        "https://hc-ping.com/from-file",
        HeartbeatProtocol.HEALTHCHECKS,
        "FILE_JOB_HEARTBEAT_URL",
    )
    assert targets["bare_job"] is None
    assert "from-file" not in repr(targets["file_job"])


def test_blank_job_settings_count_as_unset_in_every_source(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("DOTENV_JOB_HEARTBEAT_URL=\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "FILE_JOB_HEARTBEAT_URL").write_text("\n")
    (secrets / "file_job_heartbeat_protocol").write_text("  \n")
    monkeypatch.setenv("SECRETS_DIR", str(secrets))
    monkeypatch.setenv("ENV_JOB_HEARTBEAT_URL", "")

    targets = resolve_targets(["env_job", "dotenv_job", "file_job"], settings_for())

    assert targets == {"env_job": None, "dotenv_job": None, "file_job": None}


def test_slug_mode_pings_every_job_without_its_own_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "HEALTHCHECKS_PING_KEY").write_text("pk-from-file_1\n")
    monkeypatch.setenv("SECRETS_DIR", str(secrets))
    monkeypatch.setenv("OWN_URL_HEARTBEAT_URL", "https://kuma.example.com/api/push/token")
    monkeypatch.setenv("OWN_URL_HEARTBEAT_PROTOCOL", "uptime-kuma")
    settings = Settings(_env_file=None, _secrets_dir=secrets)

    targets = resolve_targets(["cleanup_items", "own_url"], settings)

    assert where(targets["cleanup_items"]) == (
        "https://hc-ping.com/pk-from-file_1/{{ cookiecutter.project_slug }}-cleanup-items",
        HeartbeatProtocol.HEALTHCHECKS,
        "HEALTHCHECKS_PING_KEY",
    )
    assert where(targets["own_url"]) == (
        "https://kuma.example.com/api/push/token",
        HeartbeatProtocol.UPTIME_KUMA,
        "OWN_URL_HEARTBEAT_URL",
    )
    assert "pk-from-file" not in repr(settings)

    self_hosted = settings_for(
        healthchecks_ping_key="key",
        healthchecks_ping_url="https://hc.example.com/ping/",
        healthchecks_auto_create=True,
        heartbeat_protocol="plain",
    )
    provisioned = resolve_targets(["nightly_report"], self_hosted)["nightly_report"]
    assert where(provisioned) == (
        "https://hc.example.com/ping/key/{{ cookiecutter.project_slug }}-nightly-report?create=1",
        HeartbeatProtocol.HEALTHCHECKS,
        "HEALTHCHECKS_PING_KEY",
    )


async def test_slug_mode_auto_creates_the_check_on_a_real_server(
    monitor: HTTPServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "none"))
    slug = "{{ cookiecutter.project_slug }}-nightly-report"
    # As Healthchecks' ping_by_slug: 201 "Created" for the ping that creates the check.
    monitor.expect_oneshot_request(f"/ping/key/{slug}/start", method="POST").respond_with_data(
        "Created", status=201
    )
    settings = settings_for(
        healthchecks_ping_key="key",
        healthchecks_ping_url=monitor.url_for("/ping"),
        healthchecks_auto_create=True,
    )
    jobs = JobRegistry("test")

    @jobs.scheduled("nightly_report", HOURLY, grace=GRACE)
    async def nightly_report(context: JobContext) -> None:
        return None

    targets = resolve_targets(["nightly_report"], settings)
    async with job_runner(jobs, targets, settings=settings) as (runner, metrics):
        assert await runner.run("nightly_report") is RunOutcome.SUCCESS
        await runner.heartbeat.drain(None)

    sent = [(r.method, r.path, r.args.get("create")) for r in requests_of(monitor)]
    assert sent == [
        ("POST", f"/ping/key/{slug}/start", "1"),
        ("POST", f"/ping/key/{slug}", "1"),
    ]
    assert sample(metrics, "heartbeat_pings_total", job="nightly_report", outcome="success") == 2


def test_a_slug_longer_than_healthchecks_allows_is_refused_naming_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The longest project slug the template accepts (63), and the longest job id.
    monkeypatch.setattr(heartbeat_targets, "SERVICE_ID", "s" * 63)
    job_id = "j" + "_x" * 31
    with pytest.raises(ConfigurationError, match=f"the slug of job {job_id} "):
        resolve_targets([job_id], settings_for(healthchecks_ping_key="key"))


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.8.9.10",
        "[::1]",
        "169.254.169.254",
        "[fe80::1]",
        "0.0.0.0",  # noqa: S104 (a ping target, not a bind address)
        "[::ffff:127.0.0.1]",
        "localhost",
    ],
)
def test_outside_development_a_ping_target_on_loopback_or_link_local_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("LOCAL_HEARTBEAT_URL", f"http://{host}:8000/ping/s3cret")
    production = make_settings("postgresql://db/x", environment="production")
    with pytest.raises(ConfigurationError, match=r"^LOCAL_HEARTBEAT_URL: its host is ") as caught:
        resolve_targets(["local"], production)
    assert "s3cret" not in str(caught.value)
    for setting in ("HEALTHCHECKS_PING_URL",):
        with pytest.raises(ValueError, match=f"{setting}: its host is "):
            make_settings(
                "postgresql://db/x",
                environment="production",
                **{setting.lower(): f"http://{host}:8000/x"},
            )
    # Development pings a monitor on the developer's machine; private ranges stay allowed.
    assert resolve_targets(["local"], settings_for())["local"] is not None
    monkeypatch.setenv("LOCAL_HEARTBEAT_URL", "http://10.0.0.7:8000/ping/uuid")
    assert resolve_targets(["local"], production)["local"] is not None


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BAD_HEARTBEAT_URL", "ftp://s3cret@example.com/x", "must be an http:// or https:// URL"),
        ("BAD_HEARTBEAT_URL", "not a url s3cret", "must be an http:// or https:// URL"),
        ("BAD_HEARTBEAT_PROTOCOL", "pagerduty", "must be one of healthchecks, uptime-kuma, plain"),
    ],
)
def test_invalid_heartbeat_settings_name_the_variable_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=re.escape(f"{variable}: {message}")) as caught:
        resolve_targets(["bad"], settings_for())
    assert "s3cret" not in str(caught.value)
