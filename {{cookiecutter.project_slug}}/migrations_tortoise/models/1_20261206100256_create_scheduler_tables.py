"""Create the scheduler's tables: the leader lease and the record of every run.

Written by aerich migrate against PostgreSQL, with the SQLite form added as in
the first migration.
"""

from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True

POSTGRESQL = """
CREATE TABLE IF NOT EXISTS "scheduler_lease" (
    "name" VARCHAR(200) NOT NULL PRIMARY KEY,
    "holder" VARCHAR(200) NOT NULL,
    "epoch" BIGINT NOT NULL,
    "expires_at" TIMESTAMPTZ NOT NULL,
    "renewed_at" TIMESTAMPTZ NOT NULL,
    CONSTRAINT "uid_scheduler_l_name_aaa1b1" UNIQUE ("name", "epoch")
);
CREATE TABLE IF NOT EXISTS "scheduler_runs" (
    "id" BIGSERIAL NOT NULL PRIMARY KEY,
    "registry" VARCHAR(200) NOT NULL,
    "job_id" VARCHAR(63) NOT NULL,
    "run_id" UUID NOT NULL,
    "fire_time" TIMESTAMPTZ,
    "attempt" SMALLINT NOT NULL,
    "epoch" BIGINT NOT NULL,
    "holder" VARCHAR(200) NOT NULL,
    "started_at" TIMESTAMPTZ NOT NULL,
    "ended_at" TIMESTAMPTZ,
    "outcome" VARCHAR(16),
    "error_type" VARCHAR(200),
    "duration" DOUBLE PRECISION,
    CONSTRAINT "uid_scheduler_r_registr_55c02b" UNIQUE ("registry", "job_id", "fire_time", "attempt")
);
CREATE INDEX IF NOT EXISTS "idx_scheduler_r_registr_39ab58"
    ON "scheduler_runs" ("registry", "job_id", "started_at");
"""

SQLITE = """
CREATE TABLE IF NOT EXISTS "scheduler_lease" (
    "name" VARCHAR(200) NOT NULL PRIMARY KEY,
    "holder" VARCHAR(200) NOT NULL,
    "epoch" BIGINT NOT NULL,
    "expires_at" TIMESTAMP NOT NULL,
    "renewed_at" TIMESTAMP NOT NULL,
    CONSTRAINT "uid_scheduler_l_name_aaa1b1" UNIQUE ("name", "epoch")
);
CREATE TABLE IF NOT EXISTS "scheduler_runs" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    "registry" VARCHAR(200) NOT NULL,
    "job_id" VARCHAR(63) NOT NULL,
    "run_id" CHAR(36) NOT NULL,
    "fire_time" TIMESTAMP,
    "attempt" SMALLINT NOT NULL,
    "epoch" BIGINT NOT NULL,
    "holder" VARCHAR(200) NOT NULL,
    "started_at" TIMESTAMP NOT NULL,
    "ended_at" TIMESTAMP,
    "outcome" VARCHAR(16),
    "error_type" VARCHAR(200),
    "duration" REAL,
    CONSTRAINT "uid_scheduler_r_registr_55c02b" UNIQUE ("registry", "job_id", "fire_time", "attempt")
);
CREATE INDEX IF NOT EXISTS "idx_scheduler_r_registr_39ab58"
    ON "scheduler_runs" ("registry", "job_id", "started_at");
"""


async def upgrade(db: BaseDBAsyncClient) -> str:
    if db.capabilities.dialect == "sqlite":
        return SQLITE
    return POSTGRESQL


async def downgrade(db: BaseDBAsyncClient) -> str:
    return 'DROP TABLE IF EXISTS "scheduler_runs"; DROP TABLE IF EXISTS "scheduler_lease";'


MODELS_STATE = (
    "eJztml1v4jgUhv+KlSsqdaoCBbpzBy2zw4rCCOjMakZVZBID3iY2dZylaLb/fW0nIR8kaa"
    "gKBcQVcD5i53Hs88b4t2ZTE1nORYcjW/sMfmsE2kh8idnPgQbn89AqDRyOLRWIRYSywLHD"
    "GTS4ME6g5SBhMpFjMDznmBJhJa5lSSM1RCAm09DkEvzkIp3TKeIzxITj14MwY2KiZ+QEP+"
    "eP+gQjy4z1E5uybWXX+XKubB3Cv6hA2dpYN6jl2iQMni/5jJJVNCZcWqeIIAY5kpfnzJXd"
    "l73zbzO4I6+nYYjXxUiOiSbQtXjkdsd6aNN0vdcf6cP2SNe1DQAZlEi4oquOuvup7MKnSv"
    "mqcXVdrV9dixDVzZWl8eI1HYLxEhWe3kh7UX7IoRehGIdQ1eca1psZZOlcg/gEWdHlJNmA"
    "Yx7awBCyDZ+nXcC14bNuITLlM0n08jIH5ffm4OZrc1ASUWeySSomgDcter6r4vkk75BvtG"
    "cbYE6kvYm2/5juLeyCtHNxr/E2GJJEdMjXcd8KD8c2Skcez0wQN/3Ui+DL+zztO11JxP2Z"
    "fWIt/XZz6I86d+3hqHn3TTZnO86TpfA1R23pqSjrMmEt1RPjtLoI+NEZfQXyJ/jZ77UVXe"
    "rwKVMthnGjn5rsE3Q51Qld6NCMIAqsAcYXWSYmj5E1TRrG0HhcQGbqax5aoVmx6y67Yict"
    "kMCpGjIJV3bTr5pDY4ZM10Ksi6CD0upqIiK3wjpBrJgoQfBrtVbrEwQYXYA5YoChKRbxy8"
    "9gMaNAXMR0zoGDiYGEARszgCxkyERQEuUXoDk1ZmcAEhO4hGNLBCFyoSWep+20kKIEfq3K"
    "i0rTHopKg4+tYh8rELZVw7I1w4xaJmKb8A4zTrqhmG7wJsAa4haeZkreVcrrqvcQGHvC94"
    "9KpVptVC6r9evaVaNRu75cKeB1V54UbnX+lGo4NgKBPI5gf55jUZfeIB/imbuRDzsdkAPR"
    "CwGTNcEQHWYm0C/epBLjmadh3rth3jddOHBJriqU/oKakLmk2PZLXLC5BNAJgGAi1idQgp"
    "wje85BRSi5T/KKgUfIOQcpQSeSTIxMYGNTRpy9Igjf5/qpcjAQmzLgHzrWgy0gJgL96eW3"
    "t6YVs5IdDpn/mvew0VZTXuk9st2mnRTdbH0ZHbiiCjOac9KYxTRmdEYVoxxmHCHjerUA4n"
    "o1k7B0xQGLxS0V8P195zbjMV5lJAC7LjYvZN4BYs7BqphWPY0Qrf7qTuMwY6v+JpItlvgO"
    "im3P9lUPXbBFxzgo5msjPLShZWWW30ja7t59y9utwdVKo76quvJHXp0d3jW73ZS32dMmwk"
    "dsIpz2x7avXSIyfsNyEM88vcHvdUFAAuFbBjmadyr5+zzC1OUG3ezfm0jK8f0xXq4XWCzL"
    "yREL10rpSqgAxijzEG0AOZ51fJy3c9rDFThSj3p8sSjMkFzRpATnicw6PNI5YG/7961uG3"
    "wbtG86w06/F1+QlFPt0j1ZmCsEg3azKyjvybZuEzFszLSUDV3fc563lQvDmNMJuh2/A2zt"
    "BN2/iDkbnu6KpByj3q/ViqystVr2yip98ZVVTqoNCPvhR0i3XKhulXPqVjnl1BwlHJEUlf"
    "3XsN/LOC4XpiQFNjY4+A9Y2DnELYMcuBJGTFYHTEt3zb+TuG+6/VZSL8sLtD66mL38D/jP"
    "pQI="
)
