"""Alerts that reach a person, end to end, with every part real and on the loopback.

The default bake serves two replicas (``tests/alerting_app.py``: the service with two
jobs of its own) on a private PostgreSQL. Debian's Prometheus scrapes their metrics
ports with the bake's alert rules, pulled out of the PrometheusRule's ``spec.groups``;
Debian's Alertmanager runs the bake's routes, rendered by the bake's own
``scripts/alert_routes.py render``. Slack, Discord and the Healthchecks ping URL of
the Watchdog are one loopback HTTP server that records every request and checks its
shape as Slack's incoming webhooks and Discord's webhooks define it.

Faults, caused for real, each timed from the fault to the first payload that reports
it and from the repair to the payload that resolves it (the "alert figures" of the
summary):

- the Watchdog reaches the Healthchecks stand-in;
- a job that raises: the job-failed alert (a warning: Slack);
- PostgreSQL stopped: the readiness alert on every pod (critical: Slack and Discord),
  then resolved once it is back;
- the leader paused (SIGSTOP) past a job's deadline: the missed-job alert, from the
  follower's metrics (the leader is not scraped while paused), resolved once it runs.

At the end each query of the bake's Grafana dashboard runs against this Prometheus,
with the dashboard's variables filled in, and must return data.

The one patch, ``quicken``: every alert's ``for`` is divided by ``FOR_SCALE`` (a minute
becomes a second), so the order between rules holds as in production: the critical
NotReady (2 minutes, every pod) fires before the per-pod warning (5 minutes) it
inhibits. A cap would give both the same ``for`` and let the warning win the race.
Rules are evaluated every second, and Alertmanager's ``group_wait`` and
``group_interval`` are capped at 1 s and 2 s. No expression changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from .combinations import COMBINATIONS, IDS
from .conftest import Project, require
from .services import PrivatePostgres, Service, free_port, start_service

LAUNCHER = Path(__file__).with_name("alerting_app.py")
NAMESPACE = "e2e"
# Each alert's ``for`` is divided by this: one minute in production, one second here.
FOR_SCALE = 60.0
# Bounds of each wait, seconds: a payload arrives within this of its fault.
WITHIN = 90.0
STATUS_PAGE = "https://status.example.com"
# Slack's incoming webhooks and Discord's webhooks: the limits the payloads must keep.
DISCORD_TITLE = 256
DISCORD_DESCRIPTION = 4096
DISCORD_CONTENT = 2000
DISCORD_EMBEDS = 10


def tool(name: str) -> str:
    found = shutil.which(name)
    require(
        found is not None,
        f"{name} is not installed (apt-get install prometheus prometheus-alertmanager)",
    )
    assert found is not None
    return found


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(
        float(number) * units[unit]
        for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", duration)
    )


def quicken(groups: list[dict[str, Any]], routes: dict[str, Any]) -> None:
    """The one patch: shorter ``for`` and Alertmanager waits, no expression touched."""
    for group in groups:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{max(1.0, seconds(rule['for']) / FOR_SCALE):g}s"
    pending = [routes["route"]]
    while pending:
        route = pending.pop()
        pending.extend(route.get("routes", []))
        if route is routes["route"] or seconds(route.get("group_wait", "0s")) > 1:
            route["group_wait"] = "1s"
        route["group_interval"] = "2s"


# --- The loopback receiver -----------------------------------------------------------------


@dataclass
class Payload:
    at: float
    path: str
    body: Any


@dataclass
class Receiver:
    """Every request Slack, Discord and Healthchecks would have received, with its shape checked."""

    payloads: list[Payload] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except ValueError:
            body = None
        problems = shape_problems(request.path, body)
        with self.lock:
            self.payloads.append(Payload(time.monotonic(), request.path, body))
            self.problems.extend(problems)
        # Slack answers "ok"; Discord 204; Healthchecks "OK".
        if request.path == "/discord":
            return Response(status=204)
        return Response("ok")

    def titled(self, path: str, pattern: str, since: float) -> list[Payload]:
        with self.lock:
            return [
                p
                for p in self.payloads
                if p.path == path and p.at >= since and re.search(pattern, title_of(p))
            ]

    def wait(self, path: str, pattern: str, since: float) -> float:
        """Seconds from ``since`` to the first payload to ``path`` whose title matches."""
        deadline = time.monotonic() + WITHIN
        while time.monotonic() < deadline:
            found = self.titled(path, pattern, since)
            if found:
                return found[0].at - since
            time.sleep(0.1)
        with self.lock:
            seen = [(p.path, title_of(p)) for p in self.payloads]
        raise AssertionError(f"no {path} payload matching {pattern!r} within {WITHIN} s: {seen}")


def title_of(payload: Payload) -> str:
    body = payload.body
    if payload.path == "/slack" and isinstance(body, dict):
        return " ".join(str(a.get("title", "")) for a in body.get("attachments", []))
    if payload.path == "/discord" and isinstance(body, dict):
        return " ".join(str(e.get("title", "")) for e in body.get("embeds", []))
    return ""


def shape_problems(path: str, body: Any) -> list[str]:
    """What Slack's or Discord's webhook would refuse or show empty in ``body``."""
    if path == "/hc":
        # Alertmanager's webhook (version 4), one alert: the Watchdog, never resolved.
        alerts = body.get("alerts") if isinstance(body, dict) else None
        if not alerts or not str(alerts[0]["labels"]["alertname"]).endswith("Watchdog"):
            return [f"hc: not the Watchdog's webhook: {str(body)[:200]}"]
        if body.get("status") != "firing":
            return ["hc: a resolved Watchdog reached the dead man's switch"]
        return []
    if not isinstance(body, dict):
        return [f"{path}: not a JSON object"]
    problems = []
    if path == "/slack":
        attachments = body.get("attachments")
        if not body.get("text") and not attachments:
            problems.append("slack: neither text nor attachments")
        for attachment in attachments or []:
            text = str(attachment.get("text") or "")
            if not text.strip() or not attachment.get("fallback"):
                problems.append("slack: an attachment without text or fallback (shown empty)")
            if "Runbook: http" not in text or STATUS_PAGE not in text:
                problems.append(f"slack: no runbook or status page link in {text[:200]!r}")
            if attachment.get("color") not in ("danger", "warning", "good"):
                problems.append(f"slack: colour {attachment.get('color')!r}")
    elif path == "/discord":
        embeds = body.get("embeds") or []
        content = str(body.get("content") or "")
        if not content and not embeds:
            problems.append("discord: neither content nor embeds")
        if len(content) > DISCORD_CONTENT or len(embeds) > DISCORD_EMBEDS:
            problems.append("discord: content or embeds over Discord's limits")
        for embed in embeds:
            title, description = str(embed.get("title", "")), str(embed.get("description", ""))
            if not title or len(title) > DISCORD_TITLE or len(description) > DISCORD_DESCRIPTION:
                problems.append(f"discord: embed title or description over the limits: {title!r}")
            if "Runbook: http" not in description or STATUS_PAGE not in description:
                problems.append(f"discord: no runbook or status page link in {description[:200]!r}")
    else:
        problems.append(f"a request to {path}")
    return problems


# --- The servers ---------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(name: str, argv: list[str], log: Path) -> Process:
    handle = log.open("wb")
    return Process(name, subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT), log)


def wait_ready(url: str, process: Process, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert process.process.poll() is None, f"{process.name} exited:\n{process.log.read_text()}"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{process.name} not ready:\n{process.log.read_text()[-3000:]}")


def query(prometheus: str, expr: str) -> list[Any]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5.0)
    assert response.status_code == 200, response.text
    result: list[Any] = response.json()["data"]["result"]
    return result


def wait_for(condition: Callable[[], bool], message: str, within: float = WITHIN) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if condition():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"timed out after {within} s: {message}")


class Traffic:
    """API requests to every replica, a few a second, so the HTTP panels have data."""

    def __init__(self, services: list[Service]) -> None:
        self.services = services
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stopping.is_set():
            for service in self.services:
                with contextlib.suppress(httpx.HTTPError):
                    httpx.get(f"{service.base_url}/items", timeout=2.0)
            self.stopping.wait(0.2)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


def pause(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGSTOP)


def resume(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGCONT)


def leader_of(services: list[Service]) -> Service:
    for service in services:
        with contextlib.suppress(httpx.HTTPError):
            checks = httpx.get(f"{service.base_url}/health", timeout=2.0).json()["checks"]
            if checks["scheduler"][0].get("leader"):
                return service
    raise AssertionError("no replica leads")


# --- The test ------------------------------------------------------------------------------


@pytest.mark.parametrize("project", COMBINATIONS[:1], ids=IDS[:1], indirect=True)
def test_alerts_reach_slack_discord_and_healthchecks(
    project: Project,
    private_postgres: PrivatePostgres,
    httpserver: HTTPServer,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    prometheus_bin = tool("prometheus")
    alertmanager_bin = shutil.which("prometheus-alertmanager") or tool("alertmanager")
    receiver = Receiver()
    httpserver.expect_request(
        re.compile("^/(slack|discord|hc)$"), method="POST"
    ).respond_with_handler(receiver.handle)
    slug = str(project.context["project_slug"])
    prefix = "".join(part.capitalize() for part in slug.split("-"))
    fail_flag = tmp_path / "fail"
    env = {
        "ENVIRONMENT": "development",
        "DATABASE_URL": private_postgres.url,
        "PACKAGE": project.package,
        "E2E_FAIL_FLAG": str(fail_flag),
        "SCHEDULER_LEADER_RETRY_INTERVAL": "1",
        # Longer than the leader's pause below: the follower cannot take over and run
        # the missed job, so its metrics must tell that the job is past its deadline.
        "SCHEDULER_LEASE_TTL": "45",
        "HEALTH_CACHE_TTL": "0.5",
    }
    project.migrate(env)
    processes: list[Process] = []
    services: list[Service] = []
    work = Path(tempfile.mkdtemp(prefix="uptime-alerting-"))
    figures: dict[str, float] = {}
    try:
        # Two replicas: the first leads, the second follows.
        for name in ("a", "b"):
            service = start_service(
                project.path,
                project.python,
                env,
                log=tmp_path / f"{name}.log",
                argv=[str(LAUNCHER)],
            )
            services.append(service)
            service.wait_until_live()
            if name == "a":
                wait_for(lambda: leader_of(services) is services[0], "replica a leads", within=30)

        # The bake's rules and routes, with the one patch.
        rule = yaml.safe_load(
            (project.path / "k8s" / "components" / "monitoring" / "prometheusrule.yaml").read_text()
        )
        groups = rule["spec"]["groups"]
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{slug}-alert-routes"},
            "stringData": {
                "slack-url": httpserver.url_for("/slack"),
                "discord-url": httpserver.url_for("/discord"),
                "healthchecks-url": httpserver.url_for("/hc"),
            },
        }
        (work / "secret.yaml").write_text(yaml.safe_dump(secret))
        rendered = project.run(
            [
                "python",
                "scripts/alert_routes.py",
                "render",
                "--environment",
                "development",
                str(work / "secret.yaml"),
            ]
        )
        assert rendered.returncode == 0, rendered.stderr
        routes = yaml.safe_load(rendered.stdout)
        quicken(groups, routes)
        (work / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        (work / "alertmanager.yml").write_text(yaml.safe_dump(routes, sort_keys=False))
        amtool = tool("amtool")
        checked = subprocess.run(
            [amtool, "check-config", str(work / "alertmanager.yml")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr

        alertmanager_port, prometheus_port = free_port(), free_port()
        alertmanager = spawn(
            "alertmanager",
            [
                alertmanager_bin,
                f"--config.file={work / 'alertmanager.yml'}",
                f"--storage.path={work / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{alertmanager_port}",
                "--cluster.listen-address=",
            ],
            tmp_path / "alertmanager.log",
        )
        processes.append(alertmanager)
        wait_ready(f"http://127.0.0.1:{alertmanager_port}/-/ready", alertmanager)
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(work / "rules.yaml")],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}
                ]
            },
            "scrape_configs": [
                {
                    "job_name": slug,
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{service.metrics_port}"],
                            "labels": {"namespace": NAMESPACE, "pod": f"{slug}-{name}"},
                        }
                        for name, service in zip("ab", services, strict=True)
                    ],
                }
            ],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        started = time.monotonic()
        prometheus = spawn(
            "prometheus",
            [
                prometheus_bin,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--rules.alert.resend-delay=1s",
            ],
            tmp_path / "prometheus.log",
        )
        processes.append(prometheus)
        api = f"http://127.0.0.1:{prometheus_port}"
        wait_ready(f"{api}/-/ready", prometheus)

        with Traffic(services):
            # The Watchdog reaches the dead man's switch.
            figures["watchdog_to_healthchecks"] = receiver_wait_path(receiver, "/hc", started)

            # A job that raises.
            fail_flag.touch()
            at = time.monotonic()
            figures["job_raises_to_slack"] = receiver.wait(
                "/slack", rf"FIRING.*{prefix}JobFailing", at
            )
            fail_flag.unlink()
            at = time.monotonic()
            figures["job_fixed_resolved_slack"] = receiver.wait(
                "/slack", rf"RESOLVED.*{prefix}JobFailing", at
            )

            # PostgreSQL stopped, then started again.
            private_postgres.stop()
            at = time.monotonic()
            figures["pg_stopped_to_slack"] = receiver.wait(
                "/slack", rf"FIRING.*{prefix}NotReady", at
            )
            figures["pg_stopped_to_discord"] = receiver.wait(
                "/discord", rf"FIRING.*{prefix}NotReady", at
            )
            # Every pod's warning is inhibited by the critical twin (no ready pod at all).
            for payload in receiver.titled("/slack", rf"FIRING.*{prefix}NotReady", at):
                texts = [a["text"] for a in payload.body["attachments"]]
                assert all("*critical*" in t and "*warning*" not in t for t in texts), texts
            private_postgres.start()
            at = time.monotonic()
            figures["pg_back_resolved_slack"] = receiver.wait(
                "/slack", rf"RESOLVED.*{prefix}NotReady", at
            )
            figures["pg_back_resolved_discord"] = receiver.wait(
                "/discord", rf"RESOLVED.*{prefix}NotReady", at
            )
            wait_for(lambda: any_leader(services), "a leader again after the outage", within=60)

            # The leader paused past e2e_ticks's deadline (grace 3 s): the follower tells.
            # Jobs missed while PostgreSQL was down resolve once they have run again.
            wait_for(
                lambda: not query(api, f'ALERTS{{alertname="{prefix}JobMissed"}}'),
                "no job past its deadline before the pause",
            )
            leader = leader_of(services)
            follower = next(service for service in services if service is not leader)
            pause(leader.process)
            at = time.monotonic()
            try:
                figures["leader_paused_missed_to_discord"] = receiver.wait(
                    "/discord", rf"FIRING.*{prefix}JobMissed", at
                )
                firing = query(api, f'ALERTS{{alertname="{prefix}JobMissed", alertstate="firing"}}')
                assert {alert["metric"]["exported_job"] for alert in firing} >= {"e2e_ticks"}
                pod = f"{slug}-{'ab'[services.index(follower)]}"
                deadline = query(
                    api, f'job_deadline_timestamp_seconds{{exported_job="e2e_ticks", pod="{pod}"}}'
                )
                assert deadline, "the follower reports the job's deadline"
            finally:
                resume(leader.process)
            at = time.monotonic()
            figures["leader_resumed_resolved_discord"] = receiver.wait(
                "/discord", rf"RESOLVED.*{prefix}JobMissed", at
            )

            # Every panel of the dashboard returns data.
            empty = [
                title
                for title, expr in dashboard_queries(project.path, slug)
                if not query(api, expr)
            ]
        assert empty == [], f"dashboard panels without data: {empty}"
        assert receiver.problems == [], "\n".join(sorted(set(receiver.problems)))
    finally:
        for process in reversed(processes):
            process.stop()
        for service in services:
            with contextlib.suppress(ProcessLookupError):
                resume(service.process)
            service.stop()
        shutil.rmtree(work, ignore_errors=True)
    record_property("fault", {name: f"{value:.1f}s" for name, value in figures.items()})
    if os.environ.get("ALERTING_TRACE"):
        Path(os.environ["ALERTING_TRACE"]).write_text(
            "\n".join(f"{p.at - started:7.1f} {p.path} {title_of(p)}" for p in receiver.payloads)
        )


def receiver_wait_path(receiver: Receiver, path: str, since: float) -> float:
    deadline = time.monotonic() + WITHIN
    while time.monotonic() < deadline:
        with receiver.lock:
            found = [p for p in receiver.payloads if p.path == path and p.at >= since]
        if found:
            return found[0].at - since
        time.sleep(0.1)
    raise AssertionError(f"nothing reached {path} within {WITHIN} s")


def any_leader(services: list[Service]) -> bool:
    try:
        leader_of(services)
    except AssertionError:
        return False
    return True


def dashboard_queries(project: Path, slug: str) -> Iterator[tuple[str, str]]:
    """``(panel title, query)`` of the bake's dashboard, variables filled in as Grafana would."""
    dashboard = json.loads(
        (project / "k8s" / "components" / "dashboard" / "dashboard.json").read_text()
    )
    constants = {
        variable["name"]: str(variable["query"])
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "constant"
    }
    values = {**constants, "job": slug, "namespace": NAMESPACE, "__rate_interval": "1m"}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = re.sub(
                r"\$\{?(\w+)\}?",
                lambda match: values.get(match.group(1), match.group(0)),
                target["expr"],
            )
            yield panel["title"], expr
