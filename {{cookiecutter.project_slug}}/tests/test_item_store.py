"""This bake's items store, through the ``ItemStore`` Protocol, on the real PostgreSQL.

The same test for every ORM: what the routes and the jobs rely on, ORM-free.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from {{ cookiecutter.package_name }}.items.contract import ItemStore
from {{ cookiecutter.package_name }}.items.schemas import ItemCreate
from {{ cookiecutter.package_name }}.items.store import open_item_store

from .database import isolated


async def test_create_get_list_and_delete(postgres_app: FastAPI) -> None:
    async with isolated(postgres_app) as database, open_item_store(database) as opened:
        store: ItemStore = opened
        first = await store.create(ItemCreate(name="first", description="blue"))
        second = await store.create(ItemCreate(name="second"))
        assert second.id > first.id
        assert await store.get(first.id) == first
        assert [item.name for item in await store.list(limit=10, offset=0)] == ["first", "second"]
        assert await store.list(limit=1, offset=1) == [second]
        assert await store.delete(second.id) is True
        assert await store.delete(second.id) is False
        assert await store.get(second.id) is None
        assert await store.list(limit=10, offset=0) == [first]


async def test_delete_created_before_deletes_strictly_older_items_and_counts_them(
    postgres_app: FastAPI,
) -> None:
    async with isolated(postgres_app) as database, open_item_store(database) as opened:
        store: ItemStore = opened
        item = await store.create(ItemCreate(name="dated"))
        assert item.created_at.utcoffset() == timedelta(0)
        assert await store.delete_created_before(item.created_at) == 0
        assert await store.get(item.id) == item
        just_after = item.created_at + timedelta(microseconds=1)
        assert await store.delete_created_before(just_after) == 1
        assert await store.get(item.id) is None
        assert await store.delete_created_before(just_after) == 0
