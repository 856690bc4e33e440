"""The database side of the fixtures, for Tortoise: Aerich migrations through
``python -m {{ cookiecutter.package_name }}.migrate``, and tests isolated by emptying
the tables they wrote at the end (Tortoise cannot share one transaction between
requests)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from {{ cookiecutter.package_name }}.db import Database
from {{ cookiecutter.package_name }}.migrate import MIGRATION_LOCK_KEY

__all__ = ["MIGRATION_LOCK_KEY", "PROJECT_ROOT", "isolated", "migrate", "start_migrate"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The tables of the service's models, emptied after each isolated test.
TABLES = ("items",)


async def start_migrate(database_url: str, **env: str) -> asyncio.subprocess.Process:
    """Start ``python -m {{ cookiecutter.package_name }}.migrate`` against ``database_url``,
    with ``env`` added."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "{{ cookiecutter.package_name }}.migrate",
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "ENVIRONMENT": "development", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def migrate(database_url: str) -> None:
    """Apply the migrations to ``database_url`` as an operator would; asserts success."""
    process = await start_migrate(database_url)
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()


@asynccontextmanager
async def isolated(app: FastAPI) -> AsyncIterator[Database]:
    """The block's writes to the service's tables are removed at its end.

    Yields the app's ``Database``, for jobs run in the test.
    """
    database: Database = app.state.database
    try:
        yield database
    finally:
        tables = ", ".join(TABLES)
        # Identities go on (as after a rollback): an id is never reused, nor a cache entry.
        await database.db().execute_script(f"TRUNCATE {tables}")
