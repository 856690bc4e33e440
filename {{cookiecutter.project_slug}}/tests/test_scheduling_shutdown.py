"""Graceful shutdown: runs in flight finish before the lock is released; overruns are
cancelled without being reported as failures."""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from fastapi import FastAPI
from pytest_httpserver import HTTPServer

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.metrics import Metrics
from {{ cookiecutter.package_name }}.scheduling import (
    JobContext,
    JobRegistry,
)

from .conftest import make_settings, wait_until

TAKEOVER_BOUND = 30.0  # seconds, from the issue


def runs(app: FastAPI, job: str, outcome: str) -> float | None:
    metrics: Metrics = app.state.metrics
    return metrics.registry.get_sample_value("job_runs_total", {"job": job, "outcome": outcome})


async def test_in_flight_runs_finish_before_the_lease_is_released(
    postgres_url: str, monitor: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    events: list[str] = []
    started = asyncio.Event()
    apps: dict[str, FastAPI] = {}

    def replica(label: str) -> JobRegistry:
        jobs = JobRegistry(name)

        @jobs.scheduled("slow", IntervalTrigger(seconds=0.2), grace=timedelta(minutes=1))
        async def slow(context: JobContext) -> None:
            if label == "second":
                events.append("second ran")
                return
            started.set()
            await asyncio.sleep(0.5)
            follower = apps["second"].state.scheduler
            events.append(f"first finished; second leading: {follower.is_leader}")

        return jobs

    settings = make_settings(postgres_url, scheduler_leader_retry_interval=0.1)
    monkeypatch.setenv("SLOW_HEARTBEAT_URL", monitor.url_for("/ping/slow"))
    apps["first"] = first = create_app(settings, jobs=replica("first"))
    monkeypatch.delenv("SLOW_HEARTBEAT_URL")
    apps["second"] = second = create_app(settings, jobs=replica("second"))

    async with AsyncExitStack() as outer:
        first_life = AsyncExitStack()
        outer.push_async_callback(first_life.aclose)
        await first_life.enter_async_context(first.router.lifespan_context(first))
        await wait_until(lambda: first.state.scheduler.is_leader, within=10, message="elected")
        await outer.enter_async_context(second.router.lifespan_context(second))
        await asyncio.wait_for(started.wait(), 10)

        await first_life.aclose()  # the lifespan shutdown, while "slow" runs
        assert events == ["first finished; second leading: False"]
        await wait_until(
            lambda: "second ran" in events, within=TAKEOVER_BOUND, message="second takes over"
        )

    assert runs(first, "slow", "success") == 1
    assert runs(first, "slow", "cancelled") == 0
    pings = [(request.path, request.args["rid"]) for request, _ in monitor.log]
    assert [path for path, _ in pings] == ["/ping/slow/start", "/ping/slow"], "sent before exit"
    assert pings[0][1] == pings[1][1]


async def test_a_run_outlasting_the_shutdown_timeout_is_cancelled_not_failed(
    tmp_path: Path,
    monitor: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    jobs = JobRegistry(f"test-{uuid.uuid4().hex[:8]}")
    started = asyncio.Event()

    @jobs.scheduled("endless", IntervalTrigger(seconds=0.1), grace=timedelta(minutes=1))
    async def endless(context: JobContext) -> None:
        started.set()
        await asyncio.sleep(3600)

    monkeypatch.setenv("ENDLESS_HEARTBEAT_URL", monitor.url_for("/ping/endless"))
    url = f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    app = create_app(make_settings(url, scheduler_shutdown_timeout=0.2), jobs=jobs)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(started.wait(), 10)
        state = app.state.scheduler.states["endless"]

    assert runs(app, "endless", "cancelled") == 1
    assert runs(app, "endless", "failure") == 0
    assert [request.path for request, _ in monitor.log] == ["/ping/endless/start"], "no /fail"
    assert state.consecutive_failures == 0
    assert state.running == 0
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith("job endless run ") for message in messages)
    assert any("cancelled after" in message for message in messages)
