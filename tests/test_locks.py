"""Every lock file of the template matches the bake it is picked for.

A bake's ``uv.lock`` is the template's lock for its ``orm``, ``use_redis`` and
``python_version``, with the project's own name and version (the post-gen hook).
``uv lock --check`` fails when it no longer matches the baked ``pyproject.toml``:
after a dependency changes there, ``make locks`` regenerates every lock.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import find_python, load_hook, require

LOCKS = load_hook("post_gen_project").LOCKS

# Answers other than the ones a lock is chosen by, none at its default: they must not
# make the lock stale (the name and version are in it).
OTHER_ANSWERS = {
    "project_name": "Café Lock Check",
    "version": "3.2.1rc1",
    "license": "BSD-3-Clause",
    "description": "Another description",
}


def lock_id(key: tuple[str, bool, str]) -> str:
    orm, use_redis, python = key
    return f"orm:{orm}-use_redis:{str(use_redis).lower()}-python:{python}"


@pytest.mark.parametrize("key", list(LOCKS), ids=[lock_id(key) for key in LOCKS])
def test_the_baked_lock_matches_the_baked_pyproject(
    key: tuple[str, bool, str], cookies: Any
) -> None:
    orm, use_redis, python_version = key
    answers = {**OTHER_ANSWERS, "orm": orm, "use_redis": use_redis}
    result = cookies.bake(extra_context={**answers, "python_version": python_version})
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    assert (project / ".python-version").read_text().strip() == python_version
    python = find_python(python_version)
    require(python is not None, f"no Python {python_version} on this machine")
    assert python is not None
    env = {**os.environ, "UV_PYTHON": python, "UV_PYTHON_DOWNLOADS": "never", "UV_OFFLINE": "1"}
    env.pop("VIRTUAL_ENV", None)
    checked = subprocess.run(
        ["uv", "lock", "--check"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert checked.returncode == 0, (
        f"{LOCKS[key]} is stale: run `make locks` and commit the locks.\n{checked.stderr}"
    )
