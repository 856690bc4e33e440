"""Sentry error tracking and Crons check-ins, on when ``SENTRY_DSN`` is set.

Imported only then (``main.create_app``, ``jobs run``): a service without a DSN never
loads ``sentry_sdk`` (``tests/test_serve_path.py``). What becomes an event:

- an exception a route does not handle (the SDK's Starlette and FastAPI
  integrations): a 500. Not the 503s of ``errors.py``: an unavailable dependency is
  an expected outage, and ``HTTPException(503)`` is left out of the failed statuses;
- a failed job run: the runner's ``logger.exception`` line, through the SDK's
  logging integration, tagged ``job_id`` and ``run_id`` (the record's ``extra``).
  A cancelled or superseded run logs a warning: a breadcrumb, never an event;
- any other ERROR record that carries an exception. An ERROR line without one is
  the service's own word for an expected condition (the database down at a fire,
  a leader stepping down) and is dropped.

SQLAlchemy or asyncpg, httpx and Redis calls become breadcrumbs (and spans, with
``SENTRY_TRACES_SAMPLE_RATE``). No trace header is added to outgoing requests: the
monitors and APIs the service calls are other parties.

Secrets: the SDK's ``EventScrubber`` (its default denylist plus the service's secret
setting names, recursively) blanks them by key; ``before_send`` then replaces every
secret value the service knows (the DSN and its key, the database and Redis
passwords, the Healthchecks keys, each job's heartbeat URL) wherever it appears
in the serialised event, local variables' ``repr`` included, with ``[Filtered]``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlsplit

import sentry_sdk
from sentry_sdk.crons import capture_checkin
from sentry_sdk.integrations import Integration
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.httpx import HttpxIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

from . import __version__
from .heartbeats.crons import CheckIn
from .heartbeats.targets import SERVICE_ID, HeartbeatTarget, Target
from .settings import Settings

FILTERED = "[Filtered]"
# Setting names (lower case, as the scrubber compares keys) whose values are secrets,
# beyond the SDK's default denylist.
SECRET_KEYS = (
    "sentry_dsn",
    "dsn",
    "database_url",
    "redis_url",
    "healthchecks_ping_key",
    "healthchecks_api_key",
    "heartbeat_url",
)
# A 5xx reported as an error, but not 503: the service's answer to an outage.
FAILED_STATUSES = frozenset(range(500, 600)) - {503}
# Secret values shorter than this are not searched for: they would blank common words.
MIN_SECRET_LENGTH = 6
# Log record attributes (``extra``) that become the event's tags.
TAGGED_FIELDS = ("job_id", "run_id")


def integrations() -> list[Integration]:
    """The integrations that apply to this service's libraries."""
    chosen: list[Integration] = [
        StarletteIntegration(failed_request_status_codes=set(FAILED_STATUSES)),
        FastApiIntegration(failed_request_status_codes=set(FAILED_STATUSES)),
        HttpxIntegration(),
    ]
    # Tortoise talks to PostgreSQL through asyncpg; the SQLAlchemy bake through SQLAlchemy.
    if importlib.util.find_spec("tortoise") is not None:
        from sentry_sdk.integrations.asyncpg import AsyncPGIntegration

        chosen.append(AsyncPGIntegration())
    else:
        from sentry_sdk.integrations.sqlalchemy import SqlalchemyIntegration

        chosen.append(SqlalchemyIntegration())
    if importlib.util.find_spec("redis") is not None:
        from sentry_sdk.integrations.redis import RedisIntegration

        chosen.append(RedisIntegration())
    return chosen


def secret_values(settings: Settings, targets: Mapping[str, Target | None]) -> list[str]:
    """The secret strings an event must not hold, longest first.

    The DSN and its public key, the passwords of ``DATABASE_URL`` and ``REDIS_URL``,
    the Healthchecks keys, and each job's heartbeat URL with its path (the token).
    """
    found: set[str] = set()
    if settings.sentry_dsn is not None:
        dsn = settings.sentry_dsn.get_secret_value()
        found.update({dsn, urlsplit(dsn).username or ""})
    for url in (settings.database_url, getattr(settings, "redis_url", None)):
        if url:
            found.add(urlsplit(url).password or "")
    for key in (settings.healthchecks_ping_key, settings.healthchecks_api_key):
        if key is not None:
            found.add(key.get_secret_value())
    for target in targets.values():
        if isinstance(target, HeartbeatTarget):
            found.update({str(target.url), target.url.path, target.url.query.decode()})
    return sorted(
        (value for value in found if len(value) >= MIN_SECRET_LENGTH), key=len, reverse=True
    )


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, FILTERED)
        return value
    if isinstance(value, dict):
        return {key: _scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item, secrets) for item in value]
    return value


def before_send_hook(secrets: list[str]) -> Any:
    """``before_send``: drop ERROR lines without an exception, tag job runs, scrub."""

    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        record = hint.get("log_record")
        if record is not None:
            if "exc_info" not in hint:
                return None
            tags = event.setdefault("tags", {})
            for name in TAGGED_FIELDS:
                value = getattr(record, name, None)
                if value is not None:
                    tags[name] = str(value)
        return cast(dict[str, Any], _scrub(event, secrets))

    return before_send


def start_sentry(settings: Settings, *, targets: Mapping[str, Target | None]) -> None:
    """Start the SDK for ``settings.sentry_dsn``; a no-op without one.

    ``environment`` is ``ENVIRONMENT``, ``release`` ``<project slug>@<version>``,
    ``traces_sample_rate`` ``SENTRY_TRACES_SAMPLE_RATE`` (0: no transactions).
    ``targets`` are the jobs' heartbeat targets, whose URLs are scrubbed.
    """
    if settings.sentry_dsn is None:
        return
    secrets = secret_values(settings, targets)
    scrub = before_send_hook(secrets)
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.environment.value,
        release=f"{SERVICE_ID}@{__version__}",
        traces_sample_rate=settings.sentry_traces_sample_rate or None,
        event_scrubber=EventScrubber(denylist=[*DEFAULT_DENYLIST, *SECRET_KEYS], recursive=True),
        before_send=scrub,
        before_send_transaction=lambda event, hint: _scrub(event, secrets),
        trace_propagation_targets=[],
        integrations=integrations(),
        auto_enabling_integrations=False,
    )


def send_check_in(check_in: CheckIn) -> None:
    """Queue ``check_in`` on the SDK's transport (it never blocks); nothing without a client."""
    capture_checkin(
        monitor_slug=check_in.monitor_slug,
        check_in_id=check_in.check_in_id,
        status=check_in.status.value,
        duration=check_in.duration,
        monitor_config=cast(Any, check_in.monitor_config),
    )


def flush(timeout: float) -> None:
    """Send what the SDK has queued, waiting up to ``timeout`` seconds."""
    client = sentry_sdk.get_client()
    if client.is_active():
        client.flush(timeout=timeout)
