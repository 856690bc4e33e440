"""Per-run overhead of the job wrapper, against the same job unwrapped, in one process.

    uv run python scripts/bench_wrapper.py [--runs 20000]

Three ways to run a job that returns at once, interleaved in rounds so that they
share the same machine state:

- ``bare``: ``await job(context)``, the job alone;
- ``wrapped``: ``JobRunner.run`` with no heartbeat URL: run id, job state, metrics, logs;
- ``wrapped+ping``: ``JobRunner.run`` with a heartbeat URL on a local pytest-httpserver
  (healthchecks protocol: start and success pings). Pings are sent by background
  tasks: each run is timed until it returns, and its pings are delivered between
  timed runs, so the network is not counted, only the wrapper's work of queuing them.
  The delivery time per run (loopback HTTP, off the job's path) is printed apart.

Prints the median time per run of each, the overhead and the ratio to ``bare``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import cast

import httpx
from apscheduler.triggers.interval import IntervalTrigger
from pytest_httpserver import HTTPServer

from {{ cookiecutter.package_name }}.db import Database
from {{ cookiecutter.package_name }}.heartbeat_targets import HeartbeatTarget
from {{ cookiecutter.package_name }}.metrics import Metrics
from {{ cookiecutter.package_name }}.scheduling import (
    JobContext,
    JobRegistry,
)
from {{ cookiecutter.package_name }}.scheduling.heartbeat import Heartbeat
from {{ cookiecutter.package_name }}.scheduling.runner import JobRunner
from {{ cookiecutter.package_name }}.scheduling.state import JobStates
from {{ cookiecutter.package_name }}.settings import (
    HeartbeatProtocol,
    Settings,
)

ROUNDS = 10
# Runs timed together before their pings are delivered: two pings each, below the
# heartbeat's cap of pending pings (MAX_PENDING_PINGS), so none is dropped.
PING_CHUNK = 40
# The benchmarked job never touches the database.
NO_DATABASE = cast("Database", None)


async def noop(context: JobContext) -> None:
    return None


def runner_for(jobs: JobRegistry, target: HeartbeatTarget | None) -> JobRunner:
    metrics = Metrics()
    return JobRunner(
        jobs=jobs,
        targets={"noop": target},
        heartbeat=Heartbeat(metrics=metrics, timeout=5.0, retries=0),
        states=JobStates(["noop"]),
        metrics=metrics,
        # No wait for the start ping: the chunks below time the wrapper's own work.
        settings=Settings(_env_file=None, heartbeat_start_timeout=0),
        database=NO_DATABASE,
    )


async def per_run_batch(run: Callable[[], Awaitable[object]], count: int) -> float:
    """Seconds per run over ``count`` back-to-back runs."""
    started = time.perf_counter()
    for _ in range(count):
        await run()
    return (time.perf_counter() - started) / count


async def per_run_pinging(runner: JobRunner, count: int) -> tuple[float, float]:
    """Seconds per run, and seconds per run to deliver the pings afterwards.

    Runs go in chunks of ``PING_CHUNK``: the job never yields, so no ping is sent
    while a chunk is timed; the chunk's pings are delivered before the next one.
    """
    running = delivering = 0.0
    for _ in range(max(count // PING_CHUNK, 1)):
        started = time.perf_counter()
        for _ in range(PING_CHUNK):
            await runner.run("noop")
        returned = time.perf_counter()
        await runner.heartbeat.drain(None)
        running += returned - started
        delivering += time.perf_counter() - returned
    runs = max(count // PING_CHUNK, 1) * PING_CHUNK
    return running / runs, delivering / runs


async def bench(runs: int) -> None:
    jobs = JobRegistry("bench")
    jobs.scheduled("noop", IntervalTrigger(hours=1), grace=timedelta(minutes=1))(noop)
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request(re.compile(r"^/ping/")).respond_with_data("OK")
    server.start()
    plain = runner_for(jobs, None)
    pinging = runner_for(
        jobs,
        HeartbeatTarget(
            url=httpx.URL(server.url_for("/ping/bench")), protocol=HeartbeatProtocol.HEALTHCHECKS
        ),
    )
    context = JobContext(
        job_id="noop",
        run_id=uuid.uuid4(),
        scheduled_at=None,
        settings=plain.settings,
        database=plain.database,
    )
    batch = max(runs // ROUNDS, 1)
    # Pinging runs cost two loopback requests each between timings: fewer of them.
    ping_batch = max(batch // 10, PING_CHUNK)
    timings: dict[str, list[float]] = {"bare": [], "wrapped": [], "wrapped+ping": []}
    delivery: list[float] = []
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the server's access log
    try:
        await per_run_batch(lambda: noop(context), batch)  # warm-up
        await per_run_batch(lambda: plain.run("noop"), batch)
        await per_run_pinging(pinging, ping_batch)
        for _ in range(ROUNDS):
            timings["bare"].append(await per_run_batch(lambda: noop(context), batch))
            timings["wrapped"].append(await per_run_batch(lambda: plain.run("noop"), batch))
            running, delivering = await per_run_pinging(pinging, ping_batch)
            timings["wrapped+ping"].append(running)
            delivery.append(delivering)
    finally:
        await plain.heartbeat.aclose()
        await pinging.heartbeat.aclose()
        server.stop()

    bare = statistics.median(timings["bare"])
    print(f"{ROUNDS} rounds of {batch} runs ({ping_batch} with pings); median per run:")
    for name, samples in timings.items():
        median = statistics.median(samples)
        line = f"  {name:<13} {median * 1e6:8.2f} us"
        if name != "bare":
            line += f"   overhead {(median - bare) * 1e6:7.2f} us   ratio {median / bare:6.1f}x"
        print(line)
    # Start and success pings, warm-up included.
    expected = 2 * (ROUNDS + 1) * (ping_batch // PING_CHUNK) * PING_CHUNK
    print(
        f"  ping delivery {statistics.median(delivery) * 1e6:8.2f} us per run, in the background"
        f" ({len(server.log)} of {expected} pings received)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Per-run overhead of the job wrapper.")
    parser.add_argument("--runs", type=int, default=20_000, help="runs per way, all rounds")
    asyncio.run(bench(parser.parse_args().runs))


if __name__ == "__main__":
    main()
