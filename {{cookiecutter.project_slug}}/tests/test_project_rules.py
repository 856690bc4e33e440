"""Rules across the project's files, so they keep holding after its first edit.

- every setting of ``Settings`` is in ``.env.example``, in the settings table of
  ``docs/settings.md`` (one row each) and, unless it is a secret, in
  ``k8s/base/settings.env``;
- every probe's ``timeoutSeconds`` exceeds ``HEALTH_CHECK_TIMEOUT``, so a slow
  dependency fails the check (503) rather than the probe (a timeout);

The grace period against every shutdown bound is ``test_shutdown_budget.py``'s.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from {{ cookiecutter.package_name }}.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# Secrets are files mounted from the Secret, never ConfigMap keys.
SECRET_SETTINGS = frozenset(
    {"DATABASE_URL", "REDIS_URL", "HEALTHCHECKS_PING_KEY", "HEALTHCHECKS_API_KEY"}
)
# Not required in settings.env: the image's CMD passes --host and --port (HOST is there for the metrics port).
RUNNER_ONLY_SETTINGS = frozenset({"HOST", "PORT"})
# Read by load_settings() before Settings exists.
LOADER_SETTINGS = frozenset({"SECRETS_DIR"})


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def k8s_settings() -> dict[str, str | None]:
    return dotenv_values(ROOT / "k8s" / "base" / "settings.env")


def app_container() -> dict[str, Any]:
    deployment: dict[str, Any] = yaml.safe_load(
        (ROOT / "k8s" / "base" / "deployment.yaml").read_text()
    )
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return next(container for container in containers if container["name"] == "app")


def test_every_setting_is_in_env_example() -> None:
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert sorted(setting_names() - named) == [], "missing from .env.example"
    assert sorted(named - setting_names() - LOADER_SETTINGS - job_settings(named)) == [], (
        ".env.example names what is no setting"
    )


def job_settings(names: set[str]) -> set[str]:
    """Per-job settings (``<JOB_ID>_HEARTBEAT_URL``, ``..._PROTOCOL``) among ``names``."""
    return {name for name in names if name.endswith(("_HEARTBEAT_URL", "_HEARTBEAT_PROTOCOL"))}


def settings_table() -> list[list[str]]:
    """The setting names of each row of ``docs/settings.md``'s table (its first column)."""
    rows = (ROOT / "docs" / "settings.md").read_text().splitlines()
    return [
        re.findall(r"`([A-Z<][A-Z0-9_<>]+)`", row.split("|")[1])
        for row in rows
        if row.startswith("| `")
    ]


def test_every_setting_is_in_the_settings_table_once() -> None:
    names = [name for row in settings_table() for name in row]
    assert sorted(setting_names() - set(names)) == [], "missing from docs/settings.md's table"
    twice = sorted({name for name in names if names.count(name) > 1})
    assert twice == [], "settings with more than one row in docs/settings.md"


def test_k8s_settings_hold_every_non_secret_setting_and_no_secret() -> None:
    keys = set(k8s_settings())
    expected = (setting_names() - SECRET_SETTINGS - RUNNER_ONLY_SETTINGS) | LOADER_SETTINGS
    assert sorted(expected - keys) == [], "missing from k8s/base/settings.env"
    assert sorted(keys & SECRET_SETTINGS) == [], "a secret in k8s/base/settings.env"
    assert sorted(keys - setting_names() - LOADER_SETTINGS) == [], "no such setting"


def test_probe_timeouts_exceed_the_health_check_timeout() -> None:
    check_timeout = float(k8s_settings()["HEALTH_CHECK_TIMEOUT"] or "nan")
    app = app_container()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert app[probe]["timeoutSeconds"] > check_timeout, probe
