"""The first hour after a bake, as a new user spends it: the baked README, followed literally.

One bake with answers none of which is a default (a name to transliterate, Tortoise,
Redis, the newest Python, another version and licence). Then, in one shell whose
environment carries over from command to command, as a terminal's does:

1. every command of the README's "First run" block (``make install``, ``make run``
   until ``/health/ready`` answers 200, ``make test``);
2. every command of "Against PostgreSQL" (``export DATABASE_URL=...``, ``make db``,
   ``make run`` on PostgreSQL);
3. the job of "Adding a job", appended to ``jobs.py`` exactly as printed;
4. a ``.env`` as ``.env.example`` suggests, with a ``DATABASE_URL`` of its own, and
   the shell's ``DATABASE_URL`` still exported from step 2;
5. ``make lint test``.

The commands are read from the README, not copied here: a README that tells the
user something that does not work fails this test. The only liberties: uv does not
download Python (this machine has no such network; the interpreter is put on PATH),
and ``PORT`` is a free port rather than 8000.
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


def section(readme: str, heading: str) -> str:
    """The text under the Markdown heading ``heading`` (any level), up to the next heading."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", readme, re.M | re.S)
    assert match is not None, f"the README has no section {heading!r}"
    return match[1]


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks of ``text``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


def commands(text: str) -> list[str]:
    """The shell commands of the ```bash blocks of ``text``, trailing comments removed."""
    lines = [line for block in fenced(text, "bash") for line in block.splitlines()]
    stripped = [re.sub(r"\s+#\s.*$", "", line).strip() for line in lines]
    return [line for line in stripped if line]


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
            name, _, value = command.removeprefix("export ").partition("=")
            (self.env[name],) = shlex.split(value)
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
        """Run the server command until /health/ready and /health answer 200, then Ctrl-C it."""
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
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
        assert "Traceback" not in output, output[-6000:]


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


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """The user's shell: uv and the bake's Python on PATH, nothing of the template's run."""
    python = find_python(ANSWERS["python_version"])
    require(python is not None, f"no Python {ANSWERS['python_version']} on this machine")
    assert python is not None
    interpreters = tmp_path / "interpreters"
    interpreters.mkdir()
    (interpreters / f"python{ANSWERS['python_version']}").symlink_to(python)
    uv = Path(tool("uv")).parent
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {*PARENT_MAKE_VARIABLES, "VIRTUAL_ENV", "DATABASE_URL", "PORT"}
    }
    env["PATH"] = os.pathsep.join([str(interpreters), str(uv), env.get("PATH", "")])
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
    baked: Path, user_env: dict[str, str]
) -> None:
    readme = (baked / "README.md").read_text()
    shell = Shell(baked, user_env)

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

    dotenv = (baked / ".env.example").read_text()
    dotenv += "DATABASE_URL=postgresql://nobody@127.0.0.1:1/from_dotenv\n"
    (baked / ".env").write_text(dotenv)
    shell.run("make lint test")

    listed = subprocess.run(
        [str(baked / ".venv" / "bin" / "python"), "-m", PACKAGE, "jobs", "list"],
        cwd=baked,
        env={**shell.env, "DATABASE_URL": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert job_id[1] in listed.stdout
