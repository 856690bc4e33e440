"""CONTRIBUTING.md's layout table lists every part of the repository."""

from __future__ import annotations

import re
import subprocess

from .conftest import TEMPLATE

# Folders whose every file has a row of its own (or shares one); elsewhere the top-level
# entry is enough (``{{cookiecutter.project_slug}}/`` has its own feature table).
LISTED_FILE_BY_FILE = ("tests", "scripts", "hooks", "benchmarks")


def layout_paths() -> set[str]:
    """The paths named in the first column of CONTRIBUTING.md's layout table."""
    text = (TEMPLATE / "CONTRIBUTING.md").read_text()
    table = text.split("## Layout", 1)[1].split("\n\n", 2)[1]
    paths = set()
    for row in table.splitlines()[2:]:
        first_cell = row.split("|")[1]
        paths.update(path.rstrip("/") for path in re.findall(r"`([^`]+)`", first_cell))
    return paths


def tracked_files() -> list[str]:
    return subprocess.run(
        ["git", "ls-files"], cwd=TEMPLATE, capture_output=True, text=True, check=True
    ).stdout.split()


def test_every_top_level_entry_is_in_the_layout_table() -> None:
    listed = layout_paths()
    listed_tops = {path.split("/")[0] for path in listed}
    tops = {path.split("/")[0] for path in tracked_files()}
    assert sorted(tops - listed_tops) == []
    assert ".ci/run" in listed, "the CI entry point"


def test_every_file_of_the_template_tooling_has_a_row() -> None:
    listed = layout_paths()
    unlisted = [
        path
        for path in tracked_files()
        if path.split("/")[0] in LISTED_FILE_BY_FILE
        and not path.endswith("__init__.py")
        and path not in listed
    ]
    assert unlisted == []


def test_every_path_in_the_table_exists() -> None:
    missing = [path for path in layout_paths() if not (TEMPLATE / path).exists()]
    assert missing == []
