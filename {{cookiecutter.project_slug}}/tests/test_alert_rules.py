"""The alert rules of ``k8s/components/monitoring/prometheusrule.yaml``, unit-tested.

``promtool`` (Debian's and Ubuntu's ``prometheus`` package) checks them and runs
``tests/alert_rules_test.yaml`` against them: for every alert a series that fires it
and one that must not. The rules are read from the PrometheusRule's ``spec.groups``
at test time, never copied. Without promtool the tests skip locally and fail when
``CI=true`` (the CI workflow installs it). ``docs/runbook.md`` has one section per
alert, the anchor of its ``runbook_url``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RULE_FILE = PROJECT_ROOT / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
RULE_TESTS = Path(__file__).resolve().parent / "alert_rules_test.yaml"
RUNBOOK = PROJECT_ROOT / "docs" / "runbook.md"
SEVERITIES = {"critical", "warning"}
ANNOTATIONS = {"summary", "description", "runbook_url"}
# Every alert's name starts with the service's slug in CamelCase.
ALERT_PREFIX = "{{ cookiecutter.project_slug.split('-') | map('capitalize') | join('') }}"
CAMEL_CASE = re.compile(r"^[A-Z0-9][A-Za-z0-9]*$")


def promtool() -> str:
    """Path of promtool; skips the test without it, or fails it when ``CI=true``."""
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def rule_groups() -> list[dict[str, Any]]:
    """``spec.groups`` of the PrometheusRule."""
    document = yaml.safe_load(RULE_FILE.read_text())
    assert document["kind"] == "PrometheusRule"
    groups: list[dict[str, Any]] = document["spec"]["groups"]
    return groups


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in alerting_rules()}


def write_rules(directory: Path, *, annotations: bool) -> Path:
    """The groups as a plain Prometheus rule file (``annotations`` false: without them)."""
    groups = rule_groups()
    if not annotations:
        groups = [
            {
                **group,
                "rules": [
                    {key: value for key, value in rule.items() if key != "annotations"}
                    for rule in group["rules"]
                ],
            }
            for group in groups
        ]
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (promtool, found on PATH, with our arguments)
        command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    result = run(
        promtool(), "check", "rules", str(write_rules(tmp_path, annotations=True)), cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerting_rules()) + 7} rules found" in result.stdout, result.stdout


def test_promtool_unit_tests_pass_and_cover_every_alert(tmp_path: Path) -> None:
    write_rules(tmp_path, annotations=False)
    cases = yaml.safe_load(RULE_TESTS.read_text())
    assert cases["rule_files"] == ["rules.yaml"]
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = run(promtool(), "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout
    tests = [case for group in cases["tests"] for case in group["alert_rule_test"]]
    firing = {case["alertname"] for case in tests if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in tests if not case.get("exp_alerts")}
    assert firing == alert_names(), "an alert without a case that fires it"
    # The Watchdog always fires: it has no quiet case.
    assert quiet == {name for name in alert_names() if not name.endswith("Watchdog")}


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A rule that changes behaviour fails its cases: the suite is not vacuous."""
    path = write_rules(tmp_path, annotations=False)
    path.write_text(path.read_text().replace("== 0", "== 1"))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = run(promtool(), "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0, result.stdout


def test_every_alert_has_a_severity_annotations_and_its_runbook_section() -> None:
    sections = set(re.findall(r"^## (\S+)$", RUNBOOK.read_text(), flags=re.MULTILINE))
    names = alert_names()
    assert sections == names, "runbook sections and alerts differ"
    for rule in alerting_rules():
        name = rule["alert"]
        assert name.startswith(ALERT_PREFIX), name
        assert CAMEL_CASE.match(name), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == ANNOTATIONS, name
        url = rule["annotations"]["runbook_url"]
        assert url.endswith(f"/runbook.md#{name.lower()}"), url
