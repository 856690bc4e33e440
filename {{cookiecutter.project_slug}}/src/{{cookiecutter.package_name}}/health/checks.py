"""Running health checks: a timeout per check, caching and single-flight.

A probe must answer within its own timeout even when a dependency hangs. Each
check therefore runs in a task of its own that the probe waits for at most
``timeout`` seconds. ``asyncio.wait_for`` is not enough: on timeout it cancels
the task and then waits for it to unwind, and a query cancelled against a
hung PostgreSQL server can take seconds to unwind. Here the probe stops waiting
at the deadline and the cancelled task unwinds in the background; while it does,
the check reports ``fail`` instead of piling up more connections on a server
that does not answer.

Results are cached for ``cache_ttl`` seconds, and concurrent probes share one
run in flight, so a burst of probes costs at most one round-trip per dependency
per period.

A check's status changing (``pass`` to ``fail`` and back) is logged once, with the
check's output: the cause of a failure (a wrong password, a refused connection)
reaches the log even when ``HEALTH_SHOW_DETAILS`` hides it from the response.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from typing import Any

from ..outages import reason
from .model import CheckResult, Status

logger = logging.getLogger(__name__)

# Characters of a failing check's output quoted in its transition's log line.
MAX_LOGGED_OUTPUT = 300

CheckFunction = Callable[[], Coroutine[Any, Any, CheckResult | None]]


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """A named check.

    ``key`` is the draft's ``component:measurement`` (e.g. ``database:responseTime``).
    ``run`` raises on failure, or returns ``None`` for a plain pass (the runner
    then reports the response time in ``ms``), or returns a full result.
    ``readiness`` says whether the check gates ``/health/ready``; checks that are
    not about serving traffic (scheduled jobs) appear only in ``/health``.
    ``cacheable`` is false for cheap in-memory checks that must always be current.
    ``critical`` false turns the check's failures into ``warn``: a dependency the
    service can do without (a cache) is reported, but readiness stays 200.
    """

    key: str
    component_type: str
    run: CheckFunction
    readiness: bool = True
    cacheable: bool = True
    critical: bool = True


class CachedCheck:
    """One check with its timeout, result cache and in-flight run."""

    def __init__(self, check: HealthCheck, *, timeout: float, cache_ttl: float) -> None:
        self.check = check
        self.timeout = timeout
        self.cache_ttl = cache_ttl if check.cacheable else 0.0
        self._cached: CheckResult | None = None
        self._expires_at = 0.0
        self._flight: asyncio.Future[CheckResult] | None = None
        self._straggler: asyncio.Task[CheckResult | None] | None = None
        self._last_status: Status | None = None

    def fresh(self) -> CheckResult | None:
        """The cached result while it is younger than ``cache_ttl`` seconds, else ``None``."""
        if self._cached is not None and time.monotonic() < self._expires_at:
            return self._cached
        return None

    async def result(self) -> CheckResult:
        """Return a result at most ``cache_ttl`` s old, after waiting at most ``timeout`` s."""
        cached = self.fresh()
        if cached is not None:
            return cached
        if self._flight is None:
            self._flight = asyncio.ensure_future(self._run())
        # Shielded: a probe that gives up (client gone) must not cancel the shared run.
        return await asyncio.shield(self._flight)

    async def _run(self) -> CheckResult:
        try:
            result = await self._observe()
        finally:
            self._flight = None
        if result.status is not Status.PASS and not self.check.critical:
            result = replace(result, status=Status.WARN)
        self._log_transition(result)
        if self.cache_ttl > 0:
            self._cached = result
            self._expires_at = time.monotonic() + self.cache_ttl
        return result

    def _log_transition(self, result: CheckResult) -> None:
        previous, self._last_status = self._last_status, result.status
        if result.status is previous or (previous is None and result.status is Status.PASS):
            return
        level = logging.INFO if result.status is Status.PASS else logging.WARNING
        logger.log(
            level,
            "check %s %s -> %s%s",
            self.check.key,
            previous.value if previous is not None else "start",
            result.status.value,
            f": {one_line(result.output)}" if result.output else "",
        )

    async def _observe(self) -> CheckResult:
        if self._straggler is not None:
            if not self._straggler.done():
                return CheckResult(
                    Status.FAIL, output="previous check timed out and has not finished yet"
                )
            self._straggler = None
        started = time.perf_counter()
        task = asyncio.create_task(self.check.run(), name=f"health-check:{self.check.key}")
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        if task not in done:
            task.cancel()
            task.add_done_callback(_log_straggler)
            self._straggler = task
            return CheckResult(
                Status.FAIL,
                observed_value=elapsed_ms,
                observed_unit="ms",
                output=f"timed out after {self.timeout} s",
            )
        error = task.exception()
        if error is not None:
            return CheckResult(
                Status.FAIL,
                observed_value=elapsed_ms,
                observed_unit="ms",
                output=reason(error),
            )
        result = task.result()
        if result is None:
            return CheckResult(Status.PASS, observed_value=elapsed_ms, observed_unit="ms")
        return result


def one_line(text: str) -> str:
    """``text`` on one line of at most ``MAX_LOGGED_OUTPUT`` characters, for a log line.

    A driver message can span lines (asyncpg's DETAIL and HINT); a log line must not.
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_LOGGED_OUTPUT else flat[:MAX_LOGGED_OUTPUT] + "..."


def _log_straggler(task: asyncio.Task[CheckResult | None]) -> None:
    # Retrieve the outcome so asyncio does not log "exception was never retrieved".
    if not task.cancelled() and task.exception() is not None:
        logger.debug("timed-out health check %s ended with %r", task.get_name(), task.exception())


@dataclass(frozen=True, slots=True)
class Rendered:
    """An encoded readiness body and the results it was encoded from."""

    results: tuple[CheckResult, ...]
    body: bytes
    status: Status


class HealthChecks:
    """The service's checks, run concurrently.

    Args:
        checks: the checks, in the order the report lists them.
        timeout: seconds each check may take (``HEALTH_CHECK_TIMEOUT``).
        cache_ttl: seconds a result is reused (``HEALTH_CACHE_TTL``; 0 disables caching).
    """

    def __init__(self, checks: Iterable[HealthCheck], *, timeout: float, cache_ttl: float) -> None:
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self._checks: dict[str, CachedCheck] = {}
        self.last_readiness: Rendered | None = None
        for check in checks:
            self.add(check)

    def add(self, check: HealthCheck) -> None:
        """Register ``check``; a check with the same key is replaced."""
        self._checks[check.key] = CachedCheck(check, timeout=self.timeout, cache_ttl=self.cache_ttl)

    def cached_readiness(self) -> Rendered | None:
        """``last_readiness`` while it was encoded from every readiness check's current
        fresh result, else ``None`` (a probe must run the checks, or the body is stale)."""
        last = self.last_readiness
        if last is None:
            return None
        index = 0
        for cached in self._checks.values():
            if not cached.check.readiness:
                continue
            if index == len(last.results) or cached.fresh() is not last.results[index]:
                return None
            index += 1
        return last if index == len(last.results) else None

    async def run(self, *, readiness_only: bool) -> list[tuple[HealthCheck, CheckResult]]:
        """Run the checks concurrently; returns ``(check, result)`` pairs in registration order."""
        selected = [
            cached
            for cached in self._checks.values()
            if cached.check.readiness or not readiness_only
        ]
        results = [cached.fresh() for cached in selected]
        stale = [index for index, result in enumerate(results) if result is None]
        if stale:
            # Only the checks without a fresh result cost a task and a round-trip.
            observed = await asyncio.gather(*(selected[index].result() for index in stale))
            for index, result in zip(stale, observed, strict=True):
                results[index] = result
        return [
            (cached.check, result)
            for cached, result in zip(selected, results, strict=True)
            if result is not None
        ]
