"""Fault injection against the baked service, with faults caused for real.

Each test runs the baked service as its image does (``python -m <package> serve``)
against a private PostgreSQL (its own data folder and port) and, for the Redis
combinations, a private Redis, so a fault can be caused for real: SIGSTOP (a hung
server: connections stay open and nothing answers), a stop, a restart. Every loop
is bounded in count and time, and every address is on the loopback.

The leader-failover fault (three processes on one PostgreSQL, the leader killed
with SIGKILL, another takes over and no fire runs twice) is in the baked project's
own suite (``tests/test_scheduling_leader.py``), which ``test_project.py`` runs.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from .conftest import TEST_REDIS_URL, Project
from .services import (
    PrivatePostgres,
    PrivateRedis,
    Service,
    connections_to,
    free_port,
    probe,
    start_service,
)

CHECK_TIMEOUT = 1.0
CACHE_TTL = 1.0
POOL_SIZE = 3
MAX_OVERFLOW = 2
# The scheduler's leader lock holds one connection of its own, outside the pool.
CONNECTION_BOUND = POOL_SIZE + MAX_OVERFLOW + 1
PROBE_INTERVAL = 0.1
# An ERROR line can be the service reporting the fault (the leader lock lost); an
# exception nobody handled shows as a traceback or one of asyncio's notices.
UNHANDLED = re.compile(r"Traceback|Exception in ASGI|exception was never retrieved|Unhandled")


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "ENVIRONMENT": "production",
        "DATABASE_URL": database_url,
        "HEALTH_CHECK_TIMEOUT": str(CHECK_TIMEOUT),
        "HEALTH_CACHE_TTL": str(CACHE_TTL),
        "DATABASE_POOL_SIZE": str(POOL_SIZE),
        "DATABASE_MAX_OVERFLOW": str(MAX_OVERFLOW),
        "SCHEDULER_LEADER_RETRY_INTERVAL": "0.5",
        # Production requires REDIS_URL in the Redis combinations (ignored by the others).
        "REDIS_URL": TEST_REDIS_URL,
        **extra,
    }


def probe_through_fault(service: Service, seconds: float, dependency_port: int) -> int:
    """Probe for ``seconds`` during a fault; returns the most connections seen.

    Starts one cache period after the fault began, when a result observed before
    it may no longer be served. Every readiness probe must answer 503 within the
    check timeout plus 0.2 s, and every liveness probe 200.
    """
    time.sleep(CACHE_TTL)
    deadline = time.monotonic() + seconds
    probes = 0
    most = 0
    while time.monotonic() < deadline:
        status, elapsed = probe(service, "/health/ready")
        assert status == 503, f"readiness answered {status} during the fault"
        assert elapsed < CHECK_TIMEOUT + 0.2, f"readiness took {elapsed:.3f} s during the fault"
        status, _ = probe(service, "/health/live")
        assert status == 200, f"liveness answered {status} during the fault"
        most = max(most, connections_to(service.process.pid, dependency_port))
        probes += 1
        time.sleep(PROBE_INTERVAL)
    assert probes >= 5
    return most


def seconds_until_ready(service: Service, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if probe(service, "/health/ready")[0] == 200:
            return time.monotonic() - started
        time.sleep(PROBE_INTERVAL / 2)
    raise AssertionError(f"readiness did not recover within {within} s")


def assert_clean_exit(service: Service) -> None:
    exit_code = service.stop()
    log = service.output()
    assert exit_code == 0, log
    unhandled = [line for line in log.splitlines() if UNHANDLED.search(line)]
    assert unhandled == [], "\n".join(unhandled)


@pytest.fixture
def running(
    project: Project, private_postgres: PrivatePostgres, tmp_path: Path
) -> Iterator[Service]:
    env = service_env(private_postgres.url)
    project.migrate(env)
    service = start_service(project.path, project.python, env, log=tmp_path / "service.log")
    try:
        service.wait_until_live()
        yield service
    finally:
        service.stop()


def test_database_paused_then_resumed(running: Service, private_postgres: PrivatePostgres) -> None:
    assert probe(running, "/health/ready")[0] == 200
    assert httpx.post(f"{running.base_url}/items", json={"name": "before"}).status_code == 201
    private_postgres.pause()
    try:
        most = probe_through_fault(running, 4.0, private_postgres.port)
    finally:
        private_postgres.resume()
    recovered = seconds_until_ready(running, within=10.0)
    assert recovered <= CACHE_TTL + CHECK_TIMEOUT + PROBE_INTERVAL, f"took {recovered:.2f} s"
    assert most <= CONNECTION_BOUND, f"{most} connections to PostgreSQL during the fault"
    assert connections_to(running.process.pid, private_postgres.port) <= CONNECTION_BOUND
    assert httpx.get(f"{running.base_url}/items").status_code == 200
    assert_clean_exit(running)


def test_database_stopped_then_restarted(
    running: Service, private_postgres: PrivatePostgres
) -> None:
    assert probe(running, "/health/ready")[0] == 200
    private_postgres.stop()
    most = probe_through_fault(running, 2.0, private_postgres.port)
    private_postgres.start()
    recovered = seconds_until_ready(running, within=10.0)
    assert recovered <= CACHE_TTL + CHECK_TIMEOUT + PROBE_INTERVAL, f"took {recovered:.2f} s"
    assert most <= CONNECTION_BOUND
    assert httpx.get(f"{running.base_url}/items").status_code == 200
    assert_clean_exit(running)


def test_redis_stopped_then_restarted(
    project: Project, private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    if not project.context["use_redis"]:
        pytest.skip("this combination has no Redis")
    redis = PrivateRedis(root=tmp_path)
    redis.start()
    env = service_env(private_postgres.url, REDIS_URL=redis.url)
    project.migrate(env)
    service = start_service(project.path, project.python, env, log=tmp_path / "service.log")
    try:
        service.wait_until_live()
        assert probe(service, "/health/ready")[0] == 200
        redis.stop()
        most = probe_through_fault(service, 2.0, redis.port)
        redis.start()
        recovered = seconds_until_ready(service, within=10.0)
        assert recovered <= CACHE_TTL + CHECK_TIMEOUT + PROBE_INTERVAL, f"took {recovered:.2f}"
        assert most <= POOL_SIZE + MAX_OVERFLOW
    finally:
        redis.stop()
    assert_clean_exit(service)


# --- Heartbeat monitor faults ----------------------------------------------------------------

HEARTBEAT_TIMEOUT = 0.5
HEARTBEAT_RETRIES = 2
# Per ping: every attempt times out, with full-jitter backoff of at most 1 s, then
# 2 s, between them (tenacity's wait_random_exponential, multiplier 1).
PING_BOUND = (HEARTBEAT_RETRIES + 1) * HEARTBEAT_TIMEOUT + 1.0 + 2.0
START_UP = 8.0  # seconds for the interpreter, imports and the job run itself


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A monitor that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/ping/token-blackhole"


@pytest.fixture
def failing_monitor(httpserver: HTTPServer) -> str:
    """A monitor that answers every ping with 500."""
    httpserver.expect_request(re.compile(".*")).respond_with_data("boom", status=500)
    return httpserver.url_for("/ping/token-500")


def test_jobs_complete_whatever_the_heartbeat_monitor_does(
    project: Project,
    private_postgres: PrivatePostgres,
    blackhole: str,
    failing_monitor: str,
) -> None:
    monitors = {
        "down": f"http://127.0.0.1:{free_port()}/ping/token-down",
        "blackholed": blackhole,
        "500": failing_monitor,
    }
    env = service_env(
        private_postgres.url,
        HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT),
        HEARTBEAT_RETRIES=str(HEARTBEAT_RETRIES),
    )
    project.migrate(env)
    runs = {}
    for name, url in monitors.items():
        runs[name] = (
            time.monotonic(),
            subprocess.Popen(
                [str(project.python), "-m", project.package, "jobs", "run", "heartbeat_example"],
                cwd=project.path,
                env={**project.environ(env), "HEARTBEAT_EXAMPLE_HEARTBEAT_URL": url},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
    for name, (started, process) in runs.items():
        output, _ = process.communicate(timeout=120)
        elapsed = time.monotonic() - started
        assert process.returncode == 0, f"{name}: the job failed:\n{output}"
        # Start and success pings are sent one after the other.
        assert elapsed < 2 * PING_BOUND + START_UP, f"{name}: took {elapsed:.1f} s"
        assert "Traceback" not in output, f"{name}:\n{output}"
        assert "token-" not in output, f"{name}: the ping URL's token was logged"


# --- Graceful shutdown under load --------------------------------------------------------------

# One request per pooled connection: each is then provably inside the app, blocked on the
# table lock in PostgreSQL, before SIGTERM (a request still in the socket buffer at SIGTERM
# is not in flight: uvicorn closes idle connections, and the preStop delay covers those).
IN_FLIGHT = POOL_SIZE + MAX_OVERFLOW
GRACEFUL_TIMEOUT = 15.0


class TableLock:
    """Holds ``LOCK TABLE items`` in a psql session, so requests touching it wait."""

    def __init__(self, server: PrivatePostgres) -> None:
        self.port = server.port
        self.session = subprocess.Popen(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(server.port),
                "-U",
                "postgres",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.session.stdin is not None
        assert self.session.stdout is not None
        self.session.stdin.write(
            "BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE;\n\\echo locked\n"
        )
        self.session.stdin.flush()
        # Only once psql echoes is the lock held: requests sent earlier would not wait.
        assert self.session.stdout.readline().strip() == "locked"

    def waiting(self) -> int:
        """How many other sessions wait for a lock (``pg_stat_activity``)."""
        result = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-Atc",
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return int(result.stdout.strip())

    def release(self) -> None:
        assert self.session.stdin is not None
        self.session.stdin.write("COMMIT;\n\\q\n")
        self.session.stdin.flush()
        self.session.wait(timeout=30)


def test_sigterm_lets_requests_in_flight_and_the_running_job_finish(
    project: Project, private_postgres: PrivatePostgres, httpserver: HTTPServer, tmp_path: Path
) -> None:
    pings: list[str] = []

    def record(request: Request) -> Response:
        pings.append(request.path)
        return Response("OK")

    httpserver.expect_request(re.compile("/slow.*")).respond_with_handler(record)
    env = service_env(
        private_postgres.url,
        PACKAGE=project.package,
        SLOW_JOB_SECONDS="3",
        SLOW_JOB_HEARTBEAT_URL=httpserver.url_for("/slow"),
        SCHEDULER_SHUTDOWN_TIMEOUT="10",
    )
    project.migrate(env)
    service = start_service(
        project.path,
        project.python,
        env,
        log=tmp_path / "service.log",
        graceful_timeout=GRACEFUL_TIMEOUT,
        argv=[str(Path(__file__).with_name("fault_app.py"))],
    )
    try:
        service.wait_until_live()
        deadline = time.monotonic() + 20
        while "/slow/start" not in pings:
            assert time.monotonic() < deadline, f"the job never started: {pings}"
            time.sleep(0.05)

        lock = TableLock(private_postgres)
        results: list[int] = []

        def request() -> None:
            response = httpx.get(f"{service.base_url}/items", timeout=60.0)
            results.append(response.status_code)

        threads = [threading.Thread(target=request) for _ in range(IN_FLIGHT)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while lock.waiting() < IN_FLIGHT:
            assert time.monotonic() < deadline, f"only {lock.waiting()} requests reached the lock"
            time.sleep(0.05)
        assert results == [], "a request finished while the table was locked"

        stopped_at = time.monotonic()
        service.process.terminate()
        time.sleep(1.0)
        lock.release()
        for thread in threads:
            thread.join(timeout=60)
        exit_code = service.process.wait(timeout=60)
        took = time.monotonic() - stopped_at
    finally:
        service.stop()
    log = service.output()
    assert results == [200] * IN_FLIGHT, f"in-flight requests: {results}\n{log}"
    assert exit_code == 0, log
    assert took < GRACEFUL_TIMEOUT + 10 + 2, f"shutdown took {took:.1f} s"
    assert "/slow/fail" not in pings, f"a shutdown paged someone: {pings}"
    assert pings.count("/slow/start") >= 1
    unhandled = [line for line in log.splitlines() if UNHANDLED.search(line)]
    assert unhandled == [], "\n".join(unhandled)
