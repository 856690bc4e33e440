"""Alembic environment: runs migrations through the async engine of the service.

On PostgreSQL the run holds a session-level advisory lock, so pods that start
together (each runs ``alembic upgrade head`` in its init container) migrate one
at a time: the first applies the new revisions, the others wait, then find the
database at head and do nothing. Nothing waits for ever: the lock is waited for
at most ``MIGRATION_LOCK_TIMEOUT`` seconds, and each DDL statement waits for its
table locks at most ``MIGRATION_DDL_LOCK_TIMEOUT`` (PostgreSQL's ``lock_timeout``),
so a long transaction holding a table cannot stall the init container, nor every
query queued behind the migration's lock request.

A configuration or connection error (unreachable database, wrong password, a
lock not obtained in time) ends the run with one line and exit status 1, naming
the server's host and port and what to do next when the connection failed
(``outages.connection_problem``); an error in a migration itself keeps its traceback.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from {{ cookiecutter.package_name }}.db import Base, postgres_engine_arguments
from {{ cookiecutter.package_name }}.items import models as _items  # noqa: F401 (registers items)
from {{ cookiecutter.package_name }}.outages import (
    connection_problem,
    reason,
    says_misconfigured,
    says_unavailable,
)
from {{ cookiecutter.package_name }}.postgres import (
    MIGRATION_LOCK_KEY,
    parse_postgres_url,
)
from {{ cookiecutter.package_name }}.scheduling import models as _scheduling  # noqa: F401
from {{ cookiecutter.package_name }}.settings import (
    ConfigurationError,
    Settings,
    load_settings,
)

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def database_url() -> str:
    """The URL to migrate: set by a caller (tests) or read from the settings."""
    url = config.attributes.get("database_url")
    if isinstance(url, str):
        return url
    return load_settings().database_dsn


def lock_timeouts() -> tuple[str, str]:
    """PostgreSQL ``lock_timeout`` values for the migration lock and for the DDL."""
    settings: Settings = load_settings()
    return (
        f"{round(settings.migration_lock_timeout * 1000)}ms",
        f"{round(settings.migration_ddl_lock_timeout * 1000)}ms",
    )


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    serialise = connection.dialect.name == "postgresql"
    if serialise:
        lock_wait, ddl_wait = lock_timeouts()
        # Session-level, not transaction-level: it survives this commit, which hands
        # Alembic a connection outside any transaction, so that Alembic commits its own.
        # If a migration fails, closing the connection (NullPool) releases the lock.
        # lock_timeout bounds the wait for advisory locks as for table locks.
        set_lock_timeout = text("SELECT set_config('lock_timeout', :wait, false)")
        connection.execute(set_lock_timeout, {"wait": lock_wait})
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.execute(set_lock_timeout, {"wait": ddl_wait})
        connection.commit()
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    if serialise:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


async def run_migrations_online() -> None:
    url = database_url()
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        # The same reading of the URL as the service's pool (postgres.py).
        url, connect_args = postgres_engine_arguments(url)
    engine = create_async_engine(url, poolclass=pool.NullPool, connect_args=connect_args)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


def run() -> None:
    try:
        if context.is_offline_mode():
            run_migrations_offline()
        else:
            asyncio.run(run_migrations_online())
    except ConfigurationError as error:
        raise SystemExit(f"configuration error: {error}") from None
    except Exception as error:
        # The operator's or the database's problem, not the migration's: one line,
        # naming the server and the next step when the connection is what failed.
        url = database_url()
        problem = url.startswith("postgresql") and connection_problem(
            error, parse_postgres_url(url)
        )
        if problem:
            raise SystemExit(f"migration failed: {problem}") from None
        if says_unavailable(error) or says_misconfigured(error):
            raise SystemExit(f"migration failed: {reason(error)}") from None
        raise


run()
