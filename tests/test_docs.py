"""The baked README and ``docs/`` pages: short enough to read, linked, true to the code.

Each bake is rendered offline (no virtualenv): these are checks of text against the
bake's own files. ``tests/test_first_hour.py`` runs the commands the pages give.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.main import cookiecutter

from .combinations import COMBINATIONS, IDS
from .conftest import TEMPLATE

# A newcomer reads the README to the end; the rest is in docs/, linked from it.
MAX_README_LINES = 250
# Every combination, and the first-hour bake's answers (none of them a default).
BAKES = [
    *COMBINATIONS,
    {
        "project_name": "Café Lünch Service",
        "orm": "tortoise",
        "use_redis": True,
        "python_version": "3.13",
        "license": "Apache-2.0",
    },
]
BAKE_IDS = [*IDS, "first-hour-answers"]
SETTINGS_HEADER = "| setting | default | meaning |"
# Tools of the project's virtualenv: typed bare in a fresh shell, they are not found
# (or are another install's). ``uv run`` or a make target runs them.
VENV_TOOLS = ("python", "python3", "pytest", "alembic", "aerich", "ruff", "mypy", "pre-commit")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


@pytest.fixture(scope="module", params=BAKES, ids=BAKE_IDS)
def baked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    answers: dict[str, Any] = request.param
    output = tmp_path_factory.mktemp("bake-docs")
    path = cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(output), extra_context=answers)
    return Path(path)


def pages(project: Path) -> dict[str, str]:
    """README.md and every page of docs/, by path relative to the project."""
    found = [project / "README.md", *sorted((project / "docs").glob("*.md"))]
    return {str(path.relative_to(project)): path.read_text() for path in found}


def anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return {anchor(heading) for heading in re.findall(r"^#+ (.+)$", prose, re.M)}


def section(text: str, heading: str) -> str:
    """The text under the Markdown heading ``heading`` (any level), up to the next heading."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert match is not None, f"no section {heading!r}"
    return match[1]


def bash_commands(text: str) -> list[str]:
    """The command lines of the ```bash blocks of ``text``, continuation lines joined."""
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)
    joined = "\n".join(block.replace("\\\n", " ") for block in blocks)
    stripped = [re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in stripped if line]


def settings_rows(project: Path) -> dict[str, list[str]]:
    """Each page's settings table rows (``| setting | default | meaning |``), by page."""
    rows: dict[str, list[str]] = {}
    for page, text in pages(project).items():
        for table in re.findall(rf"^{re.escape(SETTINGS_HEADER)}\n((?:\|.*\n?)+)", text, re.M):
            rows.setdefault(page, []).extend(
                line for line in table.splitlines() if line.startswith("| `")
            )
    return rows


def reachable(project: Path) -> set[Path]:
    """The pages a reader reaches from README.md by following links between pages."""
    seen: set[Path] = set()
    todo = [project / "README.md"]
    while todo:
        page = todo.pop()
        if page in seen or not page.is_file():
            continue
        seen.add(page)
        for target in LINK.findall(page.read_text()):
            path = target.partition("#")[0]
            if path.endswith(".md") and not re.match(r"[a-z]+:", path):
                todo.append((page.parent / path).resolve())
    return seen


def test_the_readme_is_short_and_every_page_is_reached_from_it(baked: Path) -> None:
    readme = (baked / "README.md").read_text()
    lines = len(readme.splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines"
    docs = {path.resolve() for path in (baked / "docs").glob("*.md")}
    assert docs, "no docs/ pages"
    unreached = sorted(path.name for path in docs - reachable(baked.resolve()))
    assert unreached == [], "docs/ pages no link leads to from the README"


def test_every_link_between_the_pages_resolves(baked: Path) -> None:
    texts = pages(baked)
    broken = []
    for page, text in texts.items():
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, fragment = target.partition("#")
            resolved = (baked / page).parent / path if path else baked / page
            if not resolved.exists():
                broken.append(f"{page}: {target}")
            elif (
                fragment
                and resolved.suffix == ".md"
                and fragment not in anchors(resolved.read_text())
            ):
                broken.append(f"{page}: {target} (no such heading)")
    assert broken == []


def test_each_setting_has_one_row(baked: Path) -> None:
    rows = settings_rows(baked)
    assert len(rows) == 1, f"the settings table should be on one page, not {sorted(rows)}"
    (table,) = rows.values()
    names = [re.findall(r"`([A-Z<][A-Z0-9_<>]+)`", row.split("|")[1]) for row in table]
    flat = [name for row in names for name in row]
    twice = sorted({name for name in flat if flat.count(name) > 1})
    assert twice == [], "settings with more than one row"


def test_adding_a_job_says_what_cleanup_items_does(baked: Path) -> None:
    readme = (baked / "README.md").read_text()
    adding = section(readme, "Adding a job")
    (paragraph,) = [
        block
        for block in adding.split("\n\n")
        if "`cleanup_items`" in block and "database" in block
    ]
    package = next(child for child in (baked / "src").iterdir() if child.is_dir())
    jobs = (package / "scheduling" / "jobs.py").read_text()
    tree = ast.parse(jobs)
    (cleanup,) = [
        node
        for node in tree.body
        if isinstance(node, ast.AsyncFunctionDef) and node.name == "cleanup_items"
    ]
    source = ast.get_source_segment(jobs, cleanup) or ""
    quoted = [span for span in re.findall(r"`([^`]+)`", paragraph) if span != "cleanup_items"]
    assert quoted, "the README quotes how cleanup_items reaches the database"
    assert [span for span in quoted if span not in source] == [], "not in cleanup_items"


def test_uv_is_installed_from_pypi_too(baked: Path) -> None:
    prerequisites = section((baked / "README.md").read_text(), "Prerequisites")
    # uv's installer needs astral.sh and GitHub; pip reaches PyPI (or its mirror).
    assert "curl -LsSf https://astral.sh/uv/install.sh | sh" in prerequisites
    assert "pip install uv" in prerequisites


def test_git_init_comes_before_pre_commit_install(baked: Path) -> None:
    for page, text in pages(baked).items():
        commands = bash_commands(text)
        for index, command in enumerate(commands):
            if "pre-commit install" in command:
                assert "git init" in commands[:index], f"{page}: `{command}` before `git init`"


def test_commands_run_in_a_fresh_shell(baked: Path) -> None:
    # Nothing activates .venv: a tool of it typed bare is not found. In a pod (after
    # `kubectl exec ... --`) the image's PATH holds the virtualenv, so that is fine.
    bare = [
        f"{page}: {command}"
        for page, text in pages(baked).items()
        for command in bash_commands(text)
        if command.split()[0] in VENV_TOOLS
    ]
    assert bare == []


def test_pages_pass_the_whitespace_hooks(baked: Path) -> None:
    # pre-commit's trailing-whitespace and end-of-file-fixer, on every page.
    for page, text in pages(baked).items():
        assert text.endswith("\n"), f"{page}: no newline at the end"
        assert not text.endswith("\n\n"), f"{page}: blank lines at the end"
        trailing = [n for n, line in enumerate(text.splitlines(), 1) if line != line.rstrip()]
        assert trailing == [], f"{page}: trailing whitespace on lines {trailing}"
