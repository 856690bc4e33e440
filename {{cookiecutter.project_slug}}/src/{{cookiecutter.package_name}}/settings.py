"""Service configuration, read from the environment (and ``.env``) by pydantic-settings.

Every setting is an upper-case environment variable of the same name; secrets may
also be files in ``SECRETS_DIR`` (one file per setting, as Kubernetes mounts a
Secret). Durations are in seconds. Settings whose names depend on the jobs
(``<JOB_ID>_HEARTBEAT_URL``) are ``JobSettings``, read from the same sources.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
from pathlib import Path
from typing import Self

from pydantic import (
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .postgres import normalize_database_url, parse_postgres_url
from .sentry_settings import SentrySettings

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./{{ cookiecutter.package_name }}.db"
DEFAULT_SECRETS_DIR = "/run/secrets/{{ cookiecutter.project_slug }}"
ENV_FILE = ".env"
# Python's logging levels that LOG_LEVEL may name (in any case).
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


class LogFormat(enum.StrEnum):
    """How log lines are written (see ``logs.py``): ``auto`` is JSON outside development."""

    AUTO = "auto"
    JSON = "json"
    TEXT = "text"


class HeartbeatProtocol(enum.StrEnum):
    """How a job's heartbeat monitor is pinged (see ``heartbeats/sender.py``)."""

    HEALTHCHECKS = "healthchecks"
    UPTIME_KUMA = "uptime-kuma"
    PLAIN = "plain"
    # Sentry Crons check-ins through the SDK: needs SENTRY_DSN, no URL (heartbeats/crons.py).
    SENTRY = "sentry"


class FailureBody(enum.StrEnum):
    """What a failure ping may tell the monitor (``HEARTBEAT_FAILURE_BODY``)."""

    TRACEBACK = "traceback"
    MESSAGE = "message"
    TYPE = "type"


# Healthchecks' project ping keys: the slug path segment of its ping URLs.
PING_KEY = re.compile(r"^[-A-Za-z0-9_]+$")


class ConfigurationError(Exception):
    """The environment holds an invalid setting; ``str()`` is one line per problem."""


class Settings(SentrySettings):
    """Typed settings; see ``.env.example`` for every variable with its default."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        # inf and nan pass ge/le checks: no duration or size is ever either.
        allow_inf_nan=False,
    )

    environment: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.AUTO
    # Proxies whose X-Forwarded-For/-Proto are believed: addresses or CIDR networks,
    # comma-separated ("*" trusts any client to name itself).
    forwarded_allow_ips: str = "127.0.0.1"
    graceful_shutdown_timeout: float = Field(default=15.0, ge=0, le=600)
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1, le=1024**3)
    api_docs_enabled: bool | None = None
    metrics_port: int = Field(default=9000, ge=0, le=65535)

    database_url: str | None = None
    database_pool_size: int = Field(default=5, ge=1, le=1000)
    database_max_overflow: int = Field(default=5, ge=0, le=1000)
{%- if cookiecutter.orm == "sqlalchemy" %}
    database_pool_timeout: float = Field(default=10.0, gt=0, le=600)
{%- endif %}
    database_connect_timeout: float = Field(default=5.0, gt=0, le=600)
    database_statement_timeout: float = Field(default=10.0, ge=0.1, le=3600)
    migration_lock_timeout: float = Field(default=300.0, gt=0, le=3600)
    migration_ddl_lock_timeout: float = Field(default=10.0, ge=0.1, le=3600)

    status_page_url: HttpUrl = HttpUrl("{{ cookiecutter.status_page_url }}")
    retry_after: int = Field(default=5, ge=0, le=86400)

    # Below 0.1 s a check of a healthy database across a network fails for ever.
    health_check_timeout: float = Field(default=1.0, ge=0.1, le=30)
    health_cache_ttl: float = Field(default=1.0, ge=0, le=60)
    health_show_details: bool | None = None

    scheduler_enabled: bool = True
    scheduler_misfire_grace_time: int = Field(default=60, ge=1, le=7 * 86400)
    scheduler_shutdown_timeout: float = Field(default=20.0, ge=0, le=600)
    scheduler_unwind_timeout: float = Field(default=5.0, ge=0, le=600)
    # A follower takes over at most LEASE_TTL + RETRY_INTERVAL after the leader last
    # renewed its lease: 20 s by default, within the 30 s that docs/ promises (leader.py).
    scheduler_leader_retry_interval: float = Field(default=5.0, gt=0, le=10)
    scheduler_lease_ttl: float = Field(default=15.0, ge=1, le=300)
    scheduler_run_retention_days: int = Field(default=14, ge=1, le=3650)

    heartbeat_protocol: HeartbeatProtocol = HeartbeatProtocol.HEALTHCHECKS
    heartbeat_timeout: float = Field(default=10.0, gt=0, le=600)
    heartbeat_retries: int = Field(default=2, ge=0, le=10)
    heartbeat_flush_timeout: float = Field(default=2.0, ge=0, le=600)
    # A run waits this long for its start ping before its body runs: the monitor then
    # measures the whole run, and a slow monitor delays a run by this much at most.
    heartbeat_start_timeout: float = Field(default=0.5, ge=0, le=5)
    heartbeat_failure_body: FailureBody = FailureBody.TRACEBACK
    heartbeat_sync_monitors: bool = False

    healthchecks_ping_url: HttpUrl = HttpUrl("https://hc-ping.com")
    healthchecks_ping_key: SecretStr | None = None
    healthchecks_auto_create: bool = False
    healthchecks_api_url: HttpUrl = HttpUrl("https://healthchecks.io/api/v3")
    healthchecks_api_key: SecretStr | None = None
    # What `jobs sync-monitors` assigns to each check: "*" all, "" none, or names/ids.
    healthchecks_channels: str = "*"

    items_retention_days: int = Field(default=30, ge=1, le=36500)

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
        return level

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        url = normalize_database_url(value.strip())
        if url.startswith("postgresql+asyncpg://"):
            # The one reading of the URL the pool, the leader and the migrations share.
            return parse_postgres_url(url).url
        if not url.startswith("sqlite+aiosqlite://"):
            raise ValueError("must be a postgres://, postgresql:// or sqlite:// URL")
        return url

    @field_validator("healthchecks_ping_key", "healthchecks_api_key")
    @classmethod
    def _blank_secret_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(value.get_secret_value().strip())

    @field_validator("healthchecks_channels")
    @classmethod
    def _check_channels(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",")]
        if value.strip() in ("*", "") or all(names):
            return value.strip() if value.strip() in ("*", "") else ",".join(names)
        raise ValueError("an empty name between commas: give '*', '' or names or ids")

    @field_validator("healthchecks_ping_key")
    @classmethod
    def _check_ping_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not PING_KEY.match(value.get_secret_value()):
            # The key is not echoed: it is a secret.
            raise ValueError("must be letters, digits, '-' and '_' only (the project's ping key)")
        return value

    @model_validator(mode="after")
    def _check_environment(self) -> Self:
        if self.metrics_port == self.port:
            raise ValueError(
                f"METRICS_PORT must differ from PORT ({self.port}); 0 serves /metrics on PORT"
            )
        if self.environment is Environment.DEVELOPMENT:
            return self
        for name, url in (
            ("HEALTHCHECKS_PING_URL", self.healthchecks_ping_url),
            ("HEALTHCHECKS_API_URL", self.healthchecks_api_url),
        ):
            reason = refused_host(url.host or "")
            if reason is not None:
                raise ValueError(
                    f"{name}: its host is {reason}, which no monitor can be when "
                    f"ENVIRONMENT={self.environment.value}"
                )
        if self.database_url is None:
            raise ValueError(f"DATABASE_URL is required when ENVIRONMENT={self.environment.value}")
        if self.database_url.startswith("sqlite"):
            raise ValueError(
                f"DATABASE_URL must be PostgreSQL when ENVIRONMENT={self.environment.value}, "
                "not SQLite"
            )
        if parse_postgres_url(self.database_url).host is None:
            raise ValueError(
                f"DATABASE_URL names no host, which ENVIRONMENT={self.environment.value} "
                "refuses (a local Unix socket is for development)"
            )
        return self

    @property
    def database_dsn(self) -> str:
        """The database URL in use: ``DATABASE_URL``, or the SQLite file in development."""
        return self.database_url or DEFAULT_SQLITE_URL

    @property
    def serve_api_docs(self) -> bool:
        """Whether ``/docs``, ``/redoc`` and ``/openapi.json`` are served: off in production unless set."""
        if self.api_docs_enabled is not None:
            return self.api_docs_enabled
        return self.environment is not Environment.PRODUCTION

    @property
    def show_health_details(self) -> bool:
        """Whether health responses include error text: on in development unless set."""
        if self.health_show_details is not None:
            return self.health_show_details
        return self.environment is Environment.DEVELOPMENT

{%- if cookiecutter.use_redis %}

    # Redis (use_redis): the items cache and its readiness check (cache.py). One block,
    # at the end: its checks run after those above, so a missing DATABASE_URL is named first.
    redis_url: str | None = None
    redis_required: bool = False
    redis_max_connections: int = Field(default=10, ge=1, le=10000)
    redis_timeout: float = Field(default=2.0, gt=0, le=600)
    items_cache_ttl: float = Field(default=60.0, gt=0, le=86400)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.strip().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value.strip()

    @model_validator(mode="after")
    def _require_redis_url(self) -> Self:
        if self.redis_url is None and self.environment is not Environment.DEVELOPMENT:
            raise ValueError(f"REDIS_URL is required when ENVIRONMENT={self.environment.value}")
        return self

    @property
    def redis_dsn(self) -> str:
        """The Redis URL in use: ``REDIS_URL``, or the local Redis in development."""
        return self.redis_url or "redis://127.0.0.1:6379/0"
{%- endif %}


def refused_host(host: str) -> str | None:
    """Why a monitor at ``host`` cannot be reached from a pod, or ``None`` when it can.

    Refused: ``localhost`` and literal loopback (127.0.0.0/8, ::1), link-local
    (169.254.0.0/16, the cloud metadata address 169.254.169.254 included, fe80::/10)
    and unspecified (0.0.0.0, ::) addresses, IPv4-mapped IPv6 forms included: from a
    pod they reach the pod itself or the cloud's metadata service. A name is left to
    the cluster's DNS; private ranges stay allowed (self-hosted monitors live there).
    """
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return "a loopback host"
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "the unspecified address"
    return None


def load_settings() -> Settings:
    """Read settings from the environment, ``.env`` and ``SECRETS_DIR``.

    ``SECRETS_DIR`` (default ``/run/secrets/{{ cookiecutter.project_slug }}``) is read
    only when it exists, so development needs no such folder.

    Raises:
        ConfigurationError: a setting is missing or invalid; the message names it.
    """
    secrets_dir = Path(os.environ.get("SECRETS_DIR", DEFAULT_SECRETS_DIR))
    try:
        if secrets_dir.is_dir():
            return Settings(_secrets_dir=secrets_dir)
        return Settings()
    except ValidationError as error:
        raise ConfigurationError(_describe(error)) from None


class JobSettings(BaseSettings):
    """One job's own settings, named ``<JOB_ID>_<SETTING>`` (``load_job_settings``).

    Read by pydantic-settings from the sources of ``Settings``, in its order: the
    environment, then ``.env``, then a file named after the setting (any case) in
    ``SECRETS_DIR``. Blank values count as unset.
    """

    model_config = SettingsConfigDict(
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    #: The job's heartbeat monitor URL, a secret (``<JOB_ID>_HEARTBEAT_URL``).
    heartbeat_url: SecretStr | None = None
    #: How that monitor is pinged (``<JOB_ID>_HEARTBEAT_PROTOCOL``); ``None``: ``HEARTBEAT_PROTOCOL``.
    heartbeat_protocol: HeartbeatProtocol | None = None

    @field_validator("heartbeat_url", "heartbeat_protocol", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        # A secret file holding only a newline is as unset as an empty variable.
        value = value.strip() or None
        if info.field_name == "heartbeat_protocol" and value not in (None, *HeartbeatProtocol):
            choices = ", ".join(protocol.value for protocol in HeartbeatProtocol)
            raise ValueError(f"must be one of {choices}")
        return value


def load_job_settings(job_id: str) -> JobSettings:
    """The settings of job ``job_id``: ``<JOB_ID>_HEARTBEAT_URL`` and the like.

    Args:
        job_id: the job's id in the registry (``cleanup_items``); its upper-case form
            and ``_`` prefix every setting's name.

    Raises:
        ConfigurationError: a setting is invalid; the message names it and never
            echoes its value (a URL may be a secret).
    """
    prefix = f"{job_id.upper()}_"
    secrets_dir = Path(os.environ.get("SECRETS_DIR", DEFAULT_SECRETS_DIR))
    try:
        return JobSettings(
            _env_prefix=prefix,
            _secrets_dir=secrets_dir if secrets_dir.is_dir() else None,
        )
    except ValidationError as error:
        raise ConfigurationError(_describe(error, prefix=prefix)) from None


def _describe(error: ValidationError, *, prefix: str = "") -> str:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in item["loc"]).upper()
        field = prefix + field if field else field
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{field}: {message}" if field else message)
    return "; ".join(problems)
