"""``/items``: create, list, get and delete, through the request's ``ItemStore``.

The store is the database's (``store.py``) inside the app's layers
(``app.state.item_store_layers``, set by the lifespan: with Redis, the read-through
cache of ``cache.py``). The routes see only the Protocol (``contract.py``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status

from .contract import ItemStore, ItemStoreLayer
from .schemas import MAX_ID, ItemCreate, ItemRead
from .store import DatabaseItemStore, database_item_store

# Ids and offsets beyond the id column's range answer 422, not a driver error.
ItemId = Annotated[int, Path(ge=1, le=MAX_ID)]


def item_store(
    request: Request, store: Annotated[DatabaseItemStore, Depends(database_item_store)]
) -> ItemStore:
    """FastAPI dependency: the request's store, the database's inside the app's layers."""
    layers: list[ItemStoreLayer] = request.app.state.item_store_layers
    layered: ItemStore = store
    for layer in layers:
        layered = layer(layered)
    return layered


ItemStoreDep = Annotated[ItemStore, Depends(item_store)]

router = APIRouter(prefix="/items", tags=["items"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_item(payload: ItemCreate, store: ItemStoreDep, response: Response) -> ItemRead:
    item = await store.create(payload)
    # A path, not a URL: behind a TLS proxy the scheme and host the client used are not ours.
    response.headers["Location"] = router.url_path_for("get_item", item_id=str(item.id))
    return item


@router.get("")
async def list_items(
    store: ItemStoreDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> list[ItemRead]:
    return [*await store.list(limit=limit, offset=offset)]


@router.get("/{item_id}")
async def get_item(item_id: ItemId, store: ItemStoreDep) -> ItemRead:
    item = await store.get(item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Item not found")
    return item


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_item(item_id: ItemId, store: ItemStoreDep) -> Response:
    if not await store.delete(item_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Item not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
