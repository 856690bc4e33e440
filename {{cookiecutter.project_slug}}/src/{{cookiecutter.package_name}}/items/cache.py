"""``CachedItemStore``: an ``ItemStore`` reading items through Redis for ``ITEMS_CACHE_TTL`` s.

Redis is only a cache here: when it cannot answer, a read goes to the store
underneath (one line is logged), and the readiness check reports ``warn`` rather
than taking the pod out of service (unless ``REDIS_REQUIRED``).

A delete must never be followed by a stale read, so the entry is dropped twice:
before the store's delete (if Redis cannot drop it, the delete is refused with
``DependencyUnavailable``, a 503, and nothing changes) and again after it (drops
what a read running alongside the delete may have cached in between). Rows deleted
around the cache (``delete_created_before``: the ``cleanup_items`` job, a manual
``DELETE``) may be served until their entry expires: keep the TTL short.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import DependencyUnavailable
from .contract import Fence, ItemStore
from .schemas import ItemCreate, ItemRead

logger = logging.getLogger(__name__)

# Errors that mean "Redis cannot be reached right now" (each command is bounded by
# REDIS_TIMEOUT): reads go around them, a delete is refused with a 503.
REDIS_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)

# Keys are namespaced by service, so services sharing a Redis database do not collide.
KEY_PREFIX = "{{ cookiecutter.project_slug }}:items:"


class CachedItemStore:
    """``store``'s items, those read by id kept in Redis as the JSON the API returns."""

    def __init__(self, store: ItemStore, redis: Redis, *, ttl: float) -> None:
        self.store = store
        self.redis = redis
        self.ttl_ms = int(ttl * 1000)

    async def create(self, item: ItemCreate) -> ItemRead:
        # Nothing cached: most items created are not read back at once.
        return await self.store.create(item)

    async def get(self, item_id: int) -> ItemRead | None:
        """From Redis when cached; else from the store, then cached (a miss is not)."""
        try:
            cached = await self.redis.get(f"{KEY_PREFIX}{item_id}")
        except REDIS_UNAVAILABLE_ERRORS as error:
            logger.warning("items cache read skipped: %s", type(error).__name__)
            return await self.store.get(item_id)
        if cached is not None:
            return ItemRead.model_validate_json(cached)
        found = await self.store.get(item_id)
        if found is not None:
            await self._put(found)
        return found

    async def list(self, *, limit: int, offset: int) -> Sequence[ItemRead]:
        return await self.store.list(limit=limit, offset=offset)

    async def delete(self, item_id: int) -> bool:
        """Drop the entry, delete from the store, drop the entry again.

        Raises:
            DependencyUnavailable: Redis did not drop the entry before the delete;
                nothing was deleted.
        """
        try:
            await self.redis.delete(f"{KEY_PREFIX}{item_id}")
        except REDIS_UNAVAILABLE_ERRORS as error:
            raise DependencyUnavailable("redis") from error
        deleted = await self.store.delete(item_id)
        try:
            await self.redis.delete(f"{KEY_PREFIX}{item_id}")
        except REDIS_UNAVAILABLE_ERRORS as error:
            # Only a read racing the delete can have cached the row since the first drop;
            # it expires within ITEMS_CACHE_TTL.
            logger.warning("items cache entry %s not dropped: %s", item_id, type(error).__name__)
        return deleted

    async def delete_created_before(self, cutoff: datetime, *, fence: Fence | None = None) -> int:
        # The ids are not known here: their entries expire within ITEMS_CACHE_TTL.
        return await self.store.delete_created_before(cutoff, fence=fence)

    async def _put(self, item: ItemRead) -> None:
        try:
            await self.redis.set(f"{KEY_PREFIX}{item.id}", item.model_dump_json(), px=self.ttl_ms)
        except REDIS_UNAVAILABLE_ERRORS as error:
            logger.warning("items cache write skipped: %s", type(error).__name__)
