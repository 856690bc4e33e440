"""Benchmarks: the baked service's health endpoints against baselines, in one run.

Bakes the default service into ``build/bench``, installs it, and serves it with one
uvicorn worker against the local PostgreSQL (``BENCH_DATABASE_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``; a database of its own is created
and dropped). The baseline is a bare FastAPI route returning a constant, served by
the same interpreter and uvicorn. Every target is measured with wrk (Debian package
``wrk``) with the same connections, threads and duration, one after the other.

Usage: ``python benchmarks/bench.py [--duration SECONDS] [--connections N]``
(``make bench``). Prints a Markdown table with requests/s, p50 and p99 latency and
the ratio of each target's requests/s to the bare FastAPI route.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from baking import TEMPLATE, bake, install

BARE_FASTAPI = '''
from fastapi import FastAPI

app = FastAPI()


@app.get("/constant")
async def constant() -> dict[str, str]:
    return {"status": "pass"}
'''


@dataclass(frozen=True)
class Result:
    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _milliseconds(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        raise ValueError(f"unexpected wrk latency {value!r}")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(name: str, url: str, *, duration: int, connections: int, threads: int) -> Result:
    """Run wrk against ``url`` and parse requests/s and the p50/p99 latency (ms)."""
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in output:
        raise RuntimeError(f"{name}: non-2xx responses during the run:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _milliseconds(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _milliseconds(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    return Result(name, rps, p50, p99)


@contextmanager
def serve(python: Path, app: str, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """Run ``uvicorn app`` with one worker; yields its base URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [str(python), "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=cwd, env={**os.environ, "SECRETS_DIR": "/nonexistent", **env},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def database(admin_url: str, python: Path) -> Iterator[str]:
    """A fresh database on the admin URL's server; yields its URL, drops it afterwards."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    base, _, _ = admin_url.rpartition("/")
    run_sql = [str(python), "-c",
               "import asyncio, asyncpg, sys\n"
               "async def main():\n"
               "    c = await asyncpg.connect(sys.argv[1]); await c.execute(sys.argv[2]); await c.close()\n"
               "asyncio.run(main())"]
    subprocess.run([*run_sql, admin_url, f'CREATE DATABASE "{name}"'], check=True)
    try:
        yield f"{base}/{name}"
    finally:
        subprocess.run([*run_sql, admin_url, f'DROP DATABASE "{name}" WITH (FORCE)'], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per target")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 1

    build = TEMPLATE / "build" / "bench"
    shutil.rmtree(build, ignore_errors=True)
    project = bake(build, {})
    python = install(project, "3.12", groups=())
    package = next(p.name for p in (project / "src").iterdir() if p.is_dir())
    admin = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    options = {"duration": args.duration, "connections": args.connections, "threads": args.threads}

    results: list[Result] = []
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "bare_fastapi.py").write_text(BARE_FASTAPI)
        with serve(python, "bare_fastapi:app", Path(scratch), {}) as base:
            results.append(wrk("bare FastAPI route (baseline)", f"{base}/constant", **options))
    with database(admin, python) as url:
        env = {"ENVIRONMENT": "production", "DATABASE_URL": url}
        subprocess.run([str(python), "-m", "alembic", "upgrade", "head"], cwd=project,
                       env={**os.environ, **env}, check=True, capture_output=True)
        with serve(python, f"{package}.main:app", project, env) as base:
            results.append(wrk("/health/live", f"{base}/health/live", **options))
            results.append(wrk("/health/ready (cached, 1 s)", f"{base}/health/ready", **options))
        with serve(python, f"{package}.main:app", project, {**env, "HEALTH_CACHE_TTL": "0"}) as base:
            results.append(wrk("/health/ready (no cache)", f"{base}/health/ready", **options))

    baseline = results[0].requests_per_second
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()} (runner); wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration}s; one uvicorn worker\n")
    print("| target | requests/s | p50 (ms) | p99 (ms) | vs bare FastAPI |")
    print("|---|---:|---:|---:|---:|")
    for result in results:
        print(f"| {result.name} | {result.requests_per_second:,.0f} | {result.p50_ms:.2f} | "
              f"{result.p99_ms:.2f} | {result.requests_per_second / baseline:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
