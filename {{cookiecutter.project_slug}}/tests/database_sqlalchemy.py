"""The database side of the fixtures, for SQLAlchemy: Alembic migrations and
tests isolated in a transaction rolled back at the end."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from {{ cookiecutter.package_name }}.db import (
    Database,
    get_session,
)
from {{ cookiecutter.package_name }}.postgres import MIGRATION_LOCK_KEY

PROJECT_ROOT = Path(__file__).resolve().parent.parent
__all__ = ["MIGRATION_LOCK_KEY", "PROJECT_ROOT", "isolated", "migrate", "start_migrate"]


async def start_migrate(database_url: str, **env: str) -> asyncio.subprocess.Process:
    """Start ``alembic upgrade head`` against ``database_url``, with ``env`` added."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "upgrade",
        "head",
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "ENVIRONMENT": "development", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def migrate(database_url: str) -> None:
    """Run ``alembic upgrade head`` against ``database_url`` as an operator would."""
    process = await start_migrate(database_url)
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()


@asynccontextmanager
async def isolated(app: FastAPI) -> AsyncIterator[Database]:
    """Requests to ``app`` share one transaction, rolled back at the end of the block.

    Yields a ``Database`` bound to that transaction, for jobs run in the test.
    """
    database: Database = app.state.database
    async with database.engine.connect() as connection:
        transaction = await connection.begin()
        sessions = async_sessionmaker(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )

        async def session_in_transaction() -> AsyncIterator[AsyncSession]:
            async with sessions() as session:
                yield session

        app.dependency_overrides[get_session] = session_in_transaction
        try:
            yield Database(engine=database.engine, sessionmaker=sessions)
        finally:
            app.dependency_overrides.clear()
            await transaction.rollback()
