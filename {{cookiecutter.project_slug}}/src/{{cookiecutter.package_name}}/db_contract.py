"""What every ``db.py`` (one per ORM) provides to the code written once: ``DatabaseModule``.

``main.py``, the health checks, the jobs and the items store reach the database only
through these names of ``db.py``. The ``Database`` each ORM defines is opaque to
them: they hold it and hand it back (to ``database_check``, to a job's context, to
``items/store.py``, the one module per ORM that looks inside). A ``db.py`` is
checked against this Protocol by mypy at the end of this module (``DATABASE``),
so a variant missing a name, or giving one another shape, fails ``mypy --strict``
in its bake rather than at import time in someone else's module.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from . import db
from .health import HealthCheck
from .settings import Settings

DatabaseT = TypeVar("DatabaseT")


class DatabaseModule(Protocol[DatabaseT]):
    """The names each ``db.py`` defines, ``DatabaseT`` being its ``Database``."""

    # Errors that may mean "the database cannot serve right now", raised from a route.
    DATABASE_UNAVAILABLE_ERRORS: tuple[type[Exception], ...]

    @property
    def Database(self) -> type[DatabaseT]:
        """The service's database, started by ``open_database``: engine, pool, context."""
        ...

    def database_unavailable(self, error: BaseException) -> bool:
        """Whether ``error`` (one of ``DATABASE_UNAVAILABLE_ERRORS``) is an outage: a 503."""
        ...

    def open_database(self, settings: Settings) -> AbstractAsyncContextManager[DatabaseT]:
        """The database of ``settings`` for the block, closed at its end; connects lazily."""
        ...

    def database_check(self, database: DatabaseT) -> HealthCheck:
        """The readiness check of ``database``: ``database:responseTime``."""
        ...


# The check itself: this bake's db.py, as the shared code uses it.
DATABASE: DatabaseModule[db.Database] = db
