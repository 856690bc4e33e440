"""Health endpoints for Kubernetes probes and external uptime monitors.

- ``GET /health/live``: liveness. Answers while the event loop does; checks no
  dependency, so a database outage never restarts the pod.
- ``GET /health/ready``: readiness. Runs the checks that gate traffic (the
  database through the app's own pool); 503 when any fails.
- ``GET /health``: the full report for uptime monitors: every check, including
  scheduled jobs, with version and uptime; 200 for pass or warn, 503 for fail.

Bodies follow draft-inadarei-api-health-check-06 (``application/health+json``).
Every route answers ``HEAD`` as well (some uptime monitors use it), and readiness
changing (``pass`` to ``fail`` and back) is logged once, naming the failing checks.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request, Response

from .checks import HealthCheck, HealthChecks, Rendered, one_line
from .model import HEALTH_MEDIA_TYPE, CheckResult, Status, dump, utcnow, worst

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/health", tags=["health"])
# Monitors that check with HEAD must get the same status as with GET.
METHODS = ["GET", "HEAD"]

LIVE_BODY = dump({"status": Status.PASS.value})


def _encoded_response(body: bytes, status: Status) -> Response:
    return Response(
        content=body,
        status_code=503 if status is Status.FAIL else 200,
        media_type=HEALTH_MEDIA_TYPE,
        headers={"Cache-Control": "no-store"},
    )


def _render(
    request: Request, results: list[tuple[HealthCheck, CheckResult]]
) -> tuple[dict[str, Any], Status]:
    show_details: bool = request.app.state.settings.show_health_details
    status = worst(result.status for _, result in results)
    rendered: dict[str, list[dict[str, Any]]] = {}
    for check, result in results:
        rendered.setdefault(check.key, []).append(
            result.render(check.component_type, show_details=show_details)
        )
    return {"status": status.value, "checks": rendered}, status


def _log_readiness(
    previous: Status | None, status: Status, results: list[tuple[HealthCheck, CheckResult]]
) -> None:
    ready = status is not Status.FAIL
    if previous is None:
        if not ready:
            logger.warning("not ready: %s", _failing(results))
    elif ready != (previous is not Status.FAIL):
        if ready:
            logger.info("ready again")
        else:
            logger.warning("not ready: %s", _failing(results))


def _failing(results: list[tuple[HealthCheck, CheckResult]]) -> str:
    # The output is logged whatever HEALTH_SHOW_DETAILS says: it is for operators.
    return "; ".join(
        f"{check.key} ({one_line(result.output)})" if result.output else check.key
        for check, result in results
        if result.status is Status.FAIL
    )


@router.api_route(
    "/live",
    methods=METHODS,
    summary="Liveness: the process answers",
    response_class=Response,
    responses={200: {"content": {HEALTH_MEDIA_TYPE: {}}}},
)
async def live() -> Response:
    return _encoded_response(LIVE_BODY, Status.PASS)


@router.api_route(
    "/ready",
    methods=METHODS,
    summary="Readiness: every dependency needed to serve traffic answers",
    response_class=Response,
    responses={200: {"content": {HEALTH_MEDIA_TYPE: {}}}, 503: {"description": "Not ready"}},
)
async def ready(request: Request) -> Response:
    checks: HealthChecks = request.app.state.health
    results = await checks.run(readiness_only=True)
    # Probes arrive far more often than results change: reuse the encoded body
    # while every result is the same object as when it was encoded.
    last = checks.last_readiness
    if (
        last is not None
        and len(last.results) == len(results)
        and all(old is new for old, (_, new) in zip(last.results, results, strict=True))
    ):
        return _encoded_response(last.body, last.status)
    body, status = _render(request, results)
    if status is Status.FAIL:
        body["status_page"] = str(request.app.state.settings.status_page_url)
    _log_readiness(last.status if last is not None else None, status, results)
    encoded = Rendered(tuple(result for _, result in results), dump(body), status)
    checks.last_readiness = encoded
    return _encoded_response(encoded.body, encoded.status)


@router.api_route(
    "",
    methods=METHODS,
    summary="Full health report for uptime monitors",
    response_class=Response,
    responses={200: {"content": {HEALTH_MEDIA_TYPE: {}}}, 503: {"description": "Failing"}},
)
async def health(request: Request) -> Response:
    checks: HealthChecks = request.app.state.health
    body, status = _render(request, await checks.run(readiness_only=False))
    started_at: float = request.app.state.started_at
    uptime = {
        "componentType": "system",
        "observedValue": round(time.monotonic() - started_at, 3),
        "observedUnit": "s",
        "status": Status.PASS.value,
        "time": utcnow().isoformat(),
    }
    report: dict[str, Any] = {
        "status": body["status"],
        "version": request.app.version.split(".", 1)[0],
        "releaseId": request.app.version,
        "serviceId": request.app.state.service_id,
        "description": request.app.description,
        "checks": {"uptime": [uptime], **body["checks"]},
        "links": {"status": str(request.app.state.settings.status_page_url)},
    }
    if status is Status.FAIL:
        report["status_page"] = str(request.app.state.settings.status_page_url)
    return _encoded_response(dump(report), status)
