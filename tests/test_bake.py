"""What a bake writes: every variable rendered, valid TOML, nothing of another option."""

from __future__ import annotations

import re
import tomllib

from .conftest import Project

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
    for module in ("db.py", "items/models.py", "items/router.py", "scheduling/jobs.py"):
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
    readme = (project.path / "README.md").read_text()
    undocumented = [name for name in settings if f"`{name}`" not in readme]
    assert undocumented == [], f"missing from the README's settings table: {undocumented}"
