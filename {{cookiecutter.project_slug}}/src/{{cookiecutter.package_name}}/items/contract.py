"""What the items routes and jobs need from a store of items: ``ItemStore``.

Each ORM has its own ``store.py`` (``DatabaseItemStore``, on that ORM's models);
everything above it, the routes (``router.py``), the jobs and, with Redis, the
read-through cache (``cache.py``), is written once against this Protocol, and mypy
checks every store against it where the routes receive one (``router.item_store``).

Items cross this boundary as ``ItemRead`` (``schemas.py``), never as ORM objects,
so nothing above a store knows which ORM it runs on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from .schemas import ItemCreate, ItemRead


class ItemStore(Protocol):
    """The ``items`` table. Every method commits its own change; none caches.

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

    async def delete_created_before(self, cutoff: datetime) -> int:
        """Delete the items created strictly before ``cutoff`` (timezone-aware); returns how many."""
        ...


ItemStoreLayer = Callable[[ItemStore], ItemStore]
"""A store around a store (a cache): the lifespan lists the app's layers in
``app.state.item_store_layers``, innermost first, and each request's store is the
database's inside them."""
