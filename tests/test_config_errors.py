"""Start-up and configuration mistakes, made for real against every entry point of a bake.

Each entry point is run as a user runs it, as a process: ``python -m <package> serve``
(the image, ``make run``), ``uvicorn <package>.main:app``, the migrate command of
``make migrate`` and the init container, and ``scripts/create_database.py`` (``make db``).
A mistake must end it with exactly one line that names the setting (or the server's
``host:port``) and the next step, a non-zero status and no traceback; the password
of ``DATABASE_URL`` never appears. PostgreSQL is the tests' own (``TEST_DATABASE_URL``).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Project, migrate_command
from .services import free_port, start_service
from .test_first_hour import drop_database

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SERVER = ADMIN_URL.rsplit("/", 1)[0]
PASSWORD = "s3cr3t-never-printed"
# A host no resolver knows (RFC 2606 reserves .invalid).
UNKNOWN_HOST = "db.billing.invalid"
ENTRY_POINTS = ["serve", "uvicorn", "migrate", "make db"]


def command(project: Project, entry_point: str) -> list[str]:
    """The argv of ``entry_point``, from the bake's virtualenv (as ``uv run`` would)."""
    if entry_point == "serve":
        return ["python", "-m", project.package, "serve", "--port", str(free_port())]
    if entry_point == "uvicorn":
        return ["uvicorn", f"{project.package}.main:app", "--port", str(free_port())]
    if entry_point == "migrate":
        return migrate_command(project.context)
    return ["python", "scripts/create_database.py"]


def lines_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The non-blank lines the process printed, stdout and stderr together."""
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def run(project: Project, entry_point: str, env: dict[str, str]) -> list[str]:
    """Run ``entry_point`` to its end; assert it failed without a traceback; return its lines."""
    result = project.run(command(project, entry_point), env=env, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert PASSWORD not in output, output
    return lines_of(result)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another process listens on (a second ``make run``'s metrics)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("entry_point", ["serve", "uvicorn"])
def test_a_busy_metrics_port_is_one_line(
    project: Project, entry_point: str, busy_port: int, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "HOST": "127.0.0.1",
        "METRICS_PORT": str(busy_port),
    }
    (line,) = run(project, entry_point, env)
    assert line.startswith("configuration error: METRICS_PORT: "), line
    assert f"127.0.0.1:{busy_port}" in line, line


@pytest.mark.parametrize("port", ["54x2", "65536", "0"])
@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_a_database_url_port_out_of_range_is_one_line(
    project: Project, entry_point: str, port: str
) -> None:
    url = f"postgresql+asyncpg://billing:{PASSWORD}@127.0.0.1:{port}/billing"
    (line,) = run(project, entry_point, {"DATABASE_URL": url, "METRICS_PORT": "0"})
    assert line.startswith("configuration error: DATABASE_URL: its port "), line
    assert "from 1 to 65535" in line, line


@pytest.mark.parametrize("entry_point", ["migrate", "make db"])
def test_an_unknown_database_host_is_one_line_naming_it(project: Project, entry_point: str) -> None:
    url = f"postgresql://billing:{PASSWORD}@{UNKNOWN_HOST}:5433/billing"
    (line,) = run(project, entry_point, {"DATABASE_URL": url})
    assert f"{UNKNOWN_HOST}:5433" in line, line
    assert "fix the host in DATABASE_URL" in line, line


@pytest.mark.parametrize("entry_point", ["migrate", "make db"])
def test_a_refused_connection_is_one_line_naming_the_server(
    project: Project, entry_point: str
) -> None:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"postgresql://billing:{PASSWORD}@127.0.0.1:{port}/billing"
        (line,) = run(project, entry_point, {"DATABASE_URL": url})
    assert f"127.0.0.1:{port}" in line, line
    assert "connection refused" in line, line
    assert "DATABASE_URL" in line, line


def test_migrating_a_missing_database_points_to_make_db(project: Project) -> None:
    name = f"i18_missing_{uuid.uuid4().hex[:8]}"
    address = SERVER.rsplit("@", 1)[-1]
    (line,) = run(project, "migrate", {"DATABASE_URL": f"{SERVER}/{name}"})
    assert line.startswith("migration failed: "), line
    assert f'database "{name}" does not exist on {address}' in line, line
    assert "make db" in line, line


def test_the_service_names_a_missing_database_and_make_db_at_start(
    project: Project, tmp_path: Path
) -> None:
    name = f"i18_missing_{uuid.uuid4().hex[:8]}"
    address = SERVER.rsplit("@", 1)[-1]
    service = start_service(
        project.path, project.python, {"DATABASE_URL": f"{SERVER}/{name}"}, log=tmp_path / "log"
    )
    try:
        # The service starts (readiness reports the database); its log says what to fix.
        service.wait_until_live()
        deadline = time.monotonic() + 30
        while "make db" not in service.output() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        assert service.stop() == 0
    output = service.output()
    assert "Traceback" not in output, output
    named = [line for line in output.splitlines() if address in line]
    assert len(named) == 1, output
    assert f'database "{name}" does not exist on {address}' in named[0], output
    assert "make db" in named[0], output


def test_a_successful_tortoise_migration_prints_only_its_result(project: Project) -> None:
    if project.context["orm"] != "tortoise":
        pytest.skip("Alembic's progress lines are alembic.ini's loggers, the user's to keep")
    name = f"i18_migrated_{uuid.uuid4().hex[:8]}"
    url = f"{SERVER}/{name}"
    created = project.run(["python", "scripts/create_database.py"], env={"DATABASE_URL": url})
    assert created.returncode == 0, created.stderr
    try:
        for applied in (r"applied [1-9]\d* migration\(s\): \S", r"applied 0 migration\(s\): none"):
            result = project.run(migrate_command(project.context), env={"DATABASE_URL": url})
            output = result.stdout + result.stderr
            assert result.returncode == 0, output
            (line,) = lines_of(result)
            assert re.search(applied, line), line
    finally:
        drop_database(project.path, name)
