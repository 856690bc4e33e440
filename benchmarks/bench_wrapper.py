"""Benchmarks: per-run overhead of the baked job wrapper, against the same job unwrapped.

    make bench-wrapper    # python benchmarks/bench_wrapper.py [--runs 20000]

Bakes the default service into ``build/bench-wrapper``, installs it with its dev
group (pytest-httpserver) and runs this file again with the bake's interpreter and
``--package``, in one process:

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
import importlib
import logging
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROUNDS = 10
# Runs timed together before their pings are delivered: two pings each, below the
# heartbeat's cap of pending pings (MAX_PENDING_PINGS), so none is dropped.
PING_CHUNK = 40
# The baked package's modules, imported by ``run`` (this file is not rendered by cookiecutter).
baked: dict[str, Any] = {}


async def noop(context: Any) -> None:
    return None


def runner_for(jobs: Any, target: Any) -> Any:
    metrics = baked["metrics"].Metrics()
    return baked["runner"].JobRunner(
        jobs=jobs,
        targets={"noop": target},
        heartbeat=baked["heartbeat"].Heartbeat(metrics=metrics, timeout=5.0, retries=0),
        states=baked["state"].JobStates(["noop"]),
        metrics=metrics,
        # No wait for the start ping: the chunks below time the wrapper's own work.
        settings=baked["settings"].Settings(_env_file=None, heartbeat_start_timeout=0),
        # The benchmarked job never touches the database.
        database=None,
    )


async def per_run_batch(run: Callable[[], Awaitable[object]], count: int) -> float:
    """Seconds per run over ``count`` back-to-back runs."""
    started = time.perf_counter()
    for _ in range(count):
        await run()
    return (time.perf_counter() - started) / count


async def per_run_pinging(runner: Any, count: int) -> tuple[float, float]:
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
    import httpx
    from apscheduler.triggers.interval import IntervalTrigger
    from pytest_httpserver import HTTPServer

    scheduling = baked["scheduling"]
    JobContext, JobRegistry = scheduling.JobContext, scheduling.JobRegistry
    jobs = JobRegistry("bench")
    jobs.scheduled("noop", IntervalTrigger(hours=1), grace=timedelta(minutes=1))(noop)
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request(re.compile(r"^/ping/")).respond_with_data("OK")
    server.start()
    plain = runner_for(jobs, None)
    pinging = runner_for(
        jobs,
        baked["heartbeat_targets"].HeartbeatTarget(
            url=httpx.URL(server.url_for("/ping/bench")),
            protocol=baked["settings"].HeartbeatProtocol.HEALTHCHECKS,
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


def run(package: str, runs: int) -> None:
    """Import the baked ``package``'s modules and benchmark its wrapper."""
    for name, module in {
        "metrics": "metrics",
        "heartbeat_targets": "heartbeats.targets",
        "settings": "settings",
        "scheduling": "scheduling",
        "heartbeat": "heartbeats.sender",
        "runner": "scheduling.runner",
        "state": "scheduling.state",
    }.items():
        baked[name] = importlib.import_module(f"{package}.{module}")
    asyncio.run(bench(runs))


def bake_and_run(runs: int) -> int:
    """Bake and install the default service, then run this file with its interpreter."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from baking import TEMPLATE, bake, install

    build = TEMPLATE / "build" / "bench-wrapper"
    shutil.rmtree(build, ignore_errors=True)
    project = bake(build, {})
    pyproject = (project / "pyproject.toml").read_text()
    version = re.search(r'^python_version = "([\d.]+)"', pyproject, re.M)
    python = install(project, version.group(1) if version else "3.12", groups=("dev",))
    package = next(p.name for p in (project / "src").iterdir() if p.is_dir())
    argv = [str(python), __file__, "--package", package, "--runs", str(runs)]
    return subprocess.run(argv, cwd=project, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description="Per-run overhead of the job wrapper.")
    parser.add_argument("--runs", type=int, default=20_000, help="runs per way, all rounds")
    parser.add_argument(
        "--package", help="the baked package to import (default: bake the default service)"
    )
    args = parser.parse_args()
    if args.package is None:
        return bake_and_run(args.runs)
    run(args.package, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
