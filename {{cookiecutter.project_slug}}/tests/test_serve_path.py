"""Serving imports only what serving needs: no migration tool, no CLI (cold start, memory)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PACKAGE = "{{ cookiecutter.package_name }}"
# Modules a serving process must not load: migrations run as their own command, the
# jobs CLI and the Healthchecks Management API client are operators' tools, and
# OpenTelemetry is loaded only when tracing is configured.
NOT_SERVING = (
    "alembic",
    "aerich",
    f"{PACKAGE}.migrate",
    f"{PACKAGE}.scheduling.cli",
    f"{PACKAGE}.heartbeats.monitor_sync",
    # Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (tracing.py): no tracer
    # provider, exporter or instrumentation. (FastAPI imports OpenTelemetry's API for
    # its own telemetry, and redis-py the SDK's metrics when the SDK is installed.)
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter",
    "opentelemetry.instrumentation",
    f"{PACKAGE}.otel",
)
# Loaded with the first heartbeat target (heartbeats/targets.py, heartbeats/sender.py):
# a service whose jobs have none, as here, never needs an HTTP client.
FIRST_TARGET = ("httpx", "tenacity")
# Loaded only when SENTRY_DSN is set (sentry.py): off, the SDK costs nothing.
SENTRY = ("sentry_sdk", f"{PACKAGE}.sentry")
# Loaded with the first job whose monitor is Sentry Crons (heartbeats/sender.py).
SENTRY_CRONS = (f"{PACKAGE}.heartbeats.checkins", f"{PACKAGE}.heartbeats.crons")
SERVE_CODES = [
    f"import {PACKAGE}.main as main; main.create_app()",
    f"import {PACKAGE}.__main__",
]
# The app answering a request: asgi-correlation-id's middleware, built then, imports
# sentry_sdk whenever it is installed, unless told not to (logs.RequestIdMiddleware).
ANSWER_A_REQUEST = (
    f"import asyncio, httpx, {PACKAGE}.main as main; app = main.create_app(); "
    "client = httpx.AsyncClient(transport=httpx.ASGITransport(app)); "
    "assert asyncio.run(client.get('http://test/nowhere')).status_code == 404"
)


def loaded_modules(code: str, **env: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", "import os, sys; exec(os.environ['CODE']); print(*sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"ENVIRONMENT": "development", "SECRETS_DIR": "/nonexistent", "CODE": code, **env},
    )
    return set(result.stdout.split())


@pytest.mark.parametrize("code", SERVE_CODES, ids=["uvicorn main:app", "python -m serve"])
def test_serving_loads_no_migration_or_cli_module(code: str) -> None:
    loaded = loaded_modules(code)
    assert [name for name in NOT_SERVING if name in loaded] == []
    assert [name for name in FIRST_TARGET if name in loaded] == []
    assert [name for name in SENTRY + SENTRY_CRONS if name in loaded] == []


def test_answering_a_request_loads_no_sentry_sdk() -> None:
    assert [name for name in SENTRY if name in loaded_modules(ANSWER_A_REQUEST)] == []


def test_the_sentry_sdk_loads_when_sentry_dsn_is_set() -> None:
    # The checks above can fail: with a DSN the same app does load the SDK.
    dsn = "http://0123456789abcdef@127.0.0.1:9/1"
    assert set(SENTRY) <= loaded_modules(ANSWER_A_REQUEST, SENTRY_DSN=dsn)
