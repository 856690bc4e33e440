"""Bad answers stop the bake with one line naming the field and the rule, leaving nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

from .conftest import TEMPLATE

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
    ({"package_name": "a" * 41}, "package_name", "longer than 40"),
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
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"ERROR: {field}: ")
    assert rule in errors[0]
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
    ],
    ids=["spaces-in-name", "63-char-slug", "registry-with-port", "http-url-with-query", "text"],
)
def test_good_answers_bake(answers: dict[str, Any], cookies: Any) -> None:
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    assert (result.project_path / "pyproject.toml").is_file()


def test_derived_names_follow_the_project_name(cookies: Any) -> None:
    result = cookies.bake(extra_context={"project_name": "Billing API"})
    assert result.project_path.name == "billing-api"
    assert (result.project_path / "src" / "billing_api" / "main.py").is_file()


def post_gen_tables() -> tuple[dict[tuple[str, object], list[str]], dict[str, str]]:
    """``FEATURE_FILES`` and ``RENAMES`` of the post-gen hook, with paths as in the template."""
    source = (TEMPLATE / "hooks" / "post_gen_project.py").read_text()
    source = source.replace('r"""{{ cookiecutter | tojson }}"""', '"{}"')
    source = source.replace("{{ cookiecutter.package_name }}", "{{cookiecutter.package_name}}")
    namespace: dict[str, Any] = {"__name__": "post_gen_project"}
    # The hook is a Jinja template: run it with its two expressions replaced.
    exec(compile(source, "post_gen_project.py", "exec"), namespace)
    return namespace["FEATURE_FILES"], namespace["RENAMES"]


def test_the_post_gen_tables_match_the_template() -> None:
    features, renames = post_gen_tables()
    project = TEMPLATE / "{{cookiecutter.project_slug}}"
    owned = [path for paths in features.values() for path in paths]
    assert [path for path in owned if not (project / path).exists()] == []
    variants = sorted(
        str(path.relative_to(project))
        for path in project.rglob("*")
        if re.search(r"_(sqlalchemy|tortoise)$", path.stem)
    )
    assert variants == sorted(renames), "every variant file is renamed, and only those"
    assert set(renames) <= set(owned), "every variant belongs to one choice"
    for variant, final in renames.items():
        assert not (project / final).exists(), f"{final} would clash with {variant}"
    by_orm = {
        orm: {final for variant, final in renames.items() if f"_{orm}" in variant}
        for orm in ("sqlalchemy", "tortoise")
    }
    # Shared code imports these names: both ORMs provide each (Tortoise adds migrate.py).
    assert by_orm["sqlalchemy"] <= by_orm["tortoise"], by_orm


def test_a_package_named_like_a_variant_keeps_its_name(cookies: Any) -> None:
    result = cookies.bake(extra_context={"package_name": "ledger_tortoise", "orm": "tortoise"})
    assert result.exit_code == 0, result.exception
    package = result.project_path / "src" / "ledger_tortoise"
    assert (package / "db.py").is_file()
    assert (package / "migrate.py").is_file()
    assert not (package / "db_tortoise.py").exists()
