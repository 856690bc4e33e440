"""One reading of ``DATABASE_URL``: the same URL works for the pool, the leader's own
connection and the migrations, or start-up refuses it with one line."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from {{ cookiecutter.package_name }}.db import database_check, open_database
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.postgres import (
    MIGRATION_LOCK_KEY,
    advisory_lock_key,
    libpq_dsn,
    parse_postgres_url,
)
from {{ cookiecutter.package_name }}.scheduling import JobRegistry
from {{ cookiecutter.package_name }}.settings import (
    ConfigurationError,
    Settings,
    load_settings,
)

from .conftest import make_settings, wait_until
from .database import migrate


@pytest.mark.parametrize(
    ("given", "dsn"),
    [
        ("postgres://u:p@db:5432/app", "postgresql://u:p@db:5432/app"),
        ("postgresql+asyncpg://u@db/app?ssl=require", "postgresql://u@db/app?sslmode=require"),
        ("postgresql://u@db/app?sslmode=verify-full", "postgresql://u@db/app?sslmode=verify-full"),
        ("postgresql:///app?host=/run/postgresql", "postgresql:///app?host=%2Frun%2Fpostgresql"),
        ("postgresql://u:p%40ss@db/app", "postgresql://u:p%40ss@db/app"),
    ],
)
def test_urls_are_read_once_into_asyncpg_form(given: str, dsn: str) -> None:
    assert libpq_dsn(given) == dsn
    assert parse_postgres_url(given).url == dsn.replace("postgresql:", "postgresql+asyncpg:", 1)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("postgresql://db/app?sslmode=on", "sslmode='on' must be one of"),
        ("postgresql://db/app?ssl=true", "ssl='true' must be one of"),
        ("postgresql://db/app?prepared_statement_cache_size=0", "unknown query parameter"),
        ("postgresql://db/app?ssl=require&sslmode=require", "given twice"),
        ("postgresql+asyncpg://u:p@db:54x2/app", "its port must be a number from 1 to 65535"),
        ("postgresql://u:p@db:65536/app", "its port 65536 must be from 1 to 65535"),
        ("postgresql://u:p@db:0/app", "its port 0 must be from 1 to 65535"),
        ("postgresql://db/app?port=5x", "its port must be a number"),
        # A password written without "@host" reads as a port, and is not echoed.
        ("postgresql://user:s3cret/app", "its port must be a number"),
    ],
)
def test_bad_query_parameters_stop_start_up_with_one_line(
    given: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_postgres_url(given)
    monkeypatch.setenv("DATABASE_URL", given)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert str(error.value).startswith("DATABASE_URL: ")
    assert "\n" not in str(error.value)
    assert "s3cret" not in str(error.value)


@pytest.mark.parametrize(
    ("given", "address"),
    [
        ("postgresql://u:secret@db.internal/app", "db.internal:5432"),
        ("postgresql://u:secret@db.internal:6432/app", "db.internal:6432"),
        ("postgresql://u:secret@[::1]:5433/app", "[::1]:5433"),
        ("postgresql:///app?host=/run/postgresql&port=5433", "/run/postgresql:5433"),
        ("postgresql:///app", "local socket:5432"),
    ],
)
def test_the_address_names_host_and_port_never_the_password(given: str, address: str) -> None:
    assert parse_postgres_url(given).address == address
    assert parse_postgres_url(given).database == "app"


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_staging_and_production_refuse_a_url_without_a_host(
    environment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVIRONMENT", environment)
    monkeypatch.setenv("DATABASE_URL", "postgresql:///app")
    with pytest.raises(ConfigurationError, match="DATABASE_URL names no host"):
        load_settings()
    assert make_settings("postgresql:///app").database_url == "postgresql+asyncpg:///app"


@pytest.mark.parametrize("query", ["ssl=disable", "sslmode=disable", "sslmode=prefer"])
async def test_ssl_parameters_work_for_the_pool_the_leader_and_the_migrations(
    postgres_url: str, query: str
) -> None:
    url = f"{postgres_url}?{query}"
    settings: Settings = make_settings(url)
    async with open_database(settings) as database:
        await database_check(database).run()
    connection = await asyncpg.connect(libpq_dsn(url), timeout=5)
    try:
        assert await connection.fetchval("SELECT 1") == 1
    finally:
        await connection.close()
    await migrate(url)
    # The leader's lease connection reads the same URL: this process is elected.
    app = create_app(settings, jobs=JobRegistry(f"ssl-{uuid.uuid4().hex[:8]}"))
    async with app.router.lifespan_context(app):
        await wait_until(lambda: app.state.scheduler.is_leader, within=10, message="elected")


def test_lock_keys_are_stable_signed_bigints() -> None:
    assert advisory_lock_key("a") == advisory_lock_key("a") != advisory_lock_key("b")
    assert -(2**63) <= MIGRATION_LOCK_KEY < 2**63
