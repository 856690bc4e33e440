"""Sentry's settings, a base of ``settings.Settings``: kept apart so neither file grows long.

Nothing here imports ``sentry_sdk``: the SDK is imported by ``sentry.py``, and only
when ``SENTRY_DSN`` is set (docs/sentry.md).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings


class SentrySettings(BaseSettings):
    """``SENTRY_DSN`` (a secret: on when set) and ``SENTRY_TRACES_SAMPLE_RATE``.

    Events carry ``ENVIRONMENT`` as their environment and ``<project slug>@<version>``
    as their release.
    """

    sentry_dsn: SecretStr | None = None
    # The share of requests and job runs traced as Sentry transactions, 0 to 1. Errors
    # are always sent; traces are off by default (OpenTelemetry is the service's tracer).
    sentry_traces_sample_rate: float = Field(default=0.0, ge=0, le=1)

    @field_validator("sentry_dsn")
    @classmethod
    def _check_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        dsn = value.get_secret_value().strip()
        # The DSN is not echoed: its key lets anyone send events to the project.
        try:
            parts = urlsplit(dsn)
            valid = (
                parts.scheme in ("http", "https")
                and bool(parts.username)
                and bool(parts.hostname)
                and parts.path.rstrip("/").rsplit("/", 1)[-1].isdigit()
            )
        except ValueError:
            valid = False
        if not valid:
            raise ValueError("must be a Sentry DSN, https://<public key>@<host>/<project id>")
        return SecretStr(dsn)
