"""Shared fixtures: a throwaway PostgreSQL database per session, apps and clients, and
a real HTTP server on loopback standing in for heartbeat monitors.

``TEST_DATABASE_URL`` is an admin URL (default
``postgresql://postgres@127.0.0.1:5432/postgres``); the session creates a database
of its own there, migrates it with Alembic and drops it at the end. Each test
that writes runs in a transaction rolled back afterwards. When PostgreSQL does
not answer, its tests are skipped locally and fail when ``CI=true``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pytest_httpserver import HTTPServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from {{ cookiecutter.package_name }}.db import get_session
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.settings import Settings, normalize_database_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = normalize_database_url(
    os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)


async def migrate(database_url: str) -> None:
    """Run ``alembic upgrade head`` against ``database_url`` as an operator would."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "upgrade",
        "head",
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "ENVIRONMENT": "development"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """URL of a migrated throwaway database, dropped when the session ends."""
    admin = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"test_{{ cookiecutter.package_name }}_{uuid.uuid4().hex[:12]}"
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    except (OSError, Exception) as error:
        await admin.dispose()
        message = f"PostgreSQL at TEST_DATABASE_URL is not available: {type(error).__name__}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        await migrate(url)
        yield url
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for a test app, independent of the developer's environment and ``.env``."""
    values: dict[str, object] = {
        "environment": "development",
        "database_url": database_url,
        "health_check_timeout": 0.5,
        "health_cache_ttl": 0.0,
        "health_show_details": False,
        "status_page_url": "https://status.example.test/",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def postgres_app(postgres_url: str) -> AsyncIterator[FastAPI]:
    """An app on the throwaway database, its lifespan running for the whole session."""
    app = create_app(make_settings(postgres_url))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(postgres_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests share one transaction, rolled back after the test."""
    async with postgres_app.state.engine.connect() as connection:
        transaction = await connection.begin()
        sessions = async_sessionmaker(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )

        async def session_in_transaction() -> AsyncIterator[AsyncSession]:
            async with sessions() as session:
                yield session

        postgres_app.dependency_overrides[get_session] = session_in_transaction
        try:
            async with app_client(postgres_app) as http:
                yield http
        finally:
            postgres_app.dependency_overrides.clear()
            await transaction.rollback()


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
