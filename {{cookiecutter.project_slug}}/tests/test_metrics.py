"""``GET /metrics``: job series, and HTTP requests by route template and status."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }}.scheduling import default_jobs

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
