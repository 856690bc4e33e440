"""``python -m {{ cookiecutter.package_name }} jobs list`` and ``jobs run <job_id>``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.scheduling import default_jobs

from .conftest import execute, fetch

TOKEN = "cli-token-5d1e8b"


def test_jobs_list_shows_triggers_grace_and_redacted_heartbeats(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("CLEANUP_ITEMS_HEARTBEAT_URL", f"https://hc-ping.com/{TOKEN}")
    monkeypatch.delenv("HEARTBEAT_EXAMPLE_HEARTBEAT_URL", raising=False)

    assert main(["jobs", "list"]) == 0

    out = capsys.readouterr().out
    header, *lines = out.splitlines()
    assert header.split() == [
        "JOB", "RUNS", "IN", "TRIGGER", "GRACE", "NEXT", "FIRE", "(UTC)", "HEARTBEAT"
    ]  # fmt: skip
    rows = {line.split()[0]: line for line in lines}
    assert list(rows) == [job.id for job in default_jobs()]
    cleanup, alive = rows["cleanup_items"], rows["heartbeat_example"]
    assert "cron[hour='3', minute='17']" in cleanup
    assert cleanup.split()[1] == "service"
    if "count_items" in rows:  # the example CronJob job, unless removed
        assert rows["count_items"].split()[1] == "cronjob"
    assert "3600 s" in cleanup
    assert cleanup.endswith("healthchecks https://hc-ping.com/*** (CLEANUP_ITEMS_HEARTBEAT_URL)")
    assert alive.endswith("none (set HEARTBEAT_EXAMPLE_HEARTBEAT_URL or HEALTHCHECKS_PING_KEY)")
    assert TOKEN not in out


def test_jobs_run_refuses_an_unknown_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["jobs", "run", "no_such_job"]) == 2
    known = ", ".join(job.id for job in default_jobs())
    assert capsys.readouterr().err.strip() == f"unknown job 'no_such_job'; jobs: {known}"


async def run_cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "{{ cookiecutter.package_name }}",
        *args,
        env={**os.environ, "ENVIRONMENT": "development", "SECRETS_DIR": str(cwd / "none"), **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_jobs_run_cleans_up_through_the_wrapper(
    postgres_url: str, monitor: HTTPServer, tmp_path: Path
) -> None:
    await execute(
        postgres_url,
        "INSERT INTO items (name, created_at) VALUES"
        " ('expired', now() - interval '31 days'), ('recent', now())",
    )
    try:
        status, out, err = await run_cli(
            "jobs",
            "run",
            "cleanup_items",
            env={
                "DATABASE_URL": postgres_url,
                "CLEANUP_ITEMS_HEARTBEAT_URL": monitor.url_for(f"/ping/{TOKEN}"),
            },
            cwd=tmp_path,
        )
        names = [row["name"] for row in await fetch(postgres_url, "SELECT name FROM items")]
    finally:
        await execute(postgres_url, "DELETE FROM items")

    assert status == 0, err
    assert out == "cleanup_items: success\n"
    assert names == ["recent"]
    assert "cleanup_items deleted 1 items" in err
    start, success = (request for request, _ in monitor.log)
    assert (start.path, success.path) == (f"/ping/{TOKEN}/start", f"/ping/{TOKEN}")
    assert start.args["rid"] == success.args["rid"]
    assert TOKEN not in err


async def test_jobs_run_exits_1_and_pings_fail_when_the_job_fails(
    monitor: HTTPServer, refused_port: int, tmp_path: Path
) -> None:
    status, out, err = await run_cli(
        "jobs",
        "run",
        "cleanup_items",
        env={
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{refused_port}/postgres",
            "CLEANUP_ITEMS_HEARTBEAT_URL": monitor.url_for(f"/ping/{TOKEN}"),
        },
        cwd=tmp_path,
    )
    assert status == 1, err
    assert out == "cleanup_items: failure\n"
    assert "job cleanup_items run " in err
    start, fail = (request for request, _ in monitor.log)
    assert (start.path, fail.path, fail.method) == (
        f"/ping/{TOKEN}/start",
        f"/ping/{TOKEN}/fail",
        "POST",
    )
    error_type = fail.get_data(as_text=True).split(":", 1)[0]
    assert error_type in ("ConnectionRefusedError", "OSError", "OperationalError")
    assert "failed after" in err
