"""The FastAPI application: ``create_app(settings)`` and the module-level ``app``.

``uvicorn {{ cookiecutter.package_name }}.main:app`` serves the app built from the
environment. Nothing is created at import time: ``app`` is built on first access,
and engines, pools and checks are started by the lifespan, so tests build their
own app with ``create_app(Settings(...))``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import cache

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker

from . import __version__
from .db import DATABASE_UNAVAILABLE_ERRORS, create_engine, database_check
from .errors import install_error_handlers
from .health import HealthChecks
from .health import router as health_router
from .items.router import router as items_router
from .settings import ConfigurationError, Settings, load_settings

logger = logging.getLogger(__name__)

SERVICE_ID = "{{ cookiecutter.project_slug }}"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start every resource onto ``app.state``; stop them in reverse order."""
    settings: Settings = app.state.settings
    async with AsyncExitStack() as stack:
        engine = create_engine(settings)
        stack.push_async_callback(engine.dispose)
        app.state.engine = engine
        app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)

        app.state.health = HealthChecks(
            [database_check(engine)],
            timeout=settings.health_check_timeout,
            cache_ttl=settings.health_cache_ttl,
        )
        app.state.started_at = time.monotonic()
        logger.info("started %s %s (%s)", SERVICE_ID, __version__, settings.environment.value)
        yield
        logger.info("stopping %s", SERVICE_ID)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application.

    Args:
        settings: configuration; read from the environment when omitted.

    Raises:
        ConfigurationError: ``settings`` omitted and the environment is invalid.
    """
    settings = settings if settings is not None else load_settings()
    app = FastAPI(
        title="{{ cookiecutter.project_name }}",
        description="{{ cookiecutter.description }}",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service_id = SERVICE_ID
    app.state.started_at = time.monotonic()
    install_error_handlers(
        app,
        status_page_url=str(settings.status_page_url),
        retry_after=settings.retry_after,
        unavailable_errors=DATABASE_UNAVAILABLE_ERRORS,
    )
    app.include_router(health_router)
    app.include_router(items_router)
    return app


@cache
def _default_app() -> FastAPI:
    try:
        return create_app()
    except ConfigurationError as error:
        # One line naming the setting, not a traceback: this is the operator's mistake.
        raise SystemExit(f"configuration error: {error}") from None


def __getattr__(name: str) -> FastAPI:
    # PEP 562: ``main.app`` is built from the environment on first access only.
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
