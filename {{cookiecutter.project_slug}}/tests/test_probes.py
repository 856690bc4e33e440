"""The probes' fast path: the routes' answers, request IDs and metrics, and when it steps aside."""

from __future__ import annotations

import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }}.health import HealthChecks
from {{ cookiecutter.package_name }}.main import create_app

from .conftest import app_client, make_settings

# A request with a body header takes the whole stack and the route.
THROUGH_THE_STACK = {"content-length": "0"}
COMPARED_HEADERS = ("content-type", "content-length", "cache-control")


def requests_counted(metrics_text: str, method: str, route: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "http_requests_total" and sample.labels == {
                "method": method,
                "route": route,
                "status": "200",
            }:
                return sample.value
    return 0.0


async def test_live_answers_as_the_route_with_request_id_and_metrics(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/metrics")).text
    fast = await client.get("/health/live")
    head = await client.head("/health/live")
    routed = await client.get("/health/live", headers=THROUGH_THE_STACK)
    after = (await client.get("/metrics")).text

    assert fast.status_code == head.status_code == routed.status_code == 200
    assert fast.content == routed.content
    assert head.content == b""
    for name in COMPARED_HEADERS:
        assert fast.headers[name] == routed.headers[name] == head.headers[name], name
    for response in (fast, head, routed):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    for method, increase in (("GET", 2), ("HEAD", 1)):
        counted = requests_counted(after, method, "/health/live")
        assert counted - requests_counted(before, method, "/health/live") == increase


async def test_a_valid_request_id_is_kept_and_an_invalid_one_replaced(
    client: httpx.AsyncClient,
) -> None:
    given = "0b1e6d2f3c4a4b5c8d9e0f1a2b3c4d5e"
    kept = await client.get("/health/live", headers={"X-Request-ID": given})
    assert kept.headers["x-request-id"] == given
    replaced = await client.get("/health/live", headers={"X-Request-ID": "not-a-request-id"})
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])


async def test_cached_readiness_is_answered_without_running_the_checks(
    postgres_url: str,
) -> None:
    app = create_app(make_settings(postgres_url, health_cache_ttl=60.0))
    async with app.router.lifespan_context(app), app_client(app) as http:
        routed = await http.get("/health/ready")
        checks: HealthChecks = app.state.health
        assert checks.cached_readiness() is checks.last_readiness is not None

        async def no_run(*, readiness_only: bool) -> list[object]:
            raise AssertionError("the fast path runs no check")

        run = checks.run
        checks.run = no_run  # type: ignore[method-assign,assignment]
        fast = await http.get("/health/ready")
        checks.run = run  # type: ignore[method-assign]
        # A scrape runs the checks (through their cache) for the state series.
        metrics = (await http.get("/metrics")).text
    assert fast.status_code == routed.status_code == 200
    assert fast.content == routed.content
    for name in COMPARED_HEADERS:
        assert fast.headers[name] == routed.headers[name], name
    assert requests_counted(metrics, "GET", "/health/ready") == 2


async def test_failing_readiness_takes_the_route_and_its_503_headers(refused_port: int) -> None:
    url = f"postgresql://postgres@127.0.0.1:{refused_port}/postgres"
    app = create_app(make_settings(url, health_cache_ttl=60.0))
    async with app.router.lifespan_context(app), app_client(app) as http:
        for _ in range(2):
            ready = await http.get("/health/ready")
            assert ready.status_code == 503
            assert ready.headers["retry-after"]
            assert 'rel="status"' in ready.headers["link"]
        assert app.state.health.cached_readiness() is not None, "cached, yet not served fast"


async def test_readiness_is_checked_again_once_its_cache_expires(postgres_url: str) -> None:
    app = create_app(make_settings(postgres_url, health_cache_ttl=0.0))
    async with app.router.lifespan_context(app), app_client(app) as http:
        assert (await http.get("/health/ready")).status_code == 200
        assert app.state.health.cached_readiness() is None
