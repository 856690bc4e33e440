"""The example jobs, run through the wrapper on the real PostgreSQL.

Written once for every ORM: the items are made and read through the items store.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from {{ cookiecutter.package_name }}.items.schemas import ItemCreate
from {{ cookiecutter.package_name }}.items.store import open_item_store
from {{ cookiecutter.package_name }}.scheduling.runner import RunOutcome

from .conftest import run_job
from .database import isolated

RETENTION = timedelta(days=30)  # ITEMS_RETENTION_DAYS in run_job's settings


async def test_cleanup_items_deletes_only_rows_past_the_retention(postgres_app: FastAPI) -> None:
    async with isolated(postgres_app) as database:
        async with open_item_store(database) as store:
            item = await store.create(ItemCreate(name="dated"))
        # Measured from the fire time: exactly the retention old is not past it yet.
        on_the_day = item.created_at + RETENTION
        at_the_retention = await run_job(database, "cleanup_items", scheduled_at=on_the_day)
        async with open_item_store(database) as store:
            kept = await store.get(item.id)
        just_after = on_the_day + timedelta(microseconds=1)
        past_it = await run_job(database, "cleanup_items", scheduled_at=just_after)
        async with open_item_store(database) as store:
            deleted = await store.get(item.id)
    assert at_the_retention is past_it is RunOutcome.SUCCESS
    assert kept == item
    assert deleted is None
