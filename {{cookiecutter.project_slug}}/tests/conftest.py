"""Shared fixtures: a throwaway PostgreSQL database per session, apps and clients, and
a real HTTP server on loopback standing in for heartbeat monitors.

``TEST_DATABASE_URL`` is an admin URL (default
``postgresql://postgres@127.0.0.1:5432/postgres``); the session creates a database
of its own there, migrates it as an operator would (``database.py``) and drops it
at the end. The writes of each test are undone afterwards (``database.isolated``).
When PostgreSQL does not answer, its tests are skipped locally and fail when
``CI=true``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import itertools
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import cast

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pytest_httpserver import HTTPServer

from {{ cookiecutter.package_name }}.db import Database
from {{ cookiecutter.package_name }}.heartbeats.sender import (
    MAX_PENDING_PINGS,
    Heartbeat,
)
from {{ cookiecutter.package_name }}.heartbeats.targets import Target
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.metrics import Metrics
from {{ cookiecutter.package_name }}.postgres import libpq_dsn, normalize_database_url
from {{ cookiecutter.package_name }}.scheduling import (
    JobRegistry,
    default_jobs,
)
from {{ cookiecutter.package_name }}.scheduling.runner import (
    JobRunner,
    RunOutcome,
)
from {{ cookiecutter.package_name }}.scheduling.state import JobStates
from {{ cookiecutter.package_name }}.settings import Settings

from .database import isolated, migrate

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = normalize_database_url(
    os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)


# Variables that name a setting of the service, or a job's (<JOB_ID>_HEARTBEAT_URL).
SETTING_NAMES = frozenset(name.upper() for name in Settings.model_fields) | {"SECRETS_DIR"}
JOB_SETTING_SUFFIXES = ("_HEARTBEAT_URL", "_HEARTBEAT_PROTOCOL", "_TIME_LIMIT")


@pytest.fixture(scope="session", autouse=True)
def ignore_the_developers_settings(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """Run the suite from the settings' defaults, whatever the shell and ``.env`` say.

    A ``DATABASE_URL`` exported for ``make run``, or written in the project's ``.env``,
    must change no test: every variable named like a setting is removed for the
    session, ``SECRETS_DIR`` points nowhere, and the tests run from an empty folder,
    so only a test that writes a ``.env`` of its own (after ``monkeypatch.chdir``)
    reads one. A test that needs a setting sets it with ``monkeypatch.setenv``.
    ``TEST_DATABASE_URL`` and ``TEST_REDIS_URL`` are the tests' own: they stay.
    """
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name in SETTING_NAMES or name.endswith(JOB_SETTING_SUFFIXES):
                patch.delenv(name)
        patch.setenv("SECRETS_DIR", str(tmp_path_factory.mktemp("no-secrets") / "none"))
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        yield


# The items cache's keys in this session. Whoever tests at the same time shares
# TEST_REDIS_URL's database (two bakes, or one suite run twice) and numbers its items
# alike from its own throwaway PostgreSQL database: under the service's own prefix
# (``<slug>:items:``) each session would read the other's entries. Within the session,
# each test has a prefix of its own below it, since tests number items alike too (an
# app on SQLite and one on PostgreSQL both create item 1).
SLUG = "{{ cookiecutter.project_slug }}"
SESSION_KEY_PREFIX = f"{SLUG}:test-{uuid.uuid4().hex[:12]}:"
# A bake with Redis has the items cache; a bake without it has none.
ITEMS_CACHE_MODULE = "{{ cookiecutter.package_name }}.items.cache"
HAS_ITEMS_CACHE = importlib.util.find_spec(ITEMS_CACHE_MODULE) is not None
_tests_run = itertools.count(1)


@pytest.fixture(autouse=True)
def items_cache_key_prefix() -> Iterator[str]:
    """The items cache's ``KEY_PREFIX`` for this test: ``SESSION_KEY_PREFIX<n>:items:``."""
    prefix = f"{SESSION_KEY_PREFIX}{next(_tests_run)}:items:"
    with pytest.MonkeyPatch.context() as patch:
        if HAS_ITEMS_CACHE:
            cache = importlib.import_module(ITEMS_CACHE_MODULE)
            patch.setattr(cache, "KEY_PREFIX", prefix)
        yield prefix


def pytest_report_header() -> list[str]:
    return [f"items cache key prefix: {SESSION_KEY_PREFIX}"] if HAS_ITEMS_CACHE else []


@asynccontextmanager
async def throwaway_database(prefix: str) -> AsyncIterator[str]:
    """A new, empty database on ``TEST_DATABASE_URL``'s server; yields its URL, then drops it.

    Skips the test when PostgreSQL does not answer, and fails it when ``CI=true``.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        await execute(ADMIN_URL, f'CREATE DATABASE "{name}"')
    except (OSError, Exception) as error:
        message = f"PostgreSQL at TEST_DATABASE_URL is not available: {type(error).__name__}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await execute(ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """URL of a migrated throwaway database, dropped when the session ends."""
    async with throwaway_database("test_{{ cookiecutter.package_name }}") as url:
        await migrate(url)
        yield url


async def execute(database_url: str, statement: str, *args: object) -> None:
    """Run one SQL statement on a connection of its own (outside any test's isolation)."""
    connection = await asyncpg.connect(libpq_dsn(database_url), timeout=10)
    try:
        await connection.execute(statement, *args)
    finally:
        await connection.close()


async def fetch(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    """The rows of one SQL query, on a connection of its own."""
    connection = await asyncpg.connect(libpq_dsn(database_url), timeout=10)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(query, *args)
        return rows
    finally:
        await connection.close()


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for a test app, independent of the developer's environment and ``.env``.

    Services are the tests' own: with Redis, ``TEST_REDIS_URL`` (default
    ``redis://127.0.0.1:6379/15``, shared: each session keeps to ``SESSION_KEY_PREFIX``).
    """
    values: dict[str, object] = {
        "environment": "development",
        "database_url": database_url,
        "health_check_timeout": 0.5,
        "health_cache_ttl": 0.0,
        "health_show_details": False,
        "status_page_url": "https://status.example.test/",
        # /metrics on the app's port: no second listener per test app.
        "metrics_port": 0,
{%- if cookiecutter.use_redis %}
        "redis_url": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
{%- endif %}
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


# For jobs that never touch the database.
NO_DATABASE = cast("Database", None)


@asynccontextmanager
async def job_runner(
    jobs: JobRegistry,
    targets: Mapping[str, Target | None],
    *,
    database: Database = NO_DATABASE,
    settings: Settings | None = None,
    ping_timeout: float = 2.0,
    retries: int = 1,
    max_pending: int = MAX_PENDING_PINGS,
) -> AsyncIterator[tuple[JobRunner, Metrics]]:
    """A runner as the scheduler builds it, with a 10 ms retry backoff.

    Yields the runner and its fresh metrics; pending pings are sent before it closes.
    """
    metrics = Metrics()
    heartbeat = Heartbeat(
        metrics=metrics,
        timeout=ping_timeout,
        retries=retries,
        backoff=0.01,
        max_pending=max_pending,
    )
    runner = JobRunner(
        jobs=jobs,
        targets=targets,
        heartbeat=heartbeat,
        states=JobStates(job.id for job in jobs),
        metrics=metrics,
        settings=settings or Settings(_env_file=None),
        database=database,
    )
    try:
        yield runner, metrics
    finally:
        await heartbeat.drain(None)
        await heartbeat.aclose()


async def run_job(database: Database, job_id: str, *, scheduled_at: datetime) -> RunOutcome:
    """Run the example job ``job_id`` once through the wrapper, for the fire time given.

    No heartbeat URL and fresh metrics: the run's own outcome is what is returned.
    """
    jobs = default_jobs()
    settings = make_settings("sqlite://", items_retention_days=30)
    targets = {job.id: None for job in jobs}
    async with job_runner(jobs, targets, database=database, settings=settings) as (runner, _):
        return await runner.run(job_id, scheduled_at=scheduled_at)


@pytest.fixture(scope="session")
async def postgres_app(postgres_url: str) -> AsyncIterator[FastAPI]:
    """An app on the throwaway database, its lifespan running for the whole session."""
    app = create_app(make_settings(postgres_url))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(postgres_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the session's app whose writes are undone after the test."""
    async with isolated(postgres_app), app_client(postgres_app) as http:
        yield http


def app_client(app: FastAPI) -> httpx.AsyncClient:
    """An HTTP client calling ``app`` in-process (no lifespan: the caller runs it)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never answers (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def monitor_server() -> Iterator[HTTPServer]:
    """A real HTTP server on loopback standing in for heartbeat monitors, for the session.

    Threaded: a handler that sleeps (a slow monitor) must not hold up other pings.
    """
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def monitor(monitor_server: HTTPServer) -> HTTPServer:
    """The monitor server, emptied, answering ``200 OK`` to every ``/ping/...`` request.

    Add ``expect_oneshot_request`` handlers to fail some pings: they take precedence.
    """
    monitor_server.clear()
    monitor_server.expect_request(re.compile(r"^/ping/")).respond_with_data("OK")
    return monitor_server


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float, message: str
) -> None:
    """Poll ``condition`` (sync or async) every 20 ms until true; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        outcome = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s: {message}")
        await asyncio.sleep(0.02)
