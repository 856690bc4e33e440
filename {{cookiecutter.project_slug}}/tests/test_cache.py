"""Redis: the items cache on the real Redis, its readiness check, and a real Redis
that stops and comes back.

``TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``, a database of the tests'
own) is the shared Redis, where each session keeps to keys of its own
(``conftest.SESSION_KEY_PREFIX``); the fault test starts a private ``redis-server`` on a free
port. Without them the tests are skipped locally and fail when ``CI=true``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.items import cache
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.settings import (
    ConfigurationError,
    load_settings,
)

from .conftest import SESSION_KEY_PREFIX, app_client, make_settings, wait_until

SLUG = "{{ cookiecutter.project_slug }}"


def unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A client on ``TEST_REDIS_URL``, without this session's keys before the test.

    Only this session's: another session may be testing on the same database.
    """
    # The tests' own database, as make_settings gives it to every test app.
    client = Redis.from_url(make_settings("sqlite://").redis_dsn, socket_connect_timeout=2)
    try:
        async for key in client.scan_iter(match=f"{SESSION_KEY_PREFIX}*"):
            await client.delete(key)
    except Exception as error:
        await client.aclose()
        unavailable(f"Redis at TEST_REDIS_URL is not available: {type(error).__name__}")
    yield client
    await client.aclose()


async def test_get_is_served_from_the_cache_until_a_delete(
    client: httpx.AsyncClient, redis: Redis, postgres_url: str, items_cache_key_prefix: str
) -> None:
    created = (await client.post("/items", json={"name": "cached"})).json()
    key = f"{items_cache_key_prefix}{created['id']}"
    assert await redis.get(key) is None, "a create caches nothing"

    assert (await client.get(f"/items/{created['id']}")).json() == created
    assert await redis.get(key) is not None
    ttl_ms = await redis.pttl(key)
    assert 0 < ttl_ms <= 60_000, "entries expire after ITEMS_CACHE_TTL"

    # A change behind the API's back: the cached copy is what GET answers.
    await redis.set(key, json.dumps({**created, "name": "from redis"}))
    assert (await client.get(f"/items/{created['id']}")).json()["name"] == "from redis"

    assert (await client.delete(f"/items/{created['id']}")).status_code == 204
    assert await redis.get(key) is None, "a delete drops the entry"
    assert (await client.get(f"/items/{created['id']}")).status_code == 404
    assert await redis.get(key) is None, "a miss is not cached"


async def test_each_session_caches_under_a_prefix_of_its_own(
    client: httpx.AsyncClient, redis: Redis, items_cache_key_prefix: str
) -> None:
    # Another session on the same Redis database numbers its items alike: its entry
    # for the same id (under its prefix, or the service's own) must not be served.
    assert items_cache_key_prefix == cache.KEY_PREFIX
    assert items_cache_key_prefix.startswith(SESSION_KEY_PREFIX)
    assert SESSION_KEY_PREFIX.startswith(f"{SLUG}:test-")
    created = (await client.post("/items", json={"name": "ours"})).json()
    others = [f"{SLUG}:items:", f"{SLUG}:test-another-session:items:"]
    # The planted entries expire rather than being deleted here: a session running at
    # the same time plants the same keys (its ids start at 1 too) and checks they stay.
    for prefix in others:
        theirs = json.dumps({**created, "name": "theirs"})
        await redis.set(f"{prefix}{created['id']}", theirs, ex=60)
    assert (await client.get(f"/items/{created['id']}")).json()["name"] == "ours"
    assert await redis.get(f"{items_cache_key_prefix}{created['id']}") is not None
    assert (await client.delete(f"/items/{created['id']}")).status_code == 204
    for prefix in others:
        assert await redis.get(f"{prefix}{created['id']}") is not None, "not ours to drop"


async def test_readiness_and_report_include_redis(postgres_app: FastAPI, redis: Redis) -> None:
    async with app_client(postgres_app) as http:
        ready = await http.get("/health/ready")
        report = await http.get("/health")
    assert ready.status_code == 200
    assert "redis:responseTime" in ready.json()["checks"]
    (check,) = report.json()["checks"]["redis:responseTime"]
    assert check["status"] == "pass"
    assert check["componentType"] == "datastore"


def test_redis_url_is_required_outside_development(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db.example/app")
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(ConfigurationError, match=r"^REDIS_URL is required when ENVIRONMENT="):
        load_settings()
    monkeypatch.setenv("REDIS_URL", "http://cache.example")
    with pytest.raises(ConfigurationError, match="REDIS_URL: must be a redis://"):
        load_settings()
    monkeypatch.setenv("REDIS_URL", "rediss://cache.example:6380/0")
    assert load_settings().redis_dsn == "rediss://cache.example:6380/0"


def test_development_defaults_to_the_local_redis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "none"))
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert load_settings().redis_dsn == "redis://127.0.0.1:6379/0"


class PrivateRedis:
    """A ``redis-server`` of the test's own on a free loopback port, without persistence."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        self.process = subprocess.Popen(  # noqa: S603  (a fixed binary and arguments)
            [
                str(binary),
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_redis_outage_degrades_to_the_database_and_a_warn(
    postgres_url: str, private_redis: PrivateRedis
) -> None:
    settings = make_settings(postgres_url, redis_url=private_redis.url, redis_timeout=0.5)
    app = create_app(settings)
    async with app.router.lifespan_context(app), app_client(app) as http:

        async def redis_check_is(status: str) -> bool:
            report = (await http.get("/health")).json()
            return bool(report["checks"]["redis:responseTime"][0]["status"] == status)

        await wait_until(lambda: redis_check_is("pass"), within=10, message="Redis up")
        created = (await http.post("/items", json={"name": "through a fault"})).json()

        await asyncio.to_thread(private_redis.stop)
        await wait_until(lambda: redis_check_is("warn"), within=5, message="warn with Redis down")
        # Redis is only a cache: the pod stays ready and reads come from the database.
        ready = await http.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "warn"
        assert (await http.get(f"/items/{created['id']}")).json() == created
        # A delete whose cache entry cannot be dropped changes nothing: 503, not a stale read later.
        response = await http.delete(f"/items/{created['id']}")
        assert response.status_code == 503
        assert response.json()["status_page"] == "https://status.example.test/"
        assert "Retry-After" in response.headers

        await asyncio.to_thread(private_redis.start)
        await wait_until(lambda: redis_check_is("pass"), within=10, message="Redis back")
        assert (await http.get(f"/items/{created['id']}")).status_code == 200
        assert (await http.delete(f"/items/{created['id']}")).status_code == 204
        assert (await http.get(f"/items/{created['id']}")).status_code == 404


async def test_readiness_follows_redis_when_it_is_required(
    postgres_url: str, private_redis: PrivateRedis
) -> None:
    settings = make_settings(
        postgres_url, redis_url=private_redis.url, redis_timeout=0.5, redis_required=True
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), app_client(app) as http:

        async def ready_is(status: int) -> bool:
            return (await http.get("/health/ready")).status_code == status

        await wait_until(lambda: ready_is(200), within=10, message="ready with Redis up")
        await asyncio.to_thread(private_redis.stop)
        await wait_until(lambda: ready_is(503), within=5, message="not ready with Redis down")
        assert (await http.get("/health/live")).status_code == 200
        (check,) = (await http.get("/health")).json()["checks"]["redis:responseTime"]
        assert check["status"] == "fail"
        await asyncio.to_thread(private_redis.start)
        await wait_until(lambda: ready_is(200), within=10, message="ready again with Redis back")
