"""``python -m {{ cookiecutter.package_name }}.migrate``: apply the Aerich migrations in ``migrations/``.

This is what ``make migrate`` and the Kubernetes init container run. On PostgreSQL the
run holds a session-level advisory lock on a connection of its own, so pods that
start together migrate one at a time and all but the first find nothing to do. A
run that dies releases the lock with its session.

New migrations are written with Aerich's CLI (``aerich migrate --name <what>``),
which reads ``TORTOISE_ORM`` below through ``[tool.aerich]`` in ``pyproject.toml``.
Exit status 0 when the database is up to date, 1 when a migration fails, 2 for
a configuration error.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
from pathlib import Path
from typing import Any

import asyncpg
from aerich import Command

from .db import tortoise_config
from .scheduling.leader import libpq_url
from .settings import ConfigurationError, load_settings

logger = logging.getLogger(__name__)

LOCATION = Path("migrations")
APP = "models"
# Key of the advisory lock that serialises migration runs: a signed 64-bit number
# derived from the project, so services sharing one PostgreSQL do not block each other.
MIGRATION_LOCK_NAME = b"{{ cookiecutter.project_slug }}:migrations"
MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.blake2b(MIGRATION_LOCK_NAME, digest_size=8).digest(),
    "big",
    signed=True,
)


async def migrate(config: dict[str, Any], *, lock_dsn: str | None) -> list[str]:
    """Apply every pending migration; returns the names of those applied.

    ``lock_dsn``: the PostgreSQL URL to hold the migration lock on, or ``None`` (SQLite).
    """
    lock = None
    if lock_dsn is not None:
        lock = await asyncpg.connect(libpq_url(lock_dsn))
        await lock.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        async with Command(tortoise_config=config, app=APP, location=str(LOCATION)) as command:
            applied: list[str] = await command.upgrade(run_in_transaction=True)
        return applied
    finally:
        if lock is not None:
            await lock.close()


def main() -> int:
    """Run the migrations of the configured database; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigurationError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    dsn = settings.database_dsn
    lock_dsn = dsn if dsn.startswith("postgresql") else None
    try:
        applied = asyncio.run(migrate(tortoise_config(settings), lock_dsn=lock_dsn))
    except Exception:
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
