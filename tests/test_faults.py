"""Fault injection against the baked service, with faults caused for real.

Each test runs the baked service as its image does (``python -m <package> serve``)
against a private PostgreSQL (its own data folder and port) and, for the Redis
combinations, a private Redis, so a fault can be caused for real: SIGSTOP (a hung
server: connections stay open and nothing answers), a stop, a restart. Every loop
is bounded in count and time, and every address is on the loopback.

The availability faults run under load (writers and readers in threads, see
``load.py``): a second client holding every connection slot, sessions killed with
``pg_terminate_backend``, a restart, SIGSTOP; Redis frozen and Redis refusing
writes (``CLIENT PAUSE WRITE``); oversized request bodies; hostile inputs
(``load.HOSTILE_INPUTS``: NaN, lone surrogates, deep nesting, ids out of range).
Each reports its figures (requests sent, 2xx, 503, 500, lost and duplicated
writes, peak RSS) in the "fault figures" section of pytest's summary; 500s, lost
and duplicated writes must be 0.

The leader-failover faults (three processes on one PostgreSQL; the leader killed
with SIGKILL, paused with SIGSTOP, its lease session terminated; no overlap, no fire
run twice or missed) are in the baked project's own suite
(``tests/test_scheduling_replicas.py``), which ``test_project.py`` runs.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from .combinations import COMBINATIONS, IDS
from .conftest import TEST_REDIS_URL, Project
from .load import HOSTILE_INPUTS, Load, Tally
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
# The scheduler's leader lease holds one connection of its own, outside the pool.
CONNECTION_BOUND = POOL_SIZE + MAX_OVERFLOW + 1
PROBE_INTERVAL = 0.1
# An ERROR line can be the service reporting the fault (the leader lease lost); an
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


def test_redis_stopped_then_restarted_when_required(
    project: Project, private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    if not project.context["use_redis"]:
        pytest.skip("this combination has no Redis")
    redis = PrivateRedis(root=tmp_path)
    redis.start()
    env = service_env(private_postgres.url, REDIS_URL=redis.url, REDIS_REQUIRED="true")
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


# --- Availability errors under load: 503, never 500, no write lost --------------------------

STATEMENT_TIMEOUT = 1.0
FAULT_SECONDS = 3.0
# A request during a fault waits at most for one pool checkout or connect, then one
# statement: answered well within this, 503 or not.
ANSWER_BOUND = 2.0 + 2.0 + STATEMENT_TIMEOUT + 1.0 + 1.0
# "Connection", "application_name" and "pg_terminate_backend" come from PostgreSQL's docs.
TERMINATE_SERVICE_SESSIONS = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    " AND application_name NOT LIKE '%scheduler%'"
)


def fault_env(database_url: str, **extra: str) -> dict[str, str]:
    return service_env(
        database_url,
        DATABASE_STATEMENT_TIMEOUT=str(STATEMENT_TIMEOUT),
        DATABASE_POOL_TIMEOUT="2",
        DATABASE_CONNECT_TIMEOUT="2",
        LOG_LEVEL="INFO",
        **extra,
    )


def under_load(service: Service, name: str, fault: Callable[[], None]) -> Load:
    """Run ``fault`` while writers and readers hit ``service``; wait for readiness after."""
    with Load(service.base_url, name) as load:
        time.sleep(0.5)
        fault()
        seconds_until_ready(service, within=30.0)
        time.sleep(0.5)
    return load


def assert_no_500_and_no_lost_write(
    load: Load,
    server: PrivatePostgres,
    record_property: Callable[[str, object], None],
    log: str,
) -> None:
    load.check_writes(server)
    tally = load.tally
    record_property("fault", tally.figures())
    assert tally.sent > 0
    unhandled = [line for line in log.splitlines() if UNHANDLED.search(line)]
    assert tally.server_errors == 0, (tally.figures(), unhandled[:1])
    assert tally.incomplete_503 == 0, "a 503 without Retry-After, Link or status_page"
    assert tally.lost == 0, tally.figures()
    assert tally.duplicated == 0, tally.figures()
    assert tally.slowest < ANSWER_BOUND, tally.figures()


def test_database_faults_under_load_answer_503_never_500(
    project: Project,
    private_postgres: PrivatePostgres,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    private_postgres.sql("ALTER SYSTEM SET max_connections = 30")
    private_postgres.stop()
    private_postgres.start()
    env = fault_env(private_postgres.url)
    project.migrate(env)
    service = start_service(project.path, project.python, env, log=tmp_path / "service.log")
    holder_script = Path(__file__).with_name("fault_holder.py")
    loads: list[Load] = []
    try:
        service.wait_until_live()
        seconds_until_ready(service, within=10.0)

        def hold_every_connection() -> None:
            holder = subprocess.Popen(
                [str(project.python), str(holder_script), f"{private_postgres.url}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert holder.stdout is not None
            assert holder.stdin is not None
            assert holder.stdout.readline().startswith("holding ")
            time.sleep(FAULT_SECONDS)
            holder.stdin.close()
            holder.wait(timeout=30)

        def terminate_sessions() -> None:
            deadline = time.monotonic() + FAULT_SECONDS
            while time.monotonic() < deadline:
                private_postgres.sql(TERMINATE_SERVICE_SESSIONS)
                time.sleep(0.3)

        def restart() -> None:
            private_postgres.stop()
            time.sleep(1.0)
            private_postgres.start()

        def freeze() -> None:
            private_postgres.pause()
            time.sleep(FAULT_SECONDS + STATEMENT_TIMEOUT)
            private_postgres.resume()

        for name, fault in [
            ("max_connections held", hold_every_connection),
            ("pg_terminate_backend", terminate_sessions),
            ("restart", restart),
            ("SIGSTOP", freeze),
        ]:
            loads.append(under_load(service, name, fault))
    finally:
        private_postgres.resume()
        exit_code = service.stop()
    log = service.output()
    for load in loads:
        assert_no_500_and_no_lost_write(load, private_postgres, record_property, log)
    assert exit_code == 0, log
    assert [load.tally.unavailable > 0 for load in loads] == [True] * len(loads), [
        load.tally.figures() for load in loads
    ]
    unhandled = [line for line in log.splitlines() if UNHANDLED.search(line)]
    assert unhandled == [], "\n".join(unhandled[:20])
    # One line per expected availability error, and readiness changes logged with a cause.
    assert "dependency unavailable during" in log
    assert re.search(r"not ready: database:responseTime \(\w+", log)
    assert "ready again" in log


def test_redis_faults_degrade_to_the_database_without_stale_reads(
    project: Project,
    private_postgres: PrivatePostgres,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    if not project.context["use_redis"]:
        pytest.skip("this combination has no Redis")
    redis = PrivateRedis(root=tmp_path)
    redis.start()
    env = fault_env(private_postgres.url, REDIS_URL=redis.url, REDIS_TIMEOUT="0.5")
    project.migrate(env)
    service = start_service(project.path, project.python, env, log=tmp_path / "service.log")
    try:
        service.wait_until_live()
        seconds_until_ready(service, within=10.0)
        with httpx.Client(base_url=service.base_url, timeout=10.0) as client:
            ids = [
                client.post("/items", json={"name": f"cached-{n}"}).json()["id"] for n in range(20)
            ]
            for item_id in ids:  # cache every item
                assert client.get(f"/items/{item_id}").status_code == 200

            # Redis frozen: reads come from the database, the pod stays ready with a warn.
            with Load(service.base_url, "Redis SIGSTOP", writers=2) as load:
                time.sleep(0.5)
                redis.pause()
                try:
                    time.sleep(CACHE_TTL + CHECK_TIMEOUT)
                    ready = client.get("/health/ready")
                    assert ready.status_code == 200
                    assert ready.json()["status"] == "warn"
                    for item_id in ids[:3]:
                        assert client.get(f"/items/{item_id}").status_code == 200
                    time.sleep(FAULT_SECONDS)
                finally:
                    redis.resume()
                time.sleep(1.0)
            load.check_writes(private_postgres)
            record_property("fault", load.tally.figures())
            assert load.tally.server_errors == 0, load.tally.figures()
            assert load.tally.unavailable == 0, load.tally.figures()
            assert load.tally.lost == load.tally.duplicated == 0, load.tally.figures()

            # Redis refusing writes: a delete either happens and is never read back
            # from the cache, or answers 503 and changes nothing.
            deletes: Counter[int] = Counter()
            redis.command("CLIENT", "PAUSE", str(int(FAULT_SECONDS * 1000)), "WRITE")
            for item_id in ids[:10]:
                status = client.delete(f"/items/{item_id}").status_code
                deletes[status] += 1
                read = client.get(f"/items/{item_id}").status_code
                assert (status, read) in {(204, 404), (503, 200)}, (status, read)
            time.sleep(FAULT_SECONDS)
            for item_id in ids[:10]:
                if client.get(f"/items/{item_id}").status_code == 200:
                    assert client.delete(f"/items/{item_id}").status_code == 204
                assert client.get(f"/items/{item_id}").status_code == 404, "a stale read"
            record_property(
                "fault",
                {"fault": "Redis CLIENT PAUSE WRITE", "deletes": dict(deletes), "stale reads": 0},
            )
            assert deletes[503] > 0, deletes
    finally:
        redis.stop()
    assert_clean_exit(service)


def test_oversized_bodies_are_refused_in_bounded_memory(
    running: Service, record_property: Callable[[str, object], None]
) -> None:
    process = psutil.Process(running.process.pid)
    baseline = process.memory_info().rss
    peak = baseline
    sampling = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not sampling.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.02)

    tally = Tally("oversized bodies")

    def chunks(megabytes: int) -> Iterator[bytes]:
        chunk = b" " * 1024 * 1024
        for _ in range(megabytes):
            yield chunk

    def send(content: bytes | Iterator[bytes]) -> None:
        started = time.monotonic()
        try:
            status = httpx.post(
                f"{running.base_url}/items",
                content=content,
                headers={"Content-Type": "application/json"},
                timeout=30.0,
            ).status_code
        except httpx.TransportError:
            status = 0  # the server closed the connection mid-body, after its 413
        tally.sent += 1
        tally.slowest = max(tally.slowest, time.monotonic() - started)
        if status == 0:
            tally.no_answer += 1
        elif status == 500:
            tally.server_errors += 1
        else:
            tally.other[status] += 1

    sampler = threading.Thread(target=sample)
    sampler.start()
    array = b"[" + b"1," * (5 * 1024 * 1024) + b"1]"  # about 10 MB, with Content-Length
    senders = [threading.Thread(target=send, args=(chunks(100),)) for _ in range(3)]
    senders += [threading.Thread(target=send, args=(array,)) for _ in range(8)]
    for thread in senders:
        thread.start()
    live = [probe(running, "/health/live")[1] for _ in range(5)]
    for thread in senders:
        thread.join(timeout=120)
    sampling.set()
    sampler.join()
    tally.peak_rss_mb = round(peak / 2**20, 1)
    figures = {**tally.figures(), "baseline RSS MB": round(baseline / 2**20, 1)}
    record_property("fault", figures)
    assert tally.server_errors == 0, figures
    assert set(tally.other) <= {413}, figures
    assert (peak - baseline) / 2**20 < 64, figures
    assert max(live) < 1.0, f"liveness took {max(live):.2f} s while bodies streamed in"
    assert probe(running, "/health/live")[0] == 200


def not_json(constant: str) -> None:
    raise AssertionError(f"{constant} in a response: not JSON")


def test_hostile_inputs_answer_4xx_never_500(
    running: Service, record_property: Callable[[str, object], None]
) -> None:
    tally = Tally("hostile inputs")
    answers: dict[tuple[str, str, bytes], int] = {}
    with httpx.Client(base_url=running.base_url, timeout=10.0) as client:
        for method, path, body in HOSTILE_INPUTS:
            key = (method, path, (body or b"")[:40])
            tally.sent += 1
            try:
                response = client.request(
                    method, path, content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.TransportError:
                tally.no_answer += 1
                answers[key] = 0
                continue
            if response.status_code == 500:
                tally.server_errors += 1
            else:
                tally.other[response.status_code] += 1
                # Strict UTF-8 JSON: the 4xx quotes nothing it could not encode.
                json.loads(response.content.decode("utf-8"), parse_constant=not_json)
            answers[key] = response.status_code
    record_property("fault", tally.figures())
    assert tally.server_errors == 0, answers
    assert tally.no_answer == 0, answers
    assert all(400 <= status < 500 for status in answers.values()), answers
    assert probe(running, "/health/live")[0] == 200
    assert_clean_exit(running)


# --- Heartbeat monitor faults ----------------------------------------------------------------

HEARTBEAT_TIMEOUT = 0.5
HEARTBEAT_RETRIES = 2
# Per ping: every attempt times out, with full-jitter backoff of at most 1 s, then
# 2 s, between them (tenacity's wait_random_exponential, multiplier 1).
PING_BOUND = (HEARTBEAT_RETRIES + 1) * HEARTBEAT_TIMEOUT + 1.0 + 2.0
# Seconds for the interpreter, imports, settings and the job run itself, plus the run's
# wait for its start ping (HEARTBEAT_START_TIMEOUT, 0.5 s). Measured 8.5-9.8 s on 2 loaded
# cores once the monitor-sync modules joined the CLI's imports.
START_UP = 10.5


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
        # The monitors live on the loopback, which staging and production refuse as a
        # monitor address (heartbeats/targets.py); the wrapper is the same in every environment.
        ENVIRONMENT="development",
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
        self.server = server
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
        query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        return int(self.server.sql(query).strip())

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
        # The monitor is on the loopback, which production refuses as a monitor address.
        ENVIRONMENT="development",
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


@pytest.mark.parametrize("project", COMBINATIONS[:1], ids=IDS[:1], indirect=True)
def test_a_second_ctrl_c_forces_the_exit_in_one_line(
    project: Project, private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    """Ctrl-C, then Ctrl-C again while a request keeps the shutdown waiting: uvicorn
    forces the exit, and the log says so in one line for the shutdown (WARNING) and
    one for the request it cancelled (ERROR), not in tracebacks."""
    env = service_env(private_postgres.url, ENVIRONMENT="development")
    project.migrate(env)
    service = start_service(
        project.path,
        project.python,
        env,
        log=tmp_path / "service.log",
        graceful_timeout=GRACEFUL_TIMEOUT,
    )
    lock: TableLock | None = None
    try:
        service.wait_until_live()
        lock = TableLock(private_postgres)
        thread = threading.Thread(
            target=lambda: httpx.get(f"{service.base_url}/items", timeout=60.0), daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 20
        while lock.waiting() < 1:
            assert time.monotonic() < deadline, "the request never reached the lock"
            time.sleep(0.05)
        service.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 20
        while "Waiting for connections to close" not in service.output():
            assert time.monotonic() < deadline, service.output()
            time.sleep(0.05)
        stopped_at = time.monotonic()
        service.process.send_signal(signal.SIGINT)
        service.process.wait(timeout=20)
        took = time.monotonic() - stopped_at
    finally:
        if lock is not None:
            lock.release()
        service.stop()
    log = service.output()
    assert took < GRACEFUL_TIMEOUT / 2, f"the forced exit took {took:.1f} s\n{log}"
    assert "Traceback" not in log, log
    forced = [line for line in log.splitlines() if "forced exit" in line]
    assert len(forced) == 1, log
    assert "WARNING" in forced[0], log
    cancelled = [line for line in log.splitlines() if "cancelled a request in flight" in line]
    assert len(cancelled) == 1, log
    assert "ERROR" in cancelled[0], log
