"""Liveness, readiness and the full report against real databases and real faults."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from {{ cookiecutter.package_name }}.main import create_app

from .conftest import app_client, make_settings
from .database import migrate

HEALTH_JSON = "application/health+json"


async def test_live_passes(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.headers["content-type"] == HEALTH_JSON
    assert response.json() == {"status": "pass"}


async def test_ready_passes_with_postgres_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "pass"
    (database,) = body["checks"]["database:responseTime"]
    assert database["status"] == "pass"
    assert database["componentType"] == "datastore"
    assert database["observedUnit"] == "ms"
    assert database["observedValue"] >= 0
    assert "time" in database


async def test_full_report_follows_the_health_draft(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == HEALTH_JSON
    body = response.json()
    assert body["status"] == "pass"
    assert body["serviceId"] == "{{ cookiecutter.project_slug }}"
    assert body["releaseId"]
    assert body["links"]["status"] == "https://status.example.test/"
    (uptime,) = body["checks"]["uptime"]
    assert uptime["observedUnit"] == "s"
    assert uptime["observedValue"] >= 0
    assert body["checks"]["database:responseTime"][0]["status"] == "pass"


@pytest.mark.parametrize("fault", ["refused", "hung"])
async def test_ready_fails_fast_while_live_passes_when_database_is_down(
    fault: str, refused_port: int, blackhole_port: int
) -> None:
    port = refused_port if fault == "refused" else blackhole_port
    timeout = 0.5
    app = create_app(
        make_settings(
            f"postgresql://postgres@127.0.0.1:{port}/postgres", health_check_timeout=timeout
        )
    )
    async with app.router.lifespan_context(app), app_client(app) as http:
        for _ in range(3):
            started = time.perf_counter()
            ready = await http.get("/health/ready")
            elapsed = time.perf_counter() - started
            assert ready.status_code == 503
            assert ready.json()["status"] == "fail"
            assert elapsed < timeout + 0.2, f"readiness took {elapsed:.3f} s"
            live = await http.get("/health/live")
            assert live.status_code == 200
        report = await http.get("/health")
        assert report.status_code == 503
        assert report.json()["checks"]["database:responseTime"][0]["status"] == "fail"


async def test_details_show_the_error_only_when_enabled(refused_port: int) -> None:
    url = f"postgresql://postgres@127.0.0.1:{refused_port}/postgres"
    for show_details in (True, False):
        app = create_app(make_settings(url, health_show_details=show_details))
        async with app.router.lifespan_context(app), app_client(app) as http:
            (database,) = (await http.get("/health/ready")).json()["checks"][
                "database:responseTime"
            ]
        assert ("output" in database) is show_details


async def test_sqlite_default_is_ready_and_serves_items(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    await migrate(url)
    app = create_app(make_settings(url))
    async with app.router.lifespan_context(app), app_client(app) as http:
        assert (await http.get("/health/ready")).status_code == 200
        created = await http.post("/items", json={"name": "on sqlite"})
        assert created.status_code == 201
        fetched = await http.get(f"/items/{created.json()['id']}")
        assert fetched.json()["name"] == "on sqlite"


async def test_concurrent_probes_share_one_check_per_period(postgres_url: str) -> None:
    app = create_app(make_settings(postgres_url, health_cache_ttl=60.0))
    async with app.router.lifespan_context(app), app_client(app) as http:
        first = await http.get("/health/ready")
        second = await http.get("/health/ready")
    assert first.json() == second.json(), "a cached result is served within the period"


async def test_every_health_route_answers_head_as_get(client: httpx.AsyncClient) -> None:
    for path in ("/health/live", "/health/ready", "/health"):
        get = await client.get(path)
        head = await client.head(path)
        assert head.status_code == get.status_code == 200, path
        assert head.headers["content-type"] == HEALTH_JSON


async def test_api_docs_are_not_served_in_production(postgres_url: str) -> None:
    app = create_app(make_settings(postgres_url, environment="production"))
    async with app_client(app) as http:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await http.get(path)).status_code == 404, path
