"""Traces: OpenTelemetry, on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

Off, nothing of OpenTelemetry is imported (start-up time and memory stay as they
are): this module holds only the switch and small entry points, and imports
``otel.py``, where the SDK and the instrumentations live, once tracing is on.

On, the SDK reads its standard variables itself (``OTEL_EXPORTER_OTLP_*`` for the
OTLP/HTTP exporter, ``OTEL_TRACES_SAMPLER*``, ``OTEL_BSP_*``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``; docs/tracing.md lists them), and the service gets:

- a server span per request, and spans for its dependencies, endpoint and
  serialisation: FastAPI's own telemetry, on once a tracer provider is set; the
  probes and ``/metrics`` are left out (``TELEMETRY``);
- a client span per SQL statement, httpx request and Redis command made inside a
  request or a job run (those outside, such as the probes' checks and the leader
  lease's renewals, are dropped);
- a span per job run (``job_run_span``), with its job ID, run ID, fire time and outcome;
- ``trace_id`` and ``span_id`` in each JSON log line written inside a span.

``OTEL_SDK_DISABLED=true`` turns it all off again.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from fastapi.telemetry import TelemetryConfig

# Either one turns tracing on (the second sends traces alone to its URL).
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# Probes (health/probes.py answers most of them in front of the middleware stack, but
# FastAPI's telemetry sits in front of that) and the scrape of /metrics on PORT.
UNTRACED_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})


def tracing_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether an OTLP endpoint is set (``environ``, default ``os.environ``) and the SDK not disabled."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def untraced(scope: MutableMapping[str, Any]) -> bool:
    """Whether FastAPI's telemetry leaves this request out: the kubelet's probes and
    Prometheus's scrapes, many a minute, each the same."""
    return scope.get("path") in UNTRACED_PATHS


# FastAPI(telemetry=...): what its own tracing leaves out. It traces nothing at all
# until a tracer provider is set (start_tracing).
TELEMETRY: TelemetryConfig = {"exclude": untraced}


def start_tracing() -> None:
    """Start the SDK's tracer provider, with the instrumentations, when tracing is configured.

    FastAPI's telemetry then traces every app's requests; idempotent.
    """
    if tracing_configured():
        from . import otel

        otel.provider()


def trace_sqlalchemy_engine(engine: Any) -> None:
    """Trace the statements of a SQLAlchemy ``AsyncEngine`` when tracing is configured.

    One engine per process: the first one is instrumented (the SDK's instrumentor is
    a singleton), which is the service's, or the ``jobs`` command's.
    """
    if tracing_configured():
        from . import otel

        otel.instrument_sqlalchemy(engine.sync_engine)


def trace_log_filter() -> logging.Filter | None:
    """A filter stamping ``trace_id`` and ``span_id`` on records logged inside a span;
    ``None`` when tracing is not configured."""
    if not tracing_configured():
        return None
    from . import otel

    return otel.TraceIdFilter()


def _ignore(outcome: str) -> None:
    pass


@contextmanager
def job_run_span(
    job_id: str, run_id: uuid.UUID, scheduled_at: datetime | None
) -> Iterator[Callable[[str], None]]:
    """A span around one run of ``job_id``; yields the function that records its outcome.

    Without tracing, no span: the function does nothing.
    """
    if not tracing_configured():
        yield _ignore
        return
    from . import otel

    with otel.job_run_span(job_id, run_id, scheduled_at) as record:
        yield record
