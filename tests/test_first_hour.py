"""The first hour after a bake, as a new user spends it: the baked README, followed literally.

One bake with answers none of which is a default (a name to transliterate, Tortoise,
Redis, the newest Python, another version and licence). Then, in one shell whose
environment carries over from command to command, as a terminal's does:

1. every command of the README's "First run" block (``make install``, ``make run``
   until ``/health/ready`` answers 200, ``make test``);
2. every command of "Against PostgreSQL" (``export DATABASE_URL=...``, ``make db``,
   ``make run`` on PostgreSQL);
3. the job of "Adding a job", appended to ``jobs.py`` exactly as printed;
4. every other command of every page that tells the user to type something (the rest
   of README.md, then each ``docs/*.md``), in order: git hooks, the new job run now,
   jobs run by hand, ``jobs sync-monitors`` and the heartbeat URLs, each as printed; a
   command this machine cannot run (a cluster, Docker, uv's installer) must match
   ``NOT_HERE``, which says why;
5. a ``.env`` as ``.env.example`` suggests, with a ``DATABASE_URL`` of its own, and
   the shell's ``DATABASE_URL`` still exported from step 2;
6. ``make lint test``.

The shell is a fresh one: nothing activates the project's virtualenv (no ``.venv/bin``
or any other virtualenv on ``PATH``, no ``VIRTUAL_ENV``), so a bare ``python -m
<package>`` fails as it would for the user. The commands are read from the pages, not
copied here: a page that tells the user something that does not work fails this test.
The only liberties: uv does not download Python (this machine has no such network; the
interpreter is put on PATH), ``PORT`` is a free port rather than 8000, and the
monitoring service (Healthchecks' ping and Management API, an Uptime Kuma push URL) is
a local fake: ``PLACEHOLDERS`` gives the ``<...>`` of the pages values, and the
Healthchecks hosts are the fake's.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer

from .conftest import find_python, require
from .test_tooling import PARENT_MAKE_VARIABLES, tool

ANSWERS = {
    "project_name": "Café Lünch Service",
    "orm": "tortoise",
    "use_redis": True,
    "python_version": "3.13",
    "version": "2.3.0",
    "license": "Apache-2.0",
    "status_page_url": "https://status.lunch.example",
}
SLUG, PACKAGE = "cafe-lunch-service", "cafe_lunch_service"
ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SERVE_COMMAND = "make run"
STARTUP_SECONDS = 180
CHECK_UUID = "5b2f3c1e-7a4d-4e8b-9c0f-1d2e3f4a5b6c"
# Commands of the pages this machine cannot run, and why. Anything else is run.
NOT_HERE: list[tuple[str, str]] = [
    (r"curl -LsSf https://astral\.sh/uv/install\.sh \| sh", "uv's installer: the shell has uv"),
    (r"(pip|pipx|brew) install uv", "installs uv: the shell has uv"),
    (r"docker ", "Docker and its images: not on the test machine"),
    (r"(kubectl|kustomize) ", "a Kubernetes cluster"),
    (r"cd k8s/overlays/|cd -$", "steps of the cluster's deploy (kustomize edit)"),
    (r"curl .*127\.0\.0\.1:8080/", "a cluster's Service through kubectl port-forward"),
    (r"cruft ", "a project created with cruft from the template's URL"),
]
# What the pages leave for the user to fill in, and the fake monitor's values for them.
PLACEHOLDERS = {
    "<read-write API key>": "readme-api-key",
    "<ping key>": "readme-ping-key",
    "<uuid of the check>": CHECK_UUID,
    "<token>": "readme-push-token",
}


def section(readme: str, heading: str) -> str:
    """The text under the Markdown heading ``heading`` (any level), up to the next heading."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", readme, re.M | re.S)
    assert match is not None, f"the README has no section {heading!r}"
    return match[1]


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks of ``text``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


def commands(text: str) -> list[str]:
    """The shell commands of the ```bash blocks of ``text``, trailing comments removed.

    A line ending in a backslash continues on the next, as in a shell.
    """
    lines = [
        line for block in fenced(text, "bash") for line in block.replace("\\\n", " ").splitlines()
    ]
    stripped = [re.sub(r"\s+#\s.*$", "", line).strip() for line in lines]
    return [line for line in stripped if line]


def pages(project: Path) -> dict[str, str]:
    """README.md, then each page of docs/, by path relative to the project."""
    found = [project / "README.md", *sorted((project / "docs").glob("*.md"))]
    return {str(path.relative_to(project)): path.read_text() for path in found}


def not_here(command: str) -> str | None:
    """Why this machine cannot run ``command`` (``NOT_HERE``), or ``None``: run it."""
    return next((why for pattern, why in NOT_HERE if re.match(pattern, command)), None)


def filled_in(command: str, monitor: str) -> str:
    """``command`` with the pages' placeholders and monitoring hosts given the fake's values."""
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    command = command.replace("https://<kuma>", monitor).replace("https://hc-ping.com", monitor)
    unknown = re.findall(r"<[^<>\s][^<>]*>", command)
    assert unknown == [], f"`{command}`: a placeholder PLACEHOLDERS does not fill in"
    return command


def fake_monitor(server: HTTPServer) -> None:
    """Healthchecks' Management API (an empty project) and a ping endpoint for any URL."""
    server.expect_request("/api/v3/channels/", method="GET").respond_with_json({"channels": []})
    server.expect_request("/api/v3/checks/", method="GET").respond_with_json({"checks": []})
    server.expect_request("/api/v3/checks/", method="POST").respond_with_json({}, status=201)
    server.expect_request(re.compile(".*")).respond_with_data("OK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> int:
    """The status code of ``GET url``, or 0 when nothing answers."""
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return 0


class Shell:
    """A user's terminal in the project folder: ``export`` lines change later commands."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.port = int(env["PORT"])

    def run(self, command: str) -> None:
        if command.startswith("export "):
            for assignment in shlex.split(command.removeprefix("export ")):
                name, _, value = assignment.partition("=")
                self.env[name] = value
            return
        if command == SERVE_COMMAND:
            self.serve(command)
            return
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        output = f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
        assert result.returncode == 0, f"`{command}` failed:\n{output}"

    def serve(self, command: str) -> None:
        """Run the server command until /health/ready and /health answer 200, then Ctrl-C it.

        Ctrl-C as a terminal gives it: one SIGINT to the whole process group, with a
        terminal on standard input. Without one, ``uv run`` forwards the SIGINT it gets
        to its child (astral-sh/uv#13925), which then has two, and uvicorn takes the
        second for "force exit" and skips the lifespan's shutdown.
        """
        terminal, terminal_side = os.openpty()
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env,
            stdin=terminal_side,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        os.close(terminal_side)
        base = f"http://127.0.0.1:{self.port}"
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while get(f"{base}/health/ready") != 200:
                assert process.poll() is None, f"`{command}` exited {process.returncode}"
                assert time.monotonic() < deadline, f"`{command}`: not ready in time"
                time.sleep(0.5)
            assert get(f"{base}/health") == 200
        finally:
            os.killpg(process.pid, signal.SIGINT)
            try:
                output, _ = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                output, _ = process.communicate()
            os.close(terminal)
        assert "Traceback" not in output, output[-6000:]
        assert "Application shutdown complete" in output, output[-6000:]


def drop_database(project: Path, name: str) -> None:
    """Drop ``name`` on the tests' server with the bake's own asyncpg (a leftover of a run)."""
    script = (
        "import asyncio, sys, asyncpg\n"
        "async def main():\n"
        "    connection = await asyncpg.connect(sys.argv[1])\n"
        "    await connection.execute(f'DROP DATABASE IF EXISTS \"{sys.argv[2]}\" WITH (FORCE)')\n"
        "    await connection.close()\n"
        "asyncio.run(main())\n"
    )
    python = project / ".venv" / "bin" / "python"
    if python.exists():
        subprocess.run([str(python), "-c", script, ADMIN_URL, name], check=True, timeout=60)


def in_a_virtualenv(directory: str) -> bool:
    """Whether ``directory`` (of PATH) is a virtualenv's ``bin``: no fresh shell has one."""
    return (Path(directory).parent / "pyvenv.cfg").exists()


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A fresh shell of the user's: uv and the bake's Python on PATH, and no virtualenv."""
    python = find_python(ANSWERS["python_version"])
    require(python is not None, f"no Python {ANSWERS['python_version']} on this machine")
    assert python is not None
    interpreters = tmp_path / "interpreters"
    interpreters.mkdir()
    (interpreters / f"python{ANSWERS['python_version']}").symlink_to(python)
    # uv alone: the folder it is installed in may be a virtualenv's bin (.tools/bin).
    (interpreters / "uv").symlink_to(tool("uv"))
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {*PARENT_MAKE_VARIABLES, "VIRTUAL_ENV", "DATABASE_URL", "PORT"}
    }
    path = [entry for entry in env.get("PATH", "").split(os.pathsep) if not in_a_virtualenv(entry)]
    env["PATH"] = os.pathsep.join([str(interpreters), *path])
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["PORT"] = str(free_port())
    return env


@pytest.fixture
def baked(cookies: Any) -> Iterator[Path]:
    result = cookies.bake(extra_context=ANSWERS)
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    assert project.name == SLUG
    yield project
    drop_database(project, PACKAGE)


def test_the_readme_is_the_path_from_bake_to_a_passing_suite(
    baked: Path, user_env: dict[str, str], httpserver: HTTPServer
) -> None:
    readme = (baked / "README.md").read_text()
    shell = Shell(baked, user_env)
    assert not any(in_a_virtualenv(entry) for entry in shell.env["PATH"].split(os.pathsep))

    first_run = commands(section(readme, "First run"))
    assert first_run[0] == "make install", first_run
    assert SERVE_COMMAND in first_run
    for command in first_run:
        shell.run(command)
    assert (baked / ".venv" / "bin" / f"python{ANSWERS['python_version']}").exists()

    on_postgres = commands(section(readme, "Against PostgreSQL"))
    assert any(command.startswith("export DATABASE_URL=") for command in on_postgres)
    drop_database(baked, PACKAGE)  # the database make db must create
    for command in on_postgres:
        shell.run(command)
    assert f"/{PACKAGE}" in shell.env["DATABASE_URL"]

    (job,) = fenced(section(readme, "Adding a job"), "python")
    jobs = baked / "src" / PACKAGE / "scheduling" / "jobs.py"
    jobs.write_text(jobs.read_text() + "\n\n" + job)
    job_id = re.search(r'@scheduled\("(\w+)"', job)
    assert job_id is not None

    # Every other page's commands, as typed, against the fake monitor.
    fake_monitor(httpserver)
    monitor = httpserver.url_for("").rstrip("/")
    shell.env["HEALTHCHECKS_API_URL"] = f"{monitor}/api/v3"
    shell.env["HEALTHCHECKS_PING_URL"] = f"{monitor}/ping"
    done = set(first_run + on_postgres)
    rest = readme.replace(section(readme, "First run"), "").replace(
        section(readme, "Against PostgreSQL"), ""
    )
    typed = []
    for page, text in {**pages(baked), "README.md": rest}.items():
        for command in commands(text):
            if not_here(command) is not None or (command.startswith("make ") and command in done):
                continue
            shell.run(filled_in(command, monitor))
            done.add(command)
            typed.append(f"{page}: {command}")
    assert any(f"jobs run {job_id[1]}" in command for command in typed), typed
    assert any("jobs run cleanup_items" in command for command in typed), typed
    assert any("jobs sync-monitors" in command for command in typed), typed
    requests = {(request.method, request.path) for request, _ in httpserver.log}
    assert ("POST", "/api/v3/checks/") in requests, "jobs sync-monitors reached no monitor"
    assert any(CHECK_UUID in path for _, path in requests), "the job's own URL got no ping"

    dotenv = (baked / ".env.example").read_text()
    dotenv += "DATABASE_URL=postgresql://nobody@127.0.0.1:1/from_dotenv\n"
    (baked / ".env").write_text(dotenv)
    shell.run("make lint test")

    listed = subprocess.run(
        ["bash", "-c", f"uv run python -m {PACKAGE} jobs list"],
        cwd=baked,
        env={**shell.env, "DATABASE_URL": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert job_id[1] in listed.stdout
