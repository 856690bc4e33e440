"""What this process knows about each job: the inputs of the job health checks.

The runner keeps it in memory for the runs of this process. With SQLite (one
process) it is what ``/health`` judges; with PostgreSQL ``status.py`` builds the
same ``JobState`` for every job from the runs recorded in the database, so that
every replica judges alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class JobState:
    """One job's runs. Times are aware UTC datetimes; ``last_duration`` is in seconds.

    ``due_since`` is the earliest fire (run, skipped because the previous run was
    still going, or missed) not followed by a success yet; ``next_run_time`` the
    next fire while this process schedules the job, else ``None``.
    """

    last_start: datetime | None = None
    last_success: datetime | None = None
    last_failure: datetime | None = None
    last_error_type: str | None = None
    consecutive_failures: int = 0
    next_run_time: datetime | None = None
    due_since: datetime | None = None
    last_duration: float | None = None
    running: int = 0

    def fired(self, scheduled_at: datetime, next_run_time: datetime | None) -> None:
        """The scheduler reached the fire ``scheduled_at``; the next is ``next_run_time``."""
        if self.due_since is None:
            self.due_since = scheduled_at
        self.next_run_time = next_run_time

    def started(self, at: datetime) -> None:
        self.last_start = at
        self.running += 1

    def succeeded(self, at: datetime, duration: float) -> None:
        self.running -= 1
        self.last_success = at
        self.last_duration = duration
        self.consecutive_failures = 0
        self.due_since = None

    def failed(self, at: datetime, error_type: str, duration: float) -> None:
        self.running -= 1
        self.last_failure = at
        self.last_error_type = error_type
        self.last_duration = duration
        self.consecutive_failures += 1

    def cancelled(self) -> None:
        """The run was cancelled at shutdown: neither a success nor a failure."""
        self.running -= 1


class JobStates:
    """A ``JobState`` per job id."""

    def __init__(self, job_ids: Iterable[str]) -> None:
        self._states = {job_id: JobState() for job_id in job_ids}

    def __getitem__(self, job_id: str) -> JobState:
        return self._states[job_id]

    def unschedule(self) -> None:
        """This process stopped scheduling: no next run time is known here any more."""
        for state in self._states.values():
            state.next_run_time = None
