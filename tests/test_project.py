"""The baked project passes its own lint, type and test suites with no edits."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from .conftest import Project, find_python, install, load_hook, require

MAX_PACKAGE_NAME = load_hook("pre_gen_project").MAX_PACKAGE_NAME

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


def test_the_cronjobs_file_goes_stale_when_a_trigger_is_edited(project: Project) -> None:
    # The project is shared by the session: its files are put back whatever happens.
    source = project.path / "src" / project.package / "scheduling" / "count_items.py"
    manifest = project.path / "k8s" / "base" / "cronjobs.yaml"
    original, rendered = source.read_text(), manifest.read_text()
    declared = "CronTrigger(hour=1, minute=43, timezone=UTC)"
    assert declared in original, "the example's trigger, as this test edits it"
    staleness = [
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_cronjobs.py::test_the_committed_cronjobs_match_the_registry",
    ]
    try:
        source.write_text(
            original.replace(declared, "CronTrigger(hour=2, minute=43, timezone=UTC)")
        )
        stale = project.run(staleness)
        check = project.run(["python", "-m", project.package, "jobs", "cronjobs", "--check"])
        render = project.run(["python", "-m", project.package, "jobs", "cronjobs"])
        fresh = project.run(staleness)
        regenerated = manifest.read_text()
    finally:
        source.write_text(original)
        manifest.write_text(rendered)
    assert stale.returncode == 1, stale.stdout[-3000:]
    assert "k8s/base/cronjobs.yaml is stale: run make cronjobs" in stale.stdout
    assert check.returncode == 1, check.stdout + check.stderr
    assert check.stderr.strip().endswith("is stale: run make cronjobs")
    assert render.returncode == 0, render.stderr
    assert fresh.returncode == 0, fresh.stdout[-3000:]
    assert 'schedule: "43 2 * * *"' in regenerated
    assert regenerated.replace("43 2 * * *", "43 1 * * *") == rendered


def test_two_sessions_at_once_keep_to_their_own_cache_keys(project: Project) -> None:
    # Two sessions at once share TEST_REDIS_URL's database (two bakes tested at once do)
    # and number their items alike: each must cache under its own prefix, and its
    # test that another session's entries are not served must pass.
    if not project.context["use_redis"]:
        pytest.skip("this combination has no Redis")
    argv = ["pytest", "-p", "no:cacheprovider", "tests/test_cache.py", "-k", "prefix"]
    env = {"CI": "true", "TEST_DATABASE_URL": ADMIN_URL}
    with ThreadPoolExecutor(max_workers=2) as sessions:
        results = list(sessions.map(lambda _: project.run(argv, env=env), range(2)))
    prefixes = []
    for result in results:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert "1 passed" in result.stdout, result.stdout[-2000:]
        prefixes += re.findall(r"^items cache key prefix: (\S+)$", result.stdout, re.MULTILINE)
    assert len(prefixes) == 2, prefixes
    assert prefixes[0] != prefixes[1], prefixes


# Bakes at the edges of what the prompts accept: the longest package name, the oldest
# and the newest Python. Only the static checks: the combinations above run the tests.
EDGE_BAKES = [
    {
        "project_name": "Acme Invoice Reconciliation Settlement X",
        # The longest slug a DNS-1123 label allows, with the longest package name.
        "project_slug": "acme-invoice-reconciliation-settlement-and-payments-api-svc-x01",
        "package_name": "acme_invoice_reconciliation_settlement_x",
        "python_version": "3.11",
        "orm": "tortoise",
        "use_redis": True,
    },
    {
        "project_name": "Acme Invoice Reconciliation Settlement Y",
        "python_version": "3.13",
        "orm": "sqlalchemy",
        "use_redis": True,
    },
]


@pytest.mark.parametrize(
    "answers", EDGE_BAKES, ids=[f"python:{bake['python_version']}" for bake in EDGE_BAKES]
)
def test_edge_bakes_pass_static_checks(answers: dict[str, object], cookies: Any) -> None:
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    path = Path(result.project_path)
    package = next(child.name for child in (path / "src").iterdir() if child.is_dir())
    assert len(package) == MAX_PACKAGE_NAME
    version = str(answers["python_version"])
    require(find_python(version) is not None, f"no Python {version} on this machine")
    install(path, version)
    project = Project(path=path, context={"package_name": package, **answers})
    for argv in (["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]):
        checked = project.run(argv)
        assert checked.returncode == 0, f"{' '.join(argv)}:\n{checked.stdout}{checked.stderr}"
