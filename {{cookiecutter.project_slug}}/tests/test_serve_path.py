"""Serving imports only what serving needs (cold start, memory): no migration tool, no CLI,
and no job scheduler until the process leads."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.scheduling import JobContext, JobRegistry

from .conftest import make_settings, wait_until

PACKAGE = "{{ cookiecutter.package_name }}"
# Modules a serving process must not load: migrations run as their own command, the
# jobs CLI and the Healthchecks Management API client are operators' tools, and
# OpenTelemetry is loaded only when tracing is configured.
NOT_SERVING = (
    "alembic",
    "aerich",
    f"{PACKAGE}.migrate",
    f"{PACKAGE}.scheduling.cli",
    f"{PACKAGE}.heartbeats.monitor_sync",
    # Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (tracing.py): no tracer
    # provider, exporter or instrumentation. (FastAPI imports OpenTelemetry's API for
    # its own telemetry, and redis-py the SDK's metrics when the SDK is installed.)
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter",
    "opentelemetry.instrumentation",
    f"{PACKAGE}.otel",
)
# Loaded with the first heartbeat target (heartbeats/targets.py, heartbeats/sender.py):
# a service whose jobs have none, as here, never needs an HTTP client.
FIRST_TARGET = ("httpx", "tenacity")
# Loaded when the process starts scheduling (scheduling/scheduler.py): with PostgreSQL
# once it is elected, never in a follower; importing it reads every package's entry points.
SCHEDULING = ("apscheduler.schedulers",)
# Loaded only when SENTRY_DSN is set (sentry.py): off, the SDK costs nothing.
SENTRY = ("sentry_sdk", f"{PACKAGE}.sentry")
# Loaded with the first job whose monitor is Sentry Crons (heartbeats/sender.py).
SENTRY_CRONS = (f"{PACKAGE}.heartbeats.checkins", f"{PACKAGE}.heartbeats.crons")
SERVE_CODES = [
    f"import {PACKAGE}.main as main; main.create_app()",
    f"import {PACKAGE}.__main__",
]
# The app answering a request: asgi-correlation-id's middleware, built then, imports
# sentry_sdk whenever it is installed, unless told not to (logs.RequestIdMiddleware).
ANSWER_A_REQUEST = (
    f"import asyncio, httpx, {PACKAGE}.main as main; app = main.create_app(); "
    "client = httpx.AsyncClient(transport=httpx.ASGITransport(app)); "
    "assert asyncio.run(client.get('http://test/nowhere')).status_code == 404"
)


def loaded_modules(code: str, **env: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", "import os, sys; exec(os.environ['CODE']); print(*sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"ENVIRONMENT": "development", "SECRETS_DIR": "/nonexistent", "CODE": code, **env},
    )
    return set(result.stdout.split())


@pytest.mark.parametrize("code", SERVE_CODES, ids=["uvicorn main:app", "python -m serve"])
def test_serving_loads_no_migration_or_cli_module(code: str) -> None:
    loaded = loaded_modules(code)
    assert [name for name in NOT_SERVING if name in loaded] == []
    assert [name for name in FIRST_TARGET if name in loaded] == []
    assert [name for name in SCHEDULING if name in loaded] == []
    assert [name for name in SENTRY + SENTRY_CRONS if name in loaded] == []


def test_answering_a_request_loads_no_sentry_sdk() -> None:
    assert [name for name in SENTRY if name in loaded_modules(ANSWER_A_REQUEST)] == []


def test_the_sentry_sdk_loads_when_sentry_dsn_is_set() -> None:
    # The checks above can fail: with a DSN the same app does load the SDK.
    dsn = "http://0123456789abcdef@127.0.0.1:9/1"
    assert set(SENTRY) <= loaded_modules(ANSWER_A_REQUEST, SENTRY_DSN=dsn)


# ``python -m <package> serve`` up to the server, which is stubbed: an import string is
# loaded as uvicorn loads it. Prints how many times the settings were read.
SERVE_ONCE = f"""
import importlib
import {PACKAGE}.server as server
import {PACKAGE}.settings as settings

reads = []
load_settings = settings.load_settings

def counting_load_settings():
    reads.append(1)
    return load_settings()

def stub_serve(app, options):
    if isinstance(app, str):
        module, _, name = app.partition(":")
        getattr(importlib.import_module(module), name)
    return 0

settings.load_settings = counting_load_settings
server.serve = stub_serve
from {PACKAGE}.__main__ import main

assert main(["serve"]) == 0
print(len(reads))
"""


def test_python_m_serve_reads_the_settings_once() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import os; exec(os.environ['CODE'])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"ENVIRONMENT": "development", "SECRETS_DIR": "/nonexistent", "CODE": SERVE_ONCE},
    )
    assert result.stdout.split() == ["1"], result.stderr


# A replica of registry sys.argv[2] on database sys.argv[1]: one second of tries at the
# lease (every 0.1 s), then whether it campaigns, leads, and has loaded the scheduler.
FOLLOWER = f"""
import asyncio, sys
from datetime import timedelta
from apscheduler.triggers.interval import IntervalTrigger
from {PACKAGE}.main import create_app
from {PACKAGE}.scheduling import JobRegistry
from {PACKAGE}.settings import Settings

jobs = JobRegistry(sys.argv[2])

@jobs.scheduled("tick", IntervalTrigger(hours=1), grace=timedelta(hours=1))
async def tick(context):
    pass

async def main():
    settings = Settings(
        _env_file=None,
        database_url=sys.argv[1],
        metrics_port=0,
        scheduler_leader_retry_interval=0.1,
    )
    app = create_app(settings, jobs=jobs)
    async with app.router.lifespan_context(app):
        await asyncio.sleep(1.0)
        scheduler = app.state.scheduler
        print(scheduler.campaigning, scheduler.is_leader, "apscheduler.schedulers" in sys.modules)

asyncio.run(main())
"""


async def test_a_follower_never_loads_the_scheduler(postgres_url: str) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    jobs = JobRegistry(name)

    @jobs.scheduled("tick", IntervalTrigger(hours=1), grace=timedelta(hours=1))
    async def tick(context: JobContext) -> None:
        del context

    leader = create_app(make_settings(postgres_url), jobs=jobs)
    async with leader.router.lifespan_context(leader):
        await wait_until(lambda: leader.state.scheduler.is_leader, within=10, message="elected")
        # In a thread: this loop keeps renewing the leader's lease meanwhile.
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", "import os; exec(os.environ['CODE'])", postgres_url, name],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={"ENVIRONMENT": "development", "SECRETS_DIR": "/nonexistent", "CODE": FOLLOWER},
        )
    assert result.stdout.split() == ["True", "False", "False"], result.stderr
