"""``make db`` (``scripts/create_database.py``), run as the README runs it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from .conftest import PROJECT_ROOT, execute, fetch, throwaway_database

SCRIPT = PROJECT_ROOT / "scripts" / "create_database.py"


async def create_database(database_url: str, cwd: Path) -> tuple[int, str, str]:
    """Run the script with ``DATABASE_URL`` set; returns (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        env={**os.environ, "DATABASE_URL": database_url},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_creates_the_database_once_then_leaves_it(tmp_path: Path) -> None:
    async with throwaway_database("test_make_db") as url:
        admin, name = url.rsplit("/", 1)
        await execute(f"{admin}/postgres", f'DROP DATABASE "{name}"')

        assert await create_database(url, tmp_path) == (0, f"database {name!r} created\n", "")
        rows = await fetch(
            f"{admin}/postgres", "SELECT 1 FROM pg_database WHERE datname = $1", name
        )
        assert len(rows) == 1
        again = await create_database(url, tmp_path)
        assert again == (0, f"database {name!r} already exists\n", "")


async def test_an_unreachable_server_is_one_line(tmp_path: Path, refused_port: int) -> None:
    url = f"postgresql://postgres@127.0.0.1:{refused_port}/nothing"
    status, _, err = await create_database(url, tmp_path)
    assert status == 1
    assert err.startswith("cannot create database 'nothing': ")
    assert len(err.splitlines()) == 1, err
    assert f"nothing accepts connections on 127.0.0.1:{refused_port}" in err, err
    assert "DATABASE_URL" in err, err


async def test_sqlite_needs_no_database(tmp_path: Path) -> None:
    status, out, _ = await create_database("", tmp_path)
    assert status == 0
    assert "nothing to create" in out
