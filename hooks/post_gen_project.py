"""Remove the files of the options that were not chosen, name the chosen ones, say what next.

The tables below are data, every entry written out: which files each optional
feature owns, which variant file takes which final name, which lock file serves
which answers, which licence text each ``license`` answer takes. Everything else
in the template belongs to every project. ``tests/test_hooks.py`` imports this
module (unrendered, so its paths read as the template's own) and checks each
table against the template's files.

The lock files are made by ``make locks`` (``scripts/locks.py``) for a project
named ``LOCK_PROJECT_NAME`` at version ``LOCK_PROJECT_VERSION``; the chosen one
gets the project's own name and version, the only parts of a lock that depend on
answers other than ``orm``, ``use_redis`` and ``python_version``.

The hook only deletes, renames and rewrites files: no network, no tool installs,
so a bake stays a pure, fast, offline file operation.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

# Rendered by cookiecutter; read in main(), so that importing this module reads nothing.
ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

PACKAGE = "src/{{cookiecutter.package_name}}"

# (answer, value that keeps the files) -> paths relative to the project root.
# A feature's files are removed when the answer differs from that value.
FEATURE_FILES: dict[tuple[str, object], list[str]] = {
    ("orm", "sqlalchemy"): [
        f"{PACKAGE}/db_sqlalchemy.py",
        f"{PACKAGE}/items/models_sqlalchemy.py",
        f"{PACKAGE}/items/store_sqlalchemy.py",
        f"{PACKAGE}/scheduling/models_sqlalchemy.py",
        "alembic.ini",
        "migrations_sqlalchemy",
        "tests/database_sqlalchemy.py",
        "tests/test_pool_outages.py",
    ],
    ("orm", "tortoise"): [
        f"{PACKAGE}/db_tortoise.py",
        f"{PACKAGE}/migrate_tortoise.py",
        f"{PACKAGE}/items/models_tortoise.py",
        f"{PACKAGE}/items/store_tortoise.py",
        f"{PACKAGE}/scheduling/models_tortoise.py",
        "migrations_tortoise",
        "tests/database_tortoise.py",
        "tests/test_migrate.py",
    ],
    ("use_redis", True): [
        f"{PACKAGE}/cache.py",
        f"{PACKAGE}/items/cache.py",
        "tests/test_cache.py",
        "docs/redis.md",
    ],
}

# Variant files of the table above -> their final names.
RENAMES: dict[str, str] = {
    f"{PACKAGE}/db_sqlalchemy.py": f"{PACKAGE}/db.py",
    f"{PACKAGE}/items/models_sqlalchemy.py": f"{PACKAGE}/items/models.py",
    f"{PACKAGE}/items/store_sqlalchemy.py": f"{PACKAGE}/items/store.py",
    f"{PACKAGE}/scheduling/models_sqlalchemy.py": f"{PACKAGE}/scheduling/models.py",
    "migrations_sqlalchemy": "migrations",
    "tests/database_sqlalchemy.py": "tests/database.py",
    f"{PACKAGE}/db_tortoise.py": f"{PACKAGE}/db.py",
    f"{PACKAGE}/migrate_tortoise.py": f"{PACKAGE}/migrate.py",
    f"{PACKAGE}/items/models_tortoise.py": f"{PACKAGE}/items/models.py",
    f"{PACKAGE}/items/store_tortoise.py": f"{PACKAGE}/items/store.py",
    f"{PACKAGE}/scheduling/models_tortoise.py": f"{PACKAGE}/scheduling/models.py",
    "migrations_tortoise": "migrations",
    "tests/database_tortoise.py": "tests/database.py",
}

LOCKS_DIR = "locks"
# The name and version the template's lock files are made for (scripts/locks.py).
LOCK_PROJECT_NAME = "uv-lock-template"
LOCK_PROJECT_VERSION = "0.0.0"
ORMS = ("sqlalchemy", "tortoise")
PYTHON_VERSIONS = ("3.11", "3.12", "3.13")


def lock_file(orm: str, use_redis: bool, python_version: str) -> str:
    """The template's lock file for these answers, relative to the project root."""
    redis = "redis" if use_redis else "no-redis"
    return f"{LOCKS_DIR}/uv-{orm}-{redis}-py{python_version}.lock"


# (orm, use_redis, python_version) -> the lock file that becomes uv.lock.
LOCKS: dict[tuple[str, bool, str], str] = {
    (orm, use_redis, python): lock_file(orm, use_redis, python)
    for orm in ORMS
    for use_redis in (False, True)
    for python in PYTHON_VERSIONS
}

LICENSES_DIR = "licenses"
# license answer -> the text that becomes LICENSE.
LICENSES: dict[str, str] = {
    "MIT": f"{LICENSES_DIR}/MIT",
    "Apache-2.0": f"{LICENSES_DIR}/Apache-2.0",
    "BSD-3-Clause": f"{LICENSES_DIR}/BSD-3-Clause",
    "Proprietary": f"{LICENSES_DIR}/Proprietary",
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


def normalized_name(name: str) -> str:
    """A distribution name as uv writes it in ``uv.lock`` (PEP 503 normalisation)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def normalized_version(version: str) -> str:
    """A version as uv writes it in ``uv.lock``: numbers without leading zeros.

    The pre-gen hook admits only versions whose other parts are already in PEP 440's
    normal form (``1.0``, ``0.1.0rc1``, ``2.0.post1``).
    """
    return re.sub(r"\d+", lambda number: str(int(number.group())), version)


def lock_header(name: str, version: str) -> str:
    # The editable source in a string of its own: a double brace would be Jinja's.
    source = 'source = { editable = "." }\n'
    return f'[[package]]\nname = "{name}"\nversion = "{version}"\n' + source


def render_lock(text: str, name: str, version: str) -> str:
    """The template's lock ``text`` for the project ``name`` at ``version``.

    Raises:
        ValueError: the lock does not hold the template's project exactly once.
    """
    template = lock_header(LOCK_PROJECT_NAME, LOCK_PROJECT_VERSION)
    if text.count(template) != 1:
        raise ValueError(f"the lock holds no single {LOCK_PROJECT_NAME!r} project: run make locks")
    return text.replace(template, lock_header(normalized_name(name), normalized_version(version)))


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


def write_lock(root: Path, answers: dict[str, object]) -> None:
    """Write ``uv.lock`` from the lock of the answers, then remove the template's locks."""
    key = (str(answers["orm"]), bool(answers["use_redis"]), str(answers["python_version"]))
    source = root / LOCKS[key]
    if not source.is_file():
        raise FileNotFoundError(f"post_gen_project: {LOCKS[key]} is missing: run make locks")
    text = render_lock(
        source.read_text(encoding="utf-8"),
        str(answers["project_slug"]),
        str(answers["version"]),
    )
    (root / "uv.lock").write_text(text, encoding="utf-8")
    shutil.rmtree(root / LOCKS_DIR)


def write_license(root: Path, answers: dict[str, object]) -> None:
    """Move the licence text of the answer to ``LICENSE``; remove the others."""
    (root / LICENSES[str(answers["license"])]).rename(root / "LICENSE")
    shutil.rmtree(root / LICENSES_DIR)


def next_steps(answers: dict[str, object]) -> str:
    """What to type next, as the README's "Getting started" says it."""
    return (
        f"\nBaked {answers['project_slug']}. Next "
        "(uv: https://docs.astral.sh/uv/, or pip install uv):\n"
        f"  cd {answers['project_slug']}\n"
        "  make install   # uv sync --locked: .venv from uv.lock\n"
        "  make run       # SQLite, http://127.0.0.1:8000/health\n"
        "  make test      # PostgreSQL at TEST_DATABASE_URL for the database tests\n"
        "  git init       # pre-commit installs into a Git repository\n"
        "  uv run pre-commit install   # ruff and mypy on every commit\n"
        "README.md has the rest: PostgreSQL (make db), adding a route, a check, a job, a\n"
        "setting; docs/ has deploying, jobs and monitoring, every setting.\n"
    )


def main() -> int:
    answers: dict[str, object] = json.loads(ANSWERS_JSON)
    root = Path.cwd()
    try:
        for relative in files_to_remove(answers):
            remove(root, relative)
        for relative, final in files_to_rename(answers).items():
            rename(root, relative, final)
        write_lock(root, answers)
        write_license(root, answers)
    except (OSError, ValueError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    print(next_steps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
