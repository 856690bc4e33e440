"""Remove the files of the options that were not chosen.

One table says which files each optional feature owns; everything else in the
template belongs to every project. The hook only deletes files: no network,
no tool installs, so a bake stays a pure, fast, offline file operation.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ANSWERS: dict[str, object] = json.loads(r"""{{ cookiecutter | tojson }}""")

# (answer, value that keeps the files) -> paths relative to the project root.
# A feature's files are removed when the answer differs from that value.
FEATURE_FILES: dict[tuple[str, object], list[str]] = {}


def files_to_remove(answers: dict[str, object]) -> list[str]:
    """Return the project-relative paths the answers do not keep, in table order."""
    doomed: list[str] = []
    for (answer, keeps), paths in FEATURE_FILES.items():
        if answers.get(answer) != keeps:
            doomed.extend(paths)
    return doomed


def remove(root: Path, relative: str) -> None:
    """Delete one file or directory under ``root``; a missing path is an error in the table."""
    path = root / relative
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    else:
        raise FileNotFoundError(
            f"post_gen_project: {relative} is in FEATURE_FILES but not in the template"
        )


def main() -> int:
    root = Path.cwd()
    try:
        for relative in files_to_remove(ANSWERS):
            remove(root, relative)
    except OSError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
