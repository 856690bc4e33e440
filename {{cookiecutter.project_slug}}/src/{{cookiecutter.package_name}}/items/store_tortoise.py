"""The items in Tortoise: ``DatabaseItemStore``, an ``ItemStore`` on the app's database.

Each method runs its queries inside the database's Tortoise context (``db.py``),
so routes and jobs need not enter it themselves. Routes get one through
``database_item_store``; jobs open one on the service's database (``open_item_store``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import Request
from tortoise.transactions import in_transaction

from ..db import Database
from .contract import Fence
from .models import Item
from .schemas import ItemCreate, ItemRead


class DatabaseItemStore:
    """The ``items`` table of ``database``; each change is committed as it is made."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def create(self, item: ItemCreate) -> ItemRead:
        with self.database:
            row = await Item.create(name=item.name, description=item.description)
        return ItemRead.model_validate(row)

    async def get(self, item_id: int) -> ItemRead | None:
        with self.database:
            row = await Item.get_or_none(id=item_id)
        return None if row is None else ItemRead.model_validate(row)

    async def list(self, *, limit: int, offset: int) -> Sequence[ItemRead]:
        with self.database:
            rows = await Item.all().order_by("id").limit(limit).offset(offset)
        return [ItemRead.model_validate(row) for row in rows]

    async def delete(self, item_id: int) -> bool:
        with self.database:
            deleted = await Item.filter(id=item_id).delete()
        return deleted > 0

    async def delete_created_before(self, cutoff: datetime, *, fence: Fence | None = None) -> int:
        with self.database:
            async with in_transaction() as connection:
                if fence is not None:
                    await fence(connection)
                return await Item.filter(created_at__lt=cutoff).using_db(connection).delete()


def database_item_store(request: Request) -> DatabaseItemStore:
    """FastAPI dependency: the items of the app's database."""
    database: Database = request.app.state.database
    return DatabaseItemStore(database)


@asynccontextmanager
async def open_item_store(database: Database) -> AsyncIterator[DatabaseItemStore]:
    """The items of ``database`` for the block (for jobs; shaped as SQLAlchemy's, which opens a session)."""
    yield DatabaseItemStore(database)
