"""The alert routes and dashboard components of every bake, rendered into each overlay:
the ``AlertmanagerConfig`` against a strict schema of the fields it uses (as the
Operator's ``monitoring.coreos.com/v1alpha1`` CRD defines them), the dashboard's
ConfigMap against Kubernetes' own schemas, and what both refer to.

amtool and promtool run on them in the bake's own suite (its ``tests/test_alert_routes.py``,
which ``tests/test_project.py`` runs).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from . import k8s_tools, test_manifests
from .k8s_tools import only, resources_of_kind
from .test_manifests import Bake, strict_schema_errors, supported_kubernetes_versions

# The manifest checks' fixture: each combination baked once.
bake = test_manifests.bake

ENVIRONMENTS = ("staging", "production")
COMPONENTS = ("alert-routes", "dashboard")
SECRET_KEYS = {"slack-url", "discord-url", "healthchecks-url"}
# kubectl apply (client side) keeps the object in an annotation of at most 256 KiB.
LAST_APPLIED_LIMIT = 262_144

_NAME = {"type": "string", "minLength": 1}
_DURATION = {"type": "string", "pattern": r"^(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?$"}
_TEXT = {"type": "string", "minLength": 1}


def _strict(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_SECRET_KEY = _strict({"name": _NAME, "key": _NAME}, "name", "key")
_MATCHER = _strict(
    {"name": _NAME, "value": {"type": "string"}, "matchType": {"enum": ["=", "!=", "=~", "!~"]}},
    "name",
)
# The CRD leaves child routes open (x-kubernetes-preserve-unknown-fields); the Operator
# reads them as routes, so they are held to the same schema.
_ROUTE: dict[str, Any] = _strict(
    {
        "receiver": _NAME,
        "groupBy": {"type": "array", "items": _NAME},
        "groupWait": _DURATION,
        "groupInterval": _DURATION,
        "repeatInterval": _DURATION,
        "matchers": {"type": "array", "items": _MATCHER},
        "continue": {"type": "boolean"},
        "routes": {"type": "array", "items": {"$ref": "#/$defs/route"}},
    }
)
ALERTMANAGERCONFIG_SCHEMA: dict[str, Any] = {
    "$defs": {"route": _ROUTE},
    **_strict(
        {
            "apiVersion": {"const": "monitoring.coreos.com/v1alpha1"},
            "kind": {"const": "AlertmanagerConfig"},
            "metadata": _strict(
                {
                    "name": _NAME,
                    "namespace": _NAME,
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "name",
            ),
            "spec": _strict(
                {
                    "route": {"$ref": "#/$defs/route"},
                    "inhibitRules": {
                        "type": "array",
                        "items": _strict(
                            {
                                "sourceMatch": {"type": "array", "items": _MATCHER},
                                "targetMatch": {"type": "array", "items": _MATCHER},
                                "equal": {"type": "array", "items": _NAME},
                            }
                        ),
                    },
                    "receivers": {
                        "type": "array",
                        "items": _strict(
                            {
                                "name": _NAME,
                                "slackConfigs": {
                                    "type": "array",
                                    "items": _strict(
                                        {
                                            "apiURL": _SECRET_KEY,
                                            "sendResolved": {"type": "boolean"},
                                            "title": _TEXT,
                                            "titleLink": _TEXT,
                                            "text": _TEXT,
                                            "color": _TEXT,
                                        },
                                        "apiURL",
                                    ),
                                },
                                "discordConfigs": {
                                    "type": "array",
                                    "items": _strict(
                                        {
                                            "apiURL": _SECRET_KEY,
                                            "sendResolved": {"type": "boolean"},
                                            "title": _TEXT,
                                            "message": _TEXT,
                                        },
                                        "apiURL",
                                    ),
                                },
                                "webhookConfigs": {
                                    "type": "array",
                                    "items": _strict(
                                        {
                                            "urlSecret": _SECRET_KEY,
                                            "sendResolved": {"type": "boolean"},
                                            "maxAlerts": {"type": "integer", "minimum": 0},
                                        },
                                        "urlSecret",
                                    ),
                                },
                            },
                            "name",
                        ),
                    },
                },
                "route",
                "receivers",
            ),
        },
        "apiVersion",
        "kind",
        "metadata",
        "spec",
    ),
}


def with_components(bake_: Bake, tmp_path: Path, overlay: str) -> list[dict[str, Any]]:
    """``overlay`` rendered with both components, whether or not it includes them yet."""
    project = tmp_path / overlay
    shutil.copytree(bake_.path / "k8s", project / "k8s")
    kustomization = k8s_tools.overlay_dir(project, overlay) / "kustomization.yaml"
    document = yaml.safe_load(kustomization.read_text())
    rendered = yaml.safe_load_all(k8s_tools.kustomize(project, overlay))
    kinds = {resource["kind"] for resource in rendered if resource}
    if "AlertmanagerConfig" not in kinds:
        listed = document.get("components") or []
        document["components"] = [*listed, *(f"../../components/{name}" for name in COMPONENTS)]
        kustomization.write_text(yaml.safe_dump(document, sort_keys=False))
    return [doc for doc in yaml.safe_load_all(k8s_tools.kustomize(project, overlay)) if doc]


@pytest.fixture(scope="module", params=ENVIRONMENTS)
def rendered(
    request: pytest.FixtureRequest, bake: Bake, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Bake, list[dict[str, Any]]]:
    overlay = str(request.param)
    resources = with_components(bake, tmp_path_factory.mktemp("alert-routes"), overlay)
    return overlay, bake, resources


def namespace(bake_: Bake, overlay: str) -> str:
    name = str(bake_.answers["k8s_namespace"])
    return f"{name[:55]}-staging" if overlay == "staging" else name


def test_the_alertmanagerconfig_fits_the_operators_schema(
    rendered: tuple[str, Bake, list[dict[str, Any]]],
) -> None:
    overlay, bake_, resources = rendered
    config = only(resources, "AlertmanagerConfig")
    validator = jsonschema.Draft202012Validator(ALERTMANAGERCONFIG_SCHEMA)
    errors = [
        f"{'.'.join(str(part) for part in error.path)}: {error.message}"
        for error in validator.iter_errors(config)
    ]
    assert errors == []
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
    """The schema can fail: an unknown field and a bad duration are refused."""
    validator = jsonschema.Draft202012Validator(ALERTMANAGERCONFIG_SCHEMA)
    config = {
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": {"name": "x"},
        "spec": {
            "route": {"receiver": "r", "routes": [{"receiver": "r", "groupWait": "soon"}]},
            "receivers": [{"name": "r", "slackConfigs": [{"webhookURL": "https://x"}]}],
        },
    }
    messages = sorted(error.message for error in validator.iter_errors(config))
    assert len(messages) == 3, messages
