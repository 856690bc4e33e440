"""What a job run tells its monitor, per protocol: pure functions of the run, no I/O.

- ``healthchecks``: the Healthchecks ping API (https://healthchecks.io/docs/http_api/,
  routes in Healthchecks' ``hc/api/urls.py``), which many services copy. Every signal
  is a ``POST`` (a check may be set to accept only POST, and ``hc/api/views.py`` then
  ignores other methods): ``<url>/start?rid=<run id>`` before the run's body,
  ``<url>?rid=<run id>`` on success, ``<url>/fail?rid=<run id>`` on failure with a
  text body (``FailureReport``). The shared ``rid`` lets the monitor measure the run.
- ``uptime-kuma``: an Uptime Kuma push monitor, route ``/api/push/:pushToken`` in its
  ``server/routers/api-router.js``, which reads the query parameters ``status``
  (``up``, anything else is down), ``msg`` and ``ping`` (ms): ``GET
  <url>?status=up&msg=OK&ping=<duration in ms>`` on success, ``GET
  <url>?status=down&msg=<error>`` on failure. The push URL's own example query
  (``?status=up&msg=OK&ping=``, as Uptime Kuma shows it) is dropped.
- ``plain``: ping-on-success services: ``GET <url>`` on success only; the missed ping
  is the alert.

A URL's own query (a token, Healthchecks' ``create=1``) is kept: the run's
parameters are merged into it.
"""

from __future__ import annotations

import traceback
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..settings import FailureBody, HeartbeatProtocol
from .targets import HeartbeatTarget

if TYPE_CHECKING:
    # For annotations only: httpx loads with the first heartbeat target (targets.py).
    import httpx

# Bytes: the most a failure body carries, whatever the monitor accepts. Healthchecks
# keeps the first PING_BODY_LIMIT bytes (10,000 by default) and says how many in
# its ``Ping-Body-Limit`` response header; the sender shrinks bodies to that.
FAILURE_BODY_LIMIT = 10_000
# Characters of an error message in an Uptime Kuma ``msg`` (a query parameter).
PUSH_MESSAGE_LIMIT = 200


def _cut_tail(text: str, limit: int) -> str:
    """The last ``limit`` bytes of ``text`` in UTF-8, without a split character."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[len(data) - limit :].decode("utf-8", "ignore") if limit > 0 else ""


def _cut_head(text: str, limit: int) -> str:
    """The first ``limit`` bytes of ``text`` in UTF-8, without a split character."""
    return text.encode()[: max(limit, 0)].decode("utf-8", "ignore")


@dataclass(frozen=True, slots=True)
class FailureReport:
    """What a failed run may say (``HEARTBEAT_FAILURE_BODY``), already bounded.

    ``head`` is the exception type, then ``: <message>`` unless the setting is
    ``type``; ``tail`` the end of the traceback with ``traceback`` (else empty). Both
    are cut to ``FAILURE_BODY_LIMIT`` bytes when built, so a queued report holds no
    frame and no more text than is ever sent.
    """

    head: str
    tail: str = ""

    @classmethod
    def of(cls, error: BaseException, detail: FailureBody) -> FailureReport:
        name = type(error).__name__
        if detail is FailureBody.TYPE:
            return cls(name)
        try:
            message = str(error)
        except Exception:
            message = ""
        head = _cut_head(f"{name}: {message}" if message else name, FAILURE_BODY_LIMIT)
        if detail is FailureBody.MESSAGE:
            return cls(head)
        text = "".join(traceback.format_exception(error))
        return cls(head, _cut_tail(text, FAILURE_BODY_LIMIT))

    def body(self, limit: int = FAILURE_BODY_LIMIT) -> bytes:
        """UTF-8 text of at most ``limit`` bytes: the head line, then the traceback's tail.

        The head keeps at most half of ``limit`` when there is a tail: the end of a
        traceback (the raising line) is what an operator reads next, so the
        traceback's beginning is what is cut.
        """
        limit = min(limit, FAILURE_BODY_LIMIT)
        if not self.tail:
            return _cut_head(self.head, limit).encode()
        head = _cut_head(self.head, limit // 2) + "\n"
        tail = _cut_tail(self.tail, limit - len(head.encode()))
        return (head + tail).encode()

    def message(self) -> str:
        """The head, at most ``PUSH_MESSAGE_LIMIT`` characters (an Uptime Kuma ``msg``)."""
        return self.head[:PUSH_MESSAGE_LIMIT]


@dataclass(frozen=True, slots=True)
class Ping:
    """One HTTP request to the monitor; ``event`` is ``start``, ``success`` or ``failure``.

    ``url`` is complete (its query merged); ``report`` is the body of a failure, given
    its final size by the sender once it knows the monitor's limit.
    """

    event: str
    method: str
    url: httpx.URL = field(repr=False)
    report: FailureReport | None = None


def _suffixed(url: httpx.URL, suffix: str) -> httpx.URL:
    return url.copy_with(path=url.path.rstrip("/") + suffix) if suffix else url


def _healthchecks(url: httpx.URL, suffix: str, run_id: uuid.UUID) -> httpx.URL:
    return _suffixed(url, suffix).copy_merge_params({"rid": str(run_id)})


def _push(url: httpx.URL, params: dict[str, str]) -> httpx.URL:
    return url.copy_with(query=None).copy_merge_params(params)


def start_ping(target: HeartbeatTarget, run_id: uuid.UUID) -> Ping | None:
    """The ping announcing a run, or ``None`` when the protocol has none."""
    if target.protocol is HeartbeatProtocol.HEALTHCHECKS:
        return Ping("start", "POST", _healthchecks(target.url, "/start", run_id))
    return None


def success_ping(target: HeartbeatTarget, run_id: uuid.UUID, duration: float) -> Ping:
    """The ping of a successful run; ``duration`` in seconds."""
    if target.protocol is HeartbeatProtocol.HEALTHCHECKS:
        return Ping("success", "POST", _healthchecks(target.url, "", run_id))
    if target.protocol is HeartbeatProtocol.UPTIME_KUMA:
        params = {"status": "up", "msg": "OK", "ping": str(round(duration * 1000))}
        return Ping("success", "GET", _push(target.url, params))
    return Ping("success", "GET", target.url)


def failure_ping(target: HeartbeatTarget, run_id: uuid.UUID, report: FailureReport) -> Ping | None:
    """The ping of a failed run, or ``None`` for ``plain`` (silence is its alert)."""
    if target.protocol is HeartbeatProtocol.HEALTHCHECKS:
        return Ping("failure", "POST", _healthchecks(target.url, "/fail", run_id), report)
    if target.protocol is HeartbeatProtocol.UPTIME_KUMA:
        params = {"status": "down", "msg": report.message()}
        return Ping("failure", "GET", _push(target.url, params))
    return None
