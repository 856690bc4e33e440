"""Bake the template and install a baked project: shared by the tests and the benchmarks."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from cookiecutter.main import cookiecutter
from find_python import find_python

TEMPLATE = Path(__file__).resolve().parent.parent


def load_hook(name: str) -> ModuleType:
    """The hook ``hooks/<name>.py`` as a module, unrendered.

    The hooks read the answers only in ``main()``, so importing one runs nothing; its
    tables keep the template's own paths (``src/{{cookiecutter.package_name}}/...``).
    """
    path = TEMPLATE / "hooks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bake(output_dir: Path, extra_context: Mapping[str, Any]) -> Path:
    """Bake the template offline into ``output_dir``; returns the project folder.

    Raises:
        cookiecutter.exceptions.FailedHookException: an answer was refused.
    """
    return Path(
        cookiecutter(
            str(TEMPLATE),
            no_input=True,
            output_dir=str(output_dir),
            extra_context=dict(extra_context),
        )
    )


class InstallError(RuntimeError):
    """A baked project's virtualenv could not be built; the message holds uv's output."""


def install(
    project: Path,
    python_version: str,
    groups: Sequence[str] = ("dev",),
    *,
    compile_bytecode: bool = False,
) -> Path:
    """Create ``project/.venv`` for ``python_version`` with the project and ``groups``.

    Exactly the versions of the bake's ``uv.lock`` (``uv sync --locked``), as the
    project's own ``make install`` does: a stale lock fails here. uv's package cache
    is shared by every bake. ``compile_bytecode`` compiles every module, the project's
    own included, as the baked Dockerfile's image does (``UV_COMPILE_BYTECODE=1``): a
    process started under ``PYTHONDONTWRITEBYTECODE=1`` then imports without compiling.
    Returns the virtualenv's python.

    Raises:
        InstallError: no interpreter of that version, or uv failed.
    """
    python = find_python(python_version)
    if python is None:
        raise InstallError(f"no Python {python_version} interpreter on this machine")
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    group_args = [arg for group in groups for arg in ("--group", group)]
    if "dev" not in groups:
        group_args.append("--no-dev")
    if compile_bytecode:
        group_args.append("--compile-bytecode")
    python_bin = project / ".venv" / "bin" / "python"
    commands = [
        ["uv", "venv", "--quiet", "--python", python, ".venv"],
        ["uv", "sync", "--quiet", "--locked", "--python", python, *group_args],
    ]
    if compile_bytecode:
        # uv compiles site-packages; the editable project's own source lives in src/.
        commands.append([str(python_bin), "-m", "compileall", "-q", "src"])
    for argv in commands:
        result = subprocess.run(
            argv, cwd=project, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        if result.returncode != 0:
            raise InstallError(f"{' '.join(argv)} failed:\n{result.stderr}")
    return python_bin
