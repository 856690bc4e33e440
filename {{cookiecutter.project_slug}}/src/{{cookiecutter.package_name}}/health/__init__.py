"""Liveness, readiness and the full health report."""

from .checks import HealthCheck, HealthChecks
from .model import HEALTH_MEDIA_TYPE, CheckResult, Status
from .router import router

__all__ = ["HEALTH_MEDIA_TYPE", "CheckResult", "HealthCheck", "HealthChecks", "Status", "router"]
