"""``GET /metrics``: job series, HTTP requests by route template and status, the port of its own."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.scheduling import default_jobs

from .conftest import app_client, make_settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient,
) -> None:
    before = await scrape(client)
    for item_id in (123456, 123457):
        assert (await client.get(f"/items/{item_id}")).status_code == 404
    assert (await client.get("/no/such/page")).status_code == 404
    after = await scrape(client)

    by_template = {"method": "GET", "route": "/items/{item_id}", "status": "404"}
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    for name, labels, increase in [
        ("http_requests_total", by_template, 2),
        ("http_request_duration_seconds_count", by_template, 2),
        ("http_requests_total", unmatched, 1),
    ]:
        assert value(after, name, **labels) - value(before, name, **labels) == increase
    routes = {dict(labels).get("route") for _, labels in after}
    assert "/items/123456" not in routes, "raw paths would make unbounded series"


async def test_job_series_exist_before_the_first_run(client: httpx.AsyncClient) -> None:
    samples = await scrape(client)
    series = {(name, dict(labels).get("outcome")) for name, labels in samples}
    for outcome in ("success", "failure", "cancelled"):
        assert ("job_runs_total", outcome) in series
    for outcome in ("success", "failure", "dropped"):
        assert ("heartbeat_pings_total", outcome) in series
    for job in (job.id for job in default_jobs()):
        assert value(samples, "job_runs_total", job=job, outcome="failure") == 0
        assert ("job_duration_seconds_count", (("job", job),)) in samples


async def test_an_unknown_method_is_counted_as_other(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    for method in ("FOO", "BAR", "BAZ"):
        await client.request(method, "/items")
    after = await scrape(client)
    methods = {dict(labels).get("method") for _, labels in after}
    assert not methods & {"FOO", "BAR", "BAZ"}, "invented methods would make unbounded series"
    labels = {"method": "other", "route": "/items", "status": "405"}
    increase = value(after, "http_requests_total", **labels) - value(
        before, "http_requests_total", **labels
    )
    assert increase == 3


async def test_metrics_port_serves_metrics_apart_from_the_api(
    postgres_url: str, unused_port: int
) -> None:
    app = create_app(make_settings(postgres_url, metrics_port=unused_port))
    async with app.router.lifespan_context(app), app_client(app) as http:
        assert (await http.get("/metrics")).status_code == 404
        async with httpx.AsyncClient() as scraper:
            response = await scraper.get(f"http://127.0.0.1:{unused_port}/metrics")
        assert response.status_code == 200
        assert "job_runs_total" in response.text
    # Stopped with the app: nothing listens there any more.
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", unused_port)
