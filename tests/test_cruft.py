"""Template updates with cruft: bake from one template commit, update to the next.

A temporary git copy of the template stands in for its repository. The project
is created from its first commit with ``cruft create``, gets a commit and a local
edit of its own, and is then updated with ``cruft update`` to a second template
commit that changes a generated file and adds one. The update must arrive, keep
the local edit, leave no template syntax behind, and the updated project must
pass its lint, types and own test suite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .conftest import TEMPLATE, find_python, install, require
from .test_bake import UNRENDERED
from .test_tooling import tool

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}
# What the template repository holds: no virtualenvs, tool caches or builds.
NOT_IN_REPOSITORY = (".git", ".venv", ".tools", "build", ".cache", "*_cache", "__pycache__")

MAKEFILE_LINE = "# Added by the second template commit."


def run(argv: Sequence[str], cwd: Path, timeout: float = 300) -> str:
    """Run ``argv`` in ``cwd``; returns stdout, fails the test on a non-zero exit."""
    env = {**os.environ, **GIT_IDENTITY}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def commit_all(repository: Path, message: str) -> str:
    """Stage everything, commit it; returns the commit's SHA."""
    git = tool("git")
    run([git, "add", "--all"], repository)
    run([git, "commit", "--quiet", "--no-verify", "-m", message], repository)
    return run([git, "rev-parse", "HEAD"], repository).strip()


def template_repository(destination: Path) -> Path:
    """A git repository holding the current template, committed once."""
    shutil.copytree(TEMPLATE, destination, ignore=shutil.ignore_patterns(*NOT_IN_REPOSITORY))
    run([tool("git"), "init", "--quiet", "--initial-branch", "main"], destination)
    commit_all(destination, "template, first commit")
    return destination


def change_template(repository: Path) -> str:
    """The second template commit: a line in a generated file, and a new file."""
    project = repository / "{{cookiecutter.project_slug}}"
    with (project / "Makefile").open("a") as makefile:
        makefile.write(f"\n{MAKEFILE_LINE}\n")
    (project / "docs").mkdir(exist_ok=True)  # the bake has docs/ pages already
    # A page no bake has yet (docs/runbook.md is the alerts' runbook now).
    (project / "docs" / "on-call.md").write_text(
        "# On call for {{ cookiecutter.project_name }}\n\nStart with `make run`.\n"
    )
    return commit_all(repository, "template, second commit")


def cruft_commit(project: Path) -> str:
    return str(json.loads((project / ".cruft.json").read_text())["commit"])


def test_cruft_update_brings_a_template_change_into_a_baked_project(tmp_path: Path) -> None:
    python_version = json.loads((TEMPLATE / "cookiecutter.json").read_text())["python_version"][0]
    require(find_python(python_version) is not None, f"no Python {python_version}")
    cruft = tool("cruft")
    git = tool("git")
    template = template_repository(tmp_path / "template")
    first = run([git, "rev-parse", "HEAD"], template).strip()

    run(
        [cruft, "create", "--no-input", "--output-dir", str(tmp_path / "out"), str(template)],
        tmp_path,
    )
    (project,) = (tmp_path / "out").iterdir()
    assert cruft_commit(project) == first
    run([git, "init", "--quiet", "--initial-branch", "main"], project)
    commit_all(project, "baked from the template")
    # The team's own change, which the update must keep.
    readme = project / "README.md"
    readme.write_text(readme.read_text() + "\nOur on-call rota lives in the wiki.\n")
    commit_all(project, "a change of our own")

    second = change_template(template)
    # cruft check exits 1 while the project is behind the template.
    behind = subprocess.run(
        [cruft, "check", "--project-dir", str(project)], capture_output=True, text=True, check=False
    )
    assert behind.returncode != 0, behind.stdout

    run(
        [cruft, "update", "--skip-apply-ask", "--allow-untracked-files", "--project-dir", "."],
        project,
    )

    assert cruft_commit(project) == second
    assert (project / "Makefile").read_text().rstrip().endswith(MAKEFILE_LINE)
    assert (project / "docs" / "on-call.md").read_text().startswith("# On call for My Service\n")
    assert "Our on-call rota lives in the wiki." in readme.read_text()
    assert not list(project.rglob("*.rej")), "the update left rejected hunks"
    run([cruft, "check", "--project-dir", "."], project)
    leftovers = [
        str(path.relative_to(project))
        for path in project.rglob("*")
        if ".git" not in path.parts
        and path.is_file()
        and UNRENDERED.search(path.read_text(errors="ignore"))
    ]
    assert leftovers == []

    # The updated project still passes its lint, types and whole test suite.
    install(project, python_version)
    bin_dir = project / ".venv" / "bin"
    for argv in (["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]):
        run([str(bin_dir / argv[0]), *argv[1:]], project)
    result = subprocess.run(
        [str(bin_dir / "pytest"), "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env={**os.environ, "CI": "true", "TEST_DATABASE_URL": ADMIN_URL},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", summary), summary
    assert "skipped" not in summary, summary
