"""A run's Sentry Crons check-ins, sent through the SDK: what they say is ``crons.py``'s.

``sentry_sdk`` is imported with the first check-in (``sentry.py``): only a service
whose ``SENTRY_DSN`` is set has a Sentry target (``targets.resolve_targets``). The
SDK queues each check-in for its own transport thread, so sending never waits on
the network; ``sentry.flush`` (at exit, or ``jobs run``) sends what is queued.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from . import crons
from .monitor_spec import Inexpressible, MonitoredJob
from .pings import FailureReport
from .targets import SentryMonitor

logger = logging.getLogger(__name__)
# Jobs whose trigger has no monitor_config, already said (once per process, not per run).
_WITHOUT_CONFIG: set[str] = set()


class RunCheckIns:
    """The check-ins of one run: ``in_progress`` from ``begin``, then ``ok`` or ``error``."""

    def __init__(
        self, target: SentryMonitor, run_id: uuid.UUID, config: dict[str, Any] | None
    ) -> None:
        self._target = target
        self._config = config
        self.run_id = run_id

    @classmethod
    def begin(
        cls, target: SentryMonitor, run_id: uuid.UUID, job: MonitoredJob | None
    ) -> RunCheckIns:
        config = None
        if job is not None:
            try:
                config = crons.monitor_config(job)
            except Inexpressible as error:
                if job.id not in _WITHOUT_CONFIG:
                    _WITHOUT_CONFIG.add(job.id)
                    logger.warning(
                        "job %s: check-ins without monitor_config, create its Sentry monitor "
                        "by hand: %s",
                        job.id,
                        error,
                    )
        check_ins = cls(target, run_id, config)
        check_ins._send(crons.started(target.slug, run_id, config))
        return check_ins

    def succeeded(self, duration: float) -> None:
        """Send the ``ok`` check-in; ``duration`` in seconds."""
        self._send(
            crons.finished(self._target.slug, self.run_id, self._config, ok=True, duration=duration)
        )

    def failed(self, report: FailureReport, duration: float | None = None) -> None:
        """Send the ``error`` check-in (its event is the failure's own, ``sentry.py``)."""
        self._send(
            crons.finished(
                self._target.slug, self.run_id, self._config, ok=False, duration=duration or 0.0
            )
        )

    @staticmethod
    def _send(check_in: crons.CheckIn) -> None:
        from ..sentry import send_check_in

        send_check_in(check_in)
