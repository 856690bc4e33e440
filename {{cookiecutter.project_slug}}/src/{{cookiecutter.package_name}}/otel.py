"""OpenTelemetry's SDK and the instrumentations, imported only when tracing is on (``tracing.py``).

One tracer provider per process, started on first use and set as the global one,
so every instrumentation shares it: the resource names the service
(``service.name``, ``service.version``; ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` override them), the sampler is the SDK's from
``OTEL_TRACES_SAMPLER``, and a ``BatchSpanProcessor`` (``OTEL_BSP_*``) hands spans
to the OTLP/HTTP protobuf exporter, which reads ``OTEL_EXPORTER_OTLP_*`` itself
(endpoint + ``/v1/traces``, headers, timeout, compression, certificates). The SDK
flushes it at exit.

Requests are traced by FastAPI itself (its telemetry starts a server span per
request once a tracer provider is set; ``tracing.TELEMETRY`` leaves the probes
out). httpx, asyncpg and Redis are instrumented process-wide when their
instrumentation is installed (the bake's ``pyproject.toml`` decides), SQLAlchemy
per engine. A client span with no parent, a statement or call made outside any
request or job run (a probe's readiness check, the leader lease's renewals every
few seconds), is dropped by the sampler; every other span is sampled as
``OTEL_TRACES_SAMPLER`` says.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import (
    Link,
    SpanKind,
    Status,
    StatusCode,
    format_span_id,
    format_trace_id,
)
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from . import __version__

SERVICE = "{{ cookiecutter.project_slug }}"
# Installed by the bake for its driver and Redis; each one found is turned on.
OPTIONAL_INSTRUMENTORS = (
    ("opentelemetry.instrumentation.asyncpg", "AsyncPGInstrumentor"),
    ("opentelemetry.instrumentation.redis", "RedisInstrumentor"),
)
# Span attributes of a job run.
JOB_ID = "job.id"
JOB_RUN_ID = "job.run_id"
JOB_FIRE_TIME = "job.fire_time"
JOB_OUTCOME = "job.outcome"

_lock = threading.Lock()
_provider: TracerProvider | None = None


def provider() -> TracerProvider:
    """The process's tracer provider, started (and made global) on the first call."""
    global _provider
    with _lock:
        if _provider is None:
            _provider = _start()
        return _provider


class NoOrphanClientSpans(Sampler):
    """Drops a client span without a parent; asks ``inner`` about every other span.

    Args:
        inner: the sampler ``OTEL_TRACES_SAMPLER`` names (the SDK's default: parent-based, always on).
    """

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind is SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoOrphanClientSpans({self.inner.get_description()})"


def _start() -> TracerProvider:
    # The environment's service name and attributes win over the service's own.
    detected = OTELResourceDetector().detect().attributes
    resource = Resource.create({SERVICE_NAME: SERVICE, SERVICE_VERSION: __version__, **detected})
    # The SDK reads OTEL_TRACES_SAMPLER(_ARG) when a provider is made without a sampler.
    from_environment = TracerProvider(shutdown_on_exit=False).sampler
    started = TracerProvider(resource=resource, sampler=NoOrphanClientSpans(from_environment))
    started.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(started)
    HTTPXClientInstrumentor().instrument(tracer_provider=started)
    for module, name in OPTIONAL_INSTRUMENTORS:
        if importlib.util.find_spec(module) is not None:
            getattr(importlib.import_module(module), name)().instrument(tracer_provider=started)
    return started


def shutdown() -> None:
    """Flush and shut the provider down and remove the process-wide instrumentations.

    For tests that turn tracing on and off in one process; a later use starts anew.
    """
    global _provider
    with _lock:
        if _provider is None:
            return
        _provider.shutdown()
        _provider = None
        HTTPXClientInstrumentor().uninstrument()
        for module, name in (
            *OPTIONAL_INSTRUMENTORS,
            ("opentelemetry.instrumentation.sqlalchemy", "SQLAlchemyInstrumentor"),
        ):
            if importlib.util.find_spec(module) is not None:
                getattr(importlib.import_module(module), name)().uninstrument()


def instrument_sqlalchemy(sync_engine: object) -> None:
    """A client span per statement of ``sync_engine`` (an ``AsyncEngine.sync_engine``)."""
    module = importlib.import_module("opentelemetry.instrumentation.sqlalchemy")
    # Its declared range stops before SQLAlchemy 2.1, whose engine events it uses unchanged
    # (tests/test_tracing.py checks the statements' spans against the locked version).
    module.SQLAlchemyInstrumentor().instrument(
        engine=sync_engine, tracer_provider=provider(), skip_dep_check=True
    )


class TraceIdFilter(logging.Filter):
    """Stamps ``trace_id`` and ``span_id`` (hex) on each record logged inside a span."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format_trace_id(context.trace_id)
            record.span_id = format_span_id(context.span_id)
        return True


@contextmanager
def job_run_span(
    job_id: str, run_id: uuid.UUID, scheduled_at: datetime | None
) -> Iterator[Callable[[str], None]]:
    """A span ``job <job_id>`` with the run's attributes; yields the outcome recorder.

    A ``failure`` outcome sets the span's status to error; a run cancelled (shutdown)
    ends with outcome ``cancelled`` and no error status.
    """
    tracer = provider().get_tracer(__name__, __version__)
    attributes: dict[str, str] = {JOB_ID: job_id, JOB_RUN_ID: str(run_id)}
    if scheduled_at is not None:
        attributes[JOB_FIRE_TIME] = scheduled_at.isoformat()
    with tracer.start_as_current_span(
        f"job {job_id}",
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:

        def record(outcome: str) -> None:
            span.set_attribute(JOB_OUTCOME, outcome)
            if outcome == "failure":
                span.set_status(Status(StatusCode.ERROR, "the job raised"))

        try:
            yield record
        except asyncio.CancelledError:
            record("cancelled")
            raise
