"""``python -m {{ cookiecutter.package_name }}.migrate``: Aerich migrations under the migration lock.

Pods that start together all run it; the advisory lock makes them migrate one at a
time, and all but the first find nothing to do.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from {{ cookiecutter.package_name }}.migrate import MIGRATION_LOCK_KEY
from {{ cookiecutter.package_name }}.postgres import libpq_dsn

from .conftest import fetch, throwaway_database
from .database import PROJECT_ROOT, start_migrate


@pytest.fixture
async def empty_database() -> AsyncIterator[str]:
    """URL of a new, empty database, dropped afterwards."""
    async with throwaway_database("test_migrate") as url:
        yield url


async def test_concurrent_runs_apply_each_migration_once(empty_database: str) -> None:
    processes = [await start_migrate(empty_database) for _ in range(3)]
    outputs = await asyncio.gather(*(process.communicate() for process in processes))
    for process, (output, _) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output.decode()
    history = await fetch(empty_database, "SELECT version FROM aerich ORDER BY id")
    migrations = sorted(path.name for path in (PROJECT_ROOT / "migrations/models").glob("*.py"))
    assert [row["version"] for row in history] == migrations
    assert await fetch(empty_database, "SELECT * FROM items") == []
    applied = [output.decode() for output, _ in outputs]
    assert sum(f"applied {len(migrations)} migration(s)" in text for text in applied) == 1, applied
    assert sum("applied 0 migration(s)" in text for text in applied) == 2, applied


async def test_a_run_waits_for_the_migration_lock(empty_database: str) -> None:
    holder = await asyncpg.connect(libpq_dsn(empty_database))
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        process = await start_migrate(empty_database)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), 2)
        (row,) = await fetch(empty_database, "SELECT to_regclass('items') IS NULL AS missing")
        assert row["missing"], "nothing is migrated while another run holds the lock"
    finally:
        await holder.close()
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()
    history = await fetch(empty_database, "SELECT version FROM aerich")
    assert len(history) == len(list((PROJECT_ROOT / "migrations/models").glob("*.py")))


async def test_a_configuration_error_exits_2_with_one_line() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "{{ cookiecutter.package_name }}.migrate",
        cwd=PROJECT_ROOT,
        env={**os.environ, "ENVIRONMENT": "production", "DATABASE_URL": ""},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert err.decode().strip().startswith("configuration error: DATABASE_URL is required")
