"""Request and response bodies of the items API, within what the ``items`` columns hold.

- ``id`` is a PostgreSQL ``integer``: ids and offsets beyond ``MAX_ID`` are refused
  (422) before they reach the driver, which would raise on them.
- Text columns cannot hold NUL (PostgreSQL refuses ``\\x00`` in text): refused (422).
- Text must encode as UTF-8: a lone surrogate (``"\\ud800"`` in JSON) is refused (422);
  pydantic refuses it in a ``str`` field but lets it through an optional one.
- ``created_at`` is always written as ISO 8601 in UTC with a ``Z``
  (``2026-11-21T03:17:00.123456Z``), whichever ORM and database produced it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

# Largest value of a PostgreSQL integer column (the items' id).
MAX_ID = 2**31 - 1


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; the service writes UTC only.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso_z(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


Text = Annotated[str, AfterValidator(_storable)]
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc), PlainSerializer(_iso_z, return_type=str)]


class ItemCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=2000)


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    created_at: UtcDatetime
