"""The items in SQLAlchemy: ``DatabaseItemStore``, an ``ItemStore`` on one session.

Routes get one on the request's session (``database_item_store``, through
``SessionDep``); jobs open one on the service's database (``open_item_store``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db import Database, SessionDep
from .contract import Fence
from .models import Item
from .schemas import ItemCreate, ItemRead


class DatabaseItemStore:
    """The ``items`` table through one ``AsyncSession``; each change is committed."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, item: ItemCreate) -> ItemRead:
        row = Item(name=item.name, description=item.description)
        self.session.add(row)
        await self.session.commit()
        # created_at is the server's: read it back.
        await self.session.refresh(row)
        return ItemRead.model_validate(row)

    async def get(self, item_id: int) -> ItemRead | None:
        row = await self.session.get(Item, item_id)
        return None if row is None else ItemRead.model_validate(row)

    async def list(self, *, limit: int, offset: int) -> Sequence[ItemRead]:
        query = select(Item).order_by(Item.id).limit(limit).offset(offset)
        rows = await self.session.scalars(query)
        return [ItemRead.model_validate(row) for row in rows]

    async def delete(self, item_id: int) -> bool:
        return await self._delete_where(Item.id == item_id) > 0

    async def delete_created_before(self, cutoff: datetime, *, fence: Fence | None = None) -> int:
        return await self._delete_where(Item.created_at < cutoff, fence=fence)

    async def _delete_where(self, condition: Any, *, fence: Fence | None = None) -> int:
        # A fence that raises leaves the transaction open, uncommitted: closing the
        # session (the request's or open_item_store's) rolls it back.
        if fence is not None:
            await fence(self.session)
        # No ORM objects are loaded for this: nothing to synchronise after the DELETE.
        result = await self.session.execute(
            delete(Item).where(condition), execution_options={"synchronize_session": False}
        )
        await self.session.commit()
        # Session.execute is typed for SELECT; a DELETE's result is a CursorResult.
        return cast("CursorResult[Any]", result).rowcount


def database_item_store(session: SessionDep) -> DatabaseItemStore:
    """FastAPI dependency: the items on the request's session."""
    return DatabaseItemStore(session)


@asynccontextmanager
async def open_item_store(database: Database) -> AsyncIterator[DatabaseItemStore]:
    """The items on a session of ``database`` of the block's own (for jobs), closed at its end."""
    async with database.sessionmaker() as session:
        yield DatabaseItemStore(session)
