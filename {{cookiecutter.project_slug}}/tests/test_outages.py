"""Outage noise from the driver, caused for real on the test database."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import asyncpg
import pytest

from {{ cookiecutter.package_name }}.outages import (
    quiet_orphaned_releases,
    report_first_connection,
)
from {{ cookiecutter.package_name }}.postgres import (
    libpq_dsn,
    parse_postgres_url,
)

OUTAGES_LOGGER = "{{ cookiecutter.package_name }}.outages"


async def orphan_a_failing_release(pool: asyncpg.Pool) -> None:
    # The caller is cancelled while asyncpg's shielded release goes on alone; a budget
    # of a microsecond makes that release's reset time out, as a paused server does.
    connection = await pool.acquire()
    await connection.execute("SELECT 1")
    release = asyncio.ensure_future(pool.release(connection, timeout=1e-6))
    await asyncio.sleep(0)
    release.cancel()
    with pytest.raises(asyncio.CancelledError):
        await release
    await asyncio.sleep(0.05)
    gc.collect()  # the orphaned task reports its exception when it is collected


async def test_an_orphaned_release_failure_is_one_warning_line(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    others: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: others.append(context))
    try:
        async with asyncpg.create_pool(libpq_dsn(postgres_url), min_size=1, max_size=1) as pool:
            with caplog.at_level(logging.WARNING), quiet_orphaned_releases(loop):
                await orphan_a_failing_release(pool)
            # The pool still serves: asyncpg replaced the connection it dropped.
            assert await pool.fetchval("SELECT 1") == 1
            unhandled = len(others)
            await orphan_a_failing_release(pool)  # outside the block: passed on as before
    finally:
        loop.set_exception_handler(None)
    warnings = [record for record in caplog.records if "release was cancelled" in record.message]
    assert len(warnings) == 1
    assert warnings[0].exc_info is None
    assert "TimeoutError" in warnings[0].getMessage()
    assert unhandled == 0
    assert len(others) == 1
    assert "never retrieved" in others[0]["message"]


@pytest.mark.parametrize(
    ("database", "says"),
    [
        ("no_such_database_at_start", '"no_such_database_at_start" does not exist on'),
        ("postgres", None),
    ],
)
async def test_the_start_names_an_unreachable_database_in_one_line(
    postgres_url: str, database: str, says: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    server = parse_postgres_url(f"{postgres_url.rsplit('/', 1)[0]}/{database}")
    with caplog.at_level(logging.WARNING, logger=OUTAGES_LOGGER):
        async with report_first_connection(server, connect_timeout=5):
            await asyncio.sleep(1)
    lines = [record.getMessage() for record in caplog.records if record.name == OUTAGES_LOGGER]
    if says is None:
        assert lines == []
        return
    (line,) = lines
    assert f"{says} {server.address}" in line, line
    assert "create it with make db" in line, line
