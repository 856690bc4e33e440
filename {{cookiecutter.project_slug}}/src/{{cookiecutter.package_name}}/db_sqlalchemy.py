"""The SQLAlchemy async engine, sessions and the database readiness check.

``open_database`` starts the engine for the lifespan (and the jobs CLI); routes
get a session per request through ``SessionDep``; jobs open sessions from
``JobContext.database.sessionmaker``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.log import InstanceLogger
from sqlalchemy.orm import DeclarativeBase

from .health import HealthCheck
from .outages import quiet_pool_close_failures, reason, says_unavailable, statement_bounds
from .postgres import parse_postgres_url
from .settings import Settings
from .tracing import trace_sqlalchemy_engine

logger = logging.getLogger(__name__)

# Errors that may mean "the database cannot serve right now", raised from a route:
# those ``database_unavailable`` confirms get a 503 with Retry-After and the status
# page instead of a 500. Most asyncpg errors arrive as the generic ``DBAPIError``.
DATABASE_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    PoolTimeoutError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
)


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database is unavailable (a 503), not a bug (a 500).

    A pool timeout does; a ``DBAPIError`` does when its chain says so (see
    ``outages.says_unavailable``: ``connection_invalidated``, the SQLSTATE of a
    refused, reset or terminated session, too many connections, a statement
    cancelled by ``DATABASE_STATEMENT_TIMEOUT``). Errors of other dependencies are
    not judged here: ``True``.
    """
    if isinstance(error, DBAPIError):
        return says_unavailable(error)
    return True


class Base(DeclarativeBase):
    """Declarative base of every table; Alembic reads its metadata."""


def create_engine(settings: Settings) -> AsyncEngine:
    """Create the async engine and its connection pool from ``settings``.

    PostgreSQL uses asyncpg with a bounded pool (``DATABASE_POOL_SIZE`` plus
    ``DATABASE_MAX_OVERFLOW`` connections, ``DATABASE_POOL_TIMEOUT`` seconds to
    wait for one, ``DATABASE_CONNECT_TIMEOUT`` seconds to open one). Connections
    are pinged on checkout, so a database restart costs no failed request. Each
    statement is bounded by ``DATABASE_STATEMENT_TIMEOUT`` (``outages.statement_bounds``).
    """
    url = settings.database_dsn
    options: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        url, dsn_arguments = postgres_engine_arguments(url)
        options |= {
            "pool_size": settings.database_pool_size,
            "max_overflow": settings.database_max_overflow,
            "pool_timeout": settings.database_pool_timeout,
            "connect_args": {
                **dsn_arguments,
                "timeout": settings.database_connect_timeout,
                **statement_bounds(settings.database_statement_timeout),
            },
        }
    return create_async_engine(url, **options)


def postgres_engine_arguments(url: str) -> tuple[str, dict[str, Any]]:
    """The engine URL and ``connect_args`` of a PostgreSQL ``url`` (``postgres.py``).

    The engine gets the URL without its query and asyncpg the whole DSN: SQLAlchemy
    would pass each query parameter to ``asyncpg.connect`` as an argument, which
    fails for libpq's names (``sslmode``), while asyncpg reads them from a DSN.

    Raises:
        ValueError: as ``postgres.parse_postgres_url``.
    """
    parsed = parse_postgres_url(url)
    return parsed.url_without_query, {"dsn": parsed.dsn}


@dataclass(frozen=True, slots=True)
class Database:
    """The service's database: the engine (and its pool) and the session factory on it."""

    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """Create the engine for the block; dispose of it and its pool at the end.

    A pooled connection that fails to close during an outage is logged as one
    WARNING line (``outages.quiet_pool_close_failures``), not a traceback.
    """
    engine = create_engine(settings)
    trace_sqlalchemy_engine(engine)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    pool_logger = engine.pool.logger
    if isinstance(pool_logger, InstanceLogger):  # echo_pool set
        pool_logger = pool_logger.logger
    with quiet_pool_close_failures(pool_logger):
        try:
            yield Database(engine=engine, sessionmaker=sessionmaker)
        finally:
            await engine.dispose()


# A job's open transaction, for ``JobContext.fence``: a session in ``session.begin()``
# or a connection in ``connection.begin()``.
Transaction = AsyncSession | AsyncConnection


async def fetch_in(
    transaction: Transaction, query: str, *args: object
) -> Sequence[Mapping[str, Any]]:
    """The rows of ``query`` (PostgreSQL, ``$1``-style parameters) inside ``transaction``
    (none for a statement that returns no rows)."""
    if isinstance(transaction, AsyncSession):
        connection = await transaction.connection()
    else:
        connection = transaction
    result = await connection.exec_driver_sql(query, args)
    if not result.returns_rows:
        return []
    return [dict(row) for row in result.mappings()]


@asynccontextmanager
async def begin(database: Database) -> AsyncIterator[AsyncConnection]:
    """A transaction on a connection of the app's pool: committed at the end of the
    block, rolled back if it raises. For jobs (``JobContext.fence``) and tests."""
    async with database.engine.begin() as connection:
        yield connection


async def fetch_all(database: Database, query: str, *args: object) -> Sequence[Mapping[str, Any]]:
    """The rows of ``query`` (PostgreSQL, ``$1``-style parameters) through the app's pool."""
    async with database.engine.connect() as connection:
        return await fetch_in(connection, query, *args)


def database_check(database: Database) -> HealthCheck:
    """Readiness check: ``SELECT 1`` through the app's own pool.

    Pool checkout and query are bounded together by the health runner's timeout
    (``HEALTH_CHECK_TIMEOUT``), not by ``pool_timeout``.
    """

    async def select_one() -> None:
        async with database.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return HealthCheck(key="database:responseTime", component_type="datastore", run=select_one)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: one session per request, closed afterwards.

    The close (a rollback of what was not committed) runs after the response has
    started: if it fails, the connection went away or was left mid-operation by
    the fault that ended the request. It is then discarded, not returned to the
    pool, and one line is logged: an error raised here could no longer reach the
    client, only cut its response short.
    """
    database: Database = request.app.state.database
    session = database.sessionmaker()
    try:
        yield session
    finally:
        try:
            await session.close()
        except DATABASE_UNAVAILABLE_ERRORS as error:
            logger.warning("database session discarded at close: %s", reason(error))
            with contextlib.suppress(*DATABASE_UNAVAILABLE_ERRORS):
                await session.invalidate()


SessionDep = Annotated[AsyncSession, Depends(get_session)]
