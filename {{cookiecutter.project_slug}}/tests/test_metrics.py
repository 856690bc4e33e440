"""``GET /metrics``: job series, HTTP requests by route template and status, the port of its
own, and the state series the alert rules stand on (health verdicts, readiness, each job's
last success and deadline from the shared run table, the scheduler's leader)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from apscheduler.triggers.interval import IntervalTrigger
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.metrics_state import MARGIN
from {{ cookiecutter.package_name }}.scheduling import (
    JobContext,
    JobRegistry,
    default_jobs,
)
from {{ cookiecutter.package_name }}.scheduling.health import assess_job, deadline
from {{ cookiecutter.package_name }}.scheduling.state import JobState

from .conftest import app_client, make_settings, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient,
) -> None:
    before = await scrape(client)
    for item_id in (123456, 123457):
        assert (await client.get(f"/items/{item_id}")).status_code == 404
    assert (await client.get("/no/such/page")).status_code == 404
    after = await scrape(client)

    by_template = {"method": "GET", "route": "/items/{item_id}", "status": "404"}
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    for name, labels, increase in [
        ("http_requests_total", by_template, 2),
        ("http_request_duration_seconds_count", by_template, 2),
        ("http_requests_total", unmatched, 1),
    ]:
        assert value(after, name, **labels) - value(before, name, **labels) == increase
    routes = {dict(labels).get("route") for _, labels in after}
    assert "/items/123456" not in routes, "raw paths would make unbounded series"


async def test_job_series_exist_before_the_first_run(client: httpx.AsyncClient) -> None:
    samples = await scrape(client)
    series = {(name, dict(labels).get("outcome")) for name, labels in samples}
    for outcome in ("success", "failure", "cancelled"):
        assert ("job_runs_total", outcome) in series
    for outcome in ("success", "failure", "dropped"):
        assert ("heartbeat_pings_total", outcome) in series
    for job in (job.id for job in default_jobs()):
        assert value(samples, "job_runs_total", job=job, outcome="failure") == 0
        assert ("job_duration_seconds_count", (("job", job),)) in samples


async def test_an_unknown_method_is_counted_as_other(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    for method in ("FOO", "BAR", "BAZ"):
        await client.request(method, "/items")
    after = await scrape(client)
    methods = {dict(labels).get("method") for _, labels in after}
    assert not methods & {"FOO", "BAR", "BAZ"}, "invented methods would make unbounded series"
    labels = {"method": "other", "route": "/items", "status": "405"}
    increase = value(after, "http_requests_total", **labels) - value(
        before, "http_requests_total", **labels
    )
    assert increase == 3


async def test_metrics_port_serves_metrics_apart_from_the_api(
    postgres_url: str, unused_port: int
) -> None:
    app = create_app(make_settings(postgres_url, metrics_port=unused_port))
    async with app.router.lifespan_context(app), app_client(app) as http:
        assert (await http.get("/metrics")).status_code == 404
        async with httpx.AsyncClient() as scraper:
            response = await scraper.get(f"http://127.0.0.1:{unused_port}/metrics")
        assert response.status_code == 200
        assert "job_runs_total" in response.text
    # Stopped with the app: nothing listens there any more.
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", unused_port)


# --- The state series ----------------------------------------------------------------------


def check_statuses(samples: Samples, check: str) -> dict[str, float]:
    return {
        dict(labels)["status"]: sample
        for (name, labels), sample in samples.items()
        if name == "health_check_status" and dict(labels)["check"] == check
    }


async def test_each_check_verdict_and_readiness_are_gauges(client: httpx.AsyncClient) -> None:
    samples = await scrape(client)
    assert check_statuses(samples, "database:responseTime") == {
        "pass": 1.0,
        "warn": 0.0,
        "fail": 0.0,
    }
    assert value(samples, "health_ready") == 1.0
    # Every check of /health has its verdict, job checks and the scheduler's included.
    keys = {dict(labels)["check"] for name, labels in samples if name == "health_check_status"}
    assert "scheduler" in keys
    assert {f"{job.id}:lastSuccess" for job in default_jobs()} <= keys


async def test_a_database_outage_turns_readiness_and_its_check_to_fail(
    refused_port: int,
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{refused_port}/none"
    app = create_app(make_settings(url, scheduler_enabled=False))
    async with app.router.lifespan_context(app), app_client(app) as http:
        assert (await http.get("/health/ready")).status_code == 503
        samples = await scrape(http)
    assert check_statuses(samples, "database:responseTime") == {
        "pass": 0.0,
        "warn": 0.0,
        "fail": 1.0,
    }
    assert value(samples, "health_ready") == 0.0
    # Without a scheduler, no leadership to report; no job state could be read.
    names = {name for name, _ in samples}
    assert "scheduler_leader" not in names
    assert "job_deadline_timestamp_seconds" not in names


async def test_the_metrics_port_reads_the_state_from_its_own_thread(
    postgres_url: str, unused_port: int
) -> None:
    app = create_app(make_settings(postgres_url, metrics_port=unused_port))
    async with app.router.lifespan_context(app), httpx.AsyncClient() as scraper:
        response = await scraper.get(f"http://127.0.0.1:{unused_port}/metrics")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert value(samples, "health_ready") == 1.0
    assert check_statuses(samples, "database:responseTime")["pass"] == 1.0


async def test_a_hung_database_never_hangs_the_scrape(
    blackhole_port: int, unused_port: int
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{blackhole_port}/none"
    app = create_app(make_settings(url, metrics_port=unused_port))
    async with app.router.lifespan_context(app), httpx.AsyncClient() as scraper:
        started = time.monotonic()
        response = await scraper.get(f"http://127.0.0.1:{unused_port}/metrics", timeout=10)
        took = time.monotonic() - started
    assert response.status_code == 200
    # The checks' own timeout (0.5 s here) and the margin bound the scrape.
    assert took < 0.5 + MARGIN + 0.5, f"the scrape took {took:.2f} s"
    assert "health_ready 0.0" in response.text


def flaky(name: str, failing: set[str]) -> JobRegistry:
    """A registry ``name`` whose job ``flaky`` fires every 0.2 s and raises while
    ``failing`` holds ``"flaky"``."""
    jobs = JobRegistry(name)

    @jobs.scheduled("flaky", IntervalTrigger(seconds=0.2), grace=timedelta(seconds=30))
    async def run(context: JobContext) -> None:
        if "flaky" in failing:
            raise RuntimeError("failing on purpose")

    return jobs


def job_samples(samples: Samples) -> dict[str, float]:
    return {
        name: sample
        for (name, labels), sample in samples.items()
        if dict(labels).get("job") == "flaky"
        and name.startswith(("job_last_success", "job_deadline", "job_consecutive"))
    }


async def test_every_replica_scrapes_the_same_job_state_and_one_leader(
    postgres_url: str,
) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    failing: set[str] = set()
    settings = make_settings(postgres_url, scheduler_leader_retry_interval=0.1)
    first = create_app(settings, jobs=flaky(name, failing))
    second = create_app(settings, jobs=flaky(name, failing))

    async def scraped(app: FastAPI) -> Samples:
        async with app_client(app) as http:
            return await scrape(http)

    async with AsyncExitStack() as stack:
        await stack.enter_async_context(first.router.lifespan_context(first))
        await wait_until(lambda: first.state.scheduler.is_leader, within=10, message="elected")
        await stack.enter_async_context(second.router.lifespan_context(second))

        async def follower_saw_a_success() -> bool:
            return "job_last_success_timestamp_seconds" in job_samples(await scraped(second))

        await wait_until(follower_saw_a_success, within=10, message="a success, seen by both")
        failing.add("flaky")

        async def both_see_a_failure() -> bool:
            leader = job_samples(await scraped(first))
            follower = job_samples(await scraped(second))
            return leader.get("job_consecutive_failures", 0) >= 1 and leader == follower

        await wait_until(both_see_a_failure, within=10, message="the same failure on both")
        leader, follower = await scraped(first), await scraped(second)
        assert value(leader, "scheduler_leader") == 1.0
        assert value(follower, "scheduler_leader") == 0.0
        epoch = value(leader, "scheduler_lease_epoch")
        assert epoch >= 1
        assert value(follower, "scheduler_lease_epoch") == epoch
        series = job_samples(follower)
        # Failing since the fire after the last success: due 30 s (the grace) after it.
        last_success = series["job_last_success_timestamp_seconds"]
        due = series["job_deadline_timestamp_seconds"]
        assert 30 < due - last_success < 31, (last_success, due)
        # A heartbeat ping outcome keeps its name: declared at zero for the job.
        assert ("heartbeat_pings_total", (("job", "flaky"), ("outcome", "failure"))) in leader


def test_the_deadline_is_where_health_turns_the_job_overdue() -> None:
    fire = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    grace = timedelta(minutes=30)
    tick = timedelta(milliseconds=1)
    for state in (
        JobState(next_run_time=fire),  # nothing ran since the last success
        JobState(due_since=fire, consecutive_failures=1, next_run_time=fire + grace * 4),
    ):
        due = deadline(state, grace)
        assert due == fire + grace
        assert assess_job(state, grace=grace, now=due - tick).status.value != "fail"
        assert (assess_job(state, grace=grace, now=due + tick).output or "").startswith("overdue")
    assert deadline(JobState(), grace) is None
