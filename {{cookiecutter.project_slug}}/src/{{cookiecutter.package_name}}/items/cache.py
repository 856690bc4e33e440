"""``GET /items/{id}`` answers from Redis for ``ITEMS_CACHE_TTL`` seconds.

Redis is only a cache here: when it cannot answer, a read goes to the database
(``get`` and ``put`` log one line and carry on), and the readiness check reports
``warn`` rather than taking the pod out of service (unless ``REDIS_REQUIRED``).

A delete must never be followed by a stale read, so the route invalidates the
entry twice: before the database delete (``forget_or_fail``: if Redis cannot drop
the entry, the delete is refused with a 503 and nothing changes) and again after
the commit (``forget``: drops what a read running alongside the delete may have
cached in between). Rows deleted outside the API (the ``cleanup_items`` job, a
manual ``DELETE``) may be served until the entry expires: keep the TTL short.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request

from ..cache import REDIS_UNAVAILABLE_ERRORS, RedisDep
from ..settings import Settings
from .schemas import ItemRead

logger = logging.getLogger(__name__)

# Keys are namespaced by service, so services sharing a Redis database do not collide.
KEY_PREFIX = "{{ cookiecutter.project_slug }}:items:"


class ItemCache:
    """Items by id in Redis, as the JSON the API returns."""

    def __init__(self, redis: RedisDep, request: Request) -> None:
        settings: Settings = request.app.state.settings
        self.redis = redis
        self.ttl_ms = int(settings.items_cache_ttl * 1000)

    async def get(self, item_id: int) -> ItemRead | None:
        """The cached item, or ``None`` on a miss or when Redis does not answer."""
        try:
            cached = await self.redis.get(f"{KEY_PREFIX}{item_id}")
        except REDIS_UNAVAILABLE_ERRORS as error:
            logger.warning("items cache read skipped: %s", type(error).__name__)
            return None
        if cached is None:
            return None
        return ItemRead.model_validate_json(cached)

    async def put(self, item: ItemRead) -> None:
        """Cache ``item`` for ``ITEMS_CACHE_TTL`` seconds; skipped when Redis does not answer."""
        try:
            await self.redis.set(f"{KEY_PREFIX}{item.id}", item.model_dump_json(), px=self.ttl_ms)
        except REDIS_UNAVAILABLE_ERRORS as error:
            logger.warning("items cache write skipped: %s", type(error).__name__)

    async def forget_or_fail(self, item_id: int) -> None:
        """Drop the item's entry before the item changes.

        Raises:
            redis.exceptions.ConnectionError, redis.exceptions.TimeoutError: Redis did
                not drop it; the change must not go ahead (the 503 handler answers).
        """
        await self.redis.delete(f"{KEY_PREFIX}{item_id}")

    async def forget(self, item_id: int) -> None:
        """Drop the item's entry after the change is committed; a failure is logged."""
        try:
            await self.redis.delete(f"{KEY_PREFIX}{item_id}")
        except REDIS_UNAVAILABLE_ERRORS as error:
            # Only a read racing the delete can have cached the row since forget_or_fail;
            # it expires within ITEMS_CACHE_TTL.
            logger.warning("items cache entry %s not dropped: %s", item_id, type(error).__name__)


ItemCacheDep = Annotated[ItemCache, Depends()]
