"""The alert routes and dashboard components of every bake, rendered into each overlay
by the monitoring component that includes them: the ``AlertmanagerConfig`` against a
strict schema of the fields it uses (``k8s_tools.CRD_SCHEMAS``, as the Operator's
``monitoring.coreos.com/v1alpha1`` CRD defines them), the dashboard's ConfigMap against
Kubernetes' own schemas, and what both refer to.

amtool and promtool run on them in the bake's own suite (its ``tests/test_alert_routes.py``,
which ``tests/test_project.py`` runs).
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from . import k8s_tools, test_manifests
from .k8s_tools import crd_schema_errors, only, resources_of_kind
from .test_manifests import Bake, strict_schema_errors, supported_kubernetes_versions

# The manifest checks' fixture: each combination baked once.
bake = test_manifests.bake

ENVIRONMENTS = ("staging", "production")
SECRET_KEYS = {"slack-url", "discord-url", "healthchecks-url"}
# kubectl apply (client side) keeps the object in an annotation of at most 256 KiB.
LAST_APPLIED_LIMIT = 262_144


@pytest.fixture(scope="module", params=ENVIRONMENTS)
def rendered(
    request: pytest.FixtureRequest, bake: Bake, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Bake, list[dict[str, Any]]]:
    """One overlay rendered with the monitoring component on, which includes both."""
    overlay = str(request.param)
    project = tmp_path_factory.mktemp("alert-routes")
    shutil.copytree(bake.path / "k8s", project / "k8s")
    k8s_tools.monitoring_switched(project, overlay, on=True)
    return overlay, bake, k8s_tools.render_overlay(project, overlay)


def namespace(bake_: Bake, overlay: str) -> str:
    name = str(bake_.answers["k8s_namespace"])
    return f"{name[:55]}-staging" if overlay == "staging" else name


def test_the_alertmanagerconfig_fits_the_operators_schema(
    rendered: tuple[str, Bake, list[dict[str, Any]]],
) -> None:
    overlay, bake_, resources = rendered
    config = only(resources, "AlertmanagerConfig")
    assert crd_schema_errors(config) == []
    assert config["metadata"]["namespace"] == namespace(bake_, overlay)


def test_the_routes_read_one_secret_that_no_overlay_renders(
    rendered: tuple[str, Bake, list[dict[str, Any]]],
) -> None:
    _, bake_, resources = rendered
    assert resources_of_kind(resources, "Secret") == []
    config = only(resources, "AlertmanagerConfig")
    references = [
        config_.get("apiURL") or config_.get("urlSecret")
        for receiver in config["spec"]["receivers"]
        for kind in ("slackConfigs", "discordConfigs", "webhookConfigs")
        for config_ in receiver.get(kind, [])
    ]
    assert {reference["name"] for reference in references} == {
        f"{bake_.answers['project_slug']}-alert-routes"
    }
    assert {reference["key"] for reference in references} == SECRET_KEYS


def test_the_dashboard_configmap_is_valid_and_labelled_for_grafana(
    rendered: tuple[str, Bake, list[dict[str, Any]]],
) -> None:
    overlay, bake_, resources = rendered
    slug = str(bake_.answers["project_slug"])
    (configmap,) = [
        resource
        for resource in resources_of_kind(resources, "ConfigMap")
        if resource["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    # A fixed name, no content hash: the sidecar follows one object.
    assert configmap["metadata"]["name"] == f"{slug}-dashboard"
    assert configmap["metadata"]["namespace"] == namespace(bake_, overlay)
    (key,) = configmap["data"]
    assert key == f"{slug}.json"
    dashboard = json.loads(configmap["data"][key])
    assert dashboard["title"] == bake_.answers["project_name"]
    assert len(json.dumps(configmap)) < LAST_APPLIED_LIMIT
    errors = [
        error
        for version in supported_kubernetes_versions()
        for error in strict_schema_errors([configmap], version)
    ]
    assert errors == []


def test_the_schema_refuses_what_the_operator_would() -> None:
    """The schema can fail: an unknown field, a missing URL and a bad duration, in a
    child route too."""
    config = {
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": {"name": "x"},
        "spec": {
            "route": {"receiver": "r", "routes": [{"receiver": "r", "groupWait": "soon"}]},
            "receivers": [{"name": "r", "slackConfigs": [{"webhookURL": "https://x"}]}],
        },
    }
    errors = crd_schema_errors(config)
    assert errors is not None
    assert len(errors) == 3, errors
