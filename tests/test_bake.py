"""What a bake writes: every variable rendered, valid TOML, nothing of another option."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from .conftest import TEMPLATE, Project

UNRENDERED = re.compile(r"{{\s*cookiecutter\.|{%-?\s*(if|for|raw)\b")


def test_no_unrendered_template_syntax(project: Project) -> None:
    offenders = []
    for path in project.path.rglob("*"):
        if ".venv" in path.parts or not path.is_file():
            continue
        for pattern_source in (path.name, path.read_text(errors="ignore")):
            if UNRENDERED.search(pattern_source):
                offenders.append(str(path.relative_to(project.path)))
                break
    assert offenders == []


def test_only_the_chosen_variants_remain_under_their_final_names(project: Project) -> None:
    # The post-gen hook renames <module>_<orm>.py to <module>.py and removes the rest.
    leftovers = [
        str(path.relative_to(project.path))
        for path in project.path.rglob("*")
        if ".venv" not in path.parts and re.search(r"_(sqlalchemy|tortoise)\b", path.stem)
    ]
    assert leftovers == []
    package = project.path / "src" / project.package
    for module in ("db.py", "items/models.py", "items/store.py", "scheduling/jobs.py"):
        text = (package / module).read_text()
        other = "tortoise" if project.context["orm"] == "sqlalchemy" else "sqlalchemy"
        assert f"from {other}" not in text, module
        assert f"import {other}" not in text, module
    assert (project.path / "tests" / "database.py").is_file()


def test_pyproject_is_pep621_with_capped_majors(project: Project) -> None:
    pyproject = tomllib.loads((project.path / "pyproject.toml").read_text())
    meta = pyproject["project"]
    assert meta["name"] == project.context["project_slug"]
    assert meta["requires-python"] == f">={project.context['python_version']}"
    assert pyproject["build-system"]["build-backend"] == "hatchling.build"
    dependencies = {re.split(r"[\[<>=]", dep, maxsplit=1)[0]: dep for dep in meta["dependencies"]}
    # Each ORM's own stack, and nothing of the other's.
    orm_stacks = {
        "sqlalchemy": {"sqlalchemy", "alembic", "aiosqlite"},
        "tortoise": {"tortoise-orm", "aerich"},
    }
    for orm, stack in orm_stacks.items():
        expected = stack if orm == project.context["orm"] else set()
        assert stack & dependencies.keys() == expected, (orm, sorted(dependencies))
    assert "asyncpg" in dependencies, "PostgreSQL's driver, and the leader lease's, in both"
    assert ("redis" in dependencies) is bool(project.context["use_redis"])
    for name, dependency in dependencies.items():
        assert ">=" in dependency, f"{name} needs a lower bound"
        assert ",<" in dependency, f"{name} needs a cap on the next major version"
    assert pyproject["tool"]["mypy"]["strict"] is True


def test_layout_is_src_with_the_package(project: Project) -> None:
    package = project.path / "src" / project.package
    for module in ("__init__.py", "__main__.py", "main.py", "settings.py", "db.py", "errors.py"):
        assert (package / module).is_file(), module
    assert (package / "health" / "router.py").is_file()
    if project.context["orm"] == "sqlalchemy":
        assert (project.path / "migrations" / "env.py").is_file()
        assert (project.path / "alembic.ini").is_file()
    else:
        assert list((project.path / "migrations" / "models").glob("0_*_init.py"))
        assert (package / "migrate.py").is_file()
        assert not (project.path / "alembic.ini").exists()
    assert (package / "cache.py").is_file() is bool(project.context["use_redis"])
    assert (package / "items" / "cache.py").is_file() is bool(project.context["use_redis"])
    redis_tests = project.path / "tests" / "test_cache.py"
    assert redis_tests.is_file() is bool(project.context["use_redis"])
    assert (project.path / ".env.example").is_file()
    # The lock and licence of the answers, under their final names; no other.
    assert (project.path / "uv.lock").is_file()
    assert (project.path / "LICENSE").is_file()
    version = (project.path / ".python-version").read_text().strip()
    assert version == project.context["python_version"]
    assert not (project.path / "locks").exists()
    assert not (project.path / "licenses").exists()


def test_env_example_names_every_setting(project: Project) -> None:
    result = project.run(
        [
            "python",
            "-c",
            f"from {project.package}.settings import Settings; "
            "print('\\n'.join(name.upper() for name in Settings.model_fields))",
        ]
    )
    assert result.returncode == 0, result.stderr
    settings = set(result.stdout.split())
    example = (project.path / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert settings <= named, f"missing from .env.example: {sorted(settings - named)}"
    table = (project.path / "docs" / "settings.md").read_text()
    undocumented = [name for name in settings if f"`{name}`" not in table]
    assert undocumented == [], f"missing from docs/settings.md: {undocumented}"


PROJECT_TEMPLATE = TEMPLATE / "{{cookiecutter.project_slug}}"
# A Jinja statement ({% if %}, {% endif %}...) and a substitution ({{ cookiecutter.x }}).
JINJA_STATEMENT = re.compile(r"{%-?.*?-?%}")
JINJA_SUBSTITUTION = re.compile(r"{{.*?}}")
# At most this many statements in all of the template's Python files (issue 14): variants
# are whole files, and what remains only adds or removes whole lines of an option.
MAX_PYTHON_STATEMENTS = 10


def template_python_files() -> list[Path]:
    return sorted(PROJECT_TEMPLATE.rglob("*.py"))


def test_template_python_files_hold_few_jinja_statements_each_a_whole_line() -> None:
    statements: list[str] = []
    for path in template_python_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found = JINJA_STATEMENT.findall(line)
            where = f"{path.relative_to(PROJECT_TEMPLATE)}:{number}"
            statements += [f"{where}: {statement}" for statement in found]
            # A statement on its own line: no line of Python is cut by one.
            assert not found or JINJA_STATEMENT.fullmatch(line.strip()), where
    assert len(statements) <= MAX_PYTHON_STATEMENTS, "\n".join(statements)


def test_template_python_files_parse_once_whole_line_statements_are_dropped() -> None:
    # Both sides of every {% if %} kept at once: each must still be valid Python, so an
    # editor, ruff and a reader see one module, and no tag splits a docstring or a call.
    unparsed = []
    for path in template_python_files():
        lines = [
            JINJA_SUBSTITUTION.sub("cookiecutter_value", line)
            for line in path.read_text().splitlines()
            if not JINJA_STATEMENT.fullmatch(line.strip())
        ]
        try:
            ast.parse("\n".join(lines), filename=str(path))
        except SyntaxError as error:
            unparsed.append(f"{path.relative_to(PROJECT_TEMPLATE)}:{error.lineno}: {error.msg}")
    assert unparsed == []
