"""What the items routes and jobs need from a store of items: ``ItemStore``.

Each ORM has its own ``store.py`` (``DatabaseItemStore``, on that ORM's models);
everything above it, the routes (``router.py``), the jobs and, with Redis, the
read-through ``CachedItemStore`` (``cache.py``), is written once against this
Protocol. mypy checks each store against it where it is used as one: the routes'
``router.item_store``, and the Redis layer that wraps it.

Items cross this boundary as ``ItemRead`` (``schemas.py``), never as ORM objects,
so nothing above a store knows which ORM it runs on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

from ..db import Transaction
from .schemas import ItemCreate, ItemRead

Fence = Callable[[Transaction], Awaitable[None]]
"""A check run first in a transaction that raises to roll it back (``JobContext.fence``)."""


class ItemStore(Protocol):
    """The ``items`` table. A change is committed by the time its method returns.

    Raises (every method): the database's errors as they are; those meaning an
    outage (``db.database_unavailable``) become a 503 when raised from a route.
    """

    async def create(self, item: ItemCreate) -> ItemRead:
        """Insert ``item``; returns it with its new ``id`` and ``created_at`` (UTC)."""
        ...

    async def get(self, item_id: int) -> ItemRead | None:
        """The item ``item_id``, or ``None`` when there is none."""
        ...

    async def list(self, *, limit: int, offset: int) -> Sequence[ItemRead]:
        """At most ``limit`` items by ascending ``id``, skipping the first ``offset``."""
        ...

    async def delete(self, item_id: int) -> bool:
        """Delete the item ``item_id``; ``False`` when there was none."""
        ...

    async def delete_created_before(self, cutoff: datetime, *, fence: Fence | None = None) -> int:
        """Delete the items created strictly before ``cutoff`` (timezone-aware); returns how many.

        ``fence`` is awaited first, inside the DELETE's own transaction and with it
        (``JobContext.fence``): when it raises, the transaction rolls back, nothing is
        deleted and its error propagates.
        """
        ...


ItemStoreLayer = Callable[[ItemStore], ItemStore]
"""A store around a store (a cache): the lifespan lists the app's layers in
``app.state.item_store_layers``, innermost first, and each request's store is the
database's inside them."""
