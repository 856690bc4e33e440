"""Create the ``items`` table (and Aerich's history table).

Aerich writes SQL for one database; the service runs on PostgreSQL and, in
development, on SQLite, so this first migration carries both. Later migrations
written by ``aerich migrate`` against PostgreSQL only need the same ``if`` when
they must also run on SQLite.
"""

from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True

POSTGRESQL = """
CREATE TABLE IF NOT EXISTS "items" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "name" VARCHAR(200) NOT NULL,
    "description" VARCHAR(2000),
    "created_at" TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS "idx_items_created_5b255d" ON "items" ("created_at");
CREATE TABLE IF NOT EXISTS "aerich" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "version" VARCHAR(255) NOT NULL,
    "app" VARCHAR(100) NOT NULL,
    "content" JSONB NOT NULL
);
"""

SQLITE = """
CREATE TABLE IF NOT EXISTS "items" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    "name" VARCHAR(200) NOT NULL,
    "description" VARCHAR(2000),
    "created_at" TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS "idx_items_created_5b255d" ON "items" ("created_at");
CREATE TABLE IF NOT EXISTS "aerich" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    "version" VARCHAR(255) NOT NULL,
    "app" VARCHAR(100) NOT NULL,
    "content" JSON NOT NULL
);
"""


async def upgrade(db: BaseDBAsyncClient) -> str:
    if db.capabilities.dialect == "sqlite":
        return SQLITE
    return POSTGRESQL


async def downgrade(db: BaseDBAsyncClient) -> str:
    return 'DROP TABLE IF EXISTS "items";'


MODELS_STATE = (
    "eJztlVFv2jAUhf9KlCcmbVVh0FZ7SxlTmQZMJdqmTpNlEhMsHDtNnLWo47/P10lwSCCCae"
    "o2tCfCucfx9Zfknic7FD5hydlQktB+Yz3ZHIdEXWzpLy0bR5FRQZB4xrSRKodW8CyRMfak"
    "EueYJURJPkm8mEaSCq5UnjIGovCUkfLASCmn9ylBUgRELkisCl+/KZlynzySpPgbLdGcEu"
    "Zv9Ul92FvrSK4irQ25fKeNsNsMeYKlITfmaCUXgm/clEtQA8JJjCWB28s4hfahu/yYxYmy"
    "To0la7G0xidznDJZOu4MGc1GaDxx0XTgImQfAcgTHOCqVhN9+gBaeNVpdy+7V68vulfKot"
    "vcKJfrbGsDJluo8Yxde63rWOLMoRkbqPq3hrW/wPFuroW/Qla1XCVbcGxCWwiGrXmfngNu"
    "iB8RIzyQCyB6ft6A8pNz279xblvK9QK2FOoDyD6LcV7qZDXgbfiWOzsCc2XZL9HOX9O/Fv"
    "aBtBtx13h7MQEiCMs67reqImlIdiPfXlkh7udLz4qL3/O2P+skUefzJ5yt8n0b6LvD0WDq"
    "OqOPsF2YJPdM43PcAVQ6Wl1V1NZF5TltbmJ9Hro3Fvy17ibjgaYrEhnEekfjc+9s6AmnUi"
    "AuHhD2S4gKtcC4hpiYL0szDYQZ9pYPOPZRrSI6Yp+3Xgo7YVXBHAf6kQFcaDNPTYfE1Fvs"
    "ytO80pio2Hj+R+qpROp3EidHjvvSklMM1l7vkFHf6+2f9FDbHvTwUR1BOLefIN32QUHabs"
    "jR9o4YFVwSviND308n4z35aZZUw5N60vphMZrUZsU/QLsBLsDYisiCaWvkfKni7n+YXFez"
    "D25wrdD/0TBb/wT5IXq+"
)
