"""Serving imports only what serving needs: no migration tool, no CLI (cold start, memory)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PACKAGE = "{{ cookiecutter.package_name }}"
# Modules a serving process must not load: migrations run as their own command, and
# the jobs CLI and the Healthchecks Management API client are operators' tools.
NOT_SERVING = (
    "alembic",
    "aerich",
    f"{PACKAGE}.migrate",
    f"{PACKAGE}.scheduling.cli",
    f"{PACKAGE}.scheduling.monitor_sync",
)
# Loaded with the first heartbeat target (heartbeat_targets.py, scheduling/heartbeat.py):
# a service whose jobs have none, as here, never needs an HTTP client.
FIRST_TARGET = ("httpx", "tenacity")
# Loaded when the process starts scheduling (scheduling/scheduler.py): with PostgreSQL
# once it is elected, never in a follower; importing it reads every package's entry points.
SCHEDULING = ("apscheduler.schedulers",)


@pytest.mark.parametrize(
    "code",
    [
        f"import {PACKAGE}.main as main; main.create_app()",
        f"import {PACKAGE}.__main__",
    ],
    ids=["uvicorn main:app", "python -m serve"],
)
def test_serving_loads_no_migration_or_cli_module(code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import os, sys; exec(os.environ['CODE']); print(*sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"ENVIRONMENT": "development", "SECRETS_DIR": "/nonexistent", "CODE": code},
    )
    loaded = set(result.stdout.split())
    assert [name for name in NOT_SERVING if name in loaded] == []
    assert [name for name in FIRST_TARGET if name in loaded] == []
    assert [name for name in SCHEDULING if name in loaded] == []
