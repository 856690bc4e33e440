"""The baked service as a real process: PostgreSQL up, paused, stopped and back.

A private PostgreSQL (its own data folder and port) is paused with SIGSTOP, which
is what a hung server looks like: connections stay open and nothing answers.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from .conftest import Project
from .services import PrivatePostgres, Service, start_service

CHECK_TIMEOUT = 1.0
CACHE_TTL = 1.0
POOL_SIZE = 3
MAX_OVERFLOW = 2


def migrate(project: Project, database_url: str) -> None:
    result = project.run(["alembic", "upgrade", "head"], env={"DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr


def probe(service: Service, path: str) -> tuple[int, float]:
    started = time.perf_counter()
    response = httpx.get(f"{service.base_url}{path}", timeout=5.0)
    return response.status_code, time.perf_counter() - started


def wait_for_status(service: Service, path: str, status: int, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if probe(service, path)[0] == status:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{path} did not answer {status} within {within} s")


def assert_fault_handled(service: Service, server: PrivatePostgres, seconds: float) -> None:
    """Probe for ``seconds``: readiness 503 within the bound, liveness 200.

    Probing starts one cache period after the fault, when a result observed before
    it may no longer be served.
    """
    time.sleep(CACHE_TTL)
    deadline = time.monotonic() + seconds
    probes = 0
    while time.monotonic() < deadline:
        status, elapsed = probe(service, "/health/ready")
        assert status == 503, f"readiness answered {status} during the fault"
        assert elapsed < CHECK_TIMEOUT + 0.2, f"readiness took {elapsed:.3f} s during the fault"
        status, elapsed = probe(service, "/health/live")
        assert status == 200, f"liveness answered {status} during the fault"
        probes += 1
        time.sleep(0.1)
    assert probes >= 5


def test_readiness_follows_postgres_through_pause_and_restart(
    project: Project, private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    migrate(project, private_postgres.url)
    service = start_service(
        project.path,
        project.python,
        {
            "ENVIRONMENT": "production",
            "DATABASE_URL": private_postgres.url,
            "HEALTH_CHECK_TIMEOUT": str(CHECK_TIMEOUT),
            "HEALTH_CACHE_TTL": str(CACHE_TTL),
            "DATABASE_POOL_SIZE": str(POOL_SIZE),
            "DATABASE_MAX_OVERFLOW": str(MAX_OVERFLOW),
        },
        log=tmp_path / "service.log",
    )
    try:
        service.wait_until_live()
        assert probe(service, "/health/ready")[0] == 200
        assert httpx.post(f"{service.base_url}/items", json={"name": "x"}).status_code == 201

        # Hung server: every probe must still answer 503 within the check timeout.
        private_postgres.pause()
        try:
            assert_fault_handled(service, private_postgres, seconds=4.0)
        finally:
            private_postgres.resume()
        recovered = wait_for_status(service, "/health/ready", 200, within=10.0)
        assert recovered < CACHE_TTL + CHECK_TIMEOUT + 2.0, f"recovery took {recovered:.2f} s"
        assert private_postgres.connections("postgres") <= POOL_SIZE + MAX_OVERFLOW

        # Stopped server: connections refused.
        private_postgres.stop()
        assert_fault_handled(service, private_postgres, seconds=2.0)
        private_postgres.start()
        wait_for_status(service, "/health/ready", 200, within=CACHE_TTL + CHECK_TIMEOUT + 5.0)
        assert httpx.get(f"{service.base_url}/items").status_code == 200
    finally:
        exit_code = service.stop()
    log = service.output()
    assert exit_code == 0, log
    assert "Traceback" not in log, log


def test_the_default_bake_serves_on_sqlite_with_no_server(project: Project, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'demo.db'}"
    migrate(project, database)
    service = start_service(
        project.path, project.python, {"DATABASE_URL": database}, log=tmp_path / "service.log"
    )
    try:
        service.wait_until_live()
        assert probe(service, "/health/ready")[0] == 200
        assert probe(service, "/health")[0] == 200
        assert probe(service, "/docs")[0] == 200
    finally:
        assert service.stop() == 0
