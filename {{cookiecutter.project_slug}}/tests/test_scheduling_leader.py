"""Exactly once across replicas: the leader lease on the real PostgreSQL.

In-process replicas (apps sharing a registry name, so a lease) show election,
hand-over at shutdown and a lease session lost under the leader. Real processes
and real faults are in ``test_scheduling_replicas.py``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from fastapi import FastAPI

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.scheduling import (
    JobContext,
    JobRegistry,
)

from .conftest import app_client, execute, fetch, make_settings, wait_until

REPLICA = Path(__file__).with_name("replica.py")
TAKEOVER_BOUND = 30.0  # seconds, from the issue


def ticking(name: str, label: str, runs: list[tuple[str, datetime | None]]) -> JobRegistry:
    """A registry ``name`` whose job ``tick`` records ``(label, fire time)`` every 0.1 s."""
    jobs = JobRegistry(name)

    @jobs.scheduled("tick", IntervalTrigger(seconds=0.1), grace=timedelta(seconds=30))
    async def tick(context: JobContext) -> None:
        runs.append((label, context.scheduled_at))

    return jobs


async def scheduler_status(app: FastAPI) -> dict[str, Any]:
    async with app_client(app) as http:
        (check,) = (await http.get("/health")).json()["checks"]["scheduler"]
    return dict(check)


async def test_one_replica_leads_and_hands_over_at_shutdown(postgres_url: str) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    runs: list[tuple[str, datetime | None]] = []
    settings = make_settings(postgres_url, scheduler_leader_retry_interval=0.1)
    first = create_app(settings, jobs=ticking(name, "first", runs))
    second = create_app(settings, jobs=ticking(name, "second", runs))
    async with AsyncExitStack() as outer:
        first_life = AsyncExitStack()
        outer.push_async_callback(first_life.aclose)
        await first_life.enter_async_context(first.router.lifespan_context(first))
        await wait_until(
            lambda: first.state.scheduler.is_leader, within=10, message="first elected"
        )
        await outer.enter_async_context(second.router.lifespan_context(second))
        await wait_until(lambda: len(runs) >= 5, within=10, message="five ticks")

        leader_check = await scheduler_status(first)
        follower_check = await scheduler_status(second)
        assert leader_check["status"] == "pass"
        assert (leader_check["observedValue"], leader_check["leader"]) == ("leader", True)
        assert (follower_check["observedValue"], follower_check["leader"]) == ("follower", False)
        assert follower_check["status"] == "pass"
        assert {label for label, _ in runs} == {"first"}

        stopped = asyncio.get_running_loop().time()
        await first_life.aclose()
        await wait_until(
            lambda: second.state.scheduler.is_leader,
            within=TAKEOVER_BOUND,
            message="the follower takes over once the leader releases the lock",
        )
        took_over = asyncio.get_running_loop().time() - stopped
        handed_over_at = len(runs)
        await wait_until(lambda: len(runs) >= handed_over_at + 3, within=10, message="ticks")
        assert (await scheduler_status(second))["leader"] is True

    assert took_over < TAKEOVER_BOUND
    labels = [label for label, _ in runs]
    switch = labels.index("second")
    assert set(labels[:switch]) == {"first"}
    assert set(labels[switch:]) == {"second"}, "one leader at a time"
    fires = [at for _, at in runs]
    assert None not in fires
    assert len(set(fires)) == len(fires), "no fire ran twice"


async def test_a_terminated_lease_session_costs_no_term(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="{{ cookiecutter.package_name }}")
    runs: list[tuple[str, datetime | None]] = []
    jobs = ticking(f"test-{uuid.uuid4().hex[:8]}", "only", runs)
    settings = make_settings(
        postgres_url, scheduler_leader_retry_interval=0.1, scheduler_lease_ttl=3
    )
    app = create_app(settings, jobs=jobs)
    async with app.router.lifespan_context(app):
        await wait_until(lambda: app.state.scheduler.running, within=10, message="elected")
        lease = app.state.scheduler.lease
        holder = await lease.backend_pid()
        assert holder is not None
        # As a network cut or a server restart would: the session ends under the leader.
        await execute(postgres_url, "SELECT pg_terminate_backend($1)", holder)

        async def renewed_on_a_new_session() -> bool:
            return (await lease.backend_pid()) not in (None, holder)

        await wait_until(renewed_on_a_new_session, within=5, message="a new lease session")
        ticks = len(runs)
        await wait_until(lambda: len(runs) > ticks + 5, within=10, message="ticking again")
        assert app.state.scheduler.is_leader

    messages = [record.getMessage() for record in caplog.records]
    assert not any(message.startswith("stepping down") for message in messages)
    assert messages.count("scheduler started with 1 job(s)") == 1
    epochs = await fetch(
        postgres_url, "SELECT DISTINCT epoch FROM scheduler_runs WHERE registry = $1", jobs.name
    )
    assert len(epochs) == 1, "one term throughout"
    fires = [at for _, at in runs]
    assert len(set(fires)) == len(fires)
