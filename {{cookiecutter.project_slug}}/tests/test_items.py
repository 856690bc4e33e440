"""The example resource on the real PostgreSQL, each test rolled back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

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


async def test_ids_and_offsets_beyond_the_column_are_refused(client: httpx.AsyncClient) -> None:
    # The id column is a PostgreSQL integer: the driver would raise on these (a 500).
    for item_id in (2**31, 2**63, 2**64, 0, -1):
        for method in ("GET", "DELETE"):
            response = await client.request(method, f"/items/{item_id}")
            assert response.status_code == 422, (method, item_id, response.text)
    assert (await client.get(f"/items/{2**31 - 1}")).status_code == 404
    for offset in (2**31, 2**63):
        response = await client.get("/items", params={"offset": offset})
        assert response.status_code == 422, (offset, response.text)
    assert (await client.get("/items", params={"offset": 2**31 - 1})).json() == []


async def test_text_with_a_nul_character_is_refused(client: httpx.AsyncClient) -> None:
    for payload in ({"name": "a\x00b"}, {"name": "ok", "description": "\x00"}):
        response = await client.post("/items", json=payload)
        assert response.status_code == 422, response.text
        assert "NUL" in response.text


async def test_timestamps_are_iso_8601_utc_with_a_z(client: httpx.AsyncClient) -> None:
    created = (await client.post("/items", json={"name": "stamped"})).json()
    for item in (created, (await client.get(f"/items/{created['id']}")).json()):
        stamp = item["created_at"]
        assert stamp.endswith("Z"), stamp
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0)
    assert (await client.get("/items")).json()[0]["created_at"] == created["created_at"]


async def test_a_422_quotes_only_an_excerpt_of_the_input(client: httpx.AsyncClient) -> None:
    huge = "x" * 500_000
    response = await client.post("/items", json={"name": huge})
    assert response.status_code == 422
    assert len(response.content) < 1000, len(response.content)
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "name"]
    assert error["msg"] == "String should have at most 200 characters"
    assert error["input"] == "x" * 64 + "..."


async def test_a_body_over_the_limit_is_refused_with_413(client: httpx.AsyncClient) -> None:
    limit = 1024 * 1024  # MAX_REQUEST_BODY_BYTES's default
    declared = await client.post("/items", content=b"[" + b"0," * limit + b"0]")
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit must hold while the body streams in.
        for _ in range(4):
            yield b" " * (limit // 2)

    streamed = await client.post(
        "/items", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413


async def test_non_finite_numbers_and_lone_surrogates_answer_a_422_it_can_encode(
    client: httpx.AsyncClient,
) -> None:
    # Python's json reads NaN, Infinity and lone surrogates; strict JSON in UTF-8 cannot
    # carry them back, so the 422 quoting them once failed to encode (a 500).
    cases = {
        b'{"name": NaN}': "NaN",
        b'{"name": -Infinity}': "-Infinity",
        b'{"name": 1e400}': "Infinity",
        b'{"name": "\\ud800"}': "\\ud800",
        b'{"name": "ok", "description": "a\\udfffb"}': "a\\udfffb",
    }
    for body, excerpt in cases.items():
        response = await client.post(
            "/items", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (body, response.text)
        text = response.content.decode("utf-8")  # strict: a lone surrogate would raise
        (error,) = json.loads(text, parse_constant=refuse_constant)["detail"]
        assert error["input"] == excerpt, (body, error)
    assert (await client.get("/items")).json() == []


def refuse_constant(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")
