"""Create the PostgreSQL database of ``DATABASE_URL`` when it does not exist yet (``make db``).

    uv run python scripts/create_database.py

Reads the settings as the service does (the environment, ``.env``, ``SECRETS_DIR``),
connects to the server's ``postgres`` maintenance database with the same user,
and runs ``CREATE DATABASE`` unless ``pg_database`` already lists the name. The
user needs the ``CREATEDB`` privilege. Safe to run again: an existing database is
left as it is. With no ``DATABASE_URL`` (the SQLite file of development) there is
nothing to create.

Exit status 0 when the database exists afterwards; 1 with one line naming the
problem (server unreachable, no privilege), the server's host and port and what to
change in ``DATABASE_URL``; 2 for a configuration error.
"""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from {{ cookiecutter.package_name }}.outages import (
    connection_problem,
    reason,
)
from {{ cookiecutter.package_name }}.postgres import parse_postgres_url
from {{ cookiecutter.package_name }}.settings import ConfigurationError, load_settings

MAINTENANCE_DATABASE = "postgres"
CONNECT_TIMEOUT = 10.0


def split_database(url: str) -> tuple[str, str]:
    """``(database name, URL of the maintenance database)`` of a ``postgresql://`` URL."""
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    maintenance = urlunsplit(parts._replace(path=f"/{MAINTENANCE_DATABASE}"))
    return name, maintenance


def quote_identifier(name: str) -> str:
    """``name`` as a PostgreSQL identifier, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


async def create_database(url: str) -> bool:
    """Create the database of ``url`` unless it exists; returns whether it was created.

    Raises:
        OSError, asyncpg.PostgresError: the server is unreachable or refuses.
    """
    name, maintenance = split_database(url)
    connection = await asyncpg.connect(maintenance, timeout=CONNECT_TIMEOUT)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        # CREATE DATABASE takes no parameters: the name is quoted as an identifier.
        await connection.execute(f"CREATE DATABASE {quote_identifier(name)}")
        return True
    finally:
        await connection.close()


def main() -> int:
    try:
        settings = load_settings()
    except ConfigurationError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    if settings.database_url is None or not settings.database_url.startswith("postgresql"):
        print(
            f"DATABASE_URL is not set: the service uses {settings.database_dsn}, nothing to create"
        )
        return 0
    # asyncpg takes the libpq form of the URL, without SQLAlchemy's driver suffix.
    url = settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    name, _ = split_database(url)
    try:
        created = asyncio.run(create_database(url))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        problem = connection_problem(error, parse_postgres_url(url)) or reason(error)
        print(f"cannot create database {name!r}: {problem}", file=sys.stderr)
        return 1
    print(f"database {name!r} {'created' if created else 'already exists'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
