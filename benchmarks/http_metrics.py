"""Benchmarks: the cost of HTTP metrics libraries on one FastAPI route, in one run.

Chooses the library behind the baked service's HTTP metrics. Every variant is the
same FastAPI app (the service's routes: health, metrics, items with a path
parameter) answering ``GET /health/live`` with a constant, with one metrics
middleware or none, configured for bounded labels (route template, not the raw
path; exact status):

- ``none``: no middleware (the baseline);
- ``home-made``: the service's former pure ASGI ``HttpMetrics`` (route from
  ``scope["route"]``, method bounded to the RFC 9110 set);
- ``instrumentator (defaults)``: prometheus-fastapi-instrumentator's
  ``Instrumentator().instrument(app)``: five series, status grouped as ``2xx``;
- ``instrumentator (service's series)``: its middleware with one instrumentation
  writing the service's two series (``http_requests_total`` and
  ``http_request_duration_seconds`` by method, route and status), method bounded;
- ``starlette-exporter``: its ``PrometheusMiddleware`` (``group_paths``).

The variants run in a virtualenv of their own (``build/bench-metrics``, made with
uv, with the FastAPI and prometheus-client versions of the default bake's lock),
each served by one uvicorn worker and measured with wrk in interleaved rounds; the
median round is reported.

Usage: ``python benchmarks/http_metrics.py`` (``make bench-metrics``). Prints a
Markdown table; ``docs/benchmarks.md`` keeps the one of the choice.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TEMPLATE / "scripts"))

LIBRARIES = ("prometheus-fastapi-instrumentator==8.1.0", "starlette-exporter==0.24.0")
# The default bake's lock: the versions the service runs with.
LOCK = TEMPLATE / "{{cookiecutter.project_slug}}" / "locks" / "uv-sqlalchemy-no-redis-py3.12.lock"
LOCKED = ("fastapi", "starlette", "uvicorn", "prometheus-client", "pydantic")
APP = """
import os
import time

from fastapi import APIRouter, FastAPI, Request
from prometheus_client import CollectorRegistry, Counter, Histogram

VARIANT = os.environ["VARIANT"]
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)

app = FastAPI(redirect_slashes=False)
health = APIRouter(prefix="/health")
items = APIRouter(prefix="/items")


@health.api_route("", methods=["GET", "HEAD"])
async def report() -> dict[str, str]:
    return {"status": "pass"}


@health.api_route("/live", methods=["GET", "HEAD"])
async def live() -> dict[str, str]:
    return {"status": "pass"}


@health.api_route("/ready", methods=["GET", "HEAD"])
async def ready() -> dict[str, str]:
    return {"status": "pass"}


@items.get("")
async def list_items() -> list[int]:
    return []


@items.post("")
async def create_item() -> int:
    return 1


@items.get("/{item_id}")
async def get_item(item_id: int) -> int:
    return item_id


@items.delete("/{item_id}")
async def delete_item(item_id: int) -> None:
    return None


@app.get("/metrics")
async def metrics() -> str:
    return ""


app.include_router(health)
app.include_router(items)
registry = CollectorRegistry()


def series() -> tuple[Counter, Histogram]:
    labels = ["method", "route", "status"]
    return (
        Counter("http_requests_total", "HTTP requests.", labels, registry=registry),
        Histogram("http_request_duration_seconds", "Latency.", labels, registry=registry),
    )


if VARIANT == "home-made":
    requests, duration = series()

    class HttpMetrics:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def send_and_observe(message):
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_and_observe)
            finally:
                route = getattr(scope.get("route"), "path", None) or "<unmatched>"
                method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
                labels = (method, route, str(status))
                requests.labels(*labels).inc()
                duration.labels(*labels).observe(time.perf_counter() - started)

    app.add_middleware(HttpMetrics)
elif VARIANT == "instrumentator-defaults":
    from prometheus_fastapi_instrumentator import Instrumentator

    Instrumentator(registry=registry).instrument(app)
elif VARIANT == "instrumentator-service":
    from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware

    requests, duration = series()

    def observe(info):
        method = info.method if info.method in HTTP_METHODS else "other"
        labels = (method, info.modified_handler, info.modified_status)
        requests.labels(*labels).inc()
        duration.labels(*labels).observe(info.modified_duration)

    app.add_middleware(
        PrometheusInstrumentatorMiddleware,
        should_group_status_codes=False,
        instrumentations=[observe],
        registry=registry,
    )
elif VARIANT == "starlette-exporter":
    from starlette_exporter import PrometheusMiddleware

    app.add_middleware(PrometheusMiddleware, prefix="http", group_paths=True)
"""
# The same variants called in one process, without a server or wrk: microseconds per
# request, the median of nine interleaved rounds. Steadier than requests/s on a busy machine.
IN_PROCESS = """
import asyncio
import os
import sys
import time

SOURCE = open(sys.argv[1]).read()
apps = {}
for variant in sys.argv[2:]:
    os.environ["VARIANT"] = variant
    namespace = {"__name__": "variant_" + variant.replace("-", "_")}
    exec(compile(SOURCE, "variant.py", "exec"), namespace)
    apps[variant] = namespace["app"]
SCOPE = {
    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
    "scheme": "http", "path": "/health/live", "raw_path": b"/health/live", "root_path": "",
    "query_string": b"", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 80),
}


async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message):
    pass


async def per_request(app, count):
    started = time.perf_counter()
    for _ in range(count):
        await app(dict(SCOPE, state={}), receive, send)
    return (time.perf_counter() - started) / count * 1e6


async def main():
    samples = {variant: [] for variant in apps}
    for app in apps.values():
        await per_request(app, 500)
    for _ in range(9):
        for variant, app in apps.items():
            samples[variant].append(await per_request(app, 3000))
    for variant, values in samples.items():
        print(variant, sorted(values)[len(values) // 2])


asyncio.run(main())
"""
VARIANTS = {
    "none": "none",
    "home-made HttpMetrics": "home-made",
    "instrumentator (defaults)": "instrumentator-defaults",
    "instrumentator (service's series)": "instrumentator-service",
    "starlette-exporter": "starlette-exporter",
}


def locked_versions() -> list[str]:
    text = LOCK.read_text()
    pins = []
    for name in LOCKED:
        match = re.search(rf'^name = "{name}"\nversion = "([^"]+)"', text, re.M)
        if match is None:
            raise RuntimeError(f"{name} is not in {LOCK.name}")
        pins.append(f"{name}=={match.group(1)}")
    return pins


def environment(build: Path) -> Path:
    """A virtualenv with the locked framework and both libraries; returns its python."""
    from find_python import find_python

    python_version = re.search(r'^requires-python = ">=([\d.]+)"', LOCK.read_text(), re.M)
    interpreter = find_python(python_version.group(1) if python_version else "3.12")
    if interpreter is None:
        raise RuntimeError(f"no Python interpreter for {LOCK.name}")
    venv = build / "venv"
    subprocess.run(["uv", "venv", "--quiet", "--python", interpreter, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            "uv",
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            "uvicorn[standard]",
            *locked_versions(),
            *LIBRARIES,
        ],
        check=True,
    )
    return python


def in_process(python: Path, folder: Path) -> dict[str, float]:
    """Microseconds per request of each variant, called in one process (``IN_PROCESS``)."""
    (folder / "variant.py").write_text(APP)
    (folder / "in_process.py").write_text(IN_PROCESS)
    output = subprocess.run(
        [
            str(python),
            str(folder / "in_process.py"),
            str(folder / "variant.py"),
            *VARIANTS.values(),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=folder,
    ).stdout
    by_variant = dict(line.split() for line in output.splitlines())
    return {name: float(by_variant[variant]) for name, variant in VARIANTS.items()}


def main() -> int:
    from bench import Target, serve, wrk

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per variant per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 1
    build = TEMPLATE / "build" / "bench-metrics"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    python = environment(build)
    scratch = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    (scratch / "variant.py").write_text(APP)
    samples: dict[str, list[float]] = {}
    p99: dict[str, list[float]] = {}
    try:
        for round_ in range(args.rounds):
            for name, variant in VARIANTS.items():
                target = Target(name, "variant:app", "/health/live", {"VARIANT": variant})
                with serve(python, target, scratch) as (base, _, _):
                    result = wrk(
                        name,
                        f"{base}/health/live",
                        duration=args.duration,
                        connections=args.connections,
                        threads=args.threads,
                    )
                samples.setdefault(name, []).append(result.requests_per_second)
                p99.setdefault(name, []).append(result.p99_ms)
                print(
                    f"round {round_ + 1}: {name}: {result.requests_per_second:,.0f} req/s",
                    file=sys.stderr,
                )
        micro = in_process(python, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    medians = {name: sorted(values)[len(values) // 2] for name, values in samples.items()}
    lines = [
        f"| HTTP metrics middleware ({', '.join(LIBRARIES)}) | requests/s | vs none"
        " | in process, us per request | added us |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, value in medians.items():
        lines.append(
            f"| {name} | {value:,.0f} | {value / medians['none']:.2f}x | {micro[name]:.1f} | "
            f"{micro[name] - micro['none']:+.1f} |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
