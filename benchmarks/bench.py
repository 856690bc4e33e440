"""Benchmarks: the baked service's health endpoints against baselines, in one run.

Bakes the default service into ``build/bench``, installs it (no dev tools, bytecode
compiled as in its image), and
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
  probe, the way most templates' snippets do it;
- the HTTP metrics libraries on the bare route (``http_metrics.py``: none, the
  former home-made middleware, prometheus-fastapi-instrumentator, starlette-exporter),
  served from a virtualenv of their own.

It also measures cold start (process start to the first 200 on ``/health/live``,
median of 5) and idle resident memory (2 s after the first round's load), for the
service, the bare FastAPI app and the bare app importing the ORM and its driver (the
floor: what the service cannot start below), and checks them against the goals in
``GOALS``.

The production start is measured apart, against that floor: the service started as its
image starts it (``python -m <package> serve --proxy-headers``, the settings of
``k8s/base/settings.env``, JSON logs at INFO, ``PYTHONDONTWRITEBYTECODE=1``, the real
PostgreSQL) and the floor under ``python -m uvicorn`` with uvicorn's defaults, in
``--starts`` interleaved rounds (the order alternates), each round started in a quiet
moment (the CPUs at most ``--quiet`` busy with other work over half a second, waited
for up to ``--patience`` seconds); the medians, their ratio, the CPU seconds each
server spent by its first 200, and the load average are reported. ``--against REF``
adds the service baked from the template at git ``REF`` to the same rounds (a change's
before and after against one floor); ``--starts-only`` runs that comparison alone and
prints it without writing the docs (re-run it to see the noise).

Usage: ``python benchmarks/bench.py`` (``make bench``; ``--help`` for the options). Writes
``docs/benchmarks.md`` (table and machine) and ``docs/benchmarks.png`` (chart).
"""

from __future__ import annotations

import argparse
import http.client
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
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import http_metrics
from baking import TEMPLATE, bake, install
from cookiecutter.main import cookiecutter

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
# The bare app, importing what the default bake's database layer imports (SQLAlchemy's
# asyncio engine and ORM, the asyncpg dialect, and asyncpg itself, which the dialect
# loads when the engine is created): the floor of the service's start and memory.
BARE_FASTAPI_ORM = (
    BARE_FASTAPI
    + """
import asyncpg
import sqlalchemy.dialects.postgresql.asyncpg
import sqlalchemy.ext.asyncio
import sqlalchemy.orm
"""
)
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
    # Served by this interpreter from this folder (default: the bake's, see main).
    python: Path | None = None
    cwd: Path | None = None


BARE = "bare FastAPI constant (baseline)"
FLOOR = "bare FastAPI + ORM imports"
PRODUCTION = "production start"
LIVE = "/health/live"
READY = "/health/ready (1 s cache)"
# The goals: (what, ratio to the bare FastAPI app, at least or at most).
GOALS = (
    ("/health/live requests/s", 0.90, ">="),
    ("/health/ready (1 s cache) requests/s", 0.80, ">="),
    ("cold start", 1.7, "<="),
    ("idle resident memory", 1.35, "<="),
)
# The production start against the floor (the bare app importing the database layer).
START_GOAL = 1.15


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


def wait_for_200(
    process: subprocess.Popen[bytes], port: int, path: str, name: str, started: float
) -> float:
    """Poll ``http://127.0.0.1:<port><path>`` every 2 ms until it answers 200.

    A plain ``http.client`` request per attempt: a poller that builds an HTTP client
    per attempt would take CPU from the server it times. Returns the seconds from
    ``started`` (``time.perf_counter()`` before the spawn) to that 200.

    Raises:
        RuntimeError: the server exited first.
        TimeoutError: no 200 within 60 s.
    """
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name}: server exited {process.returncode}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
        try:
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        finally:
            connection.close()
        if time.perf_counter() - started > 60:
            raise TimeoutError(f"{name}: no 200 within 60 s")
        time.sleep(0.002)


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
    try:
        cold = wait_for_200(process, port, target.path, target.name, started)
        yield f"http://127.0.0.1:{port}", cold, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass(frozen=True)
class Start:
    """A server started as a command: ``argv`` has ``{port}`` where the port goes."""

    name: str
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    path: str = "/health/live"


def cpu_seconds(pid: int) -> float:
    """CPU seconds process ``pid`` has run so far, all its threads.

    From the scheduler's nanosecond counters (``/proc/<pid>/task/*/schedstat``) where
    Linux has them; otherwise psutil's user and system times, in clock ticks (10 ms).
    """
    tasks = Path(f"/proc/{pid}/task")
    try:
        return (
            sum(int((task / "schedstat").read_text().split()[0]) for task in tasks.iterdir()) / 1e9
        )
    except (OSError, ValueError, IndexError):
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)


def start_once(start: Start) -> tuple[float, float]:
    """Start ``start`` and stop it at its first 200.

    Returns the seconds from spawn to the first 200 and the CPU seconds the server
    process had spent by then (``cpu_seconds``). Its output goes to a file, shown
    when it fails.
    """
    port = free_port()
    argv = [arg.replace("{port}", str(port)) for arg in start.argv]
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=start.cwd, env=dict(start.env), stdout=output, stderr=output
        )
        try:
            seconds = wait_for_200(process, port, start.path, start.name, started)
            cpu = cpu_seconds(process.pid)
        except (RuntimeError, TimeoutError):
            output.seek(0)
            sys.stderr.write(output.read().decode(errors="replace")[-4000:])
            raise
        finally:
            process.terminate()
            process.wait(timeout=30)
    return seconds, cpu


def wait_quiet(max_busy: float, patience: float = 30.0) -> float:
    """Wait up to ``patience`` seconds for the CPUs to be at most ``max_busy`` busy.

    ``max_busy`` is a fraction of all CPUs, measured over half a second. Returns the
    last fraction measured (above ``max_busy`` when the machine never quietened).
    """
    deadline = time.monotonic() + patience
    while True:
        busy = psutil.cpu_percent(interval=0.5) / 100
        if busy <= max_busy or time.monotonic() >= deadline:
            return busy


@dataclass(frozen=True)
class StartComparison:
    """Interleaved starts: per target, the seconds to the first 200 and the CPU seconds."""

    seconds: dict[str, list[float]]
    cpu: dict[str, list[float]]
    busy: list[float]
    load: tuple[float, float]

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def median_cpu(self, name: str) -> float:
        return statistics.median(self.cpu[name])


def compare_starts(
    starts: list[Start], runs: int, quiet: float, patience: float
) -> StartComparison:
    """Start each of ``starts`` ``runs`` times, interleaved, the order alternating; each
    round after up to ``patience`` seconds of waiting for a quiet moment (``wait_quiet``)."""
    seconds: dict[str, list[float]] = {start.name: [] for start in starts}
    cpu: dict[str, list[float]] = {start.name: [] for start in starts}
    busy = []
    load_before = os.getloadavg()[0]
    for index in range(runs):
        busy.append(wait_quiet(quiet, patience))
        for start in starts if index % 2 == 0 else starts[::-1]:
            wall, used = start_once(start)
            seconds[start.name].append(wall)
            cpu[start.name].append(used)
        print(
            f"start round {index + 1}/{runs} (CPUs {busy[-1]:.0%} busy before): "
            + ", ".join(f"{name} {values[-1]:.3f} s" for name, values in seconds.items()),
            file=sys.stderr,
        )
    return StartComparison(seconds, cpu, busy, (load_before, os.getloadavg()[0]))


def settings_env(project: Path) -> dict[str, str]:
    """The non-secret production settings of the bake's ``k8s/base/settings.env``."""
    env = {}
    for line in (project / "k8s" / "base" / "settings.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def production_starts(
    python: Path, project: Path, package: str, url: str, scratch: Path
) -> list[Start]:
    """The floor under ``python -m uvicorn`` and the service as its image starts it.

    Both run with the image's ``PYTHONDONTWRITEBYTECODE=1`` and ``PYTHONUNBUFFERED=1``
    from compiled bytecode. The service gets ``settings.env`` with the host on loopback,
    a free ``METRICS_PORT``, no secrets folder and the bench's database.
    """
    image = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    image.pop("VIRTUAL_ENV", None)
    service_env = {
        **image,
        **settings_env(project),
        "HOST": "127.0.0.1",
        "METRICS_PORT": str(free_port()),
        "SECRETS_DIR": "/nonexistent",
        "DATABASE_URL": url,
    }
    uvicorn = ("-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}")
    serve_argv = ("-m", package, "serve", "--host", "127.0.0.1", "--port", "{port}")
    return [
        Start(FLOOR, (str(python), *uvicorn, "bare_fastapi_orm:app"), scratch, image),
        Start(PRODUCTION, (str(python), *serve_argv, "--proxy-headers"), project, service_env),
    ]


def start_lines(comparison: StartComparison, runs: int, quiet: float, patience: float) -> list[str]:
    """The production start's table and how it was measured, as Markdown lines."""
    floor, floor_cpu = comparison.median(FLOOR), comparison.median_cpu(FLOOR)
    lines = [
        f"| start ({runs} interleaved runs each, medians) | spawn to first 200 on"
        " `/health/live` | vs floor | CPU seconds of the server by then | vs floor |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in comparison.seconds:
        seconds, cpu = comparison.median(name), comparison.median_cpu(name)
        ratio = f"{seconds / floor:.2f}x"
        if name == PRODUCTION:
            ratio += f" ({_ratio_check(seconds / floor, START_GOAL, '<=')})"
        label = f"floor: {name} (`python -m uvicorn`)" if name == FLOOR else name
        lines.append(
            f"| {label} | {seconds:.3f} s | {ratio} | {cpu:.3f} s | {cpu / floor_cpu:.2f}x |"
        )
    before, after = comparison.load
    return [
        *lines,
        "",
        f"Each round started when the CPUs were at most {quiet:.0%} busy with other work (or"
        f" after {patience:.0f} s of waiting): busy"
        f" {statistics.median(comparison.busy):.0%} before a round in the median,"
        f" {max(comparison.busy):.0%} at most; load average {before:.1f} before the rounds and"
        f" {after:.1f} after (1 minute).",
    ]


def python_version_of(project: Path) -> str:
    """The Python version a bake's tools use (its ``pyproject.toml``'s mypy ``python_version``)."""
    match = re.search(
        r'^python_version = "([\d.]+)"', (project / "pyproject.toml").read_text(), re.M
    )
    return match.group(1) if match else "3.12"


def bake_at(ref: str, build: Path) -> Path:
    """Bake the default service from the template as it was at git ``ref``; returns the project.

    Raises:
        subprocess.CalledProcessError: ``ref`` is not a commit of this repository.
    """
    source = build / "template"
    shutil.rmtree(build, ignore_errors=True)
    source.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(TEMPLATE), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    return Path(cookiecutter(str(source), no_input=True, output_dir=str(build / "bake")))


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
    load = os.getloadavg()[1]
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {memory:.0f} GiB RAM, Linux {platform.release()}; "
        f"wrk and the server share the machine (load average {load:.1f} over the 5 minutes"
        " before the report: other work on the machine makes the absolute figures and the"
        " cold starts noisy; the ratios come from interleaved rounds)"
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


def _ratio_check(value: float, goal: float, sense: str) -> str:
    met = value >= goal if sense == ">=" else value <= goal
    return f"{sense} {goal:.2f}x: {'met' if met else 'NOT met'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per target per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--no-libraries", action="store_true", help="skip the HTTP metrics libraries"
    )
    parser.add_argument(
        "--starts", type=int, default=7, help="interleaved production start rounds (at least 5)"
    )
    parser.add_argument(
        "--against",
        metavar="REF",
        help="also start the service baked from the template at this git ref (before a change)",
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.25,
        help="start a round when other work keeps the CPUs at most this busy (0-1)",
    )
    parser.add_argument(
        "--patience",
        type=float,
        default=30.0,
        help="seconds a round waits for that quiet moment before it starts anyway",
    )
    parser.add_argument(
        "--starts-only",
        action="store_true",
        help="only compare the production start with the floor; print it, write no docs",
    )
    args = parser.parse_args()
    if args.starts < 5:
        parser.error("--starts must be at least 5")
    if not args.starts_only and shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 1

    build = TEMPLATE / "build" / "bench"
    shutil.rmtree(build, ignore_errors=True)
    project = bake(build, {})
    version = python_version_of(project)
    # Bytecode compiled at install, as in the service's image: under PYTHONDONTWRITEBYTECODE
    # every start would otherwise compile each module from source, and the cold starts
    # and memory measured would be the compiler's (the baselines' too, in smaller part).
    python = install(
        project,
        version,
        groups=(),
        compile_bytecode=True,
    )
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
    (scratch / "bare_fastapi_orm.py").write_text(BARE_FASTAPI_ORM)
    (scratch / "naive_readiness.py").write_text(NAIVE_READINESS)
    (scratch / "variant.py").write_text(http_metrics.APP)
    # The baselines' own modules compiled too, for starts under PYTHONDONTWRITEBYTECODE.
    subprocess.run([str(python), "-m", "compileall", "-q", str(scratch)], check=True)
    library_python = None
    if not (args.no_libraries or args.starts_only):
        library_python = http_metrics.environment(build / "libraries")
    samples: dict[str, list[Result]] = {}
    cold_starts: dict[str, list[float]] = {}
    memory: dict[str, float] = {}
    with database(admin, python) as url:
        # A free metrics port: the default 9000 may be another server's on a shared machine.
        service_env = {
            "ENVIRONMENT": "production",
            "DATABASE_URL": url,
            "METRICS_PORT": str(free_port()),
        }
        subprocess.run(
            [str(python), "-m", "alembic", "upgrade", "head"],
            cwd=project,
            env={**os.environ, **service_env},
            check=True,
            capture_output=True,
        )
        production = production_starts(python, project, package, url, scratch)
        if args.against:
            # The same Python; the ref's own lock; the schema this run migrated.
            earlier = bake_at(args.against, build / "against")
            earlier_python = install(earlier, python_version_of(earlier), (), compile_bytecode=True)
            production.append(
                replace(
                    production[1],
                    name=f"{PRODUCTION} at {args.against}",
                    argv=(str(earlier_python), *production[1].argv[1:]),
                    cwd=earlier,
                )
            )
        if args.starts_only:
            comparison = compare_starts(production, args.starts, args.quiet, args.patience)
            print("\n".join(start_lines(comparison, args.starts, args.quiet, args.patience)))
            shutil.rmtree(scratch, ignore_errors=True)
            return 0
        app = f"{package}.main:app"
        targets = [
            Target("raw ASGI constant (ceiling)", "raw_asgi:app", "/health/live", {}, True),
            Target(BARE, "bare_fastapi:app", "/health/live", {}, True),
            Target(LIVE, app, "/health/live", service_env, cwd=project),
            Target(READY, app, "/health/ready", service_env, cwd=project),
            Target(
                "/health/ready (no cache)",
                app,
                "/health/ready",
                {**service_env, "HEALTH_CACHE_TTL": "0"},
                cwd=project,
            ),
            Target("/health", app, "/health", service_env, cwd=project),
            Target(
                "naive ready (new connection per probe)",
                "naive_readiness:app",
                "/health/ready",
                {"NAIVE_DSN": url.replace("postgresql+asyncpg", "postgresql")},
            ),
        ]
        if library_python is not None:
            targets += [
                Target(
                    f"metrics: {name}",
                    "variant:app",
                    "/health/live",
                    {"VARIANT": variant},
                    python=library_python,
                )
                for name, variant in http_metrics.VARIANTS.items()
            ]
        for round_ in range(args.rounds):
            for target in targets:
                with serve(target.python or python, target, target.cwd or scratch) as (
                    base,
                    cold,
                    pid,
                ):
                    cold_starts.setdefault(target.name, []).append(cold)
                    result = wrk(target.name, f"{base}{target.path}", **wrk_options)
                    samples.setdefault(target.name, []).append(result)
                    if round_ == 0 and target.name in (BARE, LIVE):
                        time.sleep(2)
                        memory[target.name] = psutil.Process(pid).memory_info().rss / 2**20
                print(
                    f"round {round_ + 1}: {result.name}: {result.requests_per_second:,.0f} req/s",
                    file=sys.stderr,
                )
        # Cold start and memory of the service, the bare app and the bare app with the ORM,
        # interleaved, five times each.
        floor = Target(FLOOR, "bare_fastapi_orm:app", "/health/live", {})
        starts = (targets[1], targets[2], floor)
        for index in range(5):
            for target in starts:
                if index < args.rounds and target is not floor:
                    continue
                with serve(python, target, target.cwd or scratch) as (_, cold, pid):
                    cold_starts.setdefault(target.name, []).append(cold)
                    if target is floor and index == 0:
                        time.sleep(2)
                        memory[floor.name] = psutil.Process(pid).memory_info().rss / 2**20
        # The service as its image starts it, against the floor.
        comparison = compare_starts(production, args.starts, args.quiet, args.patience)
    micro = http_metrics.in_process(library_python, scratch) if library_python else {}
    shutil.rmtree(scratch, ignore_errors=True)

    results = []
    for target in targets:
        runs = sorted(samples[target.name], key=lambda result: result.requests_per_second)
        results.append(runs[len(runs) // 2])
    by_name = {result.name: result.requests_per_second for result in results}
    baseline = by_name[BARE]
    live = by_name[LIVE]
    cold = {name: statistics.median(values) for name, values in cold_starts.items()}
    ratios = {
        "/health/live requests/s": live / baseline,
        "/health/ready (1 s cache) requests/s": by_name[READY] / baseline,
        "cold start": cold[LIVE] / cold[BARE],
        "idle resident memory": memory[LIVE] / memory[BARE],
    }

    lines = [
        "# Benchmarks",
        "",
        "Measured by `make bench` (`benchmarks/bench.py`) in one run, side by side: the baked",
        "default service against baselines served by the same interpreter and uvicorn, one",
        f"worker each. wrk `-t{args.threads} -c{args.connections} -d{args.duration}s`, "
        f"{args.rounds} interleaved rounds, the median round shown.",
        "",
        f"Machine: {machine()}. Python {platform.python_version()} (runner); the servers run",
        f"on the baked project's Python {version}.",
        "PostgreSQL on the same machine.",
        "",
        "| target | requests/s | p50 (ms) | p99 (ms) | vs bare FastAPI |",
        "|---|---:|---:|---:|---:|",
    ]
    for result in results:
        if result.name.startswith("metrics: "):
            continue
        lines.append(
            f"| {result.name} | {result.requests_per_second:,.0f} | {result.p50_ms:.2f} | "
            f"{result.p99_ms:.2f} | {result.requests_per_second / baseline:.2f}x |"
        )
    lines += [
        "",
        "| start-up and memory | service | bare FastAPI | bare FastAPI + ORM imports |"
        " service vs bare |",
        "|---|---:|---:|---:|---:|",
        "| cold start to first 200 on `/health/live` (`uvicorn <app>`, logs at WARNING;"
        f" median of 5) | {cold[LIVE]:.2f} s | "
        f"{cold[BARE]:.2f} s | {cold[floor.name]:.2f} s | {ratios['cold start']:.2f}x |",
        f"| idle resident memory | {memory[LIVE]:.0f} MiB | {memory[BARE]:.0f} MiB | "
        f"{memory[floor.name]:.0f} MiB | {ratios['idle resident memory']:.2f}x |",
        "",
        "| goal (vs bare FastAPI, this run) | measured | goal |",
        "|---|---:|---|",
    ]
    for what, goal, sense in GOALS:
        lines.append(
            f"| {what} | {ratios[what]:.2f}x | {_ratio_check(ratios[what], goal, sense)} |"
        )
    lines += [
        "",
        "The production start: the service as its image starts it (`python -m <package> serve"
        " --proxy-headers`,",
        "the settings of `k8s/base/settings.env`, JSON logs at INFO, PostgreSQL,"
        " `PYTHONDONTWRITEBYTECODE=1`),",
        "against the floor above under `python -m uvicorn` with uvicorn's defaults, both from"
        " compiled bytecode:",
        "",
        *start_lines(comparison, args.starts, args.quiet, args.patience),
    ]
    if library_python is not None:
        none = by_name["metrics: none"]
        lines += [
            "",
            "HTTP metrics libraries, each alone on the bare FastAPI app's `/health/live`"
            " (`benchmarks/http_metrics.py`,",
            f"{', '.join(http_metrics.LIBRARIES)}; same run; in process: the same apps called"
            " without a server, steadier on a busy machine):",
            "",
            "| HTTP metrics middleware | requests/s | p99 (ms) | vs no middleware |"
            " in process, us per request | added us |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for result in results:
            if result.name.startswith("metrics: "):
                name = result.name.removeprefix("metrics: ")
                lines.append(
                    f"| {name} | {result.requests_per_second:,.0f} | {result.p99_ms:.2f} | "
                    f"{result.requests_per_second / none:.2f}x | {micro[name]:.1f} | "
                    f"{micro[name] - micro['none']:+.1f} |"
                )
    lines += [
        "",
        "![requests per second](benchmarks.png)",
        "",
        "Reading it. The service answers `/health/live`, and `/health/ready` while its 1 s",
        "cache holds a passing result, in front of its middleware stack",
        "(`health/probes.py`): the same bytes and headers as the routes, with the request ID",
        "and the HTTP metrics, without the error handlers, the body limit, routing and",
        "dependency solving, so both probes can serve more than the bare FastAPI route. With",
        f"caching off, readiness serves {by_name['/health/ready (no cache)'] / baseline:.2f}x, "
        "every probe checking out a pooled",
        "connection for `SELECT 1`. The naive check, a new PostgreSQL connection per probe,",
        f"serves {by_name['naive ready (new connection per probe)'] / baseline:.3f}x: a burst of "
        "probes from kubelets and load",
        "balancers becomes an outage of its own. Start-up and memory: every server runs from",
        "bytecode compiled at install, as in the service's image. The bare app importing",
        "SQLAlchemy's asyncio engine and ORM, the asyncpg dialect and asyncpg is the floor the",
        "service cannot go below while it serves from that database layer: "
        f"{memory[floor.name] / memory[BARE]:.2f}x the bare app's",
        f"memory and {cold[floor.name] / cold[BARE]:.2f}x its cold start in this run. Above it,"
        " the service's settings",
        "(pydantic-settings), metrics (prometheus-client), JSON logs, routes, job registry",
        "and leader election; APScheduler's scheduler loads when the process starts",
        "scheduling (once elected, never in a follower), httpx and tenacity with the first",
        "heartbeat target, the HTTP client with the first ping. The start-up goal is set on",
        "the production start: the cold start above runs every server under `uvicorn` with",
        "logs at WARNING, the production start as the image runs it; the two differ.",
        "",
        "HTTP metrics library. prometheus-fastapi-instrumentator's middleware writes the",
        "service's two series (`Metrics.observe_info` bounds the method; route template,",
        "exact status). It costs more per request than the former home-made middleware,",
        "its route lookup walking the routes on every request, a cost the probes do not pay.",
        "starlette-exporter costs more still, keeps its series in the global registry and",
        "labels any method a client invents.",
        "",
        "Reproduce: `make bench` (needs `wrk`, installed with apt-get when run as root, and",
        "PostgreSQL at `BENCH_DATABASE_URL`).",
    ]
    DOCS.mkdir(exist_ok=True)
    (DOCS / "benchmarks.md").write_text("\n".join(lines) + "\n")
    chart(
        [result for result in results if not result.name.startswith("metrics: ")],
        DOCS / "benchmarks.png",
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
