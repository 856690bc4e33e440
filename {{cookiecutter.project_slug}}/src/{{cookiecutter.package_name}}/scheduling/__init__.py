"""Scheduled jobs with heartbeat pings, job health in ``/health`` and one run per fire.

Declare jobs in ``jobs.py`` with ``@scheduled``; ``default_jobs()`` returns them.
"""

from .registry import JOBS, Job, JobContext, JobRegistry, scheduled


def default_jobs() -> JobRegistry:
    """The service's jobs: importing ``jobs`` declares them on ``JOBS``."""
    from . import jobs  # noqa: F401

    return JOBS


__all__ = ["JOBS", "Job", "JobContext", "JobRegistry", "default_jobs", "scheduled"]
