"""The scheduler's leader: the election loop that takes the lease, renews it and steps down.

One replica, the leader, schedules the jobs (APScheduler 3 cannot share a job store).
A follower tries every ``SCHEDULER_LEADER_RETRY_INTERVAL`` seconds to take the lease
row (``lease.py``); the leader renews it every third of ``SCHEDULER_LEASE_TTL`` and
steps down when it has not renewed for two thirds of it, before the row can expire
and another replica take over. The design, its guarantees and the failure table:
``docs/leader-lease.md``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from .lease import Lease

logger = logging.getLogger(__name__)

# A leader steps down when it has not renewed for this fraction of the TTL.
STEP_DOWN_FRACTION = 2 / 3
# Seconds between two tries of a failed renewal (bounded by TTL / 6).
RENEW_RETRY = 1.0
# Errors of the database or of the way to it, as opposed to bugs.
DATABASE_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class Term:
    """This process's term as leader: its ``epoch`` (the fencing token)."""

    epoch: int


ElectedCallback = Callable[[Term], Awaitable[None]]
LostCallback = Callable[[Term, str], Awaitable[None]]


class LeaderElection:
    """Campaigns for the lease, renews it while leading, and steps down in time.

    ``on_elected(term)`` starts scheduling; ``on_lost(term, reason)`` must stop
    starting runs and cancel those in flight. Both are awaited in the loop's task.

    Args:
        lease: the lease row and its connection.
        retry_interval: seconds between two tries of a follower
            (``SCHEDULER_LEADER_RETRY_INTERVAL``).
    """

    def __init__(
        self,
        lease: Lease,
        *,
        retry_interval: float,
        on_elected: ElectedCallback,
        on_lost: LostCallback,
    ) -> None:
        self.lease = lease
        self.retry_interval = retry_interval
        self._on_elected = on_elected
        self._on_lost = on_lost
        self._term: Term | None = None
        # Monotonic time until which the current term is surely valid.
        self._valid_until = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def term(self) -> Term | None:
        """The current term while this process leads and its lease is surely valid."""
        if self._term is None or time.monotonic() >= self._valid_until:
            return None
        return self._term

    @property
    def campaigning(self) -> bool:
        """Whether the election loop is alive."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the election loop in a task."""
        self._task = asyncio.create_task(self._run(), name="scheduler-leader")

    async def stop(self) -> None:
        """Stop the loop (after the scheduler has drained) and release the lease.

        The release and the close take at most ``DATABASE_CONNECT_TIMEOUT`` together.
        """
        term, self._term = self._term, None
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
        try:
            async with asyncio.timeout(self.lease.connect_timeout):
                if term is not None:
                    await self.lease.release(term.epoch)
        except TimeoutError:
            logger.warning("scheduler lease not released in time; it expires")
        await self.lease.aclose()

    async def _run(self) -> None:
        ttl = self.lease.ttl
        while True:
            try:
                began = time.monotonic()
                epoch = await self.lease.try_acquire()
            except Exception:
                epoch = None
            if epoch is not None:
                term = Term(epoch)
                self._term = term
                self._valid_until = began + ttl * STEP_DOWN_FRACTION
                logger.info("this process is now the scheduler leader (epoch %d)", epoch)
                try:
                    await self._on_elected(term)
                    reason = await self._hold(term)
                except asyncio.CancelledError:
                    raise  # stop(): the scheduler drains, then stop() releases the lease
                except DATABASE_ERRORS as error:
                    # An outage, not a bug: one line (the lease statements log theirs).
                    reason = f"the database failed ({type(error).__name__})"
                except Exception:
                    logger.exception("scheduler failed while leading; stepping down")
                    reason = "the scheduler failed"
                self._term = None
                self._valid_until = 0.0
                logger.error("stepping down as scheduler leader: %s", reason)
                await self._on_lost(term, reason)
                await self.lease.release(term.epoch)
            await asyncio.sleep(self.retry_interval)

    async def _hold(self, term: Term) -> str:
        ttl = self.lease.ttl
        last_renewal = self._valid_until - ttl * STEP_DOWN_FRACTION
        retry = min(RENEW_RETRY, ttl / 6)
        next_try = last_renewal + ttl / 3
        while True:
            await asyncio.sleep(max(next_try - time.monotonic(), 0))
            began = time.monotonic()
            if began >= self._valid_until:
                return f"the lease was not renewed for {ttl * STEP_DOWN_FRACTION:g} s"
            try:
                async with asyncio.timeout(self._valid_until - began):
                    renewed = await self.lease.renew(term.epoch)
            except TimeoutError:
                return f"the lease was not renewed for {ttl * STEP_DOWN_FRACTION:g} s"
            except Exception:
                next_try = began + retry
                continue
            if not renewed:
                return "the lease expired or another replica took it"
            self._valid_until = began + ttl * STEP_DOWN_FRACTION
            next_try = began + ttl / 3
