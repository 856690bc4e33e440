"""Benchmarks: the baked service's health endpoints against baselines, in one run.

Bakes the default service into ``build/bench``, installs it (no dev tools), and
serves it with one uvicorn worker against the local PostgreSQL
(``BENCH_DATABASE_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``;
a database of its own is created, migrated and dropped). Every target is served by
the same interpreter and uvicorn and measured with wrk (Debian package ``wrk``)
with the same threads, connections and duration, in rounds that interleave the
targets; the median round is reported. Targets:

- baselines: a raw ASGI app returning a constant (the ceiling for a Python server)
  and a bare FastAPI route returning a constant;
- the service: ``/health/live``, ``/health/ready`` with its 1 s cache and with
  caching off (``HEALTH_CACHE_TTL=0``), and ``/health``;
- the naive readiness check: a FastAPI route opening a new asyncpg connection per
  probe, the way most templates' snippets do it.

It also measures cold start (process start to the first 200 on ``/health/live``,
median of 5) and idle resident memory, for the service and the bare FastAPI app.

Usage: ``python benchmarks/bench.py`` (``make bench``). Writes
``docs/benchmarks.md`` (table and machine) and ``docs/benchmarks.png`` (chart).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from baking import TEMPLATE, bake, install

DOCS = TEMPLATE / "docs"
RAW_ASGI = """
BODY = b'{"status":"pass"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
"""
BARE_FASTAPI = """
from fastapi import FastAPI

app = FastAPI()


@app.get("/health/live")
async def constant() -> dict[str, str]:
    return {"status": "pass"}
"""
NAIVE_READINESS = """
import os

import asyncpg
from fastapi import FastAPI, Response

app = FastAPI()
DSN = os.environ["NAIVE_DSN"]


@app.get("/health/ready")
async def ready() -> Response:
    try:
        connection = await asyncpg.connect(DSN)
        try:
            await connection.fetchval("SELECT 1")
        finally:
            await connection.close()
    except Exception:
        return Response(status_code=503)
    return Response(b'{"status":"pass"}', media_type="application/json")
"""


@dataclass(frozen=True)
class Target:
    name: str
    app: str
    path: str
    env: Mapping[str, str]
    baseline: bool = False


@dataclass(frozen=True)
class Result:
    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _milliseconds(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        raise ValueError(f"unexpected wrk latency {value!r}")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def _field(pattern: str, output: str) -> str:
    match = re.search(pattern, output, re.MULTILINE)
    if match is None:
        raise ValueError(f"wrk output lacks {pattern!r}:\n{output}")
    return match.group(1)


def wrk(name: str, url: str, *, duration: int, connections: int, threads: int) -> Result:
    """Run wrk against ``url``; requests/s and the p50/p99 latency in ms."""
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"{name}: errors during the run:\n{output}")
    return Result(
        name,
        float(_field(r"Requests/sec:\s+([\d.]+)", output)),
        _milliseconds(_field(r"^\s+50%\s+(\S+)", output)),
        _milliseconds(_field(r"^\s+99%\s+(\S+)", output)),
    )


@contextmanager
def serve(python: Path, target: Target, cwd: Path) -> Iterator[tuple[str, float, int]]:
    """Serve ``target`` with one uvicorn worker.

    Yields its base URL, the cold start (seconds from spawn to the first 200 on
    ``target.path``) and the process id.
    """
    port = free_port()
    argv = [
        str(python),
        "-m",
        "uvicorn",
        target.app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if target.app.startswith("raw_asgi"):
        argv += ["--lifespan", "off"]
    env = {**os.environ, "SECRETS_DIR": "/nonexistent", "LOG_LEVEL": "WARNING", **target.env}
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{target.name}: server exited {process.returncode}")
            try:
                if httpx.get(f"{base}{target.path}", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - started > 60:
                raise TimeoutError(f"{target.name}: no 200 within 60 s")
            time.sleep(0.005)
        yield base, time.perf_counter() - started, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def database(admin_url: str, python: Path) -> Iterator[str]:
    """A fresh database on the admin URL's server; yields its URL, drops it afterwards."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    base, _, _ = admin_url.rpartition("/")
    run_sql = [
        str(python),
        "-c",
        "import asyncio, asyncpg, sys\n"
        "async def main():\n"
        "    connection = await asyncpg.connect(sys.argv[1])\n"
        "    await connection.execute(sys.argv[2])\n"
        "    await connection.close()\n"
        "asyncio.run(main())",
    ]
    subprocess.run([*run_sql, admin_url, f'CREATE DATABASE "{name}"'], check=True)
    try:
        yield f"{base}/{name}"
    finally:
        subprocess.run([*run_sql, admin_url, f'DROP DATABASE "{name}" WITH (FORCE)'], check=True)


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {memory:.0f} GiB RAM, Linux {platform.release()}; "
        "wrk and the server share the machine"
    )


def chart(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4.5))
    names = [result.name for result in results]
    values = [result.requests_per_second for result in results]
    bars = axis.barh(names[::-1], values[::-1], color="#4c78a8")
    for bar, result in zip(bars, results[::-1], strict=True):
        axis.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {result.requests_per_second:,.0f} req/s, p99 {result.p99_ms:.1f} ms",
            va="center",
            fontsize=8,
        )
    axis.set_xlabel("requests per second (one uvicorn worker; higher is better)")
    axis.set_xlim(0, max(values) * 1.45)
    axis.set_title("Health endpoints against baselines")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per target per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 1

    build = TEMPLATE / "build" / "bench"
    shutil.rmtree(build, ignore_errors=True)
    project = bake(build, {})
    python_version = re.search(
        r'^python_version = "([\d.]+)"', (project / "pyproject.toml").read_text(), re.M
    )
    python = install(project, python_version.group(1) if python_version else "3.12", groups=())
    package = next(p.name for p in (project / "src").iterdir() if p.is_dir())
    admin = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    wrk_options = {
        "duration": args.duration,
        "connections": args.connections,
        "threads": args.threads,
    }

    scratch = Path(tempfile.mkdtemp(prefix="bench-"))
    (scratch / "raw_asgi.py").write_text(RAW_ASGI)
    (scratch / "bare_fastapi.py").write_text(BARE_FASTAPI)
    (scratch / "naive_readiness.py").write_text(NAIVE_READINESS)
    samples: dict[str, list[Result]] = {}
    cold_starts: dict[str, list[float]] = {}
    memory: dict[str, float] = {}
    with database(admin, python) as url:
        service_env = {"ENVIRONMENT": "production", "DATABASE_URL": url}
        subprocess.run(
            [str(python), "-m", "alembic", "upgrade", "head"],
            cwd=project,
            env={**os.environ, **service_env},
            check=True,
            capture_output=True,
        )
        app = f"{package}.main:app"
        targets = [
            Target("raw ASGI constant (ceiling)", "raw_asgi:app", "/health/live", {}, True),
            Target(
                "bare FastAPI constant (baseline)", "bare_fastapi:app", "/health/live", {}, True
            ),
            Target("/health/live", app, "/health/live", service_env),
            Target("/health/ready (1 s cache)", app, "/health/ready", service_env),
            Target(
                "/health/ready (no cache)",
                app,
                "/health/ready",
                {**service_env, "HEALTH_CACHE_TTL": "0"},
            ),
            Target("/health", app, "/health", service_env),
            Target(
                "naive ready (new connection per probe)",
                "naive_readiness:app",
                "/health/ready",
                {"NAIVE_DSN": url.replace("postgresql+asyncpg", "postgresql")},
            ),
        ]
        for round_ in range(args.rounds):
            for target in targets:
                cwd = project if target.app == app else scratch
                with serve(python, target, cwd) as (base, cold, pid):
                    cold_starts.setdefault(target.name, []).append(cold)
                    result = wrk(target.name, f"{base}{target.path}", **wrk_options)
                    samples.setdefault(target.name, []).append(result)
                    if round_ == 0 and target.name in (
                        "bare FastAPI constant (baseline)",
                        "/health/live",
                    ):
                        time.sleep(2)
                        memory[target.name] = psutil.Process(pid).memory_info().rss / 2**20
                print(
                    f"round {round_ + 1}: {result.name}: {result.requests_per_second:,.0f} req/s",
                    file=sys.stderr,
                )
        # Cold start of the service and of the bare app, a few more times.
        for target in (targets[1], targets[2]):
            cwd = project if target.app == app else scratch
            for _ in range(max(0, 5 - args.rounds)):
                with serve(python, target, cwd) as (_, cold, _):
                    cold_starts[target.name].append(cold)
    shutil.rmtree(scratch, ignore_errors=True)

    results = []
    for target in targets:
        runs = sorted(samples[target.name], key=lambda result: result.requests_per_second)
        results.append(runs[len(runs) // 2])
    baseline = next(r for r in results if r.name.startswith("bare FastAPI")).requests_per_second
    by_name = {result.name: result.requests_per_second for result in results}
    live = by_name["/health/live"]
    service_cold = statistics.median(cold_starts["/health/live"])
    bare_cold = statistics.median(cold_starts["bare FastAPI constant (baseline)"])

    lines = [
        "# Benchmarks",
        "",
        "Measured by `make bench` (`benchmarks/bench.py`) in one run, side by side: the baked",
        "default service against baselines served by the same interpreter and uvicorn, one",
        f"worker each. wrk `-t{args.threads} -c{args.connections} -d{args.duration}s`, "
        f"{args.rounds} interleaved rounds, the median round shown.",
        "",
        f"Machine: {machine()}. Python {platform.python_version()} (runner); the servers run",
        f"on the baked project's Python {python_version.group(1) if python_version else ''}.",
        "PostgreSQL on the same machine.",
        "",
        "| target | requests/s | p50 (ms) | p99 (ms) | vs bare FastAPI |",
        "|---|---:|---:|---:|---:|",
    ]
    for result in results:
        lines.append(
            f"| {result.name} | {result.requests_per_second:,.0f} | {result.p50_ms:.2f} | "
            f"{result.p99_ms:.2f} | {result.requests_per_second / baseline:.2f}x |"
        )
    lines += [
        "",
        "| start-up and memory | service | bare FastAPI | ratio |",
        "|---|---:|---:|---:|",
        f"| cold start to first 200 on `/health/live` (median of 5) | {service_cold:.2f} s | "
        f"{bare_cold:.2f} s | {service_cold / bare_cold:.2f}x |",
        f"| idle resident memory | {memory['/health/live']:.0f} MiB | "
        f"{memory['bare FastAPI constant (baseline)']:.0f} MiB | "
        f"{memory['/health/live'] / memory['bare FastAPI constant (baseline)']:.2f}x |",
        "",
        "![requests per second](benchmarks.png)",
        "",
        "Reading it. Against `/health/live` of the same app (same middleware: request IDs,",
        "Prometheus metrics, the 503 headers), `/health/ready` with its 1 s cache serves "
        f"{by_name['/health/ready (1 s cache)'] / live:.2f}x the",
        "requests, because probes within the cache period share one result and its encoded",
        f"body; with caching off, {by_name['/health/ready (no cache)'] / live:.2f}x, every "
        "probe checking out a pooled",
        "connection for `SELECT 1`. The naive check, a new PostgreSQL connection per probe,",
        f"serves {by_name['naive ready (new connection per probe)'] / live:.3f}x: a burst of "
        "probes from kubelets and load",
        "balancers becomes an outage of its own. The middleware stack is what separates",
        "`/health/live` from the bare FastAPI route.",
        "",
        "Reproduce: `make bench` (needs `wrk`, e.g. `apt-get install wrk`, and PostgreSQL at",
        "`BENCH_DATABASE_URL`).",
    ]
    DOCS.mkdir(exist_ok=True)
    (DOCS / "benchmarks.md").write_text("\n".join(lines) + "\n")
    chart(results, DOCS / "benchmarks.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
