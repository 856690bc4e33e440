"""Remove the files of the options that were not chosen, and name the chosen ones.

One table says which files each optional feature owns; everything else in the
template belongs to every project. Where each ORM needs its own version of a
module, the template holds both as ``<name>_<orm>.py`` and ``RENAMES`` gives
the kept one its final name, so a generated project has no trace of the
variants. The hook only deletes and renames files: no network, no tool installs,
so a bake stays a pure, fast, offline file operation.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

ANSWERS: dict[str, object] = json.loads(r"""{{ cookiecutter | tojson }}""")

PACKAGE = "src/{{ cookiecutter.package_name }}"

# (answer, value that keeps the files) -> paths relative to the project root.
# A feature's files are removed when the answer differs from that value.
FEATURE_FILES: dict[tuple[str, object], list[str]] = {
    ("orm", "sqlalchemy"): [
        f"{PACKAGE}/db_sqlalchemy.py",
        f"{PACKAGE}/items/models_sqlalchemy.py",
        f"{PACKAGE}/items/router_sqlalchemy.py",
        f"{PACKAGE}/scheduling/jobs_sqlalchemy.py",
        "alembic.ini",
        "migrations_sqlalchemy",
        "tests/database_sqlalchemy.py",
        "tests/test_scheduling_jobs_sqlalchemy.py",
    ],
    ("orm", "tortoise"): [
        f"{PACKAGE}/db_tortoise.py",
        f"{PACKAGE}/migrate_tortoise.py",
        f"{PACKAGE}/items/models_tortoise.py",
        f"{PACKAGE}/items/router_tortoise.py",
        f"{PACKAGE}/scheduling/jobs_tortoise.py",
        "migrations_tortoise",
        "tests/database_tortoise.py",
        "tests/test_migrate.py",
        "tests/test_scheduling_jobs_tortoise.py",
    ],
    ("use_redis", True): [
        f"{PACKAGE}/cache.py",
        f"{PACKAGE}/items/cache.py",
        "tests/test_cache.py",
    ],
}

# A variant's last path component ends in _<orm>, before its extension if any
# (only there: the package name itself may contain "_tortoise").
VARIANT = re.compile(r"_(sqlalchemy|tortoise)(?=(\.[^/.]+)?$)")

# Variant files of the table above -> their final names.
RENAMES: dict[str, str] = {
    variant: VARIANT.sub("", variant)
    for paths in FEATURE_FILES.values()
    for variant in paths
    if VARIANT.search(variant)
}


def files_to_remove(answers: dict[str, object]) -> list[str]:
    """Return the project-relative paths the answers do not keep, in table order."""
    doomed: list[str] = []
    for (answer, keeps), paths in FEATURE_FILES.items():
        if answers.get(answer) != keeps:
            doomed.extend(paths)
    return doomed


def files_to_rename(answers: dict[str, object]) -> dict[str, str]:
    """Return ``{variant: final name}`` for the variant files the answers keep."""
    doomed = set(files_to_remove(answers))
    return {variant: final for variant, final in RENAMES.items() if variant not in doomed}


def rename(root: Path, relative: str, final: str) -> None:
    """Give the kept variant ``relative`` its final name; the target must not exist yet."""
    source, target = root / relative, root / final
    if not source.exists():
        raise FileNotFoundError(
            f"post_gen_project: {relative} is in RENAMES but not in the template"
        )
    if target.exists():
        raise FileExistsError(f"post_gen_project: {final} exists next to its variant {relative}")
    source.rename(target)


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
        for relative, final in files_to_rename(ANSWERS).items():
            rename(root, relative, final)
    except OSError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
