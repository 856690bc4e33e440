"""Settings: URL normalisation and start-up refusals that name the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.postgres import normalize_database_url
from {{ cookiecutter.package_name }}.settings import (
    ConfigurationError,
    Settings,
    load_settings,
)

from .conftest import make_settings


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgresql://u:p@db/app", "postgresql+asyncpg://u:p@db/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql+psycopg://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
    ],
)
def test_database_urls_are_normalised(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected
    assert Settings(_env_file=None, database_url=given).database_url == expected


def test_development_defaults_to_sqlite() -> None:
    settings = Settings(_env_file=None)
    assert settings.database_dsn.startswith("sqlite+aiosqlite:///")
    assert settings.show_health_details is True


@pytest.mark.parametrize("environment", ["staging", "production"])
@pytest.mark.parametrize("database_url", [None, "sqlite:///./x.db"])
def test_staging_and_production_refuse_missing_or_sqlite_database(
    monkeypatch: pytest.MonkeyPatch, environment: str, database_url: str | None
) -> None:
    monkeypatch.setenv("ENVIRONMENT", environment)
    monkeypatch.setenv("SECRETS_DIR", "/nonexistent")
    if database_url is None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", database_url)
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        load_settings()


def test_production_hides_details_by_default() -> None:
    settings = make_settings(
        "postgres://u@db/app", environment="production", health_show_details=None
    )
    assert settings.show_health_details is False


def test_unknown_scheme_is_refused_without_echoing_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root:topsecret@db/app")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "DATABASE_URL" in str(caught.value)
    assert "topsecret" not in str(caught.value)


def test_secrets_are_read_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "database_url").write_text("postgres://from-file@db/app")
    monkeypatch.setenv("SECRETS_DIR", str(secrets))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert load_settings().database_url == "postgresql+asyncpg://from-file@db/app"


def test_bad_configuration_stops_start_up_with_one_line() -> None:
    env = {**os.environ, "ENVIRONMENT": "production", "SECRETS_DIR": "/nonexistent"}
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: DATABASE_URL is required when ENVIRONMENT=production"
    ]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SCHEDULER_LEADER_RETRY_INTERVAL", "60"),
        ("SCHEDULER_SHUTDOWN_TIMEOUT", "-1"),
        ("HEARTBEAT_PROTOCOL", "pagerduty"),
        ("HEARTBEAT_TIMEOUT", "0"),
        ("ITEMS_RETENTION_DAYS", "0"),
        ("LOG_LEVEL", "BOGUS"),
        ("HEALTH_CHECK_TIMEOUT", "inf"),
        ("HEALTH_CHECK_TIMEOUT", "nan"),
        ("HEALTH_CHECK_TIMEOUT", "1e-9"),
        ("DATABASE_STATEMENT_TIMEOUT", "0"),
        ("DATABASE_CONNECT_TIMEOUT", "inf"),
        ("RETRY_AFTER", "-1"),
        ("MAX_REQUEST_BODY_BYTES", "0"),
        ("METRICS_PORT", "8000"),
        ("METRICS_PORT", "70000"),
        ("MIGRATION_LOCK_TIMEOUT", "inf"),
        ("GRACEFUL_SHUTDOWN_TIMEOUT", "-1"),
        ("HEALTHCHECKS_CHANNELS", "ops-slack,,email"),
    ],
)
def test_settings_are_validated_with_bounds(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("SECRETS_DIR", "/nonexistent")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=f"^{variable}: |^{variable} must") as caught:
        load_settings()
    assert "\n" not in str(caught.value)


def test_log_level_accepts_any_case() -> None:
    assert make_settings("postgres://u@db/app", log_level="warning").log_level == "WARNING"


def test_api_docs_are_off_in_production_unless_enabled() -> None:
    url = "postgres://u@db/app"
    assert make_settings(url, environment="production").serve_api_docs is False
    enabled = make_settings(url, environment="production", api_docs_enabled=True)
    assert enabled.serve_api_docs is True
    assert make_settings("postgres://u@db/app").serve_api_docs is True
