"""Regenerate the template's lock files: one ``uv.lock`` per orm, use_redis and Python.

``make locks`` runs this after any change to the baked ``pyproject.toml`` (a
dependency added, a bound moved). For each combination of the post-gen hook's
``LOCKS`` table it bakes the template, without hooks, for the project name and
version the locks are made for (``LOCK_PROJECT_NAME``, ``LOCK_PROJECT_VERSION``),
puts the current lock beside the baked ``pyproject.toml`` so that uv keeps every
version it can, runs ``uv lock``, and copies the result back into
``{{cookiecutter.project_slug}}/locks/``. ``--upgrade`` (``make locks-upgrade``)
moves every package to its newest allowed version instead. A lock uv cannot read
(a merge left conflict markers in it) is resolved afresh.

Needs uv on PATH, the network to the package index, and an interpreter of each
Python version (``find_python.py``). ``tests/test_locks.py`` fails while any lock
is stale.

Usage: ``python scripts/locks.py [--upgrade]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

from baking import TEMPLATE, load_hook
from cookiecutter.main import cookiecutter
from find_python import find_python

PROJECT_TEMPLATE = TEMPLATE / "{{cookiecutter.project_slug}}"


def bake_for_lock(hook: ModuleType, key: tuple[str, bool, str], workdir: Path) -> Path:
    """Bake the project whose lock ``key`` = (orm, use_redis, python_version) names.

    Without hooks: only ``pyproject.toml`` matters to uv, and the lock files stay put.
    Cookiecutter changes the working directory while it renders: call it from one thread.
    """
    orm, use_redis, python_version = key
    return Path(
        cookiecutter(
            str(TEMPLATE),
            no_input=True,
            accept_hooks=False,
            output_dir=str(workdir),
            extra_context={
                "project_name": "uv lock template",
                "project_slug": hook.LOCK_PROJECT_NAME,
                "version": hook.LOCK_PROJECT_VERSION,
                "orm": orm,
                "use_redis": use_redis,
                "python_version": python_version,
            },
        )
    )


def lock_one(hook: ModuleType, key: tuple[str, bool, str], project: Path, *, upgrade: bool) -> str:
    """Refresh the lock of ``key`` from the bake ``project``; returns a summary line."""
    python_version = key[2]
    python = find_python(python_version)
    if python is None:
        raise RuntimeError(f"no Python {python_version} interpreter on this machine")
    relative = hook.LOCKS[key]
    template_lock = PROJECT_TEMPLATE / relative
    if template_lock.is_file():
        shutil.copyfile(template_lock, project / "uv.lock")
    env = {**os.environ, "UV_PYTHON": python, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    argv = ["uv", "lock", "--quiet", *(["--upgrade"] if upgrade else [])]
    result = subprocess.run(
        argv, cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0 and (project / "uv.lock").exists():
        # A lock uv cannot read (merge conflict markers): resolve afresh instead.
        (project / "uv.lock").unlink()
        result = subprocess.run(
            argv, cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"{relative}: uv lock failed:\n{result.stderr}")
    text = (project / "uv.lock").read_text(encoding="utf-8")
    hook.render_lock(text, hook.LOCK_PROJECT_NAME, hook.LOCK_PROJECT_VERSION)  # one project
    before = template_lock.read_text(encoding="utf-8") if template_lock.is_file() else None
    template_lock.parent.mkdir(exist_ok=True)
    template_lock.write_text(text, encoding="utf-8")
    return f"{relative}: {'unchanged' if before == text else 'updated'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="newest allowed versions")
    options = parser.parse_args()
    hook = load_hook("post_gen_project")
    with tempfile.TemporaryDirectory(prefix="uptime-locks-") as scratch:
        projects = {
            key: bake_for_lock(hook, key, Path(scratch) / str(index))
            for index, key in enumerate(hook.LOCKS)
        }
        # uv lock waits on the network: a few at once.
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [
                pool.submit(lock_one, hook, key, project, upgrade=options.upgrade)
                for key, project in projects.items()
            ]
            failed = False
            for future in futures:
                try:
                    print(future.result())
                except (RuntimeError, OSError, ValueError) as error:
                    print(f"ERROR: {error}", file=sys.stderr)
                    failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
