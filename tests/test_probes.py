"""Probe contract: the rendered Deployment's probes, called as the kubelet would.

The baked service is started with the rendered ConfigMap as its environment, its
database URL as a file in ``SECRETS_DIR`` (as the Secret is mounted), on the
container port the manifest declares; each probe's path is called with the
probe's own ``timeoutSeconds`` while a private PostgreSQL is up, stopped and back.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from .conftest import TEST_REDIS_URL, Project
from .k8s_tools import configmap_data, container, container_port, deployment, render_overlay
from .services import PrivatePostgres, Service, start_service


def call_probe(service: Service, probe: dict[str, Any]) -> int:
    """One probe as the kubelet makes it: 0 when it times out or cannot connect."""
    try:
        response = httpx.get(
            f"http://127.0.0.1:{service.port}{probe['httpGet']['path']}",
            timeout=float(probe["timeoutSeconds"]),
        )
    except httpx.TransportError:
        return 0
    return response.status_code


def test_probes_of_the_rendered_deployment_hold(
    project: Project, private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    resources = render_overlay(project.path, "base")
    app = container(deployment(resources))
    startup, liveness, readiness = (
        app["startupProbe"],
        app["livenessProbe"],
        app["readinessProbe"],
    )
    port = container_port(app, startup["httpGet"]["port"])
    assert container_port(app, readiness["httpGet"]["port"]) == port

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "DATABASE_URL").write_text(private_postgres.url)
    if project.context["use_redis"]:
        (secrets / "REDIS_URL").write_text(TEST_REDIS_URL)
    env = {**configmap_data(resources), "SECRETS_DIR": str(secrets)}
    project.migrate(env)

    service = start_service(project.path, project.python, env, port=port, log=tmp_path / "log")
    try:
        # Startup probe: succeeds within failureThreshold x periodSeconds of the start.
        budget = startup["failureThreshold"] * startup["periodSeconds"]
        started = time.monotonic()
        while call_probe(service, startup) != 200:
            assert time.monotonic() - started < budget, f"startup probe failed for {budget} s"
            assert service.process.poll() is None, service.output()
            time.sleep(startup["periodSeconds"] / 10)
        assert call_probe(service, readiness) == 200

        private_postgres.stop()
        cache_ttl = float(env["HEALTH_CACHE_TTL"])
        time.sleep(cache_ttl)
        for _ in range(3):
            assert call_probe(service, liveness) == 200, "liveness must ignore the database"
            assert call_probe(service, readiness) == 503, "readiness must fail without it"
            time.sleep(0.2)

        private_postgres.start()
        deadline = time.monotonic() + readiness["periodSeconds"] * readiness["failureThreshold"]
        while call_probe(service, readiness) != 200:
            assert time.monotonic() < deadline, "readiness did not recover"
            time.sleep(0.1)
        assert call_probe(service, liveness) == 200
    finally:
        service.stop()
    assert "Traceback" not in service.output(), service.output()
