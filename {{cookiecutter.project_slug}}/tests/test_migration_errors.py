"""The migrate command (the init container's) ends an operator's or the database's
problem with one line and a non-zero status, and never waits for ever."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from {{ cookiecutter.package_name }}.postgres import (
    libpq_dsn,
    parse_postgres_url,
)

from .conftest import ADMIN_URL, throwaway_database
from .database import MIGRATION_LOCK_KEY, start_migrate


def output_lines(output: bytes) -> list[str]:
    return [line for line in output.decode().splitlines() if line.strip()]


async def test_an_unreachable_database_is_one_line(refused_port: int) -> None:
    process = await start_migrate(f"postgresql://postgres:secret@127.0.0.1:{refused_port}/app")
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode != 0
    lines = output_lines(output)
    assert len(lines) == 1, lines
    assert lines[0].startswith("migration failed: "), lines
    # The server, the cause and the next step; never the password.
    assert f"127.0.0.1:{refused_port} (connection refused)" in lines[0], lines
    assert "DATABASE_URL" in lines[0], lines
    assert "secret" not in lines[0], lines


async def test_a_missing_database_is_one_line_pointing_to_make_db() -> None:
    server = ADMIN_URL.rsplit("/", 1)[0]
    process = await start_migrate(f"{server}/no_such_database_to_migrate")
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode != 0
    lines = output_lines(output)
    assert len(lines) == 1, lines
    address = parse_postgres_url(ADMIN_URL).address
    assert f'database "no_such_database_to_migrate" does not exist on {address}' in lines[0]
    assert "create it with make db" in lines[0], lines


@pytest.fixture
async def empty_database() -> AsyncIterator[str]:
    async with throwaway_database("test_migration_lock") as url:
        yield url


async def test_the_wait_for_the_migration_lock_is_bounded(empty_database: str) -> None:
    holder = await asyncpg.connect(libpq_dsn(empty_database))
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        started = time.monotonic()
        process = await start_migrate(empty_database, MIGRATION_LOCK_TIMEOUT="1")
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        took = time.monotonic() - started
    finally:
        await holder.close()
    assert process.returncode != 0
    lines = output_lines(output)
    assert len(lines) == 1, lines
    assert "LockNotAvailableError" in lines[0], lines
    assert took < 30, f"took {took:.1f} s"
