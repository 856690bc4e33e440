"""The ``items`` table."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Item(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200)
    description = fields.CharField(max_length=2000, null=True, default=None)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "items"
