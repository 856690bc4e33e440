"""Fixtures of the template suite: each combination baked once, with its own virtualenv.

Baking and installing are the slow parts, so a combination is baked once per
session (per xdist worker) and every check runs on that bake. Virtualenvs are
built with uv, whose package cache is shared by every bake.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .combinations import COMBINATIONS, IDS, combination_id
from .services import PrivatePostgres

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from baking import TEMPLATE, install
from baking import load_hook as load_hook  # for the tests of the hooks
from find_python import find_python

IN_CI = os.environ.get("CI") == "true"
# The shared Redis of the Redis combinations, on a database number of the tests' own.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require(condition: bool, reason: str) -> None:
    """Skip locally when a prerequisite is missing; fail in CI, where it must be present."""
    if condition:
        return
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def migrate_command(answers: Mapping[str, Any]) -> list[str]:
    """The command that applies a baked project's migrations (Makefile, init container)."""
    if answers["orm"] == "tortoise":
        return ["python", "-m", f"{answers['package_name']}.migrate"]
    return ["alembic", "upgrade", "head"]


@dataclass(frozen=True)
class Project:
    """A baked project and its virtualenv."""

    path: Path
    context: Mapping[str, Any]

    @property
    def package(self) -> str:
        return str(self.context["package_name"])

    @property
    def bin(self) -> Path:
        return self.path / ".venv" / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def environ(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """This process's environment plus ``env``, with no secrets folder of the machine's."""
        return {**os.environ, "SECRETS_DIR": "/nonexistent", **(env or {})}

    def migrate(self, env: Mapping[str, str]) -> None:
        """Apply the project's migrations with ``env`` as its init container does."""
        result = self.run(migrate_command(self.context), env=env)
        assert result.returncode == 0, result.stdout + result.stderr

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run a command from the project's virtualenv in the project folder."""
        command = [str(self.bin / argv[0]), *argv[1:]]
        return subprocess.run(
            command,
            cwd=self.path,
            env=self.environ(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="session", params=COMBINATIONS, ids=IDS)
def project(request: pytest.FixtureRequest, cookies_session: Any) -> Project:
    """One baked, installed project per option combination (pytest-cookies' session bake)."""
    combination: dict[str, Any] = request.param
    result = cookies_session.bake(extra_context=combination)
    assert result.exit_code == 0, result.exception
    path = Path(result.project_path)
    context = {**_defaults(path), **combination}
    python_version = str(context["python_version"])
    require(find_python(python_version) is not None, f"no Python {python_version} on this machine")
    install(path, python_version)
    return Project(path=path, context=context)


def _defaults(path: Path) -> dict[str, Any]:
    """Answers a combination leaves at their defaults, as the bake rendered them."""
    template = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    package = next(child.name for child in (path / "src").iterdir() if child.is_dir())
    return {
        "package_name": package,
        "project_slug": path.name,
        "python_version": template["python_version"][0],
        "orm": template["orm"][0],
        "use_redis": template["use_redis"],
    }


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of the test's own, started; stopped and removed afterwards."""
    # Not under pytest's tmp folder: that is private to root, and the server runs
    # as the postgres user.
    root = Path(tempfile.mkdtemp(prefix="uptime-pg-"))
    server = PrivatePostgres(root=root)
    try:
        server.init()
    except FileNotFoundError as error:
        shutil.rmtree(root, ignore_errors=True)
        require(False, str(error))
    except subprocess.CalledProcessError as error:
        shutil.rmtree(root, ignore_errors=True)
        raise AssertionError(f"initdb failed: {error.stderr}") from error
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(OSError, ValueError):
            server.resume()
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep each combination's tests on one xdist worker, so it is baked only once."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "project" in callspec.params:
            item.add_marker(pytest.mark.xdist_group(combination_id(callspec.params["project"])))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the fault suite's figures (``record_property("fault", ...)``), one line a fault.

    Recorded as user properties, they reach this process from xdist's workers too.
    """
    rows = [
        (report.nodeid, value)
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if report.when == "call"
        for name, value in report.user_properties
        if name == "fault"
    ]
    if not rows:
        return
    terminalreporter.section("fault figures")
    for nodeid, figures in rows:
        combination = nodeid.rsplit("[", 1)[-1].rstrip("]")
        terminalreporter.write_line(
            f"{combination} " + " ".join(f"{key}={value}" for key, value in figures.items())
        )
