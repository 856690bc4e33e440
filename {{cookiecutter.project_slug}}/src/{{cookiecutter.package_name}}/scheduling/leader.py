"""The scheduler's leader lock: a PostgreSQL session-level advisory lock.

APScheduler 3 cannot share a job store, so with N replicas every process would run
every job. Instead only the process holding the lock runs the scheduler. A lock
taken per run would not do: a short job finishes and unlocks before another
replica's timer fires, and that replica runs the same fire again.

The lock is held on an asyncpg connection of its own (not from the ORM's pool,
whichever ORM the service uses), because a
session-level lock belongs to the session: it is released when the session ends,
whoever ends it. Hence:

- If the holder dies, PostgreSQL ends its session and another replica's next try
  (every ``SCHEDULER_LEADER_RETRY_INTERVAL`` seconds) takes the lock. When the
  holder's host vanishes without closing the socket, the TCP keepalives set on
  this connection (5 s idle, then 3 probes 5 s apart) end the session within
  about 20 s, so a takeover stays within 30 s.
- If the session ends while the holder lives (network cut, server restart,
  ``pg_terminate_backend``), the lock is gone while the holder may still believe
  it leads. The holder therefore runs ``SELECT 1`` on this connection every retry
  interval, and before each run: a session that answers still holds the lock.
  It steps down as soon as one fails or times out.
- A pooler in transaction mode (PgBouncer ``pool_mode=transaction``) hands each
  statement to any server session: the lock and the ``SELECT 1`` would not be on
  the same session. Point ``DATABASE_URL`` at PostgreSQL or a session-mode pool.

Functions: ``pg_try_advisory_lock(bigint)`` never waits; the lock is released by
closing the session (https://www.postgresql.org/docs/current/functions-admin.html).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

logger = logging.getLogger(__name__)

# Server-side TCP keepalives for the lock session: a vanished client is noticed in
# about idle + interval * count = 20 s instead of the kernel default of 2 hours.
KEEPALIVE_SETTINGS = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}


class AdvisoryLock:
    """A session-level advisory lock on a dedicated PostgreSQL connection.

    Args:
        url: URL of the service's database, ``postgresql://`` or ``postgresql+asyncpg://``.
        key: the lock key, a signed 64-bit integer.
        timeout: seconds allowed to connect and for each statement.
        application_name: shown in ``pg_stat_activity`` for this connection.
    """

    def __init__(self, url: str, *, key: int, timeout: float, application_name: str) -> None:
        self.key = key
        self.timeout = timeout
        self.last_error: str | None = None
        self._dsn = libpq_url(url)
        self._server_settings = {"application_name": application_name, **KEEPALIVE_SETTINGS}
        # Statements outside a transaction block autocommit: no transaction is left open
        # on a connection held for hours, which idle_in_transaction_session_timeout would kill.
        self._connection: asyncpg.Connection | None = None
        self._held = False
        # One statement at a time: the periodic check and the per-run check share it.
        self._io = asyncio.Lock()

    @property
    def held(self) -> bool:
        """Whether this process took the lock and has not seen its session fail since."""
        return self._held

    async def try_acquire(self) -> bool:
        """Try once to take the lock, connecting first if needed; never waits for it.

        Returns ``True`` when this session holds the lock. Database errors are
        logged and give ``False`` (the connection is dropped and reopened next time).
        """
        async with self._io:
            try:
                async with asyncio.timeout(self.timeout * 2):
                    if self._connection is None:
                        self._connection = await asyncpg.connect(
                            self._dsn, timeout=self.timeout, server_settings=self._server_settings
                        )
                    locked = await self._connection.fetchval(
                        "SELECT pg_try_advisory_lock($1)", self.key
                    )
                    self._held = bool(locked)
            except Exception as error:
                await self._discard(error)
                return False
            self.last_error = None
            return self._held

    async def alive(self) -> bool:
        """``SELECT 1`` on the lock's session: ``True`` means the lock is still held.

        A failure or a timeout drops the connection, and the lock with it.
        """
        async with self._io:
            if not self._held or self._connection is None:
                return False
            try:
                async with asyncio.timeout(self.timeout):
                    await self._connection.fetchval("SELECT 1")
            except Exception as error:
                await self._discard(error)
                return False
            return True

    async def release(self) -> None:
        """Close the session, which releases the lock; the next try reconnects."""
        async with self._io:
            self._held = False
            connection, self._connection = self._connection, None
            if connection is None:
                return
            try:
                async with asyncio.timeout(self.timeout):
                    await connection.close()
            except Exception:
                # A hung server: drop the socket; PostgreSQL frees the lock when it notices.
                connection.terminate()

    async def aclose(self) -> None:
        """Release the lock and close its connection."""
        await self.release()

    async def _discard(self, error: BaseException) -> None:
        first_failure = self.last_error is None
        self.last_error = type(error).__name__
        was_held, self._held = self._held, False
        if was_held:
            logger.error("scheduler leader lock lost: its connection failed (%s)", self.last_error)
        elif first_failure:
            logger.warning("cannot try the scheduler leader lock: %s", self.last_error)
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.terminate()
            except Exception as close_error:
                logger.debug("dropping the lock connection failed: %r", close_error)


def libpq_url(url: str) -> str:
    """``url`` as asyncpg takes it: ``postgresql+asyncpg://`` becomes ``postgresql://``."""
    scheme, separator, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{separator}{rest}"
