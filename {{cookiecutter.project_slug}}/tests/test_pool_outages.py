"""SQLAlchemy's pool during an outage, caused for real.

A loopback proxy stands between the pool and the test database; frozen, it holds
every byte and keeps every socket open, as a paused server or a dead network path
does. A pooled connection whose close or reset then times out is dropped by the
pool and logged as one WARNING line, not SQLAlchemy's 30-line ERROR traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from {{ cookiecutter.package_name }}.db import open_database
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import make_settings

POOL_LOGGER = "sqlalchemy.pool"
# asyncpg waits this plus outages.CLIENT_TIMEOUT_MARGIN for a server that does not answer.
STATEMENT_TIMEOUT = 0.1


class FreezingProxy:
    """A TCP proxy on loopback to ``host:port``; after ``freeze()`` nothing gets through."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.thawed = asyncio.Event()
        self.thawed.set()
        self.tasks: list[asyncio.Task[None]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.listen_port = 0

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.listen_port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    def freeze(self) -> None:
        self.thawed.clear()

    def thaw(self) -> None:
        self.thawed.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
        self.writers += [writer, upstream_writer]
        self.tasks += [
            asyncio.create_task(self._pipe(reader, upstream_writer)),
            asyncio.create_task(self._pipe(upstream_reader, writer)),
        ]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self.thawed.wait()
            writer.write(data)
            await writer.drain()
        writer.close()


def through(proxy: FreezingProxy, url: str) -> str:
    """``url`` with the proxy's address in place of the server's."""
    parts = urlsplit(url)
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return parts._replace(netloc=f"{credentials}127.0.0.1:{proxy.listen_port}").geturl()


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[FreezingProxy]:
    parts = urlsplit(postgres_url)
    async with FreezingProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as running:
        yield running


async def close_one_beyond_the_pool_while_frozen(engine: AsyncEngine, proxy: FreezingProxy) -> None:
    # Pool size 1: the first connection returned stays in the pool; the second is
    # beyond it, so the pool closes it, and asyncpg's close waits for a server that
    # does not answer until its command_timeout, then raises TimeoutError.
    kept, beyond = await engine.connect(), await engine.connect()
    for connection in (kept, beyond):
        await connection.execute(text("SELECT 1"))
        await connection.rollback()  # nothing left for the pool's reset to send
    proxy.freeze()
    await kept.close()
    await beyond.close()
    proxy.thaw()


def settings_through(proxy: FreezingProxy, postgres_url: str) -> Settings:
    return make_settings(
        through(proxy, postgres_url),
        database_pool_size=1,
        database_max_overflow=1,
        database_statement_timeout=STATEMENT_TIMEOUT,
    )


async def test_a_connection_failing_to_close_in_an_outage_is_one_warning_line(
    postgres_url: str, proxy: FreezingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    # The pools' logger (one per pool class), shared by every engine of the process.
    pool_logger = logging.getLogger("sqlalchemy.pool.impl.AsyncAdaptedQueuePool")
    filters = list(pool_logger.filters)
    async with open_database(settings_through(proxy, postgres_url)) as database:
        assert database.engine.pool.logger is pool_logger
        assert len(pool_logger.filters) == len(filters) + 1
        with caplog.at_level(logging.INFO, logger=POOL_LOGGER):
            await close_one_beyond_the_pool_while_frozen(database.engine, proxy)
            # The pool still serves, on the connection it kept.
            async with database.engine.connect() as connection:
                assert (await connection.execute(text("SELECT 1"))).scalar() == 1
            # Any other error the pool logs keeps its level and traceback.
            database.engine.pool.logger.error(
                "Exception closing connection %r", "a bug", exc_info=ValueError("a bug")
            )
    assert pool_logger.filters == filters, "the block's filter is removed at its end"
    records = [r for r in caplog.records if r.name.startswith(POOL_LOGGER)]
    (quieted,) = [r for r in records if r.levelno == logging.WARNING]
    assert quieted.getMessage() == (
        "a pooled database connection was dropped, its close failed: TimeoutError <- CancelledError"
    )
    assert quieted.exc_info is None
    (bug,) = [r for r in records if r.levelno >= logging.ERROR]
    assert bug.exc_info is not None
    assert isinstance(bug.exc_info[1], ValueError)
