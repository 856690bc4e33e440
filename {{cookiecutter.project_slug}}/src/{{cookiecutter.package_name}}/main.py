"""The FastAPI application: ``create_app(settings)`` and the module-level ``app``.

``uvicorn {{ cookiecutter.package_name }}.main:app`` serves the app built from the
environment. Nothing is created at import time: ``app`` is built on first access,
and engines, pools, checks and the job scheduler are started by the lifespan, so
tests build their own app with ``create_app(Settings(...), jobs=...)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import cache
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from . import __version__
from .api_docs import CDN_DOCS_OFF, add_offline_docs
{%- if cookiecutter.use_redis %}
from .cache import open_redis, read_through_redis, redis_check
{%- endif %}
from .db import (
    DATABASE_UNAVAILABLE_ERRORS,
    database_check,
    database_unavailable,
    open_database,
)
from .errors import install_error_handlers
from .health import HealthChecks
from .health import router as health_router
from .health.probes import ProbeFastPath
from .health.router import LIVE_BODY
from .heartbeats.targets import resolve_targets
from .items.router import router as items_router
from .logs import RequestIdMiddleware, configure_logging
from .metrics import Metrics, add_http_metrics, metrics_port_problem, serve_metrics
from .metrics import router as metrics_router
from .metrics_state import ScrapeState
from .outages import quiet_orphaned_releases, report_first_connection
from .postgres import parse_postgres_url
from .scheduling import JobRegistry, default_jobs
from .scheduling.cronjob import time_limits
from .scheduling.scheduler import JobScheduler
from .settings import ConfigurationError, Settings, load_settings
from .tracing import TELEMETRY, start_tracing

logger = logging.getLogger(__name__)

SERVICE_ID = "{{ cookiecutter.project_slug }}"
REQUEST_ID_HEADER = "X-Request-ID"
# FastAPI's options that turn off /docs, /redoc and /openapi.json (API_DOCS_ENABLED).
NO_API_DOCS: dict[str, Any] = {"openapi_url": None, "docs_url": None, "redoc_url": None}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start every resource onto ``app.state``; stop them in reverse order."""
    settings: Settings = app.state.settings
    async with AsyncExitStack() as stack:
        stack.enter_context(quiet_orphaned_releases(asyncio.get_running_loop()))
        if settings.metrics_port:
            stack.enter_context(
                serve_metrics(app.state.metrics, host=settings.host, port=settings.metrics_port)
            )
        database = await stack.enter_async_context(open_database(settings))
        app.state.database = database
        if settings.database_dsn.startswith("postgresql"):
            # One line at start naming the server and what to fix when it cannot be
            # reached; start-up neither waits for it nor stops (readiness reports it).
            await stack.enter_async_context(
                report_first_connection(
                    parse_postgres_url(settings.database_dsn),
                    connect_timeout=settings.database_connect_timeout,
                )
            )
        app.state.health = HealthChecks(
            [database_check(database)],
            timeout=settings.health_check_timeout,
            cache_ttl=settings.health_cache_ttl,
        )
        # The layers around each request's items store, innermost first (items/router.py).
        app.state.item_store_layers = []
{%- if cookiecutter.use_redis %}
        app.state.redis = await stack.enter_async_context(open_redis(settings))
        app.state.health.add(redis_check(app.state.redis, required=settings.redis_required))
        app.state.item_store_layers.append(read_through_redis(app.state.redis, settings))
{%- endif %}

        # After the database and the checks exist; stopped before the database is closed:
        # runs in flight drain, then the leader lease is released.
        scheduler = JobScheduler(
            jobs=app.state.jobs,
            settings=settings,
            database=database,
            metrics=app.state.metrics,
            targets=app.state.heartbeat_targets,
            time_limits=app.state.job_time_limits,
        )
        for check in scheduler.health_checks():
            app.state.health.add(check)
        if scheduler.enabled and scheduler.unmonitored:
            logger.warning(
                "jobs without a heartbeat monitor, unwatched from outside: %s "
                "(set HEALTHCHECKS_PING_KEY, <JOB_ID>_HEARTBEAT_URL or HEARTBEAT_PROTOCOL=sentry)",
                ", ".join(sorted(scheduler.unmonitored)),
            )
        app.state.scheduler = scheduler
        # Every scrape reads the checks and the jobs' shared state (metrics_state.py).
        app.state.metrics.watch(
            ScrapeState(
                health=app.state.health,
                scheduler=scheduler,
                loop=asyncio.get_running_loop(),
                timeout=settings.health_check_timeout,
            )
        )
        stack.callback(app.state.metrics.watch, None)
        stack.push_async_callback(scheduler.stop)
        await scheduler.start()

        app.state.started_at = time.monotonic()
        logger.info("started %s %s (%s)", SERVICE_ID, __version__, settings.environment.value)
        yield
        logger.info("stopping %s", SERVICE_ID)


class ServiceApp(FastAPI):
    """FastAPI with the probes' fast path (``health/probes.py``) in front of its middleware."""

    def build_middleware_stack(self) -> ASGIApp:
        return ProbeFastPath(
            super().build_middleware_stack(),
            state=self.state,
            metrics=self.state.metrics,
            request_id_header=REQUEST_ID_HEADER,
            live_body=LIVE_BODY,
        )


def create_app(settings: Settings | None = None, *, jobs: JobRegistry | None = None) -> FastAPI:
    """Build the application.

    Args:
        settings: configuration; read from the environment when omitted.
        jobs: the scheduled jobs; those of ``scheduling/jobs.py`` when omitted.

    Raises:
        ConfigurationError: ``settings`` omitted and the environment is invalid, or a
            job's ``<JOB_ID>_HEARTBEAT_URL`` / ``<JOB_ID>_HEARTBEAT_PROTOCOL`` /
            ``<JOB_ID>_TIME_LIMIT`` is.
    """
    settings = settings if settings is not None else load_settings()
    jobs = jobs if jobs is not None else default_jobs()
    app = ServiceApp(
        title="{{ cookiecutter.project_name }}",
        description="{{ cookiecutter.description }}",
        version=__version__,
        lifespan=lifespan,
        # No redirect from /items/ to /items: Starlette's would name the scheme and host
        # it sees, http:// behind a TLS proxy. A path has one form; the other is a 404.
        redirect_slashes=False,
        # Enforced while the body streams in: a client cannot make the process hold more.
        max_body_size=settings.max_request_body_bytes,
        # What FastAPI's own tracing leaves out (probes), once tracing.py starts it.
        telemetry=TELEMETRY,
        **(CDN_DOCS_OFF if settings.serve_api_docs else NO_API_DOCS),
    )
    app.state.settings = settings
    app.state.service_id = SERVICE_ID
    app.state.jobs = jobs
    # Read at registration: the URLs are secrets, kept out of Settings and its repr.
    app.state.heartbeat_targets = resolve_targets((job.id for job in jobs), settings)
    app.state.job_time_limits = time_limits(jobs)
    if settings.sentry_dsn is not None:
        # Imported only when set, before any middleware is added (the SDK patches them).
        from .sentry import start_sentry

        start_sentry(settings, targets=app.state.heartbeat_targets)
    app.state.metrics = Metrics()
    install_error_handlers(
        app,
        status_page_url=str(settings.status_page_url),
        retry_after=settings.retry_after,
        unavailable_errors=DATABASE_UNAVAILABLE_ERRORS,
        is_unavailable=database_unavailable,
    )
    add_http_metrics(app, app.state.metrics)
    # OpenTelemetry's SDK when OTEL_EXPORTER_OTLP_ENDPOINT is set; not imported otherwise.
    start_tracing()
    # Outermost of ours: the request ID exists before anything else logs, and every
    # response, 503s included, returns it in X-Request-ID (see logs.py).
    app.add_middleware(
        RequestIdMiddleware,
        header_name=REQUEST_ID_HEADER,
        sentry=settings.sentry_dsn is not None,
    )
    app.include_router(health_router)
    if not settings.metrics_port:
        app.include_router(metrics_router)
    app.include_router(items_router)
    if settings.serve_api_docs:
        add_offline_docs(app)
    return app


def serving_app(settings: Settings) -> FastAPI:
    """The app of a serving process: the process's logging set from ``settings``, then
    ``create_app(settings)``.

    Raises:
        ConfigurationError: as ``create_app``, or ``METRICS_PORT`` cannot be bound.
    """
    # Here, not in create_app: the process's logging belongs to the process that
    # serves (`python -m` or `uvicorn`), not to every app a test builds.
    configure_logging(settings)
    app = create_app(settings)
    # Before uvicorn starts: a port in use is then one line, not the lifespan's traceback.
    problem = settings.metrics_port and metrics_port_problem(settings.host, settings.metrics_port)
    if problem:
        raise ConfigurationError(problem)
    return app


@cache
def _default_app() -> FastAPI:
    try:
        return serving_app(load_settings())
    except ConfigurationError as error:
        # One line naming the setting, not a traceback: this is the operator's mistake.
        raise SystemExit(f"configuration error: {error}") from None


def __getattr__(name: str) -> FastAPI:
    # PEP 562: ``main.app`` is built from the environment on first access only.
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
