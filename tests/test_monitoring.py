"""The monitoring component of every bake: the ServiceMonitor and the alert rules, their
one-line switch in the overlays (both states rendered and schema-checked), the answers
they are made from, and the runbook section of every alert.

promtool runs on the rules in the bake's own suite (its ``tests/test_alert_rules.py``,
which ``tests/test_project.py`` runs); here they are read as rendered by kustomize.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from cookiecutter.main import cookiecutter

from . import k8s_tools, test_manifests
from .k8s_tools import (
    MONITORING_KINDS,
    MONITORING_LINE,
    MONITORING_LINE_OFF,
    only,
    service_resources,
)
from .test_manifests import (
    KINDS,
    TEMPLATE,
    Bake,
    Rendering,
    strict_schema_errors,
    supported_kubernetes_versions,
)

# The manifest checks' fixture: each combination baked once.
bake = test_manifests.bake

ENVIRONMENTS = ("staging", "production")
SEVERITIES = {"critical", "warning"}
ANNOTATIONS = {"summary", "description", "runbook_url"}
# The alerts issue 19 asks for, by the suffix after the service's prefix, and the
# severities each comes with.
ALERTS = {
    "Down": {"critical"},
    "Absent": {"critical"},
    "NotReady": {"warning", "critical"},
    "ErrorBudgetBurn": {"critical", "warning"},
    "LatencyHigh": {"warning"},
    "JobFailing": {"warning"},
    "JobMissed": {"critical"},
    "NoSchedulerLeader": {"critical"},
    "HeartbeatFailing": {"warning"},
    "Watchdog": {"warning"},
}
# Alerts whose expression aggregates no series, so their namespace comes from the overlay.
NAMESPACED_BY_OVERLAY = {"Absent", "Watchdog"}
# What promtool 2.42 (Debian bookworm) accepts in a group: no `labels`, no `query_offset`.
GROUP_KEYS = {"name", "interval", "rules"}


def prefix(answers: Any) -> str:
    """The alerts' common prefix: the slug in CamelCase (``my-service``: ``MyService``)."""
    return "".join(part.capitalize() for part in str(answers["project_slug"]).split("-"))


def alerts(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rule = only(resources, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


def seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(
        float(number) * units[unit] for number, unit in re.findall(r"(\d+)([smhd])", duration)
    )


def switched_copy(bake_: Bake, tmp_path: Path, *, on: bool) -> Path:
    project = tmp_path / ("on" if on else "off")
    shutil.copytree(bake_.path / "k8s", project / "k8s")
    for overlay in ENVIRONMENTS:
        k8s_tools.monitoring_switched(project, overlay, on=on)
    return project


@pytest.fixture(params=ENVIRONMENTS)
def monitored(request: pytest.FixtureRequest, bake: Bake) -> Rendering:
    """An overlay rendered with the monitoring component included."""
    project = bake.path
    if not bake.monitoring:
        project = Path(tempfile.mkdtemp(prefix="monitoring-on-"))
        shutil.copytree(bake.path, project, dirs_exist_ok=True)
        k8s_tools.monitoring_switched(project, request.param, on=True)
    text = k8s_tools.kustomize(project, request.param)
    resources = [doc for doc in yaml.safe_load_all(text) if doc]
    return Rendering(bake=bake, overlay=request.param, text=text, resources=resources)


# --- The switch ----------------------------------------------------------------------------


@pytest.mark.parametrize("on", [True, False], ids=["component-on", "component-off"])
def test_both_states_of_the_switch_render_and_pass_the_strict_schemas(
    bake: Bake, tmp_path: Path, on: bool
) -> None:
    project = switched_copy(bake, tmp_path, on=on)
    off = switched_copy(bake, tmp_path / "other", on=False)
    newest = supported_kubernetes_versions()[-1]
    for overlay in ENVIRONMENTS:
        resources = k8s_tools.render_overlay(project, overlay)
        kinds = [resource["kind"] for resource in service_resources(resources)]
        assert sorted(kinds) == sorted(KINDS), overlay
        component = sorted(r["kind"] for r in resources if k8s_tools.from_monitoring(r))
        # The Operator's kinds and the dashboard's ConfigMap.
        assert component == (sorted([*MONITORING_KINDS, "ConfigMap"]) if on else []), overlay
        assert strict_schema_errors(resources, newest) == [], overlay
        # Everything but the component is the same in both states.
        if on:
            others = service_resources(resources)
            assert others == k8s_tools.render_overlay(off, overlay), overlay


def test_the_switch_is_one_line_in_each_overlay(bake: Bake) -> None:
    for overlay in ENVIRONMENTS:
        text = (k8s_tools.overlay_dir(bake.path, overlay) / "kustomization.yaml").read_text()
        line = MONITORING_LINE if bake.monitoring else MONITORING_LINE_OFF
        assert text.count(line) == 1, f"{overlay}: {line.strip()!r}"
        assert (MONITORING_LINE_OFF if bake.monitoring else MONITORING_LINE) not in text


def test_the_crd_schemas_reject_an_unknown_field(monitored: Rendering) -> None:
    newest = supported_kubernetes_versions()[-1]
    for kind, path in (("ServiceMonitor", ("spec",)), ("PrometheusRule", ("spec", "groups", 0))):
        broken = yaml.safe_load(yaml.safe_dump(only(monitored.resources, kind)))
        node = broken
        for part in path:
            node = node[part]
        node["labels"] = {"team": "x"}  # promtool 2.42 refuses group labels too
        assert strict_schema_errors([broken], newest) != [], kind


def test_a_bake_without_the_operator_applies_without_its_crds(tmp_path: Path) -> None:
    project = Path(
        cookiecutter(
            str(TEMPLATE),
            no_input=True,
            output_dir=str(tmp_path),
            extra_context={"prometheus_operator": False},
        )
    )
    for overlay in ENVIRONMENTS:
        resources = k8s_tools.render_overlay(project, overlay)
        assert {resource["kind"] for resource in resources} == KINDS, overlay
        # The component is baked all the same: one line turns it on.
        k8s_tools.monitoring_switched(project, overlay, on=True)
        kinds = {resource["kind"] for resource in k8s_tools.render_overlay(project, overlay)}
        assert kinds == KINDS | MONITORING_KINDS, overlay


# --- What the component says ---------------------------------------------------------------


def test_the_service_monitor_scrapes_the_metrics_port_of_the_service(
    monitored: Rendering,
) -> None:
    monitor = only(monitored.resources, "ServiceMonitor")
    service = only(monitored.resources, "Service")
    release = monitored.bake.answers["prometheus_release"]
    assert monitor["metadata"]["labels"]["release"] == release
    assert only(monitored.resources, "PrometheusRule")["metadata"]["labels"]["release"] == release
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    ports = {port["name"]: port for port in service["spec"]["ports"]}
    assert endpoint["port"] == "metrics"
    assert ports["metrics"]["port"] == int(monitored.settings["METRICS_PORT"])
    assert endpoint["path"] == "/metrics"
    assert seconds(endpoint["scrapeTimeout"]) < seconds(endpoint["interval"])
    # The NetworkPolicy admits the monitoring namespace to that port.
    policy = only(monitored.resources, "NetworkPolicy")["spec"]
    assert any(
        port["port"] == "metrics" and rule.get("from")
        for rule in policy["ingress"]
        for port in rule["ports"]
    )


def test_every_alert_is_written_as_the_field_writes_them(monitored: Rendering) -> None:
    answers = monitored.bake.answers
    found: dict[str, set[str]] = {}
    for rule in alerts(monitored.resources):
        name = rule["alert"]
        assert name.startswith(prefix(answers)), name
        assert re.fullmatch(r"[A-Z0-9][A-Za-z0-9]*", name), name
        severity = rule["labels"]["severity"]
        assert severity in SEVERITIES, name
        assert rule["labels"]["service"] == answers["project_slug"], name
        assert set(rule["annotations"]) == ANNOTATIONS, name
        assert rule["annotations"]["runbook_url"] == f"{answers['runbook_url']}#{name.lower()}"
        found.setdefault(name.removeprefix(prefix(answers)), set()).add(severity)
    assert found == ALERTS
    for group in only(monitored.resources, "PrometheusRule")["spec"]["groups"]:
        assert set(group) <= GROUP_KEYS, group["name"]


def test_every_alert_has_its_runbook_section_and_every_section_an_alert(
    monitored: Rendering,
) -> None:
    runbook = (monitored.bake.path / "docs" / "runbook.md").read_text()
    sections = re.findall(r"^## (.+)$", runbook, flags=re.MULTILINE)
    names = {rule["alert"] for rule in alerts(monitored.resources)}
    assert sorted(sections) == sorted(names)
    # GitHub's anchor of "## MyServiceDown" is "#myservicedown", the runbook_url's.
    for section in sections:
        body = runbook.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        assert "**Meaning.**" in body, section
        assert "**First look.**" in body, section
        assert "```" in body, f"{section}: no command"


def test_alerts_that_aggregate_nothing_carry_the_overlays_namespace(
    monitored: Rendering,
) -> None:
    for rule in alerts(monitored.resources):
        suffix = rule["alert"].removeprefix(prefix(monitored.bake.answers))
        if suffix in NAMESPACED_BY_OVERLAY:
            assert rule["labels"]["namespace"] == monitored.namespace, rule["alert"]
        else:
            # The others keep the series' namespace, so staging and production alert apart.
            assert "namespace" not in rule["labels"], rule["alert"]
            aggregations = re.findall(r"\bby \(([^)]*)\)", rule["expr"])
            assert all("namespace" in labels for labels in aggregations), rule["alert"]


def test_no_leader_alert_waits_longer_than_a_lease_takes_to_pass(monitored: Rendering) -> None:
    (rule,) = [r for r in alerts(monitored.resources) if r["alert"].endswith("NoSchedulerLeader")]
    bound = float(monitored.settings["SCHEDULER_LEASE_TTL"]) + float(
        monitored.settings["SCHEDULER_LEADER_RETRY_INTERVAL"]
    )
    assert seconds(rule["for"]) > bound


def test_the_slo_answers_set_the_thresholds(tmp_path: Path) -> None:
    project = Path(
        cookiecutter(
            str(TEMPLATE),
            no_input=True,
            output_dir=str(tmp_path),
            extra_context={"slo_availability": "99.95", "slo_latency_seconds": "0.25"},
        )
    )
    rules = alerts(k8s_tools.render_overlay(project, "production"))
    burn = [rule["expr"] for rule in rules if rule["alert"].endswith("ErrorBudgetBurn")]
    multiples = sorted(
        float(multiple)
        for expr in burn
        for multiple in re.findall(r"> \((\S+) \* \(100 - 99\.95\) / 100\)", expr)
    )
    # Google SRE workbook: page at 14.4x (5m & 1h) and 6x (30m & 6h), ticket at 3x and 1x.
    assert multiples == [1, 1, 3, 3, 6, 6, 14.4, 14.4]
    (latency,) = [rule["expr"] for rule in rules if rule["alert"].endswith("LatencyHigh")]
    assert latency.rstrip().endswith("> 0.25")
