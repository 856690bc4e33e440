"""Where each job's heartbeat goes: the targets, resolved from the settings at start-up.

A job's monitor comes from, in order:

1. ``<JOB_ID>_HEARTBEAT_URL`` (a secret), pinged with ``<JOB_ID>_HEARTBEAT_PROTOCOL``,
   else ``HEARTBEAT_PROTOCOL``;
2. slug mode, when ``HEALTHCHECKS_PING_KEY`` is set: Healthchecks' slug URL
   ``<HEALTHCHECKS_PING_URL>/<ping key>/<slug>``, slug ``<project slug>-<job id with
   "-" for "_">``, plus ``?create=1`` with ``HEALTHCHECKS_AUTO_CREATE`` (the ping API's
   auto-provisioning, https://healthchecks.io/docs/http_api/);
3. none: the job runs unwatched, which staging and production report (a ``warn``
   check and a start-up warning).

Outside development a target whose host is a literal loopback, link-local or
unspecified address is refused (``settings.refused_host``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..settings import (
    ConfigurationError,
    Environment,
    HeartbeatProtocol,
    Settings,
    load_job_settings,
    refused_host,
)

if TYPE_CHECKING:
    # httpx is imported where a URL is parsed: a service whose jobs have no heartbeat
    # target never loads it (about 1.2 MiB; tests/test_serve_path.py).
    import httpx

SERVICE_ID = "{{ cookiecutter.project_slug }}"
# Healthchecks' Check.slug is at most 100 characters (Management API v3, ``slug``).
SLUG_MAX_LENGTH = 100


@dataclass(frozen=True)
class HeartbeatTarget:
    """Where and how a job pings. ``url`` is secret: it is left out of ``repr``.

    ``source`` names the setting the URL came from (``CLEANUP_ITEMS_HEARTBEAT_URL`` or
    ``HEALTHCHECKS_PING_KEY``), for messages that must not show the URL.
    """

    url: httpx.URL = field(repr=False)
    protocol: HeartbeatProtocol
    source: str = ""

    @property
    def redacted(self) -> str:
        return redact_url(self.url)


def redact_url(url: httpx.URL) -> str:
    """``url`` without path, query or credentials: ``https://hc-ping.com/***``."""
    port = f":{url.port}" if url.port is not None else ""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}{port}/***"


def job_slug(job_id: str) -> str:
    """The Healthchecks slug of ``job_id``: ``<project slug>-<job id, "_" as "-">``."""
    return f"{SERVICE_ID}-{job_id.replace('_', '-')}"


def check_monitor_url(name: str, url: httpx.URL, environment: Environment) -> None:
    """Refuse ``url`` (the setting ``name``) when it cannot reach a monitor.

    Raises:
        ConfigurationError: not an http(s) URL with a host, or, outside development,
            a host ``refused_host`` refuses. The URL is not echoed: it may hold a token.
    """
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"{name}: must be an http:// or https:// URL")
    if environment is Environment.DEVELOPMENT:
        return
    reason = refused_host(url.host)
    if reason is not None:
        raise ConfigurationError(
            f"{name}: its host is {reason}, which no monitor can be when "
            f"ENVIRONMENT={environment.value}"
        )


def _parse_url(name: str, raw: str) -> httpx.URL:
    import httpx

    try:
        return httpx.URL(raw)
    except httpx.InvalidURL:
        raise ConfigurationError(f"{name}: must be an http:// or https:// URL") from None


def slug_url(settings: Settings, job_id: str) -> httpx.URL | None:
    """The slug-mode ping URL of ``job_id``, or ``None`` without ``HEALTHCHECKS_PING_KEY``.

    Raises:
        ConfigurationError: the slug is longer than Healthchecks accepts.
    """
    if settings.healthchecks_ping_key is None:
        return None
    slug = job_slug(job_id)
    if len(slug) > SLUG_MAX_LENGTH:
        raise ConfigurationError(
            f"HEALTHCHECKS_PING_KEY: the slug of job {job_id} ({slug}) is longer than the "
            f"{SLUG_MAX_LENGTH} characters Healthchecks allows; set "
            f"{job_id.upper()}_HEARTBEAT_URL or shorten the job id"
        )
    import httpx

    base = httpx.URL(str(settings.healthchecks_ping_url))
    key = settings.healthchecks_ping_key.get_secret_value()
    url = base.copy_with(path=f"{base.path.rstrip('/')}/{key}/{slug}")
    if settings.healthchecks_auto_create:
        url = url.copy_merge_params({"create": "1"})
    return url


def unmonitored_jobs(
    targets: Mapping[str, HeartbeatTarget | None], environment: Environment
) -> frozenset[str]:
    """The jobs that run unwatched where that must be said: staging and production."""
    if environment is Environment.DEVELOPMENT:
        return frozenset()
    return frozenset(job_id for job_id, target in targets.items() if target is None)


def resolve_targets(
    job_ids: Iterable[str], settings: Settings
) -> dict[str, HeartbeatTarget | None]:
    """Each job's target (see the module docstring), ``None`` for a job without one.

    Per-job settings are ``settings.JobSettings`` (pydantic-settings: environment,
    ``.env``, ``SECRETS_DIR``).

    Raises:
        ConfigurationError: a URL that is not http(s), a refused host outside
            development, an unknown protocol, or a slug too long; the message names
            the setting and never echoes a URL (it is a secret).
    """
    targets: dict[str, HeartbeatTarget | None] = {}
    for job_id in job_ids:
        own = load_job_settings(job_id)
        if own.heartbeat_url is not None:
            name = f"{job_id.upper()}_HEARTBEAT_URL"
            url = _parse_url(name, own.heartbeat_url.get_secret_value())
            check_monitor_url(name, url, settings.environment)
            targets[job_id] = HeartbeatTarget(
                url=url, protocol=own.heartbeat_protocol or settings.heartbeat_protocol, source=name
            )
            continue
        slugged = slug_url(settings, job_id)
        if slugged is None:
            targets[job_id] = None
            continue
        # Slug URLs are Healthchecks' own: its protocol whatever HEARTBEAT_PROTOCOL says.
        targets[job_id] = HeartbeatTarget(
            url=slugged, protocol=HeartbeatProtocol.HEALTHCHECKS, source="HEALTHCHECKS_PING_KEY"
        )
    return targets
