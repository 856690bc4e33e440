"""Health check results and their wire format.

The format is the IETF draft "Health Check Response Format for HTTP APIs"
(draft-inadarei-api-health-check-06): media type ``application/health+json``,
a top-level ``status`` of ``pass``, ``warn`` or ``fail``, and ``checks`` keyed
``component:measurement``, each a list of objects with ``status``,
``observedValue``, ``observedUnit``, ``time`` and, optionally, ``output``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HEALTH_MEDIA_TYPE = "application/health+json"


class Status(enum.StrEnum):
    """A check's or a service's status, ordered from best to worst."""

    PASS = "pass"  # noqa: S105 (a status, not a password)
    WARN = "warn"
    FAIL = "fail"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One observation of one component.

    ``observed_value`` is in ``observed_unit`` (``ms`` for response times, ``s``
    for ages). ``output`` is error text for operators; it is rendered only when
    details are enabled, because it may name hosts or carry exception messages.
    """

    status: Status
    observed_value: float | int | str | bool | None = None
    observed_unit: str | None = None
    output: str | None = None
    time: datetime = field(default_factory=utcnow)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def render(self, component_type: str, *, show_details: bool) -> dict[str, Any]:
        """Return the draft's check object for this result."""
        body: dict[str, Any] = {"componentType": component_type, "status": self.status.value}
        if self.observed_value is not None:
            body["observedValue"] = self.observed_value
        if self.observed_unit is not None:
            body["observedUnit"] = self.observed_unit
        body["time"] = self.time.isoformat()
        body.update(self.extra)
        if show_details and self.output:
            body["output"] = self.output
        return body


def worst(statuses: Iterable[Status]) -> Status:
    """Return the most severe status, ``pass`` for none."""
    return max(statuses, key=lambda status: status.severity, default=Status.PASS)


def dump(body: Mapping[str, Any]) -> bytes:
    """Serialise a health body compactly as UTF-8 JSON."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
