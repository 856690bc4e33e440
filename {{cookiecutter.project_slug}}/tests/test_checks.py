"""The check runner: timeouts that hold against slow cancellation, caching, single-flight."""

from __future__ import annotations

import asyncio
import time

from {{ cookiecutter.package_name }}.health import (
    CheckResult,
    HealthCheck,
    HealthChecks,
    Status,
)


class CountingCheck:
    """A check that takes ``delay`` seconds and, once cancelled, ``unwind`` more."""

    def __init__(self, delay: float = 0.0, unwind: float = 0.0, error: Exception | None = None):
        self.delay = delay
        self.unwind = unwind
        self.error = error
        self.calls = 0

    async def __call__(self) -> CheckResult | None:
        self.calls += 1
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            # Like asyncpg cancelling a query on a hung server: unwinding takes time.
            await asyncio.shield(asyncio.sleep(self.unwind))
            raise
        if self.error is not None:
            raise self.error
        return None


def checks_of(
    check: CountingCheck, *, timeout: float = 1.0, cache_ttl: float = 0.0
) -> HealthChecks:
    return HealthChecks(
        [HealthCheck(key="dep:responseTime", component_type="component", run=check)],
        timeout=timeout,
        cache_ttl=cache_ttl,
    )


async def test_timeout_holds_while_the_cancelled_check_unwinds_slowly() -> None:
    check = CountingCheck(delay=10.0, unwind=1.0)
    checks = checks_of(check, timeout=0.2)
    started = time.perf_counter()
    ((_, result),) = await checks.run(readiness_only=True)
    elapsed = time.perf_counter() - started
    assert result.status is Status.FAIL
    assert elapsed < 0.4, f"took {elapsed:.3f} s; the probe waited for the unwinding"
    # While the first run still unwinds, no second run piles onto the dependency.
    ((_, again),) = await checks.run(readiness_only=True)
    assert again.status is Status.FAIL
    assert check.calls == 1


async def test_a_new_run_starts_once_the_straggler_has_finished() -> None:
    check = CountingCheck(delay=10.0, unwind=0.1)
    checks = checks_of(check, timeout=0.1)
    await checks.run(readiness_only=True)
    await asyncio.sleep(0.2)
    check.delay = 0.0
    ((_, result),) = await checks.run(readiness_only=True)
    assert result.status is Status.PASS
    assert check.calls == 2


async def test_concurrent_probes_share_one_run() -> None:
    check = CountingCheck(delay=0.05)
    checks = checks_of(check)
    results = await asyncio.gather(*(checks.run(readiness_only=True) for _ in range(50)))
    assert check.calls == 1
    assert all(result.status is Status.PASS for ((_, result),) in results)


async def test_results_are_cached_for_the_period() -> None:
    check = CountingCheck()
    checks = checks_of(check, cache_ttl=0.2)
    for _ in range(5):
        await checks.run(readiness_only=True)
    assert check.calls == 1
    await asyncio.sleep(0.25)
    await checks.run(readiness_only=True)
    assert check.calls == 2


async def test_an_exception_is_a_failure_with_its_type_in_the_output() -> None:
    checks = checks_of(CountingCheck(error=ConnectionRefusedError("refused by 10.0.0.1")))
    ((_, result),) = await checks.run(readiness_only=True)
    assert result.status is Status.FAIL
    assert result.output is not None
    assert result.output.startswith("ConnectionRefusedError")
    assert "10.0.0.1" not in str(result.render("component", show_details=False))


async def test_readiness_skips_checks_that_do_not_gate_traffic() -> None:
    ready_check = HealthCheck(key="a:responseTime", component_type="x", run=CountingCheck())
    report_only = HealthCheck(
        key="b:status", component_type="x", run=CountingCheck(), readiness=False
    )
    checks = HealthChecks([ready_check, report_only], timeout=1.0, cache_ttl=0.0)
    assert [check.key for check, _ in await checks.run(readiness_only=True)] == ["a:responseTime"]
    assert len(await checks.run(readiness_only=False)) == 2
