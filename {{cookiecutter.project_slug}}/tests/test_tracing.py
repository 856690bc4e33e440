"""OpenTelemetry against a real OTLP/HTTP receiver on loopback.

The receiver is a pytest-httpserver answering ``POST /v1/traces`` as a collector
does; it decodes each export with the OpenTelemetry protocol package
(``ExportTraceServiceRequest``). The served service is a real process
(``python -m {{ cookiecutter.package_name }} serve``) with ``OTEL_EXPORTER_OTLP_ENDPOINT``
pointing at it; job runs go through the wrapper in this process, tracing turned on
by the same variable and shut down after each test.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from apscheduler.triggers.interval import IntervalTrigger
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from {{ cookiecutter.package_name }}.db import open_database
from {{ cookiecutter.package_name }}.logs import build_handler
from {{ cookiecutter.package_name }}.scheduling import JobContext, JobRegistry
from {{ cookiecutter.package_name }}.scheduling.runner import RunOutcome

from .conftest import job_runner, make_settings, run_job

PACKAGE = "{{ cookiecutter.package_name }}"
SERVICE = "{{ cookiecutter.project_slug }}"


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind is not None else None


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, as the receiver decoded it, with its resource's attributes."""

    span: Span
    resource: dict[str, Any]

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return {attribute.key: value(attribute.value) for attribute in self.span.attributes}


class OtlpReceiver:
    """``POST /v1/traces`` of an OTLP/HTTP collector (protobuf), on a loopback server."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.exports = 0

    @property
    def endpoint(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def handle(self, request: Request) -> Response:
        body = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        assert request.headers["Content-Type"] == "application/x-protobuf"
        export = ExportTraceServiceRequest.FromString(body)
        received = [
            ReceivedSpan(
                span=span,
                resource={item.key: value(item.value) for item in batch.resource.attributes},
            )
            for batch in export.resource_spans
            for scope in batch.scope_spans
            for span in scope.spans
        ]
        with self._lock:
            self.exports += 1
            self._spans.extend(received)
        return Response(
            ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    async def wait_for(self, name: str, *, within: float = 15.0) -> ReceivedSpan:
        """The first span named ``name`` to arrive, waiting up to ``within`` seconds."""
        for _ in range(int(within / 0.05)):
            found = [span for span in self.spans() if span.name == name]
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        pytest.fail(f"no span {name!r} arrived; got {[span.name for span in self.spans()]}")


@pytest.fixture(scope="session")
def otlp_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def otlp(otlp_server: HTTPServer) -> OtlpReceiver:
    """The receiver, empty."""
    otlp_server.clear()
    receiver = OtlpReceiver(otlp_server)
    otlp_server.expect_request("/v1/traces", method="POST").respond_with_handler(receiver.handle)
    return receiver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    base_url: str
    process: asyncio.subprocess.Process


@pytest.fixture
async def served(postgres_url: str, otlp: OtlpReceiver, tmp_path: Path) -> AsyncIterator[Served]:
    """The service as a process with JSON logs, traced to ``otlp``; stopped after the test."""
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "LOG_FORMAT": "json",
        "DATABASE_URL": postgres_url,
        "SCHEDULER_ENABLED": "false",
        "SECRETS_DIR": str(tmp_path / "none"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "METRICS_PORT": "0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        # Milliseconds between exports (the SDK's default is 5000).
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        PACKAGE,
        "serve",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Served(base_url=f"http://127.0.0.1:{port}", process=process)
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.communicate(), 30)


async def get_when_up(http: httpx.AsyncClient, url: str) -> httpx.Response:
    for _ in range(400):
        try:
            return await http.get(url)
        except httpx.ConnectError:
            await asyncio.sleep(0.05)
    pytest.fail(f"nothing answered at {url}")


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


async def test_a_request_arrives_with_its_sql_and_its_log_lines_carry_the_trace_id(
    served: Served, otlp: OtlpReceiver
) -> None:
    service = served
    async with httpx.AsyncClient(base_url=service.base_url) as http:
        assert (await get_when_up(http, "/health/live")).status_code == 200
        assert (await http.get("/health/ready")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/items")).status_code == 200

    request = await otlp.wait_for("GET /items")
    # The SDK flushes what is left at exit.
    service.process.terminate()
    await asyncio.wait_for(service.process.communicate(), 30)

    assert request.span.kind == Span.SPAN_KIND_SERVER
    assert request.attributes["http.route"] == "/items"
    assert request.resource["service.name"] == SERVICE
    assert request.resource["service.version"]
    in_request = [span for span in otlp.spans() if span.trace_id == request.trace_id]
    sql = [span for span in in_request if span.span.kind == Span.SPAN_KIND_CLIENT]
    assert sql, [span.name for span in in_request]
    # Each statement is a descendant of the request's span (FastAPI's own spans between).
    parents = {span.span.span_id: span.span.parent_span_id for span in in_request}
    for statement in sql:
        ancestor = statement.span.parent_span_id
        while ancestor and ancestor != request.span.span_id:
            ancestor = parents.get(ancestor, b"")
        assert ancestor == request.span.span_id, statement.name
    assert any("SELECT" in str(span.attributes.get("db.statement", "")) for span in sql), [
        span.attributes for span in sql
    ]
    # Probes and metrics make no span at all.
    traced = [span.name for span in otlp.spans()]
    assert not [name for name in traced if "/health" in name or "/metrics" in name], traced


async def test_a_json_log_line_written_inside_a_request_carries_its_trace_id(
    served: Served, otlp: OtlpReceiver
) -> None:
    service = served
    async with httpx.AsyncClient(base_url=service.base_url) as http:
        assert (await get_when_up(http, "/health/live")).status_code == 200
        assert (await http.get("/items")).status_code == 200
    request = await otlp.wait_for("GET /items")
    service.process.terminate()
    out, err = await asyncio.wait_for(service.process.communicate(), 30)
    lines = json_lines((out + err).decode().splitlines())
    access = [line for line in lines if "GET /items" in line["message"]]
    assert len(access) == 1, lines
    assert access[0]["trace_id"] == request.trace_id
    probe = [line for line in lines if "GET /health/live" in line["message"]]
    assert probe, lines
    assert all("trace_id" not in line for line in probe)


@pytest.fixture
def tracing_on(otlp: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    """Tracing on in this process, exporting to ``otlp``; shut down and uninstrumented after."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "tracing-test")
    yield otlp
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    from {{ cookiecutter.package_name }} import otel

    otel.shutdown()
    # Unset the global provider again, as OpenTelemetry's own test utilities do
    # (reset_trace_globals): FastAPI's telemetry in later tests' apps stays off.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


async def test_a_job_run_arrives_as_a_span_with_its_ids_fire_time_and_outcome(
    tracing_on: OtlpReceiver,
) -> None:
    from {{ cookiecutter.package_name }} import otel

    jobs = JobRegistry("tracing")
    every_minute = IntervalTrigger(minutes=1, timezone=UTC)

    @jobs.scheduled("tick", every_minute, grace=timedelta(seconds=30))
    async def tick(context: JobContext) -> None:
        logging.getLogger(__name__).info("tick ran")

    @jobs.scheduled("broken", every_minute, grace=timedelta(seconds=30))
    async def broken(context: JobContext) -> None:
        raise RuntimeError("this job always fails")

    fire = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    targets = {job.id: None for job in jobs}
    async with job_runner(jobs, targets, settings=make_settings("sqlite://")) as (runner, _):
        assert await runner.run("tick", scheduled_at=fire) is RunOutcome.SUCCESS
        assert await runner.run("broken") is RunOutcome.FAILURE
    otel.provider().force_flush()

    tick_span = await tracing_on.wait_for("job tick")
    assert tick_span.span.kind == Span.SPAN_KIND_INTERNAL
    assert tick_span.attributes["job.id"] == "tick"
    assert uuid.UUID(tick_span.attributes["job.run_id"]).version == 4
    assert tick_span.attributes["job.fire_time"] == fire.isoformat()
    assert tick_span.attributes["job.outcome"] == "success"
    assert tick_span.span.status.code != Status.STATUS_CODE_ERROR
    assert tick_span.resource["service.name"] == "tracing-test", "OTEL_SERVICE_NAME wins"
    broken_span = await tracing_on.wait_for("job broken")
    assert broken_span.attributes["job.outcome"] == "failure"
    assert "job.fire_time" not in broken_span.attributes, "run by hand: no fire time"
    assert broken_span.span.status.code == Status.STATUS_CODE_ERROR


async def test_a_job_runs_sql_arrives_inside_its_span(
    tracing_on: OtlpReceiver, postgres_url: str
) -> None:
    from {{ cookiecutter.package_name }} import otel

    fire = datetime(2026, 1, 2, 3, 17, tzinfo=UTC)
    # Opened with tracing on, as the service opens it at start-up.
    async with open_database(make_settings(postgres_url)) as database:
        assert await run_job(database, "cleanup_items", scheduled_at=fire) is RunOutcome.SUCCESS
    otel.provider().force_flush()

    run = await tracing_on.wait_for("job cleanup_items")
    assert run.attributes["job.outcome"] == "success"
    inside = [span for span in tracing_on.spans() if span.trace_id == run.trace_id]
    sql = [span for span in inside if span.span.kind == Span.SPAN_KIND_CLIENT]
    assert any("DELETE" in str(span.attributes.get("db.statement", "")) for span in sql), [
        (span.name, span.attributes) for span in inside
    ]


def test_a_json_line_logged_inside_a_job_run_carries_its_trace_id(
    tracing_on: OtlpReceiver,
) -> None:
    from {{ cookiecutter.package_name }} import otel

    stream = io.StringIO()
    handler = build_handler(make_settings("sqlite://", log_format="json"), stream)
    logger = logging.getLogger("tracing-test")
    logger.addHandler(handler)
    try:
        with otel.job_run_span("tick", uuid.uuid4(), None) as record:
            logger.warning("inside")
            record("success")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    otel.provider().force_flush()

    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    span = next(span for span in tracing_on.spans() if span.name == "job tick")
    assert inside["trace_id"] == span.trace_id
    assert inside["span_id"] == span.span.span_id.hex()
    assert "trace_id" not in outside
