"""The example jobs, run through the wrapper on the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import FastAPI

from {{ cookiecutter.package_name }}.items.models import Item
from {{ cookiecutter.package_name }}.scheduling.runner import RunOutcome

from .conftest import run_job
from .database import isolated


async def test_cleanup_items_deletes_only_rows_past_the_retention(postgres_app: FastAPI) -> None:
    fire = datetime(2026, 3, 1, 3, 17, tzinfo=UTC)
    ages = {"expired": timedelta(days=30, minutes=1), "kept": timedelta(days=29, hours=23)}
    async with isolated(postgres_app) as database:
        with database:
            for name, age in ages.items():
                item = await Item.create(name=name)
                # auto_now_add sets created_at on insert: backdate it afterwards.
                await Item.filter(id=item.id).update(created_at=fire - age)
        outcome = await run_job(database, "cleanup_items", scheduled_at=fire)
        with database:
            names = [item.name for item in await Item.all()]
    assert outcome is RunOutcome.SUCCESS
    assert names == ["kept"]
