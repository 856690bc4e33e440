"""Print the path of a Python interpreter of a given ``X.Y`` version.

Used by ``make demo`` and the template's tests to build a baked project's
virtualenv with the Python version it was baked for. Looks at ``pythonX.Y`` on
PATH, then at pyenv's and the usual system locations, and runs each candidate to
be sure it answers (pyenv shims exist for versions that are not active).

Usage: ``python scripts/find_python.py 3.12``; exits 1 with a message when none is found.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys


def candidates(version: str) -> list[str]:
    """Paths that may hold Python ``version``, most specific first."""
    found = [shutil.which(f"python{version}") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found += sorted(
        glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"), reverse=True
    )
    found += [f"/usr/local/bin/python{version}", f"/usr/bin/python{version}"]
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        found.insert(0, sys.executable)
    return [path for path in found if path]


def find_python(version: str) -> str | None:
    """Return an interpreter path that reports ``version``, or ``None``."""
    for path in candidates(version):
        if not os.access(path, os.X_OK):
            continue
        try:
            reported = subprocess.run(
                [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if reported == version:
            return path
    return None


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: find_python.py X.Y", file=sys.stderr)
        return 2
    path = find_python(sys.argv[1])
    if path is None:
        print(f"no Python {sys.argv[1]} found on PATH or in pyenv", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
