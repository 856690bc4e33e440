"""The baked project's developer tooling, and the template's own CI workflow.

- ``.github/workflows/ci.yml``: actionlint reports nothing, actions are pinned to
  commit SHAs, the token is read-only, every job has a timeout, and the services
  follow the options;
- ``.pre-commit-config.yaml``: ``pre-commit run --all-files`` passes on a fresh bake
  made a git repository, offline, and fails on a file that breaks a hook;
- ``Makefile``: every target has help text and a line in the README, and
  ``make k8s-render`` writes manifests that the workflow's validation accepts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .conftest import Project, require

TEMPLATE = Path(__file__).resolve().parent.parent
TOOLS = Path(sys.executable).parent
WORKFLOW = Path(".github/workflows/ci.yml")

# `uses: owner/repo@<40 hex> # vX.Y.Z`: a commit that a tag can no longer move, and
# the release it is, for people and for dependency bots.
PINNED_USES = re.compile(
    r"^\s*(?:-\s+)?uses:\s+(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})"
    r"\s+#\s+v\d+\.\d+\.\d+\s*$"
)
PROJECT_JOBS = {"lint", "test", "manifests", "hadolint", "image"}
MAKE_TARGETS = {"install", "db", "run", "test", "lint", "format", "migrate", "k8s-render"}


def tool(name: str) -> str:
    """Path of a command-line tool: the template's virtualenv first, then PATH."""
    beside = TOOLS / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name) or shutil.which(name, path=str(TEMPLATE / ".tools" / "bin"))
    require(found is not None, f"{name} is not installed (make sync installs the dev group)")
    assert found is not None
    return found


# Set when the suite itself runs under `make test`: a nested make would then print
# "make[1]: Entering directory" lines that a developer's `make help` does not.
PARENT_MAKE_VARIABLES = ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")


def run(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k not in PARENT_MAKE_VARIABLES}
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env={**inherited, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def actionlint(workflow: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("actionlint"), "-no-color", str(workflow)], workflow.parent)


def uses_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"^\s*(?:-\s+)?uses:", line)]


def assert_hardened(workflow: dict[str, Any], text: str) -> None:
    """Pinned actions, a read-only token and a timeout on every job."""
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        assert "permissions" not in job, f"{name} widens the token"
        timeout = job.get("timeout-minutes")
        assert isinstance(timeout, int), f"{name}: no timeout-minutes"
        assert 0 < timeout <= 90, f"{name}: timeout-minutes {timeout}"
    lines = uses_lines(text)
    assert lines, "no action is used"
    unpinned = [line.strip() for line in lines if not PINNED_USES.match(line)]
    assert unpinned == [], "\n".join(unpinned)
    # One commit per action: two SHAs for one action would be two versions.
    shas: dict[str, set[str]] = {}
    for line in lines:
        match = PINNED_USES.match(line)
        assert match is not None
        shas.setdefault(match["action"], set()).add(match["sha"])
    assert {action: len(found) for action, found in shas.items() if len(found) > 1} == {}


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


# --- The generated workflow ----------------------------------------------------------------


def test_generated_workflow_passes_actionlint(project: Project) -> None:
    result = actionlint(project.path / WORKFLOW)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_actionlint_catches_a_broken_workflow(project: Project, tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt key and a bad expression fail it."""
    text = (project.path / WORKFLOW).read_text()
    broken = text.replace("timeout-minutes: 5", "timeout-minute: 5", 1).replace(
        "${{ github.sha }}", "${{ github.shaa }}"
    )
    assert broken != text
    path = tmp_path / ".github" / "workflows" / "ci.yml"
    path.parent.mkdir(parents=True)
    path.write_text(broken)
    result = actionlint(path)
    assert result.returncode != 0
    assert "timeout-minute" in result.stdout
    assert "shaa" in result.stdout


def test_generated_workflow_is_hardened_and_runs_every_check(project: Project) -> None:
    text = (project.path / WORKFLOW).read_text()
    workflow = yaml.safe_load(text)
    assert_hardened(workflow, text)
    jobs = workflow["jobs"]
    assert set(jobs) == PROJECT_JOBS
    # GitHub expressions survived the bake.
    assert "${{ github.sha }}" in text
    assert "${{ github.ref }}" in text

    assert "make lint" in steps_text(jobs["lint"])
    test_job = jobs["test"]
    assert "make test" in steps_text(test_job)
    # promtool (the alert rules' tests fail without it under CI=true) and amtool, from
    # the distribution's packages, before the tests.
    tools_step = next(i for i, s in enumerate(test_job["steps"]) if "promtool" in str(s.get("run")))
    assert "apt-get install" in test_job["steps"][tools_step]["run"]
    assert {"prometheus", "prometheus-alertmanager"} <= set(
        test_job["steps"][tools_step]["run"].split()
    )
    assert tools_step < next(
        i for i, s in enumerate(test_job["steps"]) if s.get("run") == "make test"
    )
    # Both jobs install through `make install`, which installs exactly uv.lock.
    for name in ("lint", "test"):
        assert "make install" in steps_text(jobs[name]), name
    install = re.search(
        r"^install:.*\n((?:\t.*\n)+)", (project.path / "Makefile").read_text(), re.M
    )
    assert install is not None
    assert install[1].split() == ["$(UV)", "sync", "--locked"]
    services = test_job["services"]
    expected = {"postgres", "redis"} if project.context["use_redis"] else {"postgres"}
    assert set(services) == expected
    for service in services.values():
        assert "--health-cmd" in service["options"], service
    assert test_job["env"]["CI"] == "true"
    assert test_job["env"]["TEST_DATABASE_URL"].startswith("postgresql://")
    assert ("TEST_REDIS_URL" in test_job["env"]) is bool(project.context["use_redis"])

    manifests = steps_text(jobs["manifests"])
    assert "make k8s-render" in manifests
    assert "kubernetes-validate --strict" in manifests
    assert any(
        "hadolint/hadolint-action@" in str(step.get("uses")) for step in jobs["hadolint"]["steps"]
    )
    build = next(
        step
        for step in jobs["image"]["steps"]
        if str(step.get("uses", "")).startswith("docker/build-push-action@")
    )
    assert build["with"]["push"] is False
    image = project.context.get("container_image", f"ghcr.io/example/{project.path.name}")
    assert build["with"]["tags"] == f"{image}:${{{{ github.sha }}}}"
    python_version = str(project.context["python_version"])
    for name in ("lint", "test"):
        setup = next(s for s in jobs[name]["steps"] if "setup-uv" in str(s.get("uses")))
        assert str(setup["with"]["python-version"]) == python_version


def test_dependabot_bumps_the_pinned_actions_and_the_dependencies(project: Project) -> None:
    config = yaml.safe_load((project.path / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    ecosystems = {update["package-ecosystem"] for update in config["updates"]}
    assert ecosystems == {"github-actions", "uv"}


# --- The template's own workflow -----------------------------------------------------------


def test_template_workflow_passes_actionlint_and_is_hardened() -> None:
    path = TEMPLATE / WORKFLOW
    result = actionlint(path)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    text = path.read_text()
    workflow = yaml.safe_load(text)
    assert_hardened(workflow, text)
    (job,) = workflow["jobs"].values()
    assert set(job["services"]) == {"postgres", "redis"}
    commands = steps_text(job)
    assert "make test" in commands
    # The private-server tests need initdb and pg_ctl; the alert tests promtool and amtool.
    assert "postgresql" in commands
    assert {"prometheus", "prometheus-alertmanager"} <= set(commands.split())
    assert job["env"]["CI"] == "true"


# --- pre-commit ----------------------------------------------------------------------------


def git_copy(project: Project, destination: Path) -> Path:
    """A copy of the bake made a git repository with every file staged; its venv linked."""
    shutil.copytree(project.path, destination, ignore=shutil.ignore_patterns(".venv"))
    (destination / ".venv").symlink_to(project.path / ".venv")
    git = tool("git")
    result = run([git, "init", "--quiet"], destination)
    assert result.returncode == 0, result.stderr
    # The project's .gitignore has ".venv/", which matches a folder, not this link.
    with (destination / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write(".venv\n")
    result = run([git, "add", "--all"], destination)
    assert result.returncode == 0, result.stderr
    return destination


def pre_commit(repository: Path, home: Path, project: Project) -> subprocess.CompletedProcess[str]:
    """``pre-commit run --all-files`` from the project's venv, with uv on PATH, offline."""
    uv = Path(tool("uv")).parent
    env = {
        "PATH": f"{uv}{os.pathsep}{os.environ.get('PATH', '')}",
        "PRE_COMMIT_HOME": str(home),
        "UV_OFFLINE": "1",
        "UV_NO_SYNC": "1",
    }
    command = [str(project.bin / "pre-commit"), "run", "--all-files", "--color", "never"]
    return subprocess.run(
        command,
        cwd=repository,
        env={key: value for key, value in {**os.environ, **env}.items() if key != "VIRTUAL_ENV"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_pre_commit_passes_on_a_fresh_bake_and_fails_on_a_bad_file(
    project: Project, tmp_path: Path
) -> None:
    repository = git_copy(project, tmp_path / "repo")
    hooks = yaml.safe_load((repository / ".pre-commit-config.yaml").read_text())
    ids = {hook["id"] for repo in hooks["repos"] for hook in repo["hooks"]}
    assert {"ruff-check", "ruff-format", "mypy", "trailing-whitespace", "end-of-file-fixer"} <= ids
    assert {"check-yaml", "check-toml", "check-added-large-files"} <= ids
    # Offline: every hook is local, nothing for pre-commit to clone.
    assert {repo["repo"] for repo in hooks["repos"]} == {"local"}

    result = pre_commit(repository, tmp_path / "pre-commit-home", project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Failed" not in result.stdout
    assert result.stdout.count("Passed") >= len(ids) - 1, result.stdout
    changed = run([tool("git"), "diff", "--name-only"], repository)
    assert changed.stdout == "", f"a hook changed files:\n{changed.stdout}"

    bad = repository / "src" / project.package / "bad_module.py"
    bad.write_text(
        '"""A module that breaks the hooks."""\n\n\ndef half(n: int) -> int:  \n    return n / 2\n'
    )
    run([tool("git"), "add", "--all"], repository)
    result = pre_commit(repository, tmp_path / "pre-commit-home", project)
    assert result.returncode != 0
    failed = {line.split(".", 1)[0] for line in result.stdout.splitlines() if "Failed" in line}
    assert {"trim trailing whitespace", "mypy --strict"} <= failed, result.stdout


# --- Makefile ------------------------------------------------------------------------------


def make_targets(makefile: Path) -> dict[str, str]:
    """Target name -> help text, from the ``target: ## help`` lines."""
    return dict(re.findall(r"^([a-z0-9-]+):[^\n]*?## (.+)$", makefile.read_text(), re.MULTILINE))


def test_every_make_target_has_help_and_a_readme_line(project: Project) -> None:
    targets = make_targets(project.path / "Makefile")
    assert set(targets) >= MAKE_TARGETS | {"help"}
    readme = (project.path / "README.md").read_text()
    undocumented = [name for name in targets if name != "help" and f"`make {name}`" not in readme]
    assert undocumented == []
    result = run([tool("make"), "help"], project.path)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert listed == set(targets)


def test_make_k8s_render_writes_what_the_workflow_validates(
    project: Project, tmp_path: Path
) -> None:
    kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
    require(Path(kubectl).exists(), "kubectl is not installed")
    out = tmp_path / "k8s"
    result = run([tool("make"), "k8s-render", f"KUBECTL={kubectl}", f"K8S_OUT={out}"], project.path)
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = sorted(path.name for path in out.glob("*.yaml"))
    assert rendered == ["base.yaml", "production.yaml", "staging.yaml"]
    for path in out.glob("*.yaml"):
        kinds = {doc["kind"] for doc in yaml.safe_load_all(path.read_text()) if doc}
        assert {"Deployment", "Service", "ConfigMap"} <= kinds, path.name
    # The workflow's validation command, as it runs it.
    workflow = yaml.safe_load((project.path / WORKFLOW).read_text())
    (validate,) = [
        step["run"]
        for step in workflow["jobs"]["manifests"]["steps"]
        if "kubernetes-validate" in str(step.get("run"))
    ]
    argv = validate.split()
    assert argv[:2] == ["uvx", "kubernetes-validate"]
    files = [str(path) for path in sorted(out.glob("*.yaml"))]
    options = [arg for arg in argv[2:] if not arg.startswith("build/")]
    result = run([tool("kubernetes-validate"), *options, *files], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
