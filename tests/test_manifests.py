"""The container image and Kubernetes manifests of every bake pass schema, security and
structure checks, for every overlay.

Each combination is baked once (no virtualenv: nothing here imports the service)
and each overlay rendered once; every check reads that rendering. The probe
contract test, which runs the service, lives with the runtime tests and reuses
``k8s_tools.render_overlay``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate.utils as kubernetes_validate
import pytest
import yaml
from cookiecutter.generate import generate_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config
from packaging.version import Version

from . import k8s_tools
from .combinations import COMBINATIONS, IDS
from .conftest import migrate_command, require
from .k8s_tools import (
    MONITORING_KINDS,
    OVERLAYS,
    all_containers,
    configmap_data,
    container,
    container_port,
    crd_schema_errors,
    deployment,
    dockerfile_cmd,
    dockerfile_instructions,
    only,
    option,
    pod_spec,
    quantity,
    service_resources,
    settings_fields,
)

TEMPLATE = Path(__file__).resolve().parent.parent
TOOLS = Path(sys.executable).parent

# The oldest Kubernetes minor the manifests support: the native preStop sleep action
# is on by default from 1.30.
OLDEST_KUBERNETES = Version("1.30")

# Settings that are secrets: mounted as files from the Secret, never in the ConfigMap.
SECRET_SETTINGS = frozenset(
    {"database_url", "redis_url", "healthchecks_ping_key", "healthchecks_api_key", "sentry_dsn"}
)
SECRET_SUFFIX = "_heartbeat_url"
# Settings the container does not read from the environment: they only configure
# `python -m <package>`; the image's CMD passes --host and --port to uvicorn.
RUNNER_ONLY_SETTINGS = frozenset({"host", "port"})
# Settings read from the environment by load_settings() before Settings exists.
LOADER_SETTINGS = frozenset({"secrets_dir"})
# In the ConfigMap ahead of the scheduler work that adds them to settings.py: while
# one is missing from Settings, the equality check skips it instead of failing.
PENDING_SETTINGS = frozenset(
    {
        "scheduler_enabled",
        "scheduler_misfire_grace_time",
        "scheduler_shutdown_timeout",
        "scheduler_leader_retry_interval",
        "heartbeat_protocol",
        "heartbeat_timeout",
        "heartbeat_retries",
        "items_retention_days",
    }
)

KINDS = {
    "ConfigMap",
    "CronJob",
    "Deployment",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Service",
    "ServiceAccount",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
UNPRIVILEGED_ID = 10000


def is_secret(field: str) -> bool:
    """Whether the setting ``field`` holds a secret (a password or a token in a URL)."""
    return field in SECRET_SETTINGS or field.endswith(SECRET_SUFFIX)


def tool(name: str) -> str:
    """Path of a command-line tool: the template's virtualenv first, then PATH."""
    beside = TOOLS / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    require(found is not None, f"{name} is not installed (uv sync installs the dev group)")
    assert found is not None
    return found


@dataclass(frozen=True)
class Bake:
    """A baked project (no virtualenv) and every answer it was rendered with."""

    path: Path
    answers: Mapping[str, Any]

    @property
    def use_redis(self) -> bool:
        return bool(self.answers["use_redis"])

    @property
    def monitoring(self) -> bool:
        """Whether the overlays include the monitoring component (``prometheus_operator``)."""
        return bool(self.answers["prometheus_operator"])

    @property
    def settings_fields(self) -> list[str]:
        """Field names of the baked ``Settings`` class, lowercase."""
        return settings_fields(
            self.path / "src" / str(self.answers["package_name"]) / "settings.py"
        )


@dataclass(frozen=True)
class Rendering:
    """One overlay of one bake, rendered."""

    bake: Bake
    overlay: str
    text: str
    resources: list[dict[str, Any]]

    @property
    def deployment(self) -> dict[str, Any]:
        return deployment(self.resources)

    @property
    def kinds(self) -> set[str]:
        """The kinds this overlay must render: the monitoring component's in the overlays
        when the bake includes it."""
        with_monitoring = self.overlay != "base" and self.bake.monitoring
        return KINDS | MONITORING_KINDS if with_monitoring else set(KINDS)

    @property
    def cronjobs(self) -> list[dict[str, Any]]:
        return k8s_tools.resources_of_kind(self.resources, "CronJob")

    @property
    def workloads(self) -> list[dict[str, Any]]:
        """The Deployment, then each CronJob seen as ``spec.template`` (its pod template)."""
        return [
            self.deployment,
            *(
                {
                    "metadata": cronjob["metadata"],
                    "spec": {"template": cronjob["spec"]["jobTemplate"]["spec"]["template"]},
                }
                for cronjob in self.cronjobs
            ),
        ]

    @property
    def containers(self) -> list[dict[str, Any]]:
        """Every container of every workload (init containers first)."""
        return [found for workload in self.workloads for found in all_containers(workload)]

    @property
    def settings(self) -> dict[str, str]:
        return configmap_data(self.resources)

    @property
    def namespace(self) -> str:
        if self.overlay == "staging":
            return f"{str(self.bake.answers['k8s_namespace'])[:55]}-staging"
        return str(self.bake.answers["k8s_namespace"])


@pytest.fixture(scope="session", params=COMBINATIONS, ids=IDS)
def bake(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Bake:
    """The template baked offline for one option combination."""
    combination: dict[str, Any] = dict(request.param)
    context = generate_context(
        context_file=str(TEMPLATE / "cookiecutter.json"), extra_context=combination
    )
    answers = dict(prompt_for_config(context, no_input=True))
    path = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        output_dir=str(tmp_path_factory.mktemp("bake-k8s")),
        extra_context=combination,
    )
    return Bake(path=Path(path), answers=answers)


@pytest.fixture(scope="session", params=OVERLAYS)
def rendering(request: pytest.FixtureRequest, bake: Bake) -> Rendering:
    """``kubectl kustomize`` of one overlay; a failure here is the 'renders' check failing."""
    kubectl = k8s_tools.KUBECTL
    require(Path(kubectl).exists(), f"kubectl is not installed at {kubectl}")
    text = k8s_tools.kustomize(bake.path, request.param)
    resources = [doc for doc in yaml.safe_load_all(text) if doc]
    return Rendering(bake=bake, overlay=request.param, text=text, resources=resources)


def pod_labels(rendering: Rendering) -> dict[str, str]:
    return dict(rendering.deployment["spec"]["template"]["metadata"]["labels"])


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a ``matchLabels`` selector (the only form the manifests use) selects ``labels``."""
    match = selector.get("matchLabels", {})
    assert set(selector) <= {"matchLabels"}, f"unexpected selector form: {selector}"
    return bool(match) and all(labels.get(key) == value for key, value in match.items())


# --- Rendering and schemas -----------------------------------------------------------------


def test_overlay_renders_every_resource_and_no_secret(rendering: Rendering) -> None:
    kinds = [resource["kind"] for resource in rendering.resources]
    assert set(kinds) == rendering.kinds, f"{rendering.overlay} renders {sorted(kinds)}"
    # The monitoring component adds a second ConfigMap, the dashboard's.
    service = [resource["kind"] for resource in service_resources(rendering.resources)]
    assert len(service) == len(set(service)), f"a kind is rendered twice: {sorted(kinds)}"
    # Secrets are created by the operator (see the README), never committed with values.
    assert "Secret" not in kinds


def test_every_resource_in_the_overlay_namespace(rendering: Rendering) -> None:
    for resource in rendering.resources:
        if resource["kind"] in CLUSTER_SCOPED:
            continue
        assert resource["metadata"].get("namespace") == rendering.namespace, (
            f"{resource['kind']}/{resource['metadata']['name']}"
        )


def supported_kubernetes_versions() -> list[str]:
    """Every Kubernetes minor kubernetes-validate ships schemas for, from 1.30 on."""
    shipped = {Version(version) for version in kubernetes_validate.all_versions()}
    return [str(version) for version in sorted(shipped) if version >= OLDEST_KUBERNETES]


def strict_schema_errors(resources: list[dict[str, Any]], version: str) -> list[str]:
    """What ``kubernetes-validate --strict -k <version>`` reports, one line per problem."""
    errors = []
    for resource in resources:
        name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        custom = crd_schema_errors(resource)
        if custom is not None:  # a Prometheus Operator kind: its own strict schema
            errors.extend(f"{version} {error}" for error in custom)
            continue
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"{version} {name}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{version} {name}: {error.message}")
    return errors


def test_strict_schema_for_every_kubernetes_version(rendering: Rendering) -> None:
    versions = supported_kubernetes_versions()
    assert versions, "kubernetes-validate ships no schema from 1.30 on"
    assert Version(versions[0]) == OLDEST_KUBERNETES, f"no schema for {OLDEST_KUBERNETES}"
    errors = [
        error
        for version in versions
        for error in strict_schema_errors(rendering.resources, version)
    ]
    assert errors == [], "\n".join(errors)


def test_strict_schema_rejects_an_unknown_field(rendering: Rendering) -> None:
    """The schema check is not vacuous: a misspelt field fails it."""
    broken = json.loads(json.dumps(rendering.deployment))
    container_ = broken["spec"]["template"]["spec"]["containers"][0]
    container_["readinessProbes"] = container_.pop("readinessProbe")
    newest = supported_kubernetes_versions()[-1]
    assert strict_schema_errors([broken], newest) != []


# --- checkov and hadolint ------------------------------------------------------------------


def test_checkov_reports_no_failed_check(rendering: Rendering, tmp_path: Path) -> None:
    manifest = tmp_path / f"{rendering.overlay}.yaml"
    manifest.write_text(rendering.text)
    config = rendering.bake.path / "k8s" / ".checkov.yaml"
    result = subprocess.run(
        [
            tool("checkov"),
            "--config-file",
            str(config),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--output",
            "json",
            "--file",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    kubernetes = [entry for entry in reports if entry.get("check_type") == "kubernetes"]
    assert len(kubernetes) == 1, f"no kubernetes report: {result.stdout[:2000]}"
    summary = kubernetes[0]["summary"]
    failed = [
        f"{check['check_id']} {check['check_name']} ({check['resource']})"
        for check in kubernetes[0]["results"]["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    assert summary["parsing_errors"] == 0
    # checkov counts containers as resources of their own, so at least one per document.
    assert summary["resource_count"] >= len(rendering.resources)
    assert summary["passed"] > 50, f"checkov ran too few checks: {summary}"
    assert result.returncode == 0, result.stderr[-3000:]


def test_checkov_skips_live_in_one_config_file_with_reasons(bake: Bake) -> None:
    config = bake.path / "k8s" / ".checkov.yaml"
    skips = yaml.safe_load(config.read_text()).get("skip-check", [])
    for line in config.read_text().splitlines():
        entry = re.match(r"^\s*-\s*(CKV2?_[A-Z0-9_]+)\s*(?:#\s*(.*))?$", line)
        if entry:
            reason = entry.group(2) or ""
            assert len(reason.split()) >= 6, f"{entry.group(1)} needs a one-line reason"
    assert len(skips) == len(re.findall(r"^\s*-\s*CKV", config.read_text(), re.MULTILINE))
    # Nowhere else: no inline suppressions and no second config file.
    elsewhere = [
        str(path.relative_to(bake.path))
        for path in bake.path.rglob("*")
        if path.is_file()
        and path != config
        and re.search(r"checkov:skip|skip-check|skip_check", path.read_text(errors="ignore"))
    ]
    assert elsewhere == []


def test_hadolint_reports_nothing(bake: Bake) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "Dockerfile"],
        cwd=bake.path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


# --- The container image -------------------------------------------------------------------


def test_dockerfile_builds_in_stages_and_runs_one_uvicorn_as_non_root(bake: Bake) -> None:
    dockerfile = bake.path / "Dockerfile"
    instructions = dockerfile_instructions(dockerfile)
    bases = [args.split()[0] for keyword, args in instructions if keyword == "FROM"]
    python_version = re.escape(str(bake.answers["python_version"]))
    assert re.fullmatch(rf"python:{python_version}-slim-(bookworm|trixie)", bases[-1]), bases
    assert len(bases) >= 2, "a build stage and a runtime stage"
    runtime = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    runtime_text = "\n".join(f"{keyword} {args}" for keyword, args in runtime)
    # No apt-get (nothing to pin) and no build tools or dev group in the runtime stage.
    assert "apt-get" not in dockerfile.read_text()
    assert "uv " not in runtime_text
    assert "pip install" not in runtime_text
    assert re.search(r"uv sync\b[^\n]*--no-dev", dockerfile.read_text())
    # Exactly the bake's uv.lock, which must be there and match pyproject.toml.
    syncs = re.findall(r"uv sync\b[^\n]*", dockerfile.read_text())
    assert syncs
    assert all("--locked" in sync for sync in syncs), syncs
    copies = [args for keyword, args in instructions if keyword == "COPY"]
    assert any(args.split()[:2] == ["pyproject.toml", "uv.lock"] for args in copies), copies
    assert "UV_COMPILE_BYTECODE=1" in dockerfile.read_text()
    # The migrate command works in the image: migrations/ (and alembic.ini) in the WORKDIR.
    copied = [args for keyword, args in runtime if keyword == "COPY"]
    assert any("alembic.ini" in args for args in copied) is (bake.answers["orm"] == "sqlalchemy")
    assert any("migrations" in args for args in copied)
    workdir = [args for keyword, args in runtime if keyword == "WORKDIR"][-1]
    assert workdir == "/app"
    user = [args for keyword, args in runtime if keyword == "USER"][-1]
    uid, _, gid = user.partition(":")
    assert int(uid) >= UNPRIVILEGED_ID, user
    assert int(gid) >= UNPRIVILEGED_ID, user

    argv = dockerfile_cmd(dockerfile)
    assert argv[:4] == ["python", "-m", bake.answers["package_name"], "serve"]
    assert option(argv, "--host") == "0.0.0.0"
    assert option(argv, "--port") == "8000"
    assert "--proxy-headers" in argv
    # Settings own these (FORWARDED_ALLOW_IPS, GRACEFUL_SHUTDOWN_TIMEOUT): "*" would let
    # any client set its address in the logs.
    assert option(argv, "--forwarded-allow-ips") is None
    assert option(argv, "--timeout-graceful-shutdown") is None
    assert option(argv, "--workers") is None, "one process per container"
    assert not [args for keyword, args in instructions if keyword == "ENTRYPOINT"]


def test_dockerignore_keeps_secrets_and_local_state_out(bake: Bake) -> None:
    patterns = [
        line.strip()
        for line in (bake.path / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # An allow-list: everything is ignored, then only what the Dockerfile copies.
    assert patterns[0] == "*"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    assert allowed <= {
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "LICENSE",
        "src",
        "alembic.ini",
        "migrations",
    }
    assert not allowed & {".env", ".venv", "tests", "k8s"}


def test_compose_starts_infrastructure_healthy_and_migrates_first(bake: Bake) -> None:
    compose = yaml.safe_load((bake.path / "compose.yaml").read_text())
    services = compose["services"]
    infrastructure = {"postgres", "redis"} if bake.use_redis else {"postgres"}
    assert set(services) == infrastructure | {"migrate", "app"}
    for name in infrastructure:
        assert services[name]["healthcheck"]["test"], name
    app = services["app"]
    assert app["build"] == "."
    assert {name: app["depends_on"][name]["condition"] for name in app["depends_on"]} == {
        **dict.fromkeys(infrastructure, "service_healthy"),
        "migrate": "service_completed_successfully",
    }
    assert services["migrate"]["command"] == migrate_command(bake.answers)
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert app["healthcheck"]["test"]
    assert ("REDIS_URL" in app["environment"]) is bake.use_redis


# --- The Deployment ------------------------------------------------------------------------


def test_probes_use_the_named_port_and_the_health_endpoints(rendering: Rendering) -> None:
    app = container(rendering.deployment)
    assert container_port(app, "http") == 8000
    expected = {
        "startupProbe": "/health/live",
        "livenessProbe": "/health/live",
        "readinessProbe": "/health/ready",
    }
    for probe_name, path in expected.items():
        probe = app[probe_name]
        assert probe["httpGet"] == {"path": path, "port": "http"}, probe_name
    # The uvicorn in the image listens where the manifest says.
    assert option(dockerfile_cmd(rendering.bake.path / "Dockerfile"), "--port") == str(
        container_port(app, "http")
    )
    service = only(rendering.resources, "Service")
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http", "metrics"]
    assert container_port(app, "metrics") == int(rendering.settings["METRICS_PORT"])
    assert service["spec"]["selector"] == {
        key: pod_labels(rendering)[key] for key in service["spec"]["selector"]
    }


def test_probe_timeouts_exceed_the_health_check_timeout(rendering: Rendering) -> None:
    check_timeout = float(rendering.settings["HEALTH_CHECK_TIMEOUT"])
    app = container(rendering.deployment)
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert app[probe_name]["timeoutSeconds"] > check_timeout, probe_name


def test_liveness_is_not_readiness(rendering: Rendering) -> None:
    app = container(rendering.deployment)
    assert app["livenessProbe"] != app["readinessProbe"]
    assert app["livenessProbe"]["httpGet"]["path"] != app["readinessProbe"]["httpGet"]["path"]

    # Liveness tolerates more than readiness: a slow pod leaves the endpoints long
    # before it is restarted.
    def patience(probe: dict[str, Any]) -> int:
        return int(probe.get("failureThreshold", 3)) * int(probe.get("periodSeconds", 10))

    assert patience(app["livenessProbe"]) > patience(app["readinessProbe"])


def test_prestop_sleep_and_grace_period_cover_the_whole_shutdown(rendering: Rendering) -> None:
    spec = pod_spec(rendering.deployment)
    app = container(rendering.deployment)
    pre_stop = app["lifecycle"]["preStop"]
    assert set(pre_stop) == {"sleep"}, "the native sleep action, not exec (no shell in the image)"
    sleep = int(pre_stop["sleep"]["seconds"])
    assert sleep >= 1
    # The settings decide uvicorn's graceful timeout: the manifest must not override it.
    assert "command" not in app
    assert "args" not in app
    bounds = {
        name: float(rendering.settings[name])
        for name in (
            "GRACEFUL_SHUTDOWN_TIMEOUT",
            "SCHEDULER_SHUTDOWN_TIMEOUT",
            "SCHEDULER_UNWIND_TIMEOUT",
            "DATABASE_CONNECT_TIMEOUT",
            "HEARTBEAT_FLUSH_TIMEOUT",
        )
    }
    assert bounds["GRACEFUL_SHUTDOWN_TIMEOUT"] > 0
    grace = int(spec["terminationGracePeriodSeconds"])
    assert grace >= sleep + sum(bounds.values()) + 5, (
        f"terminationGracePeriodSeconds {grace} < preStop {sleep} + {bounds} + 5 s margin"
    )


def test_pod_and_containers_are_hardened(rendering: Rendering) -> None:
    for workload in rendering.workloads:
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        for key in ("runAsUser", "runAsGroup", "fsGroup"):
            assert pod[key] >= UNPRIVILEGED_ID, key
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        account = only(rendering.resources, "ServiceAccount")
        assert spec["serviceAccountName"] == account["metadata"]["name"]
        assert account["automountServiceAccountToken"] is False
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), key

        dockerfile_user = [
            a for k, a in dockerfile_instructions(rendering.bake.path / "Dockerfile") if k == "USER"
        ][-1]
        tmp_volumes = {volume["name"] for volume in spec["volumes"] if "emptyDir" in volume}
        for container_ in all_containers(workload):
            name = container_["name"]
            context = {**pod, **container_.get("securityContext", {})}
            assert context["runAsNonRoot"] is True, name
            assert context["runAsUser"] >= UNPRIVILEGED_ID, name
            assert context["runAsGroup"] >= UNPRIVILEGED_ID, name
            assert f"{context['runAsUser']}:{context['runAsGroup']}" == dockerfile_user, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context.get("privileged", False) is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert not context["capabilities"].get("add"), name
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
            mounts = {mount["mountPath"]: mount["name"] for mount in container_["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{name}: no emptyDir at /tmp"


def test_every_container_requests_and_limits_cpu_memory_and_storage(
    rendering: Rendering,
) -> None:
    for container_ in rendering.containers:
        resources = container_["resources"]
        for resource in ("cpu", "memory", "ephemeral-storage"):
            request = quantity(resources["requests"][resource])
            limit = quantity(resources["limits"][resource])
            assert 0 < request <= limit, f"{container_['name']} {resource}"
    for workload in rendering.workloads:
        for volume in pod_spec(workload)["volumes"]:
            if "emptyDir" in volume:
                assert "sizeLimit" in volume["emptyDir"], volume["name"]


def test_pods_spread_across_nodes_and_zones(rendering: Rendering) -> None:
    constraints = pod_spec(rendering.deployment)["topologySpreadConstraints"]
    by_key = {constraint["topologyKey"]: constraint for constraint in constraints}
    assert set(by_key) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in constraints:
        assert constraint["maxSkew"] == 1
        assert selects(constraint["labelSelector"], pod_labels(rendering))


def test_images_are_tagged_never_latest(rendering: Rendering) -> None:
    repository = str(rendering.bake.answers["container_image"])
    for container_ in rendering.containers:
        image = container_["image"]
        name, _, tag = image.rpartition(":")
        assert name == repository, image
        assert tag == str(rendering.bake.answers["version"]), image
        assert tag != "latest", image
    assert "latest" not in re.findall(r"image:\s*\S+:(\S+)", rendering.text)


def test_no_replicas_where_the_autoscaler_scales(rendering: Rendering) -> None:
    deployment_ = rendering.deployment
    autoscaler = only(rendering.resources, "HorizontalPodAutoscaler")
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        deployment_["metadata"]["name"],
    )
    assert "replicas" not in deployment_["spec"]
    assert autoscaler["spec"]["minReplicas"] >= 2
    assert autoscaler["spec"]["maxReplicas"] >= autoscaler["spec"]["minReplicas"]


def test_connections_fit_a_default_postgresql_at_the_largest_rollout(rendering: Rendering) -> None:
    """Replicas at the autoscaler's maximum plus the rollout surge stay within
    PostgreSQL's default max_connections (100, three reserved for superusers)."""
    settings = rendering.settings
    autoscaler = only(rendering.resources, "HorizontalPodAutoscaler")["spec"]
    surge = rendering.deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    maximum = int(autoscaler["maxReplicas"])
    surge_pods = (
        math.ceil(maximum * int(surge.rstrip("%")) / 100)
        if str(surge).endswith("%")
        else int(surge)
    )
    # Each pod: its pool, the pool's overflow and the scheduler's leader-lock connection.
    per_pod = int(settings["DATABASE_POOL_SIZE"]) + int(settings["DATABASE_MAX_OVERFLOW"]) + 1
    migration = 1
    assert (maximum + surge_pods) * per_pod + migration <= 97


def test_disruption_budget_lets_nodes_drain(rendering: Rendering) -> None:
    budget = only(rendering.resources, "PodDisruptionBudget")["spec"]
    assert selects(budget["selector"], pod_labels(rendering))
    min_replicas = only(rendering.resources, "HorizontalPodAutoscaler")["spec"]["minReplicas"]
    if "maxUnavailable" in budget:
        value = budget["maxUnavailable"]
        allowed = int(str(value).rstrip("%")) > 0
    else:
        value = budget["minAvailable"]
        allowed = not str(value).endswith("%") and int(value) < min_replicas
    assert allowed, f"the budget blocks every eviction at {min_replicas} replicas: {budget}"
    assert budget.get("unhealthyPodEvictionPolicy") == "AlwaysAllow"


def test_migrations_run_first_in_an_init_container(rendering: Rendering) -> None:
    spec = pod_spec(rendering.deployment)
    (migrate,) = spec["initContainers"]
    app = container(rendering.deployment)
    assert migrate["command"] == migrate_command(rendering.bake.answers)
    assert migrate["image"] == app["image"]
    assert migrate["envFrom"] == app["envFrom"]
    assert migrate["volumeMounts"] == app["volumeMounts"]
    # Pods starting together take turns: the migration run holds an advisory lock
    # (Alembic's migrations/env.py, or the Tortoise service's migrate.py).
    if rendering.bake.answers["orm"] == "sqlalchemy":
        runner = rendering.bake.path / "migrations" / "env.py"
    else:
        runner = rendering.bake.path / "src" / rendering.bake.answers["package_name"] / "migrate.py"
    assert "pg_advisory_lock" in runner.read_text()


# --- Settings and secrets ------------------------------------------------------------------


def secret_volume_sources(rendering: Rendering) -> tuple[str, list[dict[str, Any]]]:
    """Mount path of the Secret's volume and its secret sources."""
    spec = pod_spec(rendering.deployment)
    app = container(rendering.deployment)
    (volume,) = [v for v in spec["volumes"] if "secret" in v or "projected" in v]
    mount = next(m for m in app["volumeMounts"] if m["name"] == volume["name"])
    assert mount["readOnly"] is True
    if "secret" in volume:
        source = {"name": volume["secret"]["secretName"], **volume["secret"]}
        return mount["mountPath"], [source]
    sources = [source["secret"] for source in volume["projected"]["sources"]]
    assert len(sources) == len(volume["projected"]["sources"]), "only secrets in this volume"
    return mount["mountPath"], sources


def required_secret_keys(bake: Bake) -> set[str]:
    """The keys the service cannot start without outside development."""
    return {"DATABASE_URL", "REDIS_URL"} if bake.use_redis else {"DATABASE_URL"}


def mounted_keys(sources: list[dict[str, Any]], keys: set[str]) -> set[str]:
    """Which of ``keys``, present in the Secret, become files in the pod."""
    mounted: set[str] = set()
    for source in sources:
        if "items" not in source:
            return set(keys)  # the whole Secret
        mounted |= {item["key"] for item in source["items"]} & keys
    return mounted


def test_secrets_are_files_in_secrets_dir_never_environment(rendering: Rendering) -> None:
    for container_ in rendering.containers:
        assert all("secretRef" not in source for source in container_.get("envFrom", []))
        for variable in container_.get("env", []):
            assert "secretKeyRef" not in variable.get("valueFrom", {}), variable["name"]
    mount_path, sources = secret_volume_sources(rendering)
    assert mount_path == rendering.settings["SECRETS_DIR"]
    assert {source["name"] for source in sources} == {
        f"{rendering.bake.answers['project_slug']}-secrets"
    }
    # The whole Secret, required: pods wait for it, and any key added to it (a new
    # job's heartbeat URL) reaches the pod with no manifest edit.
    (source,) = sources
    assert "items" not in source
    assert not source.get("optional")
    secrets = {field.upper() for field in rendering.bake.settings_fields if is_secret(field)}
    assert mounted_keys(sources, secrets) == secrets


def test_a_job_added_as_the_readme_says_gets_its_heartbeat_in_the_pod(
    bake: Bake, tmp_path: Path
) -> None:
    readme = (bake.path / "README.md").read_text()
    section = readme.split("### Adding a job", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert snippet is not None, "the README's job example"
    (job_id,) = re.findall(r'@scheduled\("(\w+)"', snippet.group(1))
    project = tmp_path / "project"
    shutil.copytree(bake.path, project)
    jobs = project / "src" / str(bake.answers["package_name"]) / "scheduling" / "jobs.py"
    # "Declare it in .../scheduling/jobs.py; nothing else is needed."
    jobs.write_text(jobs.read_text() + "\n\n" + snippet.group(1))
    compile(jobs.read_text(), str(jobs), "exec")
    key = f"{job_id.upper()}_HEARTBEAT_URL"
    assert key in section, "the README names the job's variable"
    for overlay in OVERLAYS:
        before = k8s_tools.render_overlay(bake.path, overlay)
        after = k8s_tools.render_overlay(project, overlay)
        assert after == before, f"{overlay}: adding a job needs no manifest edit"
        rendering = Rendering(bake=bake, overlay=overlay, text="", resources=after)
        _, sources = secret_volume_sources(rendering)
        assert mounted_keys(sources, {key}) == {key}, f"{overlay}: {key} never reaches the pod"


def test_configmap_holds_every_non_secret_setting(rendering: Rendering) -> None:
    fields = set(rendering.bake.settings_fields)
    keys = {key.lower() for key in rendering.settings}
    assert all(key.isupper() for key in rendering.settings)
    secrets = {field for field in fields if is_secret(field)}
    assert not {key for key in keys if is_secret(key)}, "a secret in the ConfigMap"
    expected = (fields - secrets - RUNNER_ONLY_SETTINGS) | LOADER_SETTINGS
    assert sorted(expected - keys) == [], "settings missing from the ConfigMap"
    # Keys ahead of settings.py are allowed only while their settings are being added.
    ahead = keys - fields - LOADER_SETTINGS
    assert sorted(ahead - PENDING_SETTINGS) == [], "ConfigMap keys that are no setting"
    assert rendering.settings["ENVIRONMENT"] == (
        "staging" if rendering.overlay == "staging" else "production"
    )
    assert rendering.settings["HEALTH_SHOW_DETAILS"] == "false"
    assert rendering.settings["STATUS_PAGE_URL"] == rendering.bake.answers["status_page_url"]


def test_deployment_reads_the_rendered_configmap(rendering: Rendering) -> None:
    name = only(service_resources(rendering.resources), "ConfigMap")["metadata"]["name"]
    for container_ in rendering.containers:
        assert container_["envFrom"] == [{"configMapRef": {"name": name}}], container_["name"]


def test_cronjobs_run_the_jobs_command_once_at_a_time_within_deadlines(
    rendering: Rendering,
) -> None:
    package = str(rendering.bake.answers["package_name"])
    assert rendering.cronjobs, "the example job declared as a CronJob is rendered"
    app = container(rendering.deployment)
    for cronjob in rendering.cronjobs:
        spec = cronjob["spec"]
        job = spec["jobTemplate"]["spec"]
        pod = job["template"]["spec"]
        (job_container,) = pod["containers"]
        name = cronjob["metadata"]["name"]
        assert spec["concurrencyPolicy"] == "Forbid", name
        assert spec["timeZone"], name
        assert spec["startingDeadlineSeconds"] > 0, name
        assert job["activeDeadlineSeconds"] > 0, name
        assert job["backoffLimit"] == 0, name
        assert job["ttlSecondsAfterFinished"] > 0, name
        assert pod["restartPolicy"] == "Never", name
        command = job_container["command"]
        assert command[:6] == ["python", "-m", package, "jobs", "run", "--cronjob"], name
        assert name.endswith(command[6].replace("_", "-")), name
        # The unwind, the run's end and the failure ping fit between SIGTERM and SIGKILL.
        assert pod["terminationGracePeriodSeconds"] >= 5 + 2 + 2, name
        for key in ("image", "envFrom", "volumeMounts", "securityContext"):
            assert job_container[key] == app[key], f"{name}: {key}"
        assert pod["volumes"] == pod_spec(rendering.deployment)["volumes"], name


def test_an_overlay_patches_a_cronjobs_resources(bake: Bake, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(bake.path, project)
    overlay = project / "k8s" / "overlays" / "production"
    (name,) = [
        cronjob["metadata"]["name"]
        for cronjob in k8s_tools.resources_of_kind(
            k8s_tools.render_overlay(project, "production"), "CronJob"
        )
    ]
    (overlay / "cronjob-resources.yaml").write_text(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n"
        f"  name: {name}\n"
        "spec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n"
        "          containers:\n            - name: job\n              resources:\n"
        "                limits:\n                  memory: 2Gi\n"
    )
    kustomization = overlay / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text().replace(
            "  - path: resources.yaml\n",
            "  - path: resources.yaml\n  - path: cronjob-resources.yaml\n",
        )
    )
    (cronjob,) = k8s_tools.resources_of_kind(
        k8s_tools.render_overlay(project, "production"), "CronJob"
    )
    (patched,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert patched["resources"]["limits"]["memory"] == "2Gi"
    assert patched["resources"]["limits"]["cpu"] == "1", "the rest of the base is kept"


def test_the_deploying_page_creates_the_secret_the_deployment_mounts(
    rendering: Rendering,
) -> None:
    section = (rendering.bake.path / "docs" / "deploying.md").read_text()
    image = f"{rendering.bake.answers['container_image']}:{rendering.bake.answers['version']}"
    assert f"docker build -t {image} ." in section
    _, sources = secret_volume_sources(rendering)
    (name,) = {source["name"] for source in sources}
    assert f"create secret generic {name}" in section
    for key in required_secret_keys(rendering.bake):
        assert f"--from-literal={key}=" in section, key
    assert f"rollout status deployment/{rendering.deployment['metadata']['name']}" in section


# --- Network -------------------------------------------------------------------------------


def test_every_pod_is_under_the_network_policy(rendering: Rendering) -> None:
    policy = only(rendering.resources, "NetworkPolicy")["spec"]
    for workload in rendering.workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selects(policy["podSelector"], labels), workload["metadata"]["name"]


def test_nothing_may_connect_to_a_cronjobs_pod(rendering: Rendering) -> None:
    """Ingress names ports; a named port matches only the pods that declare it."""
    policy = only(rendering.resources, "NetworkPolicy")["spec"]
    ingress_ports = [port["port"] for rule in policy["ingress"] for port in rule["ports"]]
    assert all(isinstance(port, str) for port in ingress_ports), ingress_ports
    cronjobs = rendering.workloads[1:]
    assert cronjobs, "the example CronJob is rendered"
    for cronjob in cronjobs:
        declared = {
            port.get("name")
            for container in all_containers(cronjob)
            for port in container.get("ports", [])
        }
        assert declared.isdisjoint(ingress_ports), (cronjob["metadata"]["name"], declared)
    # The app's pod declares both: the same rules admit clients and Prometheus there.
    app = {
        port["name"]
        for container in all_containers(rendering.deployment)
        for port in container.get("ports", [])
    }
    assert set(ingress_ports) <= app


def test_network_policy_allows_only_the_app_port_in_and_known_ports_out(
    rendering: Rendering,
) -> None:
    policy = only(rendering.resources, "NetworkPolicy")["spec"]
    assert selects(policy["podSelector"], pod_labels(rendering))
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    ingress = {
        (port["port"], port.get("protocol", "TCP")): rule.get("from")
        for rule in policy["ingress"]
        for port in rule["ports"]
    }
    # The app port from anywhere; metrics from the monitoring namespace only.
    assert ingress == {
        ("http", "TCP"): None,
        ("metrics", "TCP"): [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
    }
    egress_ports = {
        (port["port"], port.get("protocol", "TCP"))
        for rule in policy["egress"]
        for port in rule["ports"]
    }
    expected = {(53, "UDP"), (53, "TCP"), (5432, "TCP"), (443, "TCP"), (4318, "TCP")}
    if rendering.bake.use_redis:
        expected.add((6379, "TCP"))
    assert egress_ports == expected
    assert all(rule.get("ports") for rule in policy["egress"]), "an egress rule without ports"
    # OTLP/HTTP only to the monitoring namespace, where docs/tracing.md puts the collector.
    (otlp,) = [rule for rule in policy["egress"] if rule["ports"][0]["port"] == 4318]
    assert otlp["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    tracing = (rendering.bake.path / "docs" / "tracing.md").read_text()
    assert "port 4318" in tracing
    # The docs tell users which port a monitor may listen on: the policy's only HTTP one.
    page = (rendering.bake.path / "docs" / "jobs-and-monitoring.md").read_text()
    section = page.split("## Monitoring your jobs", 1)[1].split("\n## ", 1)[0]
    stated = {int(port) for port in re.findall(r"reached on\s+port (\d+) only", section)}
    assert stated == {port for port, _ in egress_ports} - {53, 5432, 6379, 4318}


def test_overlays_differ_only_where_environments_should(bake: Bake) -> None:
    renderings = {overlay: k8s_tools.render_overlay(bake.path, overlay) for overlay in OVERLAYS}
    staging = renderings["staging"]
    production = renderings["production"]
    namespaces = {
        overlay: {r["metadata"]["namespace"] for r in resources}
        for overlay, resources in renderings.items()
    }
    assert namespaces["staging"] != namespaces["production"]
    assert (
        only(staging, "HorizontalPodAutoscaler")["spec"]["maxReplicas"]
        < only(production, "HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    )
    assert (
        container(deployment(staging))["resources"]
        != container(deployment(production))["resources"]
    )
    # Timings are the same everywhere: they follow from the code, not the environment.
    for key in ("terminationGracePeriodSeconds", "topologySpreadConstraints", "securityContext"):
        assert pod_spec(deployment(staging))[key] == pod_spec(deployment(production))[key], key
