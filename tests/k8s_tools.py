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

import yaml

OVERLAYS = ("base", "staging", "production")

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
    """``data`` of the settings ConfigMap (the overlay renders exactly one ConfigMap)."""
    return dict(only(resources, "ConfigMap").get("data", {}))


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


def settings_fields(settings_py: Path) -> list[str]:
    """Field names of ``class Settings`` in ``settings_py``, lowercase, in source order.

    Parsed, not imported, so the baked project needs no virtualenv.
    """
    tree = ast.parse(settings_py.read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Settings":
            return [
                statement.target.id
                for statement in node.body
                if isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and statement.target.id != "model_config"
                and "ClassVar" not in ast.unparse(statement.annotation)
            ]
    raise AssertionError(f"{settings_py} defines no class Settings")
