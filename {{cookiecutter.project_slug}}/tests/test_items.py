"""The example resource on the real PostgreSQL, each test rolled back."""

from __future__ import annotations

import httpx


async def test_create_then_get(client: httpx.AsyncClient) -> None:
    created = await client.post("/items", json={"name": "widget", "description": "blue"})
    assert created.status_code == 201
    item = created.json()
    assert created.headers["location"] == f"/items/{item['id']}"
    fetched = await client.get(created.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == item


async def test_list_is_paginated(client: httpx.AsyncClient) -> None:
    for index in range(3):
        await client.post("/items", json={"name": f"item {index}"})
    page = await client.get("/items", params={"limit": 2, "offset": 1})
    assert [item["name"] for item in page.json()] == ["item 1", "item 2"]


async def test_each_test_starts_from_an_empty_table(client: httpx.AsyncClient) -> None:
    # The two tests above wrote rows; their transactions were rolled back.
    assert (await client.get("/items")).json() == []


async def test_delete_then_get_is_not_found(client: httpx.AsyncClient) -> None:
    created = (await client.post("/items", json={"name": "doomed"})).json()
    assert (await client.delete(f"/items/{created['id']}")).status_code == 204
    assert (await client.get(f"/items/{created['id']}")).status_code == 404
    assert (await client.delete(f"/items/{created['id']}")).status_code == 404


async def test_invalid_payload_is_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post("/items", json={"name": ""})
    assert response.status_code == 422


async def test_a_trailing_slash_is_not_found_rather_than_redirected(
    client: httpx.AsyncClient,
) -> None:
    # A redirect would name the scheme the app sees: http:// behind a TLS proxy.
    response = await client.get("/items/", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 404
    assert "location" not in response.headers
