"""Exactly once across replicas: the leader lock on the real PostgreSQL.

In-process replicas (apps sharing a registry name, so a lock key) show election,
hand-over and stepping down; three OS processes show one run per fire and a
takeover after the leader is killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from fastapi import FastAPI
from pytest_httpserver import HTTPServer

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
        await wait_until(lambda: app.state.scheduler.is_leader, within=10, message="elected")
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


async def fetch_runs(database_url: str) -> Sequence[Any]:
    return await fetch(
        database_url, "SELECT scheduled_at, run_id, pid FROM replica_runs ORDER BY scheduled_at"
    )


def contiguous(fires: list[datetime]) -> bool:
    return all(later - earlier == timedelta(seconds=1) for earlier, later in pairwise(fires))


async def test_three_processes_run_each_fire_exactly_once_and_survive_the_leader(
    postgres_url: str, monitor: HTTPServer, tmp_path: Path
) -> None:
    await execute(
        postgres_url,
        "CREATE TABLE replica_runs (scheduled_at timestamptz NOT NULL,"
        " run_id uuid NOT NULL, pid integer NOT NULL)",
    )
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "DATABASE_URL": postgres_url,
        "SECRETS_DIR": str(tmp_path / "no-secrets"),
        "SCHEDULER_LEADER_RETRY_INTERVAL": "0.5",
        "METRICS_PORT": "0",
        "HEARTBEAT_TIMEOUT": "2",
        "LOG_LEVEL": "INFO",
        "REPLICA_REGISTRY": f"replicas-{uuid.uuid4().hex[:8]}",
        "TICK_HEARTBEAT_URL": monitor.url_for("/ping/tick"),
    }
    logs = [tmp_path / f"replica-{index}.log" for index in range(3)]
    processes: dict[int, asyncio.subprocess.Process] = {}
    try:
        for log in logs:
            with log.open("wb") as output:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(REPLICA),
                    cwd=tmp_path,
                    env=env,
                    stdout=output,
                    stderr=output,
                )
            processes[process.pid] = process

        def replica_logs() -> str:
            return "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs)

        async def fires_recorded(count: int) -> bool:
            return len(await fetch_runs(postgres_url)) >= count

        await wait_until(lambda: fires_recorded(10), within=60, message="ten fires")
        before = await fetch_runs(postgres_url)
        leaders = {row["pid"] for row in before}
        assert len(leaders) == 1, f"one process ran every fire so far: {leaders}"
        (leader,) = leaders
        assert contiguous([row["scheduled_at"] for row in before]), "no fire was skipped"

        processes.pop(leader).kill()  # SIGKILL: no shutdown, no lock release
        killed_at = datetime.now(UTC)

        async def taken_over() -> bool:
            return any(row["pid"] != leader for row in await fetch_runs(postgres_url))

        await wait_until(taken_over, within=TAKEOVER_BOUND, message=replica_logs())
        after_kill = [row for row in await fetch_runs(postgres_url) if row["pid"] != leader]
        takeover = after_kill[0]["scheduled_at"] - killed_at
        assert takeover < timedelta(seconds=TAKEOVER_BOUND), replica_logs()
        await wait_until(
            lambda: fires_recorded(len(before) + 4), within=10, message="the new leader ticks"
        )
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            assert await asyncio.wait_for(process.wait(), 30) == 0, replica_logs()
    finally:
        for process in processes.values():
            if process.returncode is None:
                process.kill()
                await process.wait()

    runs = await fetch_runs(postgres_url)
    fires = Counter(row["scheduled_at"] for row in runs)
    assert max(fires.values()) == 1, f"fires run twice: {fires.most_common(3)}"
    survivors = [row for row in runs if row["pid"] != leader]
    assert len({row["pid"] for row in survivors}) == 1, "one new leader"
    assert contiguous([row["scheduled_at"] for row in survivors])

    # Only the process that ran a fire pinged, once per run, start then success.
    starts = Counter(r.args["rid"] for r, _ in monitor.log if r.path == "/ping/tick/start")
    successes = Counter(r.args["rid"] for r, _ in monitor.log if r.path == "/ping/tick")
    recorded = {str(row["run_id"]) for row in runs}
    assert set(successes) <= recorded
    assert max(successes.values()) == 1
    assert max(starts.values()) == 1
    for row in survivors:
        assert (starts[str(row["run_id"])], successes[str(row["run_id"])]) == (1, 1)
    killed_runs = [str(row["run_id"]) for row in runs if row["pid"] == leader]
    # The kill may have cut the last run of the old leader between its record and its ping.
    assert sum(successes[run_id] for run_id in killed_runs) >= len(killed_runs) - 1
