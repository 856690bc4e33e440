"""``python -m {{ cookiecutter.package_name }}.migrate``: apply the Aerich migrations in ``migrations/``.

This is what ``make migrate`` and the Kubernetes init container run. On PostgreSQL the
run holds a session-level advisory lock on a connection of its own, so pods that
start together migrate one at a time and all but the first find nothing to do. A
run that dies releases the lock with its session. Nothing waits for ever: the lock
is waited for at most ``MIGRATION_LOCK_TIMEOUT`` seconds, and each DDL statement
waits for its table locks at most ``MIGRATION_DDL_LOCK_TIMEOUT`` (PostgreSQL's
``lock_timeout``); migrations are not bound by ``DATABASE_STATEMENT_TIMEOUT``.

New migrations are written with Aerich's CLI (``aerich migrate --name <what>``),
which reads ``TORTOISE_ORM`` below through ``[tool.aerich]`` in ``pyproject.toml``.
Exit status 0 when the database is up to date, 1 when a migration fails, 2 for
a configuration error. A failure to connect (unreachable database, wrong password)
or to get a lock in time is one line; an error in a migration keeps its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import asyncpg
from aerich import Command

from .db import tortoise_config
from .outages import connection_problem, reason, says_misconfigured, says_unavailable
from .postgres import MIGRATION_LOCK_KEY, libpq_dsn, parse_postgres_url
from .settings import ConfigurationError, Settings, load_settings

logger = logging.getLogger(__name__)

LOCATION = Path("migrations")
APP = "models"
__all__ = ["MIGRATION_LOCK_KEY", "main", "migrate", "migration_config"]


def migration_config(settings: Settings) -> dict[str, Any]:
    """The service's Tortoise configuration, with the bounds of a migration run.

    No ``statement_timeout`` (a migration may rewrite a large table) and no client
    deadline per statement, but ``lock_timeout`` of ``MIGRATION_DDL_LOCK_TIMEOUT``.
    """
    config = tortoise_config(settings)
    connection = config["connections"]["default"]
    if isinstance(connection, dict):
        credentials = connection["credentials"]
        credentials.pop("command_timeout", None)
        credentials["server_settings"] = {
            "statement_timeout": "0",
            "lock_timeout": f"{round(settings.migration_ddl_lock_timeout * 1000)}ms",
        }
    return config


async def migrate(
    config: dict[str, Any],
    *,
    lock_dsn: str | None,
    lock_timeout: float = 300.0,
    connect_timeout: float = 60.0,
) -> list[str]:
    """Apply every pending migration; returns the names of those applied.

    ``lock_dsn``: the PostgreSQL URL to hold the migration lock on, or ``None``
    (SQLite); its connection is opened within ``connect_timeout`` seconds and the
    lock waited for at most ``lock_timeout`` seconds.

    Raises:
        asyncpg.LockNotAvailableError: the lock was not obtained in time.
    """
    lock = None
    if lock_dsn is not None:
        lock = await asyncpg.connect(
            libpq_dsn(lock_dsn),
            timeout=connect_timeout,
            # lock_timeout bounds the wait for advisory locks as for table locks.
            server_settings={"lock_timeout": f"{round(lock_timeout * 1000)}ms"},
        )
        try:
            await lock.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        except BaseException:
            await lock.close()
            raise
    try:
        async with Command(tortoise_config=config, app=APP, location=str(LOCATION)) as command:
            applied: list[str] = await command.upgrade(run_in_transaction=True)
        return applied
    finally:
        if lock is not None:
            await lock.close()


def main() -> int:
    """Run the migrations of the configured database; returns the exit status.

    A successful run prints one line, its result: Tortoise's and Aerich's own INFO
    lines (``Tortoise-ORM shutdown``) are left out, their warnings are not.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    try:
        settings = load_settings()
    except ConfigurationError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    dsn = settings.database_dsn
    lock_dsn = dsn if dsn.startswith("postgresql") else None
    try:
        applied = asyncio.run(
            migrate(
                migration_config(settings),
                lock_dsn=lock_dsn,
                lock_timeout=settings.migration_lock_timeout,
                connect_timeout=settings.database_connect_timeout,
            )
        )
    except Exception as error:
        # The operator's or the database's problem, not the migration's: one line,
        # naming the server and the next step when the connection is what failed.
        problem = lock_dsn and connection_problem(error, parse_postgres_url(lock_dsn))
        if problem:
            print(f"migration failed: {problem}", file=sys.stderr)
        elif says_unavailable(error) or says_misconfigured(error):
            print(f"migration failed: {reason(error)}", file=sys.stderr)
        else:
            logger.exception("migration failed")
        return 1
    logger.info("applied %d migration(s): %s", len(applied), ", ".join(applied) or "none")
    return 0


def __getattr__(name: str) -> dict[str, Any]:
    # PEP 562: Aerich's CLI reads ``TORTOISE_ORM``; it is built from the environment
    # on first access only, so importing this module reads no settings.
    if name == "TORTOISE_ORM":
        return tortoise_config(load_settings())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
