"""Logging: one handler for every logger, JSON lines or readable text, with request IDs.

``configure_logging(settings)`` sends every log record of the process (the
service's, uvicorn's server and access logs, the database layer's, APScheduler's)
through one handler on the root logger:

- JSON lines (python-json-logger) in staging and production, one object per line
  with ``timestamp``, ``level``, ``logger``, ``message`` and ``request_id``, for a log
  collector to index;
- ``time level logger [request id] message`` text in development.

``LOG_FORMAT`` (``auto``, ``json`` or ``text``) overrides the choice. The request ID
comes from asgi-correlation-id: its middleware (added by ``create_app``) takes the
``X-Request-ID`` request header or makes a new ID, returns it in the response's
``X-Request-ID``, and its logging filter copies it onto every record logged while
that request is handled; records outside a request carry ``null`` (JSON) or ``-``.
With tracing on (``tracing.py``), a JSON line written inside a span (a traced
request, a job run) also carries the span's ``trace_id`` and ``span_id``.
"""

from __future__ import annotations

import logging
import sys
from asyncio import CancelledError
from dataclasses import dataclass
from typing import TextIO

from asgi_correlation_id import CorrelationIdFilter, CorrelationIdMiddleware
from pythonjsonlogger.json import JsonFormatter

from .settings import Environment, LogFormat, Settings
from .tracing import trace_log_filter

TEXT_FORMAT = "%(asctime)s %(levelname)-8s %(name)s [%(correlation_id)s] %(message)s"
# The record attributes each JSON line starts with, renamed to the usual field names;
# ``extra={...}`` fields of a log call follow them.
JSON_FIELDS = "%(levelname)s %(name)s %(message)s %(correlation_id)s"
JSON_RENAMES = {"levelname": "level", "name": "logger", "correlation_id": "request_id"}
# Loggers that uvicorn configures with handlers of their own (``uvicorn <app>``):
# they are emptied and propagate to the root handler instead.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")

_HANDLER_NAME = "{{ cookiecutter.package_name }}"
FORCED_EXIT = "forced exit: a second SIGINT (Ctrl-C) or SIGTERM cut the shutdown short"
REQUEST_CANCELLED = (
    "cancelled a request in flight: the shutdown stopped waiting for it"
    " (GRACEFUL_SHUTDOWN_TIMEOUT exceeded, or a second SIGINT or SIGTERM)"
)


class ShutdownCancellationFilter(logging.Filter):
    """One line, not a traceback, for what a cut-short shutdown cancels.

    uvicorn cancels the requests still in flight when ``timeout_graceful_shutdown``
    runs out or a second SIGINT or SIGTERM forces the exit, and logs each one's
    ``CancelledError`` as "Exception in ASGI application" with its traceback: that
    record becomes ``REQUEST_CANCELLED`` (still ERROR: a client lost its answer).
    A forced exit also cancels the lifespan task instead of sending it
    ``lifespan.shutdown`` (its ``finally`` blocks still run); Starlette reports the
    ``CancelledError`` as ``lifespan.shutdown.failed`` with the formatted traceback as
    its message, which uvicorn logs at ERROR: that record becomes the WARNING
    ``FORCED_EXIT``. Sources: uvicorn/server.py ``shutdown``,
    uvicorn/protocols/http/*_impl.py ``run_asgi``, uvicorn/lifespan/on.py ``send``,
    starlette/routing.py ``Router.lifespan``. Every other record passes unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if (
            message.startswith("Exception in ASGI application")
            and record.exc_info is not None
            and isinstance(record.exc_info[1], CancelledError)
        ):
            record.msg, record.args = REQUEST_CANCELLED, ()
            record.exc_info, record.exc_text = None, None
        elif message.startswith("Traceback") and message.rstrip().endswith("CancelledError"):
            record.msg, record.args = FORCED_EXIT, ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_SHUTDOWN_FILTER = ShutdownCancellationFilter()


@dataclass
class RequestIdMiddleware(CorrelationIdMiddleware):
    """asgi-correlation-id's middleware; its Sentry hook (the request ID as each event's
    ``transaction_id`` tag) only with ``sentry=True``.

    The library's own test imports ``sentry_sdk`` whenever it is installed, at the first
    request: 4 MiB that a service without ``SENTRY_DSN`` never needs.
    """

    sentry: bool = False

    def __post_init__(self) -> None:
        if self.sentry:
            super().__post_init__()
        else:
            self.sentry_extension = _no_sentry


def _no_sentry(request_id: str) -> None:
    return None


def uses_json(settings: Settings) -> bool:
    """Whether logs are JSON lines: per ``LOG_FORMAT``; ``auto`` is JSON outside development."""
    if settings.log_format is LogFormat.AUTO:
        return settings.environment is not Environment.DEVELOPMENT
    return settings.log_format is LogFormat.JSON


def build_handler(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing to ``stream`` (default: standard error) in the format ``settings`` ask.

    Its filter stamps every record with the current request ID (``correlation_id``),
    whichever logger it comes from.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    formatter: logging.Formatter
    if uses_json(settings):
        handler.addFilter(CorrelationIdFilter(default_value=None))
        # With tracing on (tracing.py), lines written inside a span get its trace_id.
        if (trace_ids := trace_log_filter()) is not None:
            handler.addFilter(trace_ids)
        formatter = JsonFormatter(JSON_FIELDS, rename_fields=JSON_RENAMES, timestamp=True)
    else:
        handler.addFilter(CorrelationIdFilter(default_value="-"))
        formatter = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    return handler


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Route every logger through one handler at ``LOG_LEVEL``; returns that handler.

    Idempotent: the handler installed by an earlier call is replaced, and handlers
    that others added to the root logger (pytest's, for one) are kept.

    Raises:
        ValueError: ``LOG_LEVEL`` is not a logging level name.
    """
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
            existing.close()
    handler = build_handler(settings, stream)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    logging.getLogger("uvicorn.error").addFilter(_SHUTDOWN_FILTER)
    return handler
