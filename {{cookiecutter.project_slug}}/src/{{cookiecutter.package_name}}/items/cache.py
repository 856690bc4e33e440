"""``GET /items/{id}`` answers from Redis for ``ITEMS_CACHE_TTL`` seconds.

Writes through the API delete the entry (``forget``). Rows deleted outside the API
(the ``cleanup_items`` job, a manual ``DELETE``) may be served until the entry
expires: keep the TTL short.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..cache import RedisDep
from ..settings import Settings
from .schemas import ItemRead

# Keys are namespaced by service, so services sharing a Redis database do not collide.
KEY_PREFIX = "{{ cookiecutter.project_slug }}:items:"


class ItemCache:
    """Items by id in Redis, as the JSON the API returns."""

    def __init__(self, redis: RedisDep, request: Request) -> None:
        settings: Settings = request.app.state.settings
        self.redis = redis
        self.ttl_ms = int(settings.items_cache_ttl * 1000)

    async def get(self, item_id: int) -> ItemRead | None:
        """The cached item, or ``None`` on a miss."""
        cached = await self.redis.get(f"{KEY_PREFIX}{item_id}")
        if cached is None:
            return None
        return ItemRead.model_validate_json(cached)

    async def put(self, item: ItemRead) -> None:
        """Cache ``item`` for ``ITEMS_CACHE_TTL`` seconds."""
        await self.redis.set(f"{KEY_PREFIX}{item.id}", item.model_dump_json(), px=self.ttl_ms)

    async def forget(self, item_id: int) -> None:
        """Drop the item's entry: the next read goes to the database."""
        await self.redis.delete(f"{KEY_PREFIX}{item_id}")


ItemCacheDep = Annotated[ItemCache, Depends()]
