"""The baked package's shape: no import circle, no module over 400 lines, true tables.

Each combination is baked offline (no install): the import graph is grimp's, built
from the source in a process of its own, with the imports under ``if TYPE_CHECKING:``
and inside functions counted like any other.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .combinations import COMBINATIONS, IDS
from .conftest import TEMPLATE, load_hook

sys.path.insert(0, str(TEMPLATE / "scripts"))
from baking import bake as bake_template

PROJECT_TEMPLATE = TEMPLATE / "{{cookiecutter.project_slug}}"
POST_GEN = load_hook("post_gen_project")
MAX_MODULE_LINES = 400

# Run by the template's interpreter (grimp is in its test group) on one bake's source:
# prints the import circles of the package as a JSON list of lines, each one a chain of
# modules from a module back to itself. ``argv``: the ``src`` folder, the package name.
CIRCLES = """
import json, sys
import grimp

sys.path.insert(0, sys.argv[1])
graph = grimp.build_graph(sys.argv[2], cache_dir=None)
circles, seen = [], set()
for module in sorted(graph.modules):
    for imported in sorted(graph.find_modules_directly_imported_by(module)):
        chain = graph.find_shortest_chain(importer=imported, imported=module)
        if chain and frozenset(chain) not in seen:
            seen.add(frozenset(chain))
            circles.append(" -> ".join([module, *chain]))
# The package's subpackages, each taken whole: one that reaches another which reaches
# it back is a circle too, even when no single module closes one.
children = sorted(
    child for child in graph.find_children(sys.argv[2]) if graph.find_children(child)
)
for index, first in enumerate(children):
    for second in children[index + 1 :]:
        there = graph.find_shortest_chain(importer=first, imported=second, as_packages=True)
        back = graph.find_shortest_chain(importer=second, imported=first, as_packages=True)
        if there and back:
            circles.append(f"{first} <-> {second}: {' -> '.join(there)}; {' -> '.join(back)}")
print(json.dumps(circles))
"""


@dataclass(frozen=True)
class Source:
    """A baked project's folder and its package name."""

    path: Path
    package: str

    @property
    def package_dir(self) -> Path:
        return self.path / "src" / self.package


@pytest.fixture(scope="session", params=COMBINATIONS, ids=IDS)
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Source:
    """The template baked offline for one combination, without a virtualenv."""
    path = bake_template(tmp_path_factory.mktemp("bake-structure"), dict(request.param))
    package = next(child.name for child in (path / "src").iterdir() if child.is_dir())
    return Source(path=path, package=package)


def import_circles(src: Path, package: str) -> list[str]:
    """The import circles of ``package`` under ``src``, as grimp finds them, one a line."""
    result = subprocess.run(
        [sys.executable, "-c", CIRCLES, str(src), package],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    circles: list[str] = json.loads(result.stdout)
    return circles


def test_no_import_circle(source: Source) -> None:
    circles = import_circles(source.path / "src", source.package)
    assert circles == [], "\n".join(circles)


def test_the_circle_check_finds_a_circle_under_type_checking(tmp_path: Path) -> None:
    # The check must be able to fail: two modules that import each other, one of them
    # only for annotations, as scheduler.py and status.py once did.
    package = tmp_path / "src" / "circular"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "scheduler.py").write_text("from .status import Status\n")
    (package / "status.py").write_text(
        "from typing import TYPE_CHECKING\n\n"
        "class Status: ...\n\n"
        "if TYPE_CHECKING:\n    from .scheduler import Scheduler\n"
    )
    circles = import_circles(tmp_path / "src", "circular")
    assert circles == ["circular.scheduler -> circular.status -> circular.scheduler"]


def test_no_module_is_longer_than_the_limit(source: Source) -> None:
    lengths = {
        str(path.relative_to(source.package_dir)): len(path.read_text().splitlines())
        for path in source.package_dir.rglob("*.py")
    }
    too_long = {path: lines for path, lines in lengths.items() if lines > MAX_MODULE_LINES}
    assert too_long == {}, f"split these modules (at most {MAX_MODULE_LINES} lines each)"


def feature_table_paths() -> list[str]:
    """The ``src/<package>/...`` paths CONTRIBUTING.md's feature table names."""
    text = (TEMPLATE / "CONTRIBUTING.md").read_text()
    table = text.split("### Where each feature of the generated service lives", 1)[1]
    table = table.split("\n\n", 2)[1]
    return [
        path.rstrip("/")
        for row in table.splitlines()[2:]
        for path in re.findall(r"`(src/<package>/[^`]+)`", row.split("|")[2])
    ]


def test_the_feature_table_names_files_of_the_template() -> None:
    paths = feature_table_paths()
    assert "src/<package>/scheduling/leader.py" in paths
    finals = set(POST_GEN.RENAMES.values())
    missing = [
        path
        for path in paths
        if not (
            (PROJECT_TEMPLATE / path.replace("<package>", "{{cookiecutter.package_name}}")).exists()
            or path.replace("<package>", "{{cookiecutter.package_name}}") in finals
        )
    ]
    assert missing == []


def where_things_live(readme: str) -> list[tuple[str, str]]:
    """Each row of the baked README's "Where things live": (what, the first path it names)."""
    section = readme.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    named: list[tuple[str, str]] = []
    for row in rows:
        cells: list[Any] = row.split("|")
        first = re.search(r"`([^`]+)`", cells[2])
        assert first is not None, row
        named.append((cells[1].strip(), first[1]))
    return named


def test_where_things_live_names_folders_and_modules_of_the_bake(source: Source) -> None:
    rows = where_things_live((source.path / "README.md").read_text())
    assert rows, "the README has its 'Where things live' table"
    missing = [(what, path) for what, path in rows if not (source.package_dir / path).exists()]
    assert missing == []
