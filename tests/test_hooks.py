"""Bad answers stop the bake with one line naming the field and the rule, leaving nothing.

The hooks are imported as modules (``load_hook``): their tables are checked against
the template's files, and their constants are used here rather than copied.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

from .conftest import TEMPLATE, load_hook

PRE_GEN = load_hook("pre_gen_project")
POST_GEN = load_hook("post_gen_project")
PROJECT_TEMPLATE = TEMPLATE / "{{cookiecutter.project_slug}}"

# (answers, the field the error must name, a fragment of the rule it must state)
BAD_ANSWERS: list[tuple[dict[str, Any], str, str]] = [
    ({"project_slug": "My-Service"}, "project_slug", "DNS-1123"),
    ({"project_slug": "my service"}, "project_slug", "DNS-1123"),
    ({"project_slug": "my_service"}, "project_slug", "DNS-1123"),
    ({"project_slug": "-service"}, "project_slug", "DNS-1123"),
    ({"project_slug": "service-"}, "project_slug", "DNS-1123"),
    ({"project_slug": "a" * 64}, "project_slug", "longer than 63"),
    ({"package_name": "my-service"}, "package_name", "not a Python identifier"),
    ({"package_name": "class"}, "package_name", "keyword"),
    ({"package_name": "match"}, "package_name", "keyword"),
    ({"package_name": "fastapi"}, "package_name", "shadow"),
    ({"package_name": "sqlalchemy"}, "package_name", "shadow"),
    ({"package_name": "redis"}, "package_name", "shadow"),
    ({"package_name": "test"}, "package_name", "shadow"),
    ({"package_name": "asyncio"}, "package_name", "shadow"),
    ({"package_name": "MyService"}, "package_name", "lowercase"),
    (
        {"package_name": "a" * (PRE_GEN.MAX_PACKAGE_NAME + 1)},
        "package_name",
        f"longer than {PRE_GEN.MAX_PACKAGE_NAME}",
    ),
    ({"status_page_url": "status.example.com"}, "status_page_url", "absolute http(s) URL"),
    ({"status_page_url": "ftp://status.example.com"}, "status_page_url", "absolute http(s)"),
    ({"status_page_url": "/status"}, "status_page_url", "absolute http(s) URL"),
    ({"author_email": "jane"}, "author_email", "not an email address"),
    ({"author_email": "jane@example"}, "author_email", "not an email address"),
    ({"author_email": "jane doe@example.com"}, "author_email", "not an email address"),
    ({"k8s_namespace": "Production"}, "k8s_namespace", "DNS-1123"),
    ({"k8s_namespace": "prod_ns"}, "k8s_namespace", "DNS-1123"),
    ({"container_image": "ghcr.io/Example/svc"}, "container_image", "lowercase path"),
    ({"container_image": "ghcr.io/example/svc:latest"}, "container_image", "without tag"),
    ({"container_image": "ghcr.io/example/svc@sha256:0f"}, "container_image", "without tag"),
    ({"container_image": "not an image"}, "container_image", "image repository"),
    ({"version": "one"}, "version", "PEP 440"),
    ({"description": 'say "hi"'}, "description", "double quotes"),
    ({"author_name": "   "}, "author_name", "must not be empty"),
    ({"project_name": 'The "Best" API'}, "project_name", "double quotes"),
    ({"prometheus_release": "kube prometheus"}, "prometheus_release", "label value"),
    ({"prometheus_release": "-stack"}, "prometheus_release", "label value"),
    ({"prometheus_release": "r" * 64}, "prometheus_release", "label value"),
    ({"slo_availability": "99,5"}, "slo_availability", "percentage from 95"),
    ({"slo_availability": "0.995"}, "slo_availability", "percentage from 95"),
    ({"slo_availability": "100"}, "slo_availability", "percentage from 95"),
    ({"slo_availability": "90"}, "slo_availability", "percentage from 95"),
    ({"slo_availability": "99.9999"}, "slo_availability", "at most three decimals"),
    ({"slo_latency_seconds": "500ms"}, "slo_latency_seconds", "number of seconds"),
    ({"slo_latency_seconds": "0"}, "slo_latency_seconds", "number of seconds"),
    ({"slo_latency_seconds": "61"}, "slo_latency_seconds", "number of seconds"),
    ({"runbook_url": "docs/runbook.md"}, "runbook_url", "absolute http(s) URL"),
    ({"runbook_url": "https://wiki.example.com/runbook#alerts"}, "runbook_url", "no fragment"),
    # A blank name slugifies to nothing: the hook, not cookiecutter, must say so.
    ({"project_name": "   "}, "project_name", "must not be empty"),
    ({"project_name": ""}, "project_name", "must not be empty"),
]


def bad_id(case: tuple[dict[str, Any], str, str]) -> str:
    answers, field, _ = case
    return f"{field}={answers[field]!r}"[:60]


@pytest.mark.parametrize(("answers", "field", "rule"), BAD_ANSWERS, ids=map(bad_id, BAD_ANSWERS))
def test_bad_answer_stops_the_bake_with_one_line(
    answers: dict[str, Any],
    field: str,
    rule: str,
    cookies: Any,
    tmpdir: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    result = cookies.bake(extra_context=answers)
    assert isinstance(result.exception, FailedHookException)
    assert result.exit_code != 0
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"ERROR: {field}: ")
    assert rule in errors[0]
    # The next line says how to bake again with the other answers kept.
    hint = err.splitlines()[err.splitlines().index(errors[0]) + 1]
    assert hint.startswith("Your answers are kept in "), hint
    assert f"correct {field} there" in hint
    assert "cookiecutter --replay " in hint
    left = [path for path in Path(str(tmpdir), "cookies").rglob("*") if not path.is_dir()]
    assert left == [], "a refused bake left files behind"
    assert result.project_path is None


def test_an_orm_outside_the_choices_stops_the_bake(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Cookiecutter itself refuses a choice outside the list given on the command line;
    # a replay file (or an edited cookiecutter.json) reaches the hook unchecked.
    replay_dir = tmp_path / "replay"
    cookiecutter(
        str(TEMPLATE),
        no_input=True,
        output_dir=str(tmp_path / "good"),
        replay=False,
        config_file=None,
        default_config={"replay_dir": str(replay_dir)},
    )
    (recorded,) = replay_dir.glob("*.json")
    context = json.loads(recorded.read_text())
    context["cookiecutter"]["orm"] = "django"
    replay = tmp_path / "django.json"
    replay.write_text(json.dumps(context))
    output = tmp_path / "bad"
    with pytest.raises(FailedHookException):
        cookiecutter(str(TEMPLATE), replay=str(replay), output_dir=str(output))
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR:")]
    assert errors == ["ERROR: orm: 'django' is not one of the choices: sqlalchemy, tortoise"]
    assert not output.exists() or list(output.rglob("*.py")) == []


def test_the_cli_exits_non_zero_without_a_traceback_from_the_hook(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "-o",
            str(tmp_path),
            str(TEMPLATE),
            "project_slug=Bad_Slug",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "ERROR: project_slug: 'Bad_Slug' is not a DNS-1123 label" in output
    # Cookiecutter 2.7 logs its own "Stopping generation" traceback; none of its
    # frames may come from our hook (which runs from a temporary copy).
    frames = [line for line in output.splitlines() if line.strip().startswith('File "')]
    assert all("/cookiecutter/" in frame for frame in frames), frames
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "answers",
    [
        {"project_name": "Billing API", "author_email": "team+billing@corp.example.org"},
        {"project_slug": "a" * 63, "package_name": "svc"},
        {"container_image": "registry.corp.example:5000/team/billing-api"},
        {"status_page_url": "http://status.internal:8080/page?id=1"},
        {"description": "Backslash-free, quote-free: fine (really)"},
        {
            "prometheus_release": "prometheus_1.x",
            "slo_availability": "99.95",
            "slo_latency_seconds": "2",
            "runbook_url": "https://wiki.example.com/display/OPS/Billing+runbook",
        },
    ],
    ids=[
        "spaces-in-name",
        "63-char-slug",
        "registry-with-port",
        "http-url-with-query",
        "text",
        "monitoring",
    ],
)
def test_good_answers_bake(answers: dict[str, Any], cookies: Any) -> None:
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    assert (result.project_path / "pyproject.toml").is_file()


@pytest.mark.parametrize(
    ("name", "slug", "package"),
    [
        ("Billing API", "billing-api", "billing_api"),
        # Transliterated by cookiecutter's slugify extension, not refused.
        ("Café Service", "cafe-service", "cafe_service"),
        ("Ünïcode_Ledger  v2", "unicode-ledger-v2", "unicode_ledger_v2"),
    ],
)
def test_derived_names_follow_the_project_name(
    name: str, slug: str, package: str, cookies: Any
) -> None:
    result = cookies.bake(extra_context={"project_name": name})
    assert result.exit_code == 0, result.exception
    assert result.project_path.name == slug
    assert (result.project_path / "src" / package / "main.py").is_file()


@pytest.mark.parametrize(
    ("license_", "first_line", "field"),
    [
        ("MIT", "MIT License", "MIT"),
        ("Apache-2.0", "Apache License", "Apache-2.0"),
        ("BSD-3-Clause", "BSD 3-Clause License", "BSD-3-Clause"),
        ("Proprietary", "Copyright (c) ", "LicenseRef-Proprietary"),
    ],
)
def test_the_chosen_licence_is_the_projects(
    license_: str, first_line: str, field: str, cookies: Any
) -> None:
    result = cookies.bake(extra_context={"license": license_, "author_name": "Acme Ops"})
    assert result.exit_code == 0, result.exception
    text = (result.project_path / "LICENSE").read_text()
    assert text.strip().splitlines()[0].strip().startswith(first_line)
    if license_ != "Apache-2.0":  # Apache's text names no holder: the NOTICE habit
        assert "Acme Ops" in text
    assert not (result.project_path / POST_GEN.LICENSES_DIR).exists()
    meta = tomllib.loads((result.project_path / "pyproject.toml").read_text())["project"]
    assert meta["license"] == field
    assert meta["license-files"] == ["LICENSE"]
    private = "Private :: Do Not Upload" in meta.get("classifiers", [])
    assert private is (license_ == "Proprietary")


def test_a_refused_bake_is_baked_again_as_its_hint_says(tmp_path: Path) -> None:
    """The hint after a refusal names the replay file and a command that works."""
    config = tmp_path / "cookiecutterrc.yaml"
    config.write_text(f"replay_dir: {tmp_path / 'replay'}\n")
    env = {**os.environ, "COOKIECUTTER_CONFIG": str(config)}
    cookiecutter_cli = [sys.executable, "-m", "cookiecutter"]
    output = tmp_path / "out"
    refused = subprocess.run(
        [
            *cookiecutter_cli,
            "--no-input",
            "-o",
            str(output),
            str(TEMPLATE),
            "project_slug=Bad_Slug",
            "description=Kept across the retry",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert refused.returncode != 0
    (hint,) = [line for line in refused.stderr.splitlines() if line.startswith("Your answers")]
    match = re.fullmatch(
        r"Your answers are kept in (\S+): correct project_slug there"
        r" \(and ([a-z0-9_, ]+), derived from it\), then run: (.+)",
        hint,
    )
    assert match is not None, hint
    replay_file, derived, command = Path(match[1]), match[2].split(", "), match[3].split()
    assert derived == ["package_name", "k8s_namespace", "container_image"]
    assert command[:2] == ["cookiecutter", "--replay"]
    recorded = json.loads(replay_file.read_text())
    answers = recorded["cookiecutter"]
    for name in ("project_slug", *derived):
        answers[name] = answers[name].replace("Bad_Slug", "good-slug")
    answers["package_name"] = "good_slug"
    replay_file.write_text(json.dumps(recorded))
    again = subprocess.run(
        [*cookiecutter_cli, *command[1:], "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    pyproject = tomllib.loads((output / "good-slug" / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == "Kept across the retry"


def test_the_post_gen_tables_match_the_template() -> None:
    features, renames = POST_GEN.FEATURE_FILES, POST_GEN.RENAMES
    owned = [path for paths in features.values() for path in paths]
    assert [path for path in owned if not (PROJECT_TEMPLATE / path).exists()] == []
    variants = sorted(
        str(path.relative_to(PROJECT_TEMPLATE))
        for path in PROJECT_TEMPLATE.rglob("*")
        if re.search(r"_(sqlalchemy|tortoise)$", path.stem)
    )
    assert variants == sorted(renames), "every variant file is renamed, and only those"
    assert set(renames) <= set(owned), "every variant belongs to one choice"
    for variant, final in renames.items():
        assert not (PROJECT_TEMPLATE / final).exists(), f"{final} would clash with {variant}"
        orm = re.search(r"_(sqlalchemy|tortoise)", variant)
        assert orm is not None
        assert variant in features[("orm", orm[1])], f"{variant} is not {orm[1]}'s"
        assert final == re.sub(rf"_{orm[1]}(?=(\.py)?$)", "", variant), (variant, final)
    by_orm = {
        orm: {final for variant, final in renames.items() if f"_{orm}" in variant}
        for orm in ("sqlalchemy", "tortoise")
    }
    # Shared code imports these names: both ORMs provide each (Tortoise adds migrate.py).
    assert by_orm["sqlalchemy"] <= by_orm["tortoise"], by_orm


def test_the_lock_and_licence_tables_cover_every_answer() -> None:
    prompts = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    expected = {
        (orm, use_redis, python)
        for orm in prompts["orm"]
        for use_redis in (False, True)
        for python in prompts["python_version"]
    }
    assert set(POST_GEN.LOCKS) == expected
    locks = POST_GEN.LOCKS.values()
    assert [path for path in locks if not (PROJECT_TEMPLATE / path).is_file()] == []
    on_disk = {
        str(path.relative_to(PROJECT_TEMPLATE))
        for path in (PROJECT_TEMPLATE / POST_GEN.LOCKS_DIR).iterdir()
    }
    assert on_disk == set(locks), "a lock file no answer picks"
    assert set(POST_GEN.LICENSES) == set(prompts["license"]) == set(PRE_GEN.LICENSES)
    on_disk = {
        str(path.relative_to(PROJECT_TEMPLATE))
        for path in (PROJECT_TEMPLATE / POST_GEN.LICENSES_DIR).iterdir()
    }
    assert on_disk == set(POST_GEN.LICENSES.values())


def test_the_template_locks_render_to_the_projects_name_and_version() -> None:
    lock = (PROJECT_TEMPLATE / POST_GEN.LOCKS[("sqlalchemy", False, "3.12")]).read_text()
    rendered = POST_GEN.render_lock(lock, "billing--api", "01.2.0")
    assert 'name = "billing-api"\nversion = "1.2.0"\nsource = { editable = "." }' in rendered
    assert POST_GEN.LOCK_PROJECT_NAME not in rendered
    with pytest.raises(ValueError, match="make locks"):
        POST_GEN.render_lock(rendered, "billing-api", "1.2.0")


def test_a_package_named_like_a_variant_keeps_its_name(cookies: Any) -> None:
    result = cookies.bake(extra_context={"package_name": "ledger_tortoise", "orm": "tortoise"})
    assert result.exit_code == 0, result.exception
    package = result.project_path / "src" / "ledger_tortoise"
    assert (package / "db.py").is_file()
    assert (package / "migrate.py").is_file()
    assert not (package / "db_tortoise.py").exists()


def test_the_printed_next_steps_init_git_before_pre_commit() -> None:
    # pre-commit installs into .git: in a fresh bake it fails ("not in a Git repository").
    steps = POST_GEN.next_steps({"project_slug": "my-service"}).splitlines()
    commands = [re.sub(r"\s+#\s.*$", "", line).strip() for line in steps]
    assert "git init" in commands
    assert "uv run pre-commit install" in commands
    assert commands.index("git init") < commands.index("uv run pre-commit install")
