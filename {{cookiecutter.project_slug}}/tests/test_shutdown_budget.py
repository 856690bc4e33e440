"""The pod's grace period covers every bound that can delay the exit after SIGTERM.

Kubernetes sends SIGKILL ``terminationGracePeriodSeconds`` after the preStop hook
starts: a shutdown that takes longer loses requests in flight, job runs and their
pings. The bounds are settings (``server.shutdown_bounds``) read from
``k8s/base/settings.env``; the preStop sleep and the grace period are in
``k8s/base/deployment.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from {{ cookiecutter.package_name }}.server import shutdown_bounds
from {{ cookiecutter.package_name }}.settings import Settings

K8S_BASE = Path(__file__).resolve().parent.parent / "k8s" / "base"
# Seconds to spare: the process's own exit, the event loop's last callbacks, a slow node.
MARGIN = 5.0


def deployment_pod_spec() -> dict[str, Any]:
    deployment = yaml.safe_load((K8S_BASE / "deployment.yaml").read_text())
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def test_the_grace_period_covers_every_shutdown_bound_with_a_margin() -> None:
    values = {
        name.lower(): value
        for name, value in dotenv_values(K8S_BASE / "settings.env").items()
        if value is not None
    }
    # The bounds only: development needs no DATABASE_URL.
    settings = Settings(_env_file=None, **{**values, "environment": "development"})  # type: ignore[arg-type]
    pod = deployment_pod_spec()
    (app,) = (container for container in pod["containers"] if container["name"] == "app")
    pre_stop = float(app["lifecycle"]["preStop"]["sleep"]["seconds"])
    bounds = shutdown_bounds(settings)
    grace = float(pod["terminationGracePeriodSeconds"])
    needed = pre_stop + sum(bounds.values()) + MARGIN
    assert grace >= needed, (
        f"terminationGracePeriodSeconds {grace:g} < preStop {pre_stop:g} + {bounds}"
        f" + {MARGIN:g} s margin = {needed:g}"
    )
