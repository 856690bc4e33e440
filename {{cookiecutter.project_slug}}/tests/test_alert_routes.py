"""The alert routes (``k8s/components/alert-routes``) and the dashboard
(``k8s/components/dashboard``), checked by the tools that read them.

``amtool`` (Debian's ``prometheus-alertmanager``) checks the configuration
``scripts/alert_routes.py render`` writes from the ``AlertmanagerConfig`` and shows
where each alert goes; ``promtool`` (Debian's ``prometheus``) parses every panel's
query. Without them a test skips locally, and fails when ``CI=true``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from {{ cookiecutter.package_name }} import metrics

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "alert_routes.py"
ROUTES = ROOT / "k8s" / "components" / "alert-routes" / "alertmanagerconfig.yaml"
DASHBOARD = ROOT / "k8s" / "components" / "dashboard"
SLUG = "{{ cookiecutter.project_slug }}"
SECRET_NAME = f"{SLUG}-alert-routes"
WATCHDOG = "{{ cookiecutter.project_slug.split('-') | map('capitalize') | join('') }}Watchdog"
URLS = {
    "slack-url": "https://hooks.slack.com/services/T000/B000/XXXX",
    "discord-url": "https://discord.com/api/webhooks/1/XXXX",
    "healthchecks-url": "https://hc-ping.com/00000000-0000-0000-0000-000000000000",
}
# The dashboard's Grafana variables, as a query sees them once Grafana has filled them in.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$job": "{{ cookiecutter.project_slug }}",
    "$namespace": ".+",
    "$slo_availability": "99.5",
    "$slo_latency_seconds": "0.5",
}
# Series the dashboard reads that metrics.py does not list yet: the metrics the alert
# rules stand on arrive with them. Remove a name once metrics.py's docstring lists it;
# the test then checks it like every other.
PENDING_SERIES: frozenset[str] = frozenset()


def tool(name: str) -> str:
    """The path of ``name``; skips the test without it, fails it when ``CI=true``."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (Debian: prometheus-alertmanager, prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def secret(**values: str) -> str:
    """A Secret manifest as ``kubectl create secret generic --dry-run=client -o yaml``."""
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET_NAME}}
    return yaml.safe_dump({**manifest, "data": data})


def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (the test's own, no shell); its output as text."""
    return subprocess.run(  # noqa: S603 (the test's own command line, no shell)
        list(argv), input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def run_script(*args: str, stdin: str, script: Path = SCRIPT) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, str(script), *args, stdin=stdin)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``alertmanager.yml`` as ``scripts/alert_routes.py render`` writes it."""
    result = run_script("render", "--environment", "production", "-", stdin=secret(**URLS))
    assert result.returncode == 0, result.stderr
    path = tmp_path_factory.mktemp("alertmanager") / "alertmanager.yml"
    path.write_text(result.stdout)
    return path


def alertmanagerconfig() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ROUTES.read_text())
    return document


def test_the_rendered_routes_are_the_alertmanagerconfigs(rendered: Path) -> None:
    spec = alertmanagerconfig()["spec"]
    plain = yaml.safe_load(rendered.read_text())

    def same_route(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
        assert theirs["receiver"] == ours["receiver"]
        assert theirs.get("group_by") == ours.get("groupBy")
        for camel, snake in (
            ("groupWait", "group_wait"),
            ("groupInterval", "group_interval"),
            ("repeatInterval", "repeat_interval"),
        ):
            assert theirs.get(snake) == ours.get(camel)
        assert theirs.get("matchers", []) == [
            f'{m["name"]}{m.get("matchType", "=")}"{m["value"]}"' for m in ours.get("matchers", [])
        ]
        assert len(theirs.get("routes", [])) == len(ours.get("routes", []))
        for child, plain_child in zip(
            ours.get("routes", []), theirs.get("routes", []), strict=True
        ):
            same_route(child, plain_child)

    same_route(spec["route"], plain["route"])
    (inhibit,) = plain["inhibit_rules"]
    assert inhibit == {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": ["alertname", "service"],
    }
    receivers = {receiver["name"]: receiver for receiver in plain["receivers"]}
    assert list(receivers) == [receiver["name"] for receiver in spec["receivers"]]
    for receiver in spec["receivers"]:
        for slack in receiver.get("slackConfigs", []):
            (ours,) = [
                config
                for config in receivers[receiver["name"]]["slack_configs"]
                if config["text"] == slack["text"]
            ]
            assert (ours["title"], ours["api_url"]) == (slack["title"], URLS["slack-url"])
        for discord in receiver.get("discordConfigs", []):
            (ours,) = receivers[receiver["name"]]["discord_configs"]
            assert (ours["message"], ours["webhook_url"]) == (
                discord["message"],
                URLS["discord-url"],
            )


def test_every_receiver_reads_its_url_from_the_secret_never_from_git() -> None:
    text = ROUTES.read_text()
    assert "https://" not in text.replace("{{ cookiecutter.status_page_url }}", "")
    receivers = alertmanagerconfig()["spec"]["receivers"]
    references = [
        config.get("apiURL") or config.get("urlSecret")
        for receiver in receivers
        for kind in ("slackConfigs", "discordConfigs", "webhookConfigs")
        for config in receiver.get(kind, [])
    ]
    assert references
    assert all(reference["name"] == SECRET_NAME for reference in references)
    assert {reference["key"] for reference in references} == set(URLS)


def test_messages_carry_the_summary_the_runbook_and_the_status_page(rendered: Path) -> None:
    plain = yaml.safe_load(rendered.read_text())
    messages = [
        config.get("text") or config.get("message")
        for receiver in plain["receivers"]
        for kind in ("slack_configs", "discord_configs")
        for config in receiver.get(kind, [])
    ]
    assert len(messages) == 3
    for message in messages:
        assert ".Annotations.summary" in message
        assert ".Annotations.runbook_url" in message
        assert "Status page: {{ cookiecutter.status_page_url }}" in message


def test_amtool_accepts_the_rendered_configuration(rendered: Path) -> None:
    result = run(tool("amtool"), "check-config", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert " - 1 inhibit rules" in result.stdout
    assert " - 3 receivers" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ({"alertname": "SomethingDown", "severity": "critical"}, "slack-and-discord"),
        ({"alertname": "SomethingSlow", "severity": "warning"}, "slack"),
        ({"alertname": WATCHDOG, "severity": "warning"}, "healthchecks"),
        # No known severity: Slack still hears of it (check refuses such a rule).
        ({"alertname": "Unlabelled"}, "slack"),
    ],
)
def test_amtool_routes_each_alert_to_its_receiver(
    rendered: Path, labels: dict[str, str], receiver: str
) -> None:
    labels = {**labels, "service": SLUG}
    result = run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={rendered}",
        f"--verify.receivers={receiver}",
        *(f"{key}={value}" for key, value in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_critical_alerts_reach_slack_and_discord(rendered: Path) -> None:
    receivers = {r["name"]: r for r in yaml.safe_load(rendered.read_text())["receivers"]}
    assert set(receivers["slack-and-discord"]) == {"name", "slack_configs", "discord_configs"}
    assert set(receivers["slack"]) == {"name", "slack_configs"}
    (watchdog,) = receivers["healthchecks"]["webhook_configs"]
    assert watchdog["url"] == URLS["healthchecks-url"]
    assert watchdog["send_resolved"] is False


@pytest.mark.parametrize("environment", ["staging", "production"])
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is empty"),
        ("http://hooks.slack.com/services/T000/B000/XXXX", "must be an https:// URL in {env}"),
        ("https://hooks.slack.com/x\n", "has spaces or a newline around the URL"),
    ],
)
def test_a_bad_webhook_url_is_one_line_naming_it(
    environment: str, value: str, problem: str
) -> None:
    result = run_script(
        "check", "--environment", environment, "-", stdin=secret(**{**URLS, "slack-url": value})
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"alert routes: slack-url in Secret {SECRET_NAME} (receiver slack) "
        + problem.format(env=environment)
    ]


def test_a_missing_key_is_named_and_http_is_fine_in_development() -> None:
    values = {key: value.replace("https", "http") for key, value in URLS.items()}
    assert (
        run_script("check", "--environment", "development", "-", stdin=secret(**values)).returncode
        == 0
    )
    del values["discord-url"]
    result = run_script("render", "--environment", "development", "-", stdin=secret(**values))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"alert routes: discord-url in Secret {SECRET_NAME} (receiver slack-and-discord) is missing"
    ]
    result = run_script("check", "-", stdin="kind: ConfigMap\n")
    assert result.stderr.splitlines() == [
        "alert routes: the input is not a Secret manifest (kind: Secret)"
    ]


def test_every_alert_has_a_severity_the_routes_know() -> None:
    result = run_script("check", "--environment", "production", "-", stdin=secret(**URLS))
    assert (result.returncode, result.stderr) == (0, "")


def test_an_unknown_severity_is_one_line_naming_the_alert(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / SCRIPT.name
    shutil.copy(SCRIPT, script)
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "extra"},
        "spec": {
            "groups": [
                {
                    "name": "extra",
                    "rules": [
                        {"record": "x:y", "expr": "vector(1)"},
                        {"alert": "Paging", "expr": "vector(1)", "labels": {"severity": "page"}},
                    ],
                }
            ]
        },
    }
    (tmp_path / "k8s" / "extra.yaml").write_text(yaml.safe_dump(rule))
    result = run_script("check", "-", stdin=secret(**URLS), script=script)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "alert routes: severity 'page' of alert Paging in k8s/extra.yaml: "
        "the routes know critical, warning"
    ]


# --- The dashboard ----------------------------------------------------------------------


def dashboard_configmap() -> tuple[dict[str, Any], dict[str, Any]]:
    """The component's kustomization and the dashboard, parsed."""
    kustomization: dict[str, Any] = yaml.safe_load((DASHBOARD / "kustomization.yaml").read_text())
    dashboard: dict[str, Any] = json.loads((DASHBOARD / "dashboard.json").read_text())
    return kustomization, dashboard


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` of every panel, Grafana's variables filled in."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
                expr = expr.replace(variable, value)
            found.append((panel["title"], expr))
    return found


def documented_series() -> set[str]:
    """The series ``metrics.py``'s docstring lists: ````name{labels}```` anywhere, and
    ````name```` at the start of an item."""
    text = metrics.__doc__ or ""
    labelled = re.findall(r"``([a-z_:]+)\{", text)
    return set(labelled) | set(re.findall(r"^- ``([a-z_:]+)``", text, flags=re.MULTILINE))


def test_the_dashboard_is_a_configmap_grafanas_sidecar_loads() -> None:
    kustomization, dashboard = dashboard_configmap()
    (generator,) = kustomization["configMapGenerator"]
    assert generator["options"]["labels"]["grafana_dashboard"] == "1"
    assert generator["files"] == [f"{SLUG}.json=dashboard.json"]
    assert len(dashboard["uid"]) <= 40
    titles = [panel["title"] for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len(titles) == len(set(titles))
    assert [panel["id"] for panel in dashboard["panels"]] == list(
        range(1, len(dashboard["panels"]) + 1)
    )
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_the_dashboard_reads_what_metrics_py_documents() -> None:
    documented = documented_series()
    used: set[str] = set()
    for _, expr in queries(dashboard_configmap()[1]):
        # A histogram's series are its name and _bucket, _sum or _count.
        used.update(
            re.sub(r"_(bucket|sum|count)$", "", name) if name not in documented else name
            for name in re.findall(r"\b([a-z_:]+)\{", expr)
        )
    unknown = used - documented - PENDING_SERIES - {"up"}
    assert sorted(unknown) == []
    assert sorted(PENDING_SERIES & documented) == [], "documented now: remove from PENDING_SERIES"


def test_promtool_parses_every_panel_query(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": expr}
                    for index, (_, expr) in enumerate(queries(dashboard_configmap()[1]))
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = run(tool("promtool"), "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules['groups'][0]['rules'])} rules found" in result.stdout
