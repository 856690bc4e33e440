"""Every 503 carries Retry-After and the status page, and leaks no error text; an
outage logs one line per request, and a failing check's cause reaches the log."""

from __future__ import annotations

import logging
import time

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, HTTPException

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.postgres import libpq_dsn

from .conftest import ADMIN_URL, app_client, make_settings

STATUS_PAGE = "https://status.example.test/"
SECRET_PASSWORD = "hunter2-s3cret"
SECRET_USER = "leaky_user"
ERRORS_LOGGER = "{{ cookiecutter.package_name }}.errors"
HEALTH_LOGGER = "{{ cookiecutter.package_name }}.health"


def assert_503_contract(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["link"] == f'<{STATUS_PAGE}>; rel="status"'
    assert response.json()["status_page"] == STATUS_PAGE


def assert_no_leak(response: httpx.Response, port: int) -> None:
    text = response.text
    for secret in (SECRET_PASSWORD, SECRET_USER, "127.0.0.1", str(port), "Error", "refused"):
        assert secret not in text, f"{secret!r} leaked in {text}"


def unreachable_app(port: int) -> FastAPI:
    url = f"postgresql://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:{port}/postgres"
    return create_app(make_settings(url, health_show_details=False))


async def test_failed_readiness_links_the_status_page(refused_port: int) -> None:
    app = unreachable_app(refused_port)
    async with app.router.lifespan_context(app), app_client(app) as http:
        for path in ("/health/ready", "/health"):
            response = await http.get(path)
            assert_503_contract(response)
            assert_no_leak(response, refused_port)


async def test_database_error_in_a_route_becomes_a_503(refused_port: int) -> None:
    app = unreachable_app(refused_port)
    async with app.router.lifespan_context(app), app_client(app) as http:
        response = await http.get("/items")
        assert_503_contract(response)
        assert_no_leak(response, refused_port)
        assert response.json()["detail"] == "Service temporarily unavailable"


async def test_http_exception_503_gets_the_same_contract(refused_port: int) -> None:
    app = unreachable_app(refused_port)

    async def maintenance() -> None:
        raise HTTPException(503, detail="Down for maintenance")

    app.add_api_route("/maintenance", maintenance)
    async with app_client(app) as http:
        response = await http.get("/maintenance")
    assert_503_contract(response)
    assert response.json()["detail"] == "Down for maintenance"


async def test_other_errors_keep_fastapi_behaviour(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/999999")
    assert response.status_code == 404
    assert response.json() == {"detail": "Item not found"}
    assert "retry-after" not in response.headers


async def test_a_statement_past_the_deadline_answers_503_and_logs_one_line(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(postgres_url, database_statement_timeout=0.2)
    app = create_app(settings)
    holder = await asyncpg.connect(libpq_dsn(postgres_url))
    try:
        async with app.router.lifespan_context(app), app_client(app) as http:
            await holder.execute("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            with caplog.at_level(logging.WARNING, logger=ERRORS_LOGGER):
                started = time.monotonic()
                response = await http.get("/items")
                took = time.monotonic() - started
    finally:
        await holder.close()
    assert_503_contract(response)
    assert took < 2.0, f"answered after {took:.2f} s"
    (record,) = [r for r in caplog.records if r.name == ERRORS_LOGGER]
    assert record.exc_info is None, "an expected outage logs no traceback"
    assert "QueryCanceledError" in record.getMessage()
    assert "\n" not in record.getMessage()


async def test_a_failing_check_logs_its_cause_though_the_response_hides_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    missing = ADMIN_URL.rsplit("/", 1)[0] + "/no_such_database_for_this_test"
    app = create_app(make_settings(missing, health_show_details=False))
    async with app.router.lifespan_context(app), app_client(app) as http:
        with caplog.at_level(logging.INFO, logger=HEALTH_LOGGER):
            for _ in range(3):
                response = await http.get("/health/ready")
                assert response.status_code == 503
                assert "no_such_database" not in response.text
    lines = [r.getMessage() for r in caplog.records]
    transitions = [line for line in lines if line.startswith("not ready:")]
    assert len(transitions) == 1, lines
    assert "database:responseTime" in transitions[0]
    assert "InvalidCatalogNameError" in transitions[0]
