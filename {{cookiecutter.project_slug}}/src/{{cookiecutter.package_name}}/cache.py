"""Redis: the client the lifespan opens, its readiness check, the items read through
it (``read_through_redis``) and the FastAPI dependency.

One ``redis.asyncio.Redis`` client with a bounded connection pool
(``REDIS_MAX_CONNECTIONS``) lives on ``app.state.redis`` from start-up to
shutdown. Every command is bounded by ``REDIS_TIMEOUT`` seconds, so a hung Redis
costs a route at most that long: the items cache (``items/cache.py``) then reads
from the database, and what cannot do without Redis raises
``errors.DependencyUnavailable``, a 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from .health import HealthCheck
from .items.cache import CachedItemStore
from .items.contract import ItemStore, ItemStoreLayer
from .settings import Settings


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[Redis]:
    """A client on ``REDIS_URL`` for the block; its pool is closed at the end.

    Nothing connects here: the pool opens connections on first use, so the
    service starts (and reports not ready) while Redis is down.
    """
    client = Redis.from_url(
        settings.redis_dsn,
        max_connections=settings.redis_max_connections,
        socket_connect_timeout=settings.redis_timeout,
        socket_timeout=settings.redis_timeout,
        # A connection idle for this long is pinged before use: a Redis restart
        # then costs no failed request.
        health_check_interval=30,
    )
    try:
        yield client
    finally:
        await client.aclose()


def redis_check(client: Redis, *, required: bool) -> HealthCheck:
    """Readiness check: ``PING`` through the app's own pool.

    Bounded by the health runner's timeout (``HEALTH_CHECK_TIMEOUT``). Unless
    ``required`` (``REDIS_REQUIRED``), a failure is a ``warn``: Redis is only a
    cache, and the pod keeps serving from the database.
    """

    async def ping() -> None:
        await client.ping()

    return HealthCheck(
        key="redis:responseTime", component_type="datastore", run=ping, critical=required
    )


def read_through_redis(client: Redis, settings: Settings) -> ItemStoreLayer:
    """The items layer caching reads by id in ``client`` for ``ITEMS_CACHE_TTL`` seconds."""

    def layer(store: ItemStore) -> ItemStore:
        return CachedItemStore(store, client, ttl=settings.items_cache_ttl)

    return layer


def get_redis(request: Request) -> Redis:
    """FastAPI dependency: the app's Redis client (shared; do not close it)."""
    client: Redis = request.app.state.redis
    return client


RedisDep = Annotated[Redis, Depends(get_redis)]
