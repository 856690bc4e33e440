"""The scheduler's lease: one row in PostgreSQL that expires, and the run records under it.

The ``scheduler_lease`` row of a registry says which replica leads (``holder``),
in which term (``epoch``, the fencing token) and until when (``expires_at``, the
database's clock). Every statement here is conditional on the term, so a leader
whose term has ended (paused, partitioned, taken over) can neither renew, start a
run nor commit a fenced transaction. The election loop that takes and renews the
row is ``leader.py``; why it is built this way, what it guarantees and the failure
table are in ``docs/leader-lease.md``.

The statements run on a connection of their own (not the ORM's pool), with TCP
keepalives and ``DATABASE_STATEMENT_TIMEOUT``, so that a pool exhausted by requests
cannot delay a renewal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ..outages import reason, statement_bounds
from ..postgres import libpq_dsn

logger = logging.getLogger(__name__)

# Server-side TCP keepalives for the lease session: a vanished client is noticed in
# about idle + interval * count = 20 s instead of the kernel default of 2 hours.
KEEPALIVE_SETTINGS = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}
# Rows deleted per statement when pruning old runs.
PRUNE_BATCH = 10_000

ACQUIRE = """
INSERT INTO scheduler_lease AS lease (name, holder, epoch, expires_at, renewed_at)
VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => $3::double precision), clock_timestamp())
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder, epoch = lease.epoch + 1,
    expires_at = excluded.expires_at, renewed_at = excluded.renewed_at
WHERE lease.expires_at <= clock_timestamp()
RETURNING epoch
"""
RENEW = """
UPDATE scheduler_lease
SET expires_at = clock_timestamp() + make_interval(secs => $3::double precision), renewed_at = clock_timestamp()
WHERE name = $1 AND holder = $2 AND epoch = $4 AND expires_at > clock_timestamp()
RETURNING epoch
"""
RELEASE = """
UPDATE scheduler_lease SET expires_at = clock_timestamp()
WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > clock_timestamp()
"""
# JobContext.fence: $1 lease name, $2 epoch, $3 idle limit (ms): one row while the term
# is current. The limit ends the transaction if its client stops (SIGSTOP) while it
# holds the lock, which would otherwise hold up every takeover.
CURRENT_TERM = """
SELECT epoch, set_config('idle_in_transaction_session_timeout', $3::varchar, true)
FROM scheduler_lease
WHERE name = $1 AND epoch = $2::bigint AND expires_at > clock_timestamp()
FOR KEY SHARE
"""
START_RUN = """
INSERT INTO scheduler_runs
    (registry, job_id, run_id, fire_time, attempt, epoch, holder, started_at)
SELECT
    $1::varchar, $2::varchar, $3::uuid, $4::timestamptz, $5::smallint, $6::bigint,
    $7::varchar, clock_timestamp()
WHERE EXISTS (
    SELECT FROM scheduler_lease
    WHERE name = $1 AND holder = $7 AND epoch = $6 AND expires_at > clock_timestamp()
    FOR KEY SHARE
)
ON CONFLICT (registry, job_id, fire_time, attempt) DO NOTHING
RETURNING started_at
"""
# A CronJob pod's run (``cronjob.py``): no lease, epoch 0 (terms start at 1); the unique
# key on (fire time, attempt) refuses a second pod for the same fire.
START_CRONJOB_RUN = """
INSERT INTO scheduler_runs
    (registry, job_id, run_id, fire_time, attempt, epoch, holder, started_at)
VALUES ($1, $2, $3, $4, 1, 0, $5, clock_timestamp())
ON CONFLICT (registry, job_id, fire_time, attempt) DO NOTHING
RETURNING started_at
"""
FINISH_RUN = """
UPDATE scheduler_runs
SET ended_at = clock_timestamp(), outcome = $3, error_type = $4, duration = $5
WHERE registry = $1 AND run_id = $2 AND outcome IS NULL
RETURNING id
"""
# Runs of older terms still without an outcome: their leader lost its term mid-run
# (a CronJob pod's run, epoch 0, is no leader's).
SUPERSEDE_STALE = """
UPDATE scheduler_runs
SET outcome = 'superseded', ended_at = clock_timestamp(),
    duration = extract(epoch FROM clock_timestamp() - started_at)
WHERE registry = $1 AND outcome IS NULL AND epoch < $2 AND epoch > 0
RETURNING job_id, fire_time, attempt
"""
LAST_FIRES = """
SELECT j.job_id, r.fire_time, r.attempt, r.outcome
FROM unnest($2::varchar[]) AS j (job_id)
JOIN LATERAL (
    SELECT fire_time, attempt, outcome FROM scheduler_runs
    WHERE registry = $1 AND job_id = j.job_id AND fire_time IS NOT NULL
    ORDER BY fire_time DESC, attempt DESC
    LIMIT 1
) AS r ON true
"""
PRUNE = """
DELETE FROM scheduler_runs WHERE id IN (
    SELECT id FROM scheduler_runs
    WHERE registry = $1 AND started_at < clock_timestamp() - make_interval(days => $2::integer)
    LIMIT $3
)
"""


class StaleLeaderError(Exception):
    """This process's term as scheduler leader has ended (another replica took over)."""


@dataclass(frozen=True, slots=True)
class LastFire:
    """A job's latest recorded fire: its time, attempt and outcome (``None``: no end)."""

    fire_time: datetime
    attempt: int
    outcome: str | None


class Lease:
    """The ``scheduler_lease`` row of ``name`` and the run records, on a connection of its own.

    Args:
        url: the service's ``DATABASE_URL`` (read by ``postgres.parse_postgres_url``).
        name: the registry name: the row's key and the runs' ``registry``.
        holder: this process's identity, written in the row while it leads.
        ttl: seconds a lease lasts after each renewal (``SCHEDULER_LEASE_TTL``).
        connect_timeout: seconds allowed to connect.
        statement_timeout: seconds allowed for each statement.
        application_name: shown in ``pg_stat_activity`` for this connection.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str,
        holder: str,
        ttl: float,
        connect_timeout: float,
        statement_timeout: float,
        application_name: str,
    ) -> None:
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.last_error: str | None = None
        self._dsn = libpq_dsn(url)
        bounds = statement_bounds(statement_timeout)
        self._connect_options: dict[str, Any] = {
            "timeout": connect_timeout,
            "command_timeout": bounds["command_timeout"],
            "server_settings": {
                **bounds["server_settings"],
                "application_name": application_name,
                **KEEPALIVE_SETTINGS,
            },
        }
        self._connection: asyncpg.Connection | None = None
        # One statement at a time on the one connection.
        self._io = asyncio.Lock()

    async def backend_pid(self) -> int | None:
        """The server pid of the lease's session, if connected (tests terminate it)."""
        connection = self._connection
        return connection.get_server_pid() if connection is not None else None

    async def try_acquire(self) -> int | None:
        """Take the row if it is free or expired; returns the new epoch, else ``None``.

        Raises:
            Exception: the database's or the connection's error (the connection is
                dropped and reopened on the next call).
        """
        epoch = await self._fetchval(ACQUIRE, self.name, self.holder, self.ttl)
        return int(epoch) if epoch is not None else None

    async def renew(self, epoch: int) -> bool:
        """Extend this term by one TTL; ``False`` when it has ended (expired or taken).

        Raises:
            Exception: as ``try_acquire``.
        """
        renewed = await self._fetchval(RENEW, self.name, self.holder, self.ttl, epoch)
        return renewed is not None

    async def release(self, epoch: int) -> None:
        """End this term now, so that a follower's next try takes over; never raises."""
        try:
            await self._execute(RELEASE, self.name, self.holder, epoch)
        except Exception as error:
            logger.warning("scheduler lease not released (%s); it expires", type(error).__name__)

    async def start_run(
        self, job_id: str, run_id: uuid.UUID, fire_time: datetime | None, attempt: int, epoch: int
    ) -> bool:
        """Record a run's start under term ``epoch``; ``False`` when refused.

        Refused when the term is no longer current or this fire's attempt is recorded.

        Raises:
            Exception: as ``try_acquire`` (the run must not start either).
        """
        started = await self._fetchval(
            START_RUN, self.name, job_id, run_id, fire_time, attempt, epoch, self.holder
        )
        return started is not None

    async def start_cronjob_run(
        self, job_id: str, run_id: uuid.UUID, fire_time: datetime | None
    ) -> bool:
        """Record a CronJob pod's run (epoch 0, no lease); ``False`` when the fire is taken.

        Raises:
            Exception: as ``try_acquire`` (the run must not start either).
        """
        started = await self._fetchval(
            START_CRONJOB_RUN, self.name, job_id, run_id, fire_time, self.holder
        )
        return started is not None

    async def finish_run(
        self, run_id: uuid.UUID, outcome: str, error_type: str | None, duration: float
    ) -> bool:
        """Record a run's end; ``False`` when it already has one (superseded by a new leader).

        Raises:
            Exception: as ``try_acquire``.
        """
        finished = await self._fetchval(
            FINISH_RUN, self.name, run_id, outcome, error_type, duration
        )
        return finished is not None

    async def supersede_stale(self, epoch: int) -> list[tuple[str, datetime | None, int]]:
        """Mark the unfinished runs of terms before ``epoch`` superseded; returns them.

        Raises:
            Exception: as ``try_acquire``.
        """
        rows = await self._fetch(SUPERSEDE_STALE, self.name, epoch)
        return [(row["job_id"], row["fire_time"], row["attempt"]) for row in rows]

    async def last_fires(self, job_ids: Sequence[str]) -> dict[str, LastFire]:
        """Each job's latest recorded fire (jobs never fired are absent).

        Raises:
            Exception: as ``try_acquire``.
        """
        rows = await self._fetch(LAST_FIRES, self.name, list(job_ids))
        return {
            row["job_id"]: LastFire(row["fire_time"], row["attempt"], row["outcome"])
            for row in rows
        }

    async def prune(self, retention_days: int) -> int:
        """Delete runs started more than ``retention_days`` ago; returns how many.

        Raises:
            Exception: as ``try_acquire``.
        """
        deleted = 0
        while True:
            status = await self._execute(PRUNE, self.name, retention_days, PRUNE_BATCH)
            count = int(status.rsplit(" ", 1)[-1])
            deleted += count
            if count < PRUNE_BATCH:
                return deleted

    async def aclose(self) -> None:
        """Close the connection (at most ``connect_timeout`` s, then drop the socket)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await connection.close()
            except Exception:
                connection.terminate()

    async def _fetchval(self, query: str, *args: object) -> Any:
        return await self._call(lambda connection: connection.fetchval(query, *args))

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._call(
            lambda connection: connection.fetch(query, *args)
        )
        return rows

    async def _execute(self, query: str, *args: object) -> str:
        status: str = await self._call(lambda connection: connection.execute(query, *args))
        return status

    async def _call(self, statement: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        async with self._io:
            # A session lost since the last statement (server restart, terminated
            # backend) is noticed by the next statement: that one is tried again once
            # on a new session. Repeating is safe: every statement is conditional, and
            # a run start whose first try committed unseen is refused the second time
            # (that fire is then not run; the next election marks its record superseded).
            for attempt in range(2):
                fresh = self._connection is None or self._connection.is_closed()
                try:
                    if fresh:
                        self._connection = await asyncpg.connect(self._dsn, **self._connect_options)
                    assert self._connection is not None
                    result = await statement(self._connection)
                except asyncio.CancelledError:
                    # Cut mid-statement (a renewal past its deadline): the session's
                    # state is unknown, so it is not used again.
                    connection, self._connection = self._connection, None
                    if connection is not None:
                        connection.terminate()
                    raise
                except Exception as error:
                    dropped = self._discard(error)
                    if not dropped or attempt:
                        raise
                    continue
                self.last_error = None
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _discard(self, error: BaseException) -> bool:
        # Returns whether the connection was dropped (the session is gone or unknown).
        first_failure = self.last_error is None
        self.last_error = type(error).__name__
        if first_failure:
            logger.warning("scheduler lease statement failed: %s", reason(error))
        if isinstance(error, asyncpg.PostgresError) and not isinstance(
            error, asyncpg.exceptions.AdminShutdownError
        ):
            # An error of the statement, not of the session: the connection is fine.
            return False
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()
        return True


def process_identity() -> str:
    """This process's holder name: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()[:150]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
