"""Tortoise ORM: its context for the lifespan, the database readiness check and errors.

``open_database`` initialises Tortoise for the lifespan (and the jobs CLI and the
migrate command) in a ``TortoiseContext`` of the app's own, not a process-wide
``register_tortoise``: tests run several apps in one process. Code that queries
models runs inside that context: routes through ``DatabaseRoute``, jobs inside
``with context.database:``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar, Token
from typing import Any, Self

import asyncpg
from fastapi import Request, Response
from fastapi.routing import APIRoute
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.context import TortoiseContext, _current_context
from tortoise.exceptions import DBConnectionError, OperationalError
from tortoise.transactions import in_transaction

from .health import HealthCheck
from .outages import says_unavailable, statement_bounds
from .postgres import parse_postgres_url, pool_connect
from .settings import Settings

# Modules holding the service's models. Aerich keeps its migration history in a
# table of its own, so its model belongs to the same app.
MODELS = [
    "{{ cookiecutter.package_name }}.items.models",
    "{{ cookiecutter.package_name }}.scheduling.models",
    "aerich.models",
]

# Errors that may mean "the database cannot serve right now", raised from a route:
# those ``database_unavailable`` confirms get a 503 with Retry-After and the status
# page instead of a 500. Tortoise lets most asyncpg errors through as they are.
DATABASE_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    DBConnectionError,
    OperationalError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
)

# Those of the above that are not always an outage: their chain decides.
_JUDGED_ERRORS = (
    OperationalError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database is unavailable (a 503), not a bug (a 500).

    ``DBConnectionError`` does; Tortoise's ``OperationalError`` and asyncpg's errors
    do when their chain says so (see ``outages.says_unavailable``: the SQLSTATE of a
    refused, reset or terminated session, too many connections, a statement
    cancelled by ``DATABASE_STATEMENT_TIMEOUT``, a closed connection). Errors of
    other dependencies are not judged here: ``True``.
    """
    if isinstance(error, _JUDGED_ERRORS):
        return says_unavailable(error)
    return True


class Database(TortoiseContext):
    """The app's Tortoise context: models are queried inside ``with database:``.

    Safe to enter from concurrent requests and jobs: ``TortoiseContext`` keeps the
    token of its last entry on the instance, so a context shared by overlapping
    tasks would reset another task's entry; here each asyncio context keeps its own.

    Tortoise builds each model's base query for one SQL dialect and keeps it on the
    model class. Entering a context other than the one the models were last built
    for (another app in the same process, as in tests that mix SQLite and
    PostgreSQL) rebuilds them for this one; a service with one database never does.
    """

    def __enter__(self) -> Self:
        _entries.set((*_entries.get(), _current_context.set(self)))
        if _models_built_for[0] is not self and self.apps is not None:
            # Tortoise has no public call for this: it is what its init does.
            self.apps._build_initial_querysets()
            EXECUTOR_CACHE.clear()
            _models_built_for[0] = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        *outer, token = _entries.get()
        _entries.set(tuple(outer))
        _current_context.reset(token)


# The tokens of this asyncio context's entries into a Database, innermost last.
_entries: ContextVar[tuple[Token[TortoiseContext | None], ...]] = ContextVar(
    "database_entries", default=()
)
# The context the models' base queries were last built for.
_models_built_for: list[Database | None] = [None]


def tortoise_url(dsn: str) -> str:
    """Tortoise's form of a normalised ``DATABASE_URL`` (see ``settings.py``).

    ``postgresql+asyncpg://...`` becomes ``asyncpg://...`` and
    ``sqlite+aiosqlite:///<path>`` becomes ``sqlite://<path>`` (``:memory:`` when
    the path is empty).
    """
    scheme, _, rest = dsn.partition("://")
    if scheme.startswith("sqlite"):
        return f"sqlite://{rest.removeprefix('/') or ':memory:'}"
    return f"asyncpg://{rest}"


def tortoise_config(settings: Settings) -> dict[str, Any]:
    """The Tortoise configuration of ``settings``, shared by the app and Aerich.

    PostgreSQL uses asyncpg with a bounded pool (``DATABASE_POOL_SIZE`` plus
    ``DATABASE_MAX_OVERFLOW`` connections, ``DATABASE_CONNECT_TIMEOUT`` seconds to
    open one, ``DATABASE_STATEMENT_TIMEOUT`` per statement: ``outages.statement_bounds``).
    """
    url = tortoise_url(settings.database_dsn)
    connection: str | dict[str, Any] = url
    if url.startswith("asyncpg://"):
        # Tortoise would pass each query parameter to asyncpg as an argument, which
        # fails for libpq's names (sslmode): its pool opens every connection from the
        # DSN that postgres.py checked instead, as the leader and the migrations do.
        parsed = parse_postgres_url(settings.database_dsn)
        connection = expand_db_url(tortoise_url(parsed.url_without_query))
        connection["credentials"] |= {
            "connect": pool_connect(parsed.dsn),
            # No floor: asyncpg would log a traceback every second restoring it while
            # the database is down, which readiness already reports.
            "minsize": 0,
            "maxsize": settings.database_pool_size + settings.database_max_overflow,
            "timeout": settings.database_connect_timeout,
            **statement_bounds(settings.database_statement_timeout),
        }
    return {
        "connections": {"default": connection},
        "apps": {"models": {"models": MODELS, "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """Initialise Tortoise for the block in a context of its own; close its pool at the end.

    Nothing connects here: the pool opens on the first query, so the service starts
    (and reports not ready) while the database is down.
    """
    context = Database()
    with context:
        await context.init(config=tortoise_config(settings))
    _models_built_for[0] = context
    # Tortoise's executors cache their INSERT per connection name, whatever the dialect.
    EXECUTOR_CACHE.clear()
    try:
        yield context
    finally:
        await context.close_connections()


# A job's open transaction, for ``JobContext.fence``: the connection of
# ``async with in_transaction() as connection``.
Transaction = BaseDBAsyncClient


async def fetch_in(
    transaction: Transaction, query: str, *args: object
) -> Sequence[Mapping[str, Any]]:
    """The rows of ``query`` (PostgreSQL, ``$1``-style parameters) inside ``transaction``."""
    rows: Sequence[Mapping[str, Any]] = await transaction.execute_query_dict(query, list(args))
    return rows


@asynccontextmanager
async def begin(database: Database) -> AsyncIterator[BaseDBAsyncClient]:
    """A transaction in the app's context: committed at the end of the block, rolled
    back if it raises. For jobs (``JobContext.fence``) and tests."""
    with database:
        async with in_transaction() as connection:
            yield connection


async def fetch_all(database: Database, query: str, *args: object) -> Sequence[Mapping[str, Any]]:
    """The rows of ``query`` (PostgreSQL, ``$1``-style parameters) through the app's pool."""
    return await fetch_in(database.db(), query, *args)


def database_check(database: Database) -> HealthCheck:
    """Readiness check: ``SELECT 1`` through the app's own pool.

    Pool checkout and query are bounded together by the health runner's timeout
    (``HEALTH_CHECK_TIMEOUT``).
    """

    async def select_one() -> None:
        await database.db().execute_query("SELECT 1")

    return HealthCheck(key="database:responseTime", component_type="datastore", run=select_one)


class DatabaseRoute(APIRoute):
    """A route that runs inside the app's Tortoise context: ``APIRouter(route_class=...)``.

    The context is entered around the whole route handler, in one task. A ``yield``
    dependency would not do: FastAPI may close it in another ``contextvars``
    context than the one it was entered in, where the reset fails.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def in_database(request: Request) -> Response:
            database: Database = request.app.state.database
            with database:
                return await handler(request)

        return in_database
