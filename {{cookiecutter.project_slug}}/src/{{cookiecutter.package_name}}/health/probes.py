"""The probes' fast path: liveness and cached readiness answered before the middleware stack.

Kubernetes probes every pod every few seconds, and load balancers more often. Through
the whole stack (error handlers, the body limit, request IDs, HTTP metrics, routing,
dependency solving) an answer costs about twice what the probe's own work does, and
``make bench`` holds probes to 0.9x (liveness) and 0.8x (readiness) of a bare FastAPI
route. ``ProbeFastPath`` sits in front of the stack and answers

- ``GET``/``HEAD /health/live``: always (the body never changes);
- ``GET``/``HEAD /health/ready``: while ``HealthChecks.cached_readiness`` holds a
  passing body encoded from the checks' current cached results.

Each answer is the routes' own (``health/router.py``: the same bytes and headers), and
keeps what the stack would add: the ``X-Request-ID`` (the client's when valid, else a
new one, also set for log records) and the ``http_requests_total`` and
``http_request_duration_seconds`` series. Anything else, a request with a body,
under a ``root_path``, or readiness to be checked again or failing, goes through the
stack and the routes, which run the checks, log transitions and add the 503 headers.
"""

from __future__ import annotations

import time
from uuid import uuid4

from asgi_correlation_id import correlation_id
from asgi_correlation_id.middleware import is_valid_uuid4
from starlette.types import ASGIApp, Receive, Scope, Send

from ..metrics import Metrics
from .checks import HealthChecks
from .model import HEALTH_MEDIA_TYPE, Status

LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"
PROBE_METHODS = frozenset({"GET", "HEAD"})
# Headers that announce a request body: such a request takes the full stack (body limit).
BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding"})


def probe_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    """The response headers of a health body, as ``health/router.py`` sends them."""
    return [
        (b"content-length", str(len(body)).encode("latin-1")),
        (b"content-type", HEALTH_MEDIA_TYPE.encode("latin-1")),
        (b"cache-control", b"no-store"),
    ]


class ProbeFastPath:
    """Pure ASGI: answers ``LIVE_PATH`` and cached ``READY_PATH`` probes; passes the rest on.

    Args:
        app: the full middleware stack.
        state: where the lifespan puts ``health`` (``HealthChecks``); readiness takes
            the stack until it is there.
        metrics: the service's metrics.
        request_id_header: the request ID header (``X-Request-ID``).
        live_body: the liveness body, encoded once.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: object,
        metrics: Metrics,
        request_id_header: str,
        live_body: bytes,
    ) -> None:
        self.app = app
        self.state = state
        self.metrics = metrics
        self.request_id_header = request_id_header.lower().encode("latin-1")
        self.live_body = live_body
        self.live_headers = probe_headers(live_body)
        self._ready: tuple[bytes, list[tuple[bytes, bytes]]] = (b"", [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if (
            (path != LIVE_PATH and path != READY_PATH)
            or scope["type"] != "http"
            or scope["method"] not in PROBE_METHODS
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        if path == LIVE_PATH:
            body, headers = self.live_body, self.live_headers
        else:
            cached = self._cached_readiness()
            if cached is None:
                await self.app(scope, receive, send)
                return
            body, headers = cached
        request_id = None
        for name, value in scope["headers"]:
            if name in BODY_HEADERS:
                await self.app(scope, receive, send)
                return
            if name == self.request_id_header:
                request_id = value.decode("latin-1")
        if not request_id or not is_valid_uuid4(request_id):
            request_id = uuid4().hex
        correlation_id.set(request_id)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*headers, (self.request_id_header, request_id.encode("latin-1"))],
            }
        )
        await send(
            {"type": "http.response.body", "body": body if scope["method"] == "GET" else b""}
        )
        self.metrics.observe_request(scope["method"], path, 200, time.perf_counter() - started)

    def _cached_readiness(self) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
        checks: HealthChecks | None = getattr(self.state, "health", None)
        rendered = checks.cached_readiness() if checks is not None else None
        if rendered is None or rendered.status is Status.FAIL:
            return None
        if self._ready[0] is not rendered.body:
            self._ready = (rendered.body, probe_headers(rendered.body))
        return self._ready
