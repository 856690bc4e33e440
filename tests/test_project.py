"""The baked project passes its own lint, type and test suites with no edits."""

from __future__ import annotations

import os

import pytest

from .conftest import Project

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.mark.parametrize(
    "argv",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_static_checks_pass(project: Project, argv: list[str]) -> None:
    result = project.run(argv)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_strict_over_source_tests_and_migrations(project: Project) -> None:
    result = project.run(["mypy", "--strict"])
    assert result.returncode == 0, result.stdout
    assert "Success" in result.stdout
    checked = int(result.stdout.rsplit(" in ", 1)[1].split()[0])
    assert checked >= 20, result.stdout


def test_the_projects_own_suite_passes_against_real_services(project: Project) -> None:
    # CI=true: the project's tests fail rather than skip when PostgreSQL is missing.
    result = project.run(
        ["pytest", "-q", "-p", "no:cacheprovider"],
        env={"CI": "true", "TEST_DATABASE_URL": ADMIN_URL},
        timeout=900,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert " passed" in summary, summary
    assert "skipped" not in summary, summary
