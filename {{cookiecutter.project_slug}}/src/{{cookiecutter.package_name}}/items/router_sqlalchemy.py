"""``/items``: create, list, get and delete, through the same pool readiness checks.
{%- if cookiecutter.use_redis %}

``GET /items/{id}`` is served from Redis when cached (``cache.py``); a delete
drops the entry before and after the commit.
"""
{%- else %}"""
{%- endif %}

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from sqlalchemy import select

from ..db import SessionDep
{%- if cookiecutter.use_redis %}
from .cache import ItemCacheDep
{%- endif %}
from .models import Item
from .schemas import MAX_ID, ItemCreate, ItemRead

# Ids and offsets beyond the id column's range answer 422, not a driver error.
ItemId = Annotated[int, Path(ge=1, le=MAX_ID)]

router = APIRouter(prefix="/items", tags=["items"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_item(payload: ItemCreate, session: SessionDep, response: Response) -> ItemRead:
    item = Item(name=payload.name, description=payload.description)
    session.add(item)
    await session.commit()
    await session.refresh(item)
    # A path, not a URL: behind a TLS proxy the scheme and host the client used are not ours.
    response.headers["Location"] = router.url_path_for("get_item", item_id=str(item.id))
    return ItemRead.model_validate(item)


@router.get("")
async def list_items(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> list[ItemRead]:
    rows = await session.scalars(select(Item).order_by(Item.id).limit(limit).offset(offset))
    return [ItemRead.model_validate(item) for item in rows]


@router.get("/{item_id}")
{%- if cookiecutter.use_redis %}
async def get_item(item_id: ItemId, session: SessionDep, cache: ItemCacheDep) -> ItemRead:
    cached = await cache.get(item_id)
    if cached is not None:
        return cached
    item = await session.get(Item, item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Item not found")
    found = ItemRead.model_validate(item)
    await cache.put(found)
    return found
{%- else %}
async def get_item(item_id: ItemId, session: SessionDep) -> ItemRead:
    item = await session.get(Item, item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Item not found")
    return ItemRead.model_validate(item)
{%- endif %}


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
{%- if cookiecutter.use_redis %}
async def delete_item(item_id: ItemId, session: SessionDep, cache: ItemCacheDep) -> Response:
{%- else %}
async def delete_item(item_id: ItemId, session: SessionDep) -> Response:
{%- endif %}
{%- if cookiecutter.use_redis %}
    # Before the delete: if Redis cannot drop the entry, nothing changes (503).
    await cache.forget_or_fail(item_id)
{%- endif %}
    item = await session.get(Item, item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Item not found")
    await session.delete(item)
    await session.commit()
{%- if cookiecutter.use_redis %}
    # And after the commit: a read between the two may have re-cached the row.
    await cache.forget(item_id)
{%- endif %}
    return Response(status_code=status.HTTP_204_NO_CONTENT)
