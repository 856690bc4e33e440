"""Provision the jobs' Healthchecks checks from the registry (``jobs sync-monitors``).

Through the Management API v3 (https://healthchecks.io/docs/api/), authenticated by
the project's read-write key in ``X-Api-Key``: ``GET /channels/`` (the project's
integrations, which ``HEALTHCHECKS_CHANNELS`` names: ``"*"`` all of them, as a ping
with ``?create=1`` assigns), ``GET /checks/?tag=<service>`` (the service's checks), then per job
either nothing (``unchanged``: every field the API returns equals the spec) or
``POST /checks/`` with ``unique: ["slug"]``, which answers ``201`` when it created
the check and ``200`` when it updated the one with that slug (``GET
/checks/?slug=<slug>`` first finds such a check the service has not tagged yet, one
a ping created). ``--prune`` deletes (``DELETE /checks/<uuid>``) the checks tagged
with the service that match no job.

Healthchecks assigns no integration to a check created through the API unless the
request names them (``channels``), and a check without one alerts nobody: every
create or update sends ``channels``, and a project with no integration at all (or
``HEALTHCHECKS_CHANNELS`` empty) is one warning line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from ..settings import Settings
from .monitor_spec import Change, CheckSpec, MonitoredJob, Skipped, check_spec
from .targets import SERVICE_ID, SentryMonitor, job_slug, resolve_targets


class SyncError(Exception):
    """The API refused or could not be reached; ``str()`` is one line, with no secret."""


class HealthchecksApi:
    """The few Management API v3 calls the sync needs, each raising ``SyncError``.

    Args:
        base_url: ``HEALTHCHECKS_API_URL``, e.g. ``https://healthchecks.io/api/v3``.
        api_key: the project's read-write API key.
        timeout: seconds per request.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float) -> None:
        self._base = httpx.URL(base_url.rstrip("/") + "/")
        self._host = self._base.host
        self._client = httpx.AsyncClient(
            base_url=self._base, headers={"X-Api-Key": api_key}, timeout=timeout
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(
        self, method: str, path: str, *, json: Any = None, params: Any = None
    ) -> httpx.Response:
        try:
            response = await self._client.request(method, path, json=json, params=params)
        except httpx.HTTPError as error:
            raise SyncError(
                f"cannot reach HEALTHCHECKS_API_URL ({self._host}): {type(error).__name__}"
            ) from None
        if response.status_code == 401:
            raise SyncError(
                f"HEALTHCHECKS_API_KEY was refused by {self._host} (401): "
                "give the project's read-write API key"
            )
        if response.status_code >= 400:
            raise SyncError(
                f"{method} {path} answered {response.status_code}: {_error_of(response)}"
            )
        return response

    async def integrations(self) -> list[dict[str, str]]:
        """Every integration of the project (``GET /channels/``): ``id``, ``name``, ``kind``."""
        response = await self._call("GET", "channels/")
        return [
            {key: str(channel.get(key) or "") for key in ("id", "name", "kind")}
            for channel in response.json()["channels"]
        ]

    async def checks(self, **filters: str) -> list[dict[str, Any]]:
        """The checks ``GET /checks/`` returns for ``filters`` (``tag=``, ``slug=``)."""
        response = await self._call("GET", "checks/", params=filters)
        checks: list[dict[str, Any]] = response.json()["checks"]
        return checks

    async def upsert(self, spec: CheckSpec, channels: str) -> bool:
        """Create or update the check of ``spec`` with the integrations ``channels`` names
        (``HEALTHCHECKS_CHANNELS``); ``True`` when it was created (201)."""
        response = await self._call("POST", "checks/", json=spec.payload(channels))
        return response.status_code == 201

    async def delete(self, check: dict[str, Any]) -> None:
        await self._call("DELETE", f"checks/{check['uuid']}")


def assigned_codes(setting: str, integrations: list[dict[str, str]]) -> list[str]:
    """The ids of the integrations ``setting`` (``HEALTHCHECKS_CHANNELS``) names.

    As Healthchecks reads a check's ``channels``: ``"*"`` every integration, ``""``
    none, else each comma-separated item an integration's id or its name.

    Raises:
        SyncError: an item names no integration, or several (a name used twice).
    """
    if setting == "*":
        return [integration["id"] for integration in integrations]
    codes: list[str] = []
    for item in filter(None, setting.split(",")):
        found = [each["id"] for each in integrations if item in (each["id"], each["name"])]
        if len(found) != 1:
            known = ", ".join(each["name"] or each["id"] for each in integrations) or "none"
            what = "no integration" if not found else "several integrations"
            raise SyncError(
                f"HEALTHCHECKS_CHANNELS: {item!r} names {what} of the project (it has: {known})"
            )
        codes.append(found[0])
    return codes


def _error_of(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except ValueError:
        error = None
    text = str(error) if error else response.reason_phrase
    return text.splitlines()[0][:200] if text else "no reason given"


# Longest text value (a description) a report line quotes.
MAX_SHOWN_CHARS = 60


def describe(spec: CheckSpec) -> str:
    """What the check of ``spec`` gets: ``schedule "17 3 * * *", tz "UTC", grace 3600 s,
    tags "my-service production"`` (or ``timeout 600 s`` for an interval)."""
    keys = ("schedule", "tz", "timeout", "grace", "tags")
    return ", ".join(f"{key} {_shown(key, spec.fields[key])}" for key in keys if key in spec.fields)


def describe_changes(changes: list[Change]) -> str:
    """Each change as ``field old -> new``: ``grace 3600 s -> 7200 s, schedule "30 2 * * *"
    -> "0 4 * * *"``; ``none`` for a value the check lacks or is to lose, the number of
    integrations for ``channels``."""
    return ", ".join(
        f"{change.field} {_shown(change.field, change.old)} -> {_shown(change.field, change.new)}"
        for change in changes
    )


def _shown(field: str, value: Any) -> str:
    if value is None:
        return "none"
    if field == "channels":
        return f"{len(value)} integrations"
    if field in ("timeout", "grace") and isinstance(value, int):
        return f"{value} s"
    text = str(value)
    if len(text) > MAX_SHOWN_CHARS:
        text = text[:MAX_SHOWN_CHARS] + "..."
    return json.dumps(text, ensure_ascii=False)


async def sync_monitors(
    jobs: Iterable[MonitoredJob],
    settings: Settings,
    *,
    report: Callable[[str], None],
    warn: Callable[[str], None] | None = None,
    dry_run: bool = False,
    prune: bool = False,
) -> dict[str, str]:
    """Bring the project's checks in line with ``jobs``; one ``report`` line per check.

    ``warn`` (``report`` when omitted) gets one line when the checks alert nobody:
    the project has no integration, or ``HEALTHCHECKS_CHANNELS`` is empty.

    Lines: ``created <slug>: <what it gets>`` (``describe``), ``updated <slug>: <field
    old -> new, ...>`` (``describe_changes``), ``unchanged <slug>``, ``skipped <slug>:
    <reason>``, ``deleted <slug>``, ``nothing to do for <slug>: <why>`` (a job whose
    monitor is Sentry's: its check-ins create and update it); with ``dry_run`` nothing
    is changed and they say
    ``would create``, ``would update``, ``would delete``. Returns each slug's action,
    as its line says it.

    Raises:
        SyncError: no ``HEALTHCHECKS_API_KEY`` (while a job is not Sentry's),
            ``HEALTHCHECKS_CHANNELS`` names an integration the project lacks, or the API
            refused a request or could not be reached; one line naming the problem.
        ConfigurationError: a job's heartbeat settings are invalid (``resolve_targets``).
    """
    jobs = list(jobs)
    targets = resolve_targets((job.id for job in jobs), settings)
    actions: dict[str, str] = {}
    for job in jobs:
        target = targets.get(job.id)
        if isinstance(target, SentryMonitor):
            actions[job_slug(job.id)] = "nothing to do"
            report(
                f"nothing to do for {job_slug(job.id)}: its monitor is Sentry Crons "
                f"({target.source}=sentry), created and updated by the job's own check-ins"
            )
    jobs = [job for job in jobs if not isinstance(targets.get(job.id), SentryMonitor)]
    if not jobs and not prune:
        return actions
    if settings.healthchecks_api_key is None:
        raise SyncError("HEALTHCHECKS_API_KEY is not set: the project's read-write API key")
    api = HealthchecksApi(
        str(settings.healthchecks_api_url),
        settings.healthchecks_api_key.get_secret_value(),
        timeout=settings.heartbeat_timeout,
    )

    def say(slug: str, action: str, detail: str = "") -> None:
        actions[slug] = action
        report(f"{action} {slug}{detail}")

    def change(verb: str) -> str:
        return f"would {verb}" if dry_run else f"{verb}d"

    try:
        integrations = await api.integrations()
        channels = assigned_codes(settings.healthchecks_channels, integrations)
        if not integrations:
            (warn or report)(
                "warning: the Healthchecks project has no integration, so its checks alert "
                "nobody: add one (Integrations in Healthchecks), then sync again"
            )
        elif not channels:
            (warn or report)("warning: HEALTHCHECKS_CHANNELS is empty: the checks alert nobody")
        tagged = {check["slug"]: check for check in await api.checks(tag=SERVICE_ID)}
        for job in jobs:
            spec = check_spec(job, service=SERVICE_ID, environment=settings.environment.value)
            if isinstance(spec, Skipped):
                say(spec.slug, "skipped", f": {spec.reason}")
                continue
            current = tagged.get(spec.slug)
            if current is None:
                # A check with this slug may exist without the service's tag (created
                # by a ping with ?create=1): the upsert then updates it.
                untagged = await api.checks(slug=spec.slug)
                current = untagged[0] if untagged else None
            changes = [] if current is None else spec.differences(current, channels)
            if current is not None and not changes:
                say(spec.slug, "unchanged")
                continue
            created = current is None
            if not dry_run:
                created = await api.upsert(spec, settings.healthchecks_channels)
            if created:
                say(spec.slug, change("create"), f": {describe(spec)}")
            else:
                say(
                    spec.slug, change("update"), f": {describe_changes(changes)}" if changes else ""
                )
        if prune:
            for slug, check in tagged.items():
                if slug not in actions:
                    if not dry_run:
                        await api.delete(check)
                    say(slug, change("delete"))
    finally:
        await api.aclose()
    return actions
