"""Prometheus metrics of one app, served at ``GET /metrics`` on a port of their own.

``METRICS_PORT`` (default 9000) serves them apart from the API, so that the
NetworkPolicy can open that port to the monitoring namespace only;
``METRICS_PORT=0`` serves them at ``/metrics`` on the app's own port instead (as
several uvicorn workers in one container must: they cannot all bind one port).

Each app owns a ``CollectorRegistry`` rather than prometheus-client's global one, so
that several apps in one process (tests, or an app per worker in a supervisor) never
collide with "Duplicated timeseries". With ``uvicorn --workers N`` each worker
exposes its own series; scrape the pods, not a load balancer, or sum by pod.

Series counted where they happen (on the leader, for the jobs):

- ``job_runs_total{job,outcome}``: finished runs; ``outcome`` is ``success``,
  ``failure`` or ``cancelled`` (a run cancelled at shutdown).
- ``job_duration_seconds{job}``: histogram of the durations of succeeded and failed runs.
- ``heartbeat_pings_total{job,outcome}``: heartbeat pings; ``outcome`` is ``success``,
  ``failure`` (after every retry) or ``dropped`` (too many pings already pending).
- ``http_requests_total{method,route,status}`` and
  ``http_request_duration_seconds{method,route,status}``: requests by route template
  (``/items/{item_id}``, not the raw path, so cardinality stays bounded; ``<unmatched>``
  for a path no route matches); ``method`` is one of RFC 9110's or ``other``, and
  ``status`` the exact code. prometheus-fastapi-instrumentator's middleware observes
  them (``add_http_metrics``); the probes' fast path (``health/probes.py``) too.

Series read at scrape time (``StateCollector``) from the read-only snapshots the health
endpoints use (``metrics_state.py``: the checks' cached results, and the jobs' state
read from the shared run table at most once per ``HEALTH_CACHE_TTL``), so that every
replica's scrape tells the same about the jobs, whichever leads:

- ``health_check_status{check,status}``: 1 for each check's current status (``pass``,
  ``warn`` or ``fail``), 0 for the other two; ``check`` is the key of ``/health``
  (``database:responseTime``, ``<job_id>:lastSuccess``, ``scheduler``).
- ``health_ready``: 1 while ``/health/ready`` answers 200, 0 while it answers 503.
- ``job_last_success_timestamp_seconds{job}``: Unix time of the job's last success.
- ``job_deadline_timestamp_seconds{job}``: Unix time by which the next success is due:
  the first fire after the last success (or the earliest fire not followed by one),
  plus the job's grace time. Past it, ``/health`` fails the job as overdue.
- ``job_consecutive_failures{job}``: failed runs since the last success.
- ``scheduler_leader``: 1 in the process that leads the scheduler, 0 in the others
  (absent with ``SCHEDULER_ENABLED=false``).
- ``scheduler_lease_epoch``: the leader lease's epoch (its term), the same on every
  replica (PostgreSQL only).

A job's series are absent while its state cannot be read (the database is down:
``health_ready`` says so) and before it ever fired.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator.metrics import Info
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware

JOB_OUTCOMES = ("success", "failure", "cancelled")
PING_OUTCOMES = ("success", "failure", "dropped")
# Scheduled jobs run from milliseconds to hours; HTTP requests use the library default.
JOB_DURATION_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600)
# Label value for requests that matched no route, so random paths add no series.
UNMATCHED_ROUTE = "<unmatched>"
UNTEMPLATED = "none"
# The methods of RFC 9110 and PATCH (RFC 5789); any other is counted as OTHER_METHOD.
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
OTHER_METHOD = "other"
CHECK_STATUSES = ("pass", "warn", "fail")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobSeries:
    """One job's state for the scrape; times are Unix seconds, ``None`` when unknown."""

    last_success: float | None
    deadline: float | None
    consecutive_failures: int


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What a scrape reports of the service's state.

    ``checks`` maps each health check's key to its status (``pass``, ``warn``,
    ``fail``); ``ready`` is whether ``/health/ready`` answers 200; ``jobs`` is empty
    while the jobs' state cannot be read; ``leader`` is ``None`` when the scheduler
    is disabled; ``epoch`` is the lease's, ``None`` without a lease.
    """

    checks: Mapping[str, str]
    ready: bool
    jobs: Mapping[str, JobSeries]
    leader: bool | None
    epoch: int | None


class StateSource(Protocol):
    """Where the scrape reads the state from (``metrics_state.ScrapeState``)."""

    async def refresh(self) -> None:
        """Bring the state up to date (on the event loop)."""
        ...

    def read(self) -> ServiceState | None:
        """The current state, from any thread; ``None`` when there is none yet."""
        ...


class StateCollector(Collector):
    """The state series of the module docstring, built from ``read()`` at each scrape."""

    def __init__(self, read: Callable[[], ServiceState | None]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        state = self._read()
        if state is None:
            return
        checks = GaugeMetricFamily(
            "health_check_status",
            "1 for the current status of each health check, 0 for the others.",
            labels=["check", "status"],
        )
        for key, status in state.checks.items():
            for candidate in CHECK_STATUSES:
                checks.add_metric([key, candidate], 1.0 if candidate == status else 0.0)
        yield checks
        yield GaugeMetricFamily(
            "health_ready", "1 while /health/ready answers 200, else 0.", value=state.ready
        )
        last_success = GaugeMetricFamily(
            "job_last_success_timestamp_seconds",
            "Unix time of the last successful run of the job (the shared run table).",
            labels=["job"],
        )
        deadline = GaugeMetricFamily(
            "job_deadline_timestamp_seconds",
            "Unix time by which the job's next success is due, grace time included.",
            labels=["job"],
        )
        failures = GaugeMetricFamily(
            "job_consecutive_failures",
            "Failed runs of the job since its last success.",
            labels=["job"],
        )
        for job_id, job in state.jobs.items():
            if job.last_success is not None:
                last_success.add_metric([job_id], job.last_success)
            if job.deadline is not None:
                deadline.add_metric([job_id], job.deadline)
            failures.add_metric([job_id], job.consecutive_failures)
        yield from (last_success, deadline, failures)
        if state.leader is not None:
            yield GaugeMetricFamily(
                "scheduler_leader",
                "1 in the process that leads the scheduler, else 0.",
                value=state.leader,
            )
        if state.epoch is not None:
            yield GaugeMetricFamily(
                "scheduler_lease_epoch",
                "Epoch (term) of the scheduler's leader lease.",
                value=state.epoch,
            )


class Metrics:
    """The service's metrics, registered on ``registry`` (a new one when omitted)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._state: StateSource | None = None
        self.registry.register(StateCollector(self._read_state))
        self.job_runs = Counter(
            "job_runs_total", "Finished job runs.", ["job", "outcome"], registry=self.registry
        )
        self.job_duration = Histogram(
            "job_duration_seconds",
            "Duration of succeeded and failed job runs, in seconds.",
            ["job"],
            buckets=JOB_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.heartbeat_pings = Counter(
            "heartbeat_pings_total",
            "Heartbeat pings by outcome.",
            ["job", "outcome"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by method, route template and status, in seconds.",
            ["method", "route", "status"],
            registry=self.registry,
        )

    def declare_jobs(self, job_ids: Iterable[str]) -> None:
        """Create every job series at zero, so ``increase()`` and alerts see the first run."""
        for job_id in job_ids:
            for outcome in JOB_OUTCOMES:
                self.job_runs.labels(job_id, outcome)
            for outcome in PING_OUTCOMES:
                self.heartbeat_pings.labels(job_id, outcome)
            self.job_duration.labels(job_id)

    def observe_request(self, method: str, route: str, status: int | str, seconds: float) -> None:
        """Count one request: its method (``other`` unless one of ``HTTP_METHODS``), route
        template, status code and latency in seconds."""
        labels = (method if method in HTTP_METHODS else OTHER_METHOD, route, str(status))
        self.http_requests.labels(*labels).inc()
        self.http_request_duration.labels(*labels).observe(seconds)

    def observe_info(self, info: Info) -> None:
        """prometheus-fastapi-instrumentator's instrumentation: ``observe_request`` of ``info``."""
        # With should_group_untemplated the library names a request that matched no route "none".
        route = UNMATCHED_ROUTE if info.modified_handler == UNTEMPLATED else info.modified_handler
        self.observe_request(info.method, route, info.modified_status, info.modified_duration)

    def watch(self, source: StateSource | None) -> None:
        """Report ``source``'s state at every scrape (the state series); ``None``: stop."""
        self._state = source

    def _read_state(self) -> ServiceState | None:
        source = self._state
        return source.read() if source is not None else None

    async def refresh(self) -> None:
        """Bring the watched state up to date; call on the event loop before ``render``."""
        if self._state is not None:
            await self._state.refresh()

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)


def add_http_metrics(app: FastAPI, metrics: Metrics) -> None:
    """Count ``app``'s requests and their latency by route template (prometheus-fastapi-instrumentator).

    The library's pure ASGI middleware finds the route template (``/items/{item_id}``,
    mounts and routers included) and times the request; a request that raises
    counts as a 500, as the error middleware answers. Its own series are not used:
    ``Metrics.observe_request`` writes the service's two, method bounded.
    """
    app.add_middleware(
        PrometheusInstrumentatorMiddleware,
        should_group_status_codes=False,
        should_group_untemplated=True,
        instrumentations=[metrics.observe_info],
        registry=metrics.registry,
    )


@contextmanager
def serve_metrics(metrics: Metrics, *, host: str, port: int) -> Iterator[None]:
    """Serve ``metrics`` at ``http://host:port/metrics`` for the block (prometheus-client's
    threaded server); the server is shut down and its socket closed at the end.

    Raises:
        OSError: the port cannot be bound (in use, or not allowed).
    """
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    logger.info("metrics served on %s:%d", host, port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def metrics_port_problem(host: str, port: int) -> str | None:
    """Why ``METRICS_PORT`` cannot be bound on ``host`` now, in one line; ``None`` when it can.

    Binds and closes a socket as prometheus-client's server will (``SO_REUSEADDR``, the
    first address ``host`` resolves to), so that a port in use (a second service on the
    host, a second ``make run``) stops start-up with one line naming the setting before
    uvicorn starts, not with the lifespan's traceback. Between this check and the
    lifespan's bind another process may still take the port: ``serve_metrics`` then raises.
    """
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        reason = error.strerror or str(error)
        return (
            f"METRICS_PORT: cannot serve metrics on {host}:{port} ({reason}): set "
            "METRICS_PORT to a free port, or to 0 to serve /metrics on PORT"
        )
    return None


router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    await registry.refresh()
    return Response(content=registry.render(), media_type=CONTENT_TYPE_LATEST)
