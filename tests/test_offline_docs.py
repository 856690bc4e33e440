"""``/docs`` and ``/redoc`` render in a real browser with no network but loopback.

Debian's ``chromium``, headless, resolves no host but 127.0.0.1
(``--host-resolver-rules``), writes every request it makes to a net log, and dumps
the page's DOM once its scripts have run. The pages must show the service's routes
(Swagger UI) and its operations (ReDoc), and the net log must hold no request of
the page's to any other host: the assets come from the image, not a CDN.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .conftest import Project, require
from .services import Service, start_service

CHROMIUM = shutil.which("chromium")
# Chromium resolves 127.0.0.1 only: a request for any other host fails at once.
LOOPBACK_ONLY = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
QUIET_BROWSER = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
)
# Milliseconds of virtual time the page's scripts get before the DOM is dumped.
RENDER_BUDGET_MS = 10_000


@dataclass(frozen=True)
class Rendered:
    dom: str
    # (URL, initiator) of every request the browser started; the initiator is the
    # page's origin for the page's own requests, "not an origin" for the browser's.
    requests: list[tuple[str, str]]

    def page_requests(self, origin: str) -> list[str]:
        return [url for url, initiator in self.requests if initiator == origin]


def render(url: str, workdir: Path) -> Rendered:
    """Load ``url`` in headless Chromium; returns its DOM once its scripts ran, and its requests."""
    assert CHROMIUM is not None
    net_log = workdir / "net-log.json"
    result = subprocess.run(
        [
            CHROMIUM,
            *QUIET_BROWSER,
            f"--user-data-dir={workdir / 'profile'}",
            LOOPBACK_ONLY,
            f"--log-net-log={net_log}",
            f"--virtual-time-budget={RENDER_BUDGET_MS}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requests = [
        (event["params"]["url"], event["params"].get("initiator", ""))
        for event in log["events"]
        if event["type"] == start_job and "url" in event.get("params", {})
    ]
    return Rendered(dom=result.stdout, requests=requests)


@pytest.fixture
def service(project: Project, tmp_path: Path) -> Iterator[Service]:
    """The baked service on SQLite, on a free loopback port, with its API docs on."""
    require(CHROMIUM is not None, "Debian's chromium is not installed (apt-get install chromium)")
    database = f"sqlite:///{tmp_path / 'docs.db'}"
    env = {"DATABASE_URL": database, "API_DOCS_ENABLED": "true"}
    project.migrate(env)
    running = start_service(project.path, project.python, env, log=tmp_path / "service.log")
    try:
        running.wait_until_live()
        yield running
    finally:
        running.stop()


def off_loopback(urls: list[str]) -> list[str]:
    return [url for url in urls if urlsplit(url).hostname != "127.0.0.1"]


def test_swagger_ui_shows_the_routes_with_no_network(service: Service, tmp_path: Path) -> None:
    page = render(f"{service.base_url}/docs", tmp_path)
    routes = set(re.findall(r'data-path="([^"]+)"', page.dom))
    assert {"/items", "/items/{item_id}", "/health/ready"} <= routes, page.dom[-3000:]
    requests = page.page_requests(service.base_url)
    assert f"{service.base_url}/static-offline-docs/swagger-ui-bundle.js" in requests
    assert f"{service.base_url}/openapi.json" in requests
    assert off_loopback(requests) == []


def test_redoc_renders_the_operations_with_no_network(service: Service, tmp_path: Path) -> None:
    page = render(f"{service.base_url}/redoc", tmp_path)
    # ReDoc's rendered document: its menu and each operation's path.
    assert "redoc-wrap" in page.dom, page.dom[-3000:]
    assert "/items/{item_id}" in page.dom
    assert "Something went wrong" not in page.dom
    requests = page.page_requests(service.base_url)
    assert f"{service.base_url}/static-offline-docs/redoc.standalone.js" in requests
    assert f"{service.base_url}/openapi.json" in requests
    assert off_loopback(requests) == []
