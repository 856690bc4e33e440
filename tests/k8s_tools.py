"""Render and read a baked project's Kubernetes manifests and container image.

Shared by the manifest checks and the probe contract test: render an overlay
with ``kubectl kustomize`` (offline), pick resources out of it, and read the
pieces of the Dockerfile and settings.py that the manifests must agree with.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import yaml

OVERLAYS = ("base", "staging", "production")

# The monitoring component (k8s/components/monitoring) and the line of each overlay
# that includes it; commented out, the overlay applies on a cluster without the
# Prometheus Operator's CRDs.
MONITORING_LINE = "  - ../../components/monitoring\n"
MONITORING_LINE_OFF = "  # - ../../components/monitoring\n"
MONITORING_KINDS = frozenset({"ServiceMonitor", "PrometheusRule", "AlertmanagerConfig"})
# The component also renders the Grafana dashboard: a ConfigMap with this label.
DASHBOARD_LABEL = ("grafana_dashboard", "1")

# The Operator's CRDs are not in kubernetes-validate. These schemas hold the fields the
# component writes, as the Operator's API reference (monitoring.coreos.com/v1 and
# v1alpha1) defines them, and refuse any other field, as kubernetes-validate --strict does.
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION = {
    "type": "string",
    "pattern": (
        r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
        r"(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
    ),
}


def _strict(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_METADATA = _strict(
    {
        "name": {"type": "string", "minLength": 1},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    "name",
)
_SELECTOR = _strict({"matchLabels": _STRING_MAP})
_AM_TEXT = {"type": "string", "minLength": 1}
_AM_SECRET_KEY = _strict({"name": _AM_TEXT, "key": _AM_TEXT}, "name", "key")
_AM_MATCHER = _strict(
    {
        "name": _AM_TEXT,
        "value": {"type": "string"},
        "matchType": {"enum": ["=", "!=", "=~", "!~"]},
    },
    "name",
)
_AM_ROUTE = _strict(
    {
        "receiver": _AM_TEXT,
        "groupBy": {"type": "array", "items": {"type": "string"}},
        "groupWait": _DURATION,
        "groupInterval": _DURATION,
        "repeatInterval": _DURATION,
        "matchers": {"type": "array", "items": _AM_MATCHER},
        "continue": {"type": "boolean"},
        "routes": {"type": "array", "items": {"$ref": "#/$defs/route"}},
    }
)


def _am_configs(secret_field: str, **fields: dict[str, Any]) -> dict[str, Any]:
    """A receiver's list of configs whose URL is ``secret_field``, a Secret key reference."""
    return {
        "type": "array",
        "items": _strict({secret_field: _AM_SECRET_KEY, **fields}, secret_field),
    }


CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _strict(
        {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": _METADATA,
            "spec": _strict(
                {
                    "jobLabel": {"type": "string"},
                    "selector": _SELECTOR,
                    "namespaceSelector": _strict(
                        {"any": {"type": "boolean"}, "matchNames": {"type": "array"}}
                    ),
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": _strict(
                            {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "scheme": {"enum": ["http", "https"]},
                                "interval": _DURATION,
                                "scrapeTimeout": _DURATION,
                                "honorLabels": {"type": "boolean"},
                            },
                            "port",
                        ),
                    },
                },
                "selector",
                "endpoints",
            ),
        },
        "apiVersion",
        "kind",
        "metadata",
        "spec",
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _strict(
        {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": _METADATA,
            "spec": _strict(
                {
                    "groups": {
                        "type": "array",
                        "items": _strict(
                            {
                                "name": {"type": "string", "minLength": 1},
                                "interval": _DURATION,
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        **_strict(
                                            {
                                                "record": {"type": "string"},
                                                "alert": {"type": "string"},
                                                "expr": {"type": ["string", "integer"]},
                                                "for": _DURATION,
                                                "keep_firing_for": _DURATION,
                                                "labels": _STRING_MAP,
                                                "annotations": _STRING_MAP,
                                            },
                                            "expr",
                                        ),
                                        "oneOf": [
                                            {"required": ["record"]},
                                            {"required": ["alert"]},
                                        ],
                                    },
                                },
                            },
                            "name",
                            "rules",
                        ),
                    }
                },
                "groups",
            ),
        },
        "apiVersion",
        "kind",
        "metadata",
        "spec",
    ),
    # monitoring.coreos.com/v1alpha1 (the Operator's CRD): the fields the routes use.
    # The CRD leaves child routes open; the Operator reads them as routes, so they are
    # held to the route's schema ($defs).
    ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): {
        "$defs": {"route": _AM_ROUTE},
        **_strict(
            {
                "apiVersion": {"const": "monitoring.coreos.com/v1alpha1"},
                "kind": {"const": "AlertmanagerConfig"},
                "metadata": _METADATA,
                "spec": _strict(
                    {
                        "route": {"$ref": "#/$defs/route"},
                        "inhibitRules": {
                            "type": "array",
                            "items": _strict(
                                {
                                    "sourceMatch": {"type": "array", "items": _AM_MATCHER},
                                    "targetMatch": {"type": "array", "items": _AM_MATCHER},
                                    "equal": {"type": "array", "items": {"type": "string"}},
                                }
                            ),
                        },
                        "receivers": {
                            "type": "array",
                            "items": _strict(
                                {
                                    "name": _AM_TEXT,
                                    "slackConfigs": _am_configs(
                                        "apiURL",
                                        sendResolved={"type": "boolean"},
                                        title=_AM_TEXT,
                                        titleLink=_AM_TEXT,
                                        text=_AM_TEXT,
                                        color=_AM_TEXT,
                                    ),
                                    "discordConfigs": _am_configs(
                                        "apiURL",
                                        sendResolved={"type": "boolean"},
                                        title=_AM_TEXT,
                                        message=_AM_TEXT,
                                    ),
                                    "webhookConfigs": _am_configs(
                                        "urlSecret",
                                        sendResolved={"type": "boolean"},
                                        maxAlerts={"type": "integer", "minimum": 0},
                                    ),
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
    },
}


def from_monitoring(resource: dict[str, Any]) -> bool:
    """Whether the monitoring component rendered ``resource`` (an Operator kind, or the
    dashboard's ConfigMap)."""
    key, value = DASHBOARD_LABEL
    labels = resource.get("metadata", {}).get("labels") or {}
    return resource.get("kind") in MONITORING_KINDS or labels.get(key) == value


def service_resources(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``resources`` without what the monitoring component rendered."""
    return [resource for resource in resources if not from_monitoring(resource)]


def crd_schema_errors(resource: dict[str, Any]) -> list[str] | None:
    """Problems of a Prometheus Operator resource against ``CRD_SCHEMAS``, one line each;
    ``None`` for a kind that is not one of them."""
    schema = CRD_SCHEMAS.get((str(resource.get("apiVersion")), str(resource.get("kind"))))
    if schema is None:
        return None
    name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
    return [
        f"{name}: {'.'.join(str(part) for part in error.absolute_path)}: {error.message}"
        for error in jsonschema.Draft7Validator(schema).iter_errors(resource)
    ]


def monitoring_switched(project_dir: Path, overlay: str, *, on: bool) -> None:
    """Include (``on``) or comment out the monitoring component in ``overlay``'s
    kustomization, as its comment tells a user to; AssertionError if the line is missing."""
    kustomization = overlay_dir(project_dir, overlay) / "kustomization.yaml"
    text = kustomization.read_text()
    old, new = (
        (MONITORING_LINE_OFF, MONITORING_LINE) if on else (MONITORING_LINE, MONITORING_LINE_OFF)
    )
    assert (old in text) or (new in text), f"{kustomization} has no monitoring line"
    kustomization.write_text(text.replace(old, new))


KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

# Kubernetes resource quantities: a number and an optional suffix.
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_SUFFIXES = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


class RenderError(Exception):
    """``kubectl kustomize`` failed; ``str()`` holds its command and stderr."""


def overlay_dir(project_dir: Path, overlay: str) -> Path:
    """Folder of ``overlay``: ``k8s/base`` or ``k8s/overlays/<overlay>``."""
    if overlay == "base":
        return project_dir / "k8s" / "base"
    return project_dir / "k8s" / "overlays" / overlay


def kustomize(project_dir: Path, overlay: str) -> str:
    """The rendered YAML stream of ``overlay`` (``kubectl kustomize``, no network).

    Raises:
        RenderError: kustomize rejected the overlay.
    """
    command = [KUBECTL, "kustomize", str(overlay_dir(project_dir, overlay))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RenderError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr}")
    return result.stdout


def render_overlay(project_dir: Path, overlay: str) -> list[dict[str, Any]]:
    """The resources of ``overlay`` (``"base"``, ``"staging"``, ``"production"``), as dicts.

    Raises:
        RenderError: kustomize rejected the overlay.
    """
    return [doc for doc in yaml.safe_load_all(kustomize(project_dir, overlay)) if doc]


def resources_of_kind(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Every resource of ``kind``, in rendering order."""
    return [resource for resource in resources if resource.get("kind") == kind]


def only(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one resource of ``kind``; AssertionError when there are none or several."""
    found = resources_of_kind(resources, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def deployment(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """The service's Deployment (the overlay renders exactly one)."""
    return only(resources, "Deployment")


def pod_spec(deployment_: dict[str, Any]) -> dict[str, Any]:
    """``spec.template.spec`` of a Deployment."""
    return dict(deployment_["spec"]["template"]["spec"])


def container(deployment_: dict[str, Any], name: str = "app") -> dict[str, Any]:
    """The container called ``name`` (default: the service's own ``app``)."""
    for candidate in pod_spec(deployment_)["containers"]:
        if candidate["name"] == name:
            return dict(candidate)
    raise KeyError(f"no container {name!r} in Deployment {deployment_['metadata']['name']}")


def all_containers(deployment_: dict[str, Any]) -> list[dict[str, Any]]:
    """Init containers, then containers."""
    spec = pod_spec(deployment_)
    return [*spec.get("initContainers", []), *spec["containers"]]


def container_port(container_: dict[str, Any], name: str) -> int:
    """The ``containerPort`` of the port called ``name``."""
    for port in container_.get("ports", []):
        if port.get("name") == name:
            return int(port["containerPort"])
    raise KeyError(f"container {container_['name']} declares no port {name!r}")


def configmap_data(resources: list[dict[str, Any]]) -> dict[str, str]:
    """``data`` of the settings ConfigMap (the one ConfigMap besides the dashboard's)."""
    return dict(only(service_resources(resources), "ConfigMap").get("data", {}))


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (``"250m"``, ``"512Mi"``, ``1``) as a number of base units."""
    match = _QUANTITY.match(str(value))
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def dockerfile_instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_cmd(dockerfile: Path) -> list[str]:
    """The last ``CMD``, which must be in exec form (a JSON array)."""
    commands = [args for keyword, args in dockerfile_instructions(dockerfile) if keyword == "CMD"]
    assert commands, f"{dockerfile} has no CMD"
    argv = json.loads(commands[-1])
    assert isinstance(argv, list), "CMD is not in exec form"
    return [str(arg) for arg in argv]


def option(argv: list[str], flag: str) -> str | None:
    """Value of ``flag`` in ``argv``, written ``--flag value`` or ``--flag=value``."""
    for index, arg in enumerate(argv):
        if arg == flag and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def settings_fields(settings_py: Path, class_name: str = "Settings") -> list[str]:
    """Field names of ``class Settings`` in ``settings_py``, lowercase, in source order,
    those of its bases imported from a sibling module first (``SentrySettings`` from
    ``sentry_settings.py``), as pydantic orders them.

    Parsed, not imported, so the baked project needs no virtualenv.
    """
    tree = ast.parse(settings_py.read_text())
    siblings = {
        alias.asname or alias.name: settings_py.with_name(f"{node.module}.py")
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
        for alias in node.names
    }
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            inherited = [
                field
                for base in node.bases
                if isinstance(base, ast.Name) and base.id in siblings
                for field in settings_fields(siblings[base.id], base.id)
            ]
            return inherited + [
                statement.target.id
                for statement in node.body
                if isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and statement.target.id != "model_config"
                and "ClassVar" not in ast.unparse(statement.annotation)
            ]
    raise AssertionError(f"{settings_py} defines no class {class_name}")
