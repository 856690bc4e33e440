"""The FastAPI application: ``create_app(settings)`` and the module-level ``app``.

``uvicorn {{ cookiecutter.package_name }}.main:app`` serves the app built from the
environment. Nothing is created at import time: ``app`` is built on first access,
and engines, pools, checks and the job scheduler are started by the lifespan, so
tests build their own app with ``create_app(Settings(...), jobs=...)``.
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
from .metrics import HttpMetrics, Metrics
from .metrics import router as metrics_router
from .scheduling import JobRegistry, default_jobs
from .scheduling.heartbeat import resolve_targets
from .scheduling.scheduler import JobScheduler
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

        # After the engine and the checks exist; stopped before the engine is disposed:
        # runs in flight drain, then the leader lock is released.
        scheduler = JobScheduler(
            jobs=app.state.jobs,
            settings=settings,
            sessionmaker=app.state.sessionmaker,
            metrics=app.state.metrics,
            targets=app.state.heartbeat_targets,
        )
        for check in scheduler.health_checks():
            app.state.health.add(check)
        app.state.scheduler = scheduler
        stack.push_async_callback(scheduler.stop)
        await scheduler.start()

        app.state.started_at = time.monotonic()
        logger.info("started %s %s (%s)", SERVICE_ID, __version__, settings.environment.value)
        yield
        logger.info("stopping %s", SERVICE_ID)


def create_app(settings: Settings | None = None, *, jobs: JobRegistry | None = None) -> FastAPI:
    """Build the application.

    Args:
        settings: configuration; read from the environment when omitted.
        jobs: the scheduled jobs; those of ``scheduling/jobs.py`` when omitted.

    Raises:
        ConfigurationError: ``settings`` omitted and the environment is invalid, or a
            job's ``<JOB_ID>_HEARTBEAT_URL`` / ``<JOB_ID>_HEARTBEAT_PROTOCOL`` is.
    """
    settings = settings if settings is not None else load_settings()
    jobs = jobs if jobs is not None else default_jobs()
    app = FastAPI(
        title="{{ cookiecutter.project_name }}",
        description="{{ cookiecutter.description }}",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service_id = SERVICE_ID
    app.state.started_at = time.monotonic()
    app.state.jobs = jobs
    # Read at registration: the URLs are secrets, kept out of Settings and its repr.
    app.state.heartbeat_targets = resolve_targets(
        (job.id for job in jobs), settings.heartbeat_protocol
    )
    app.state.metrics = Metrics()
    install_error_handlers(
        app,
        status_page_url=str(settings.status_page_url),
        retry_after=settings.retry_after,
        unavailable_errors=DATABASE_UNAVAILABLE_ERRORS,
    )
    app.add_middleware(HttpMetrics, metrics=app.state.metrics)
    app.include_router(health_router)
    app.include_router(metrics_router)
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
