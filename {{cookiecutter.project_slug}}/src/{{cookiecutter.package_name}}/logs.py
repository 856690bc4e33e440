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
from typing import TextIO

from asgi_correlation_id import CorrelationIdFilter
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
    return handler
