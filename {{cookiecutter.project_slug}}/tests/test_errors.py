"""Every 503 carries Retry-After and the status page, and leaks no error text."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, HTTPException

from {{ cookiecutter.package_name }}.main import create_app

from .conftest import app_client, make_settings

STATUS_PAGE = "https://status.example.test/"
SECRET_PASSWORD = "hunter2-s3cret"
SECRET_USER = "leaky_user"


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
