"""The sender of heartbeat pings: one ordered, bounded queue per monitor URL.

What each ping says is ``pings.py``'s; where it goes, ``targets.py``'s.
Here: a ping never breaks or stalls a job. Each target has its own queue, sent in
order by one background task (a success never overtakes its start, which
Healthchecks would show as a run still going), at most ``max_pending`` pings deep;
beyond it new pings are dropped and counted, so a monitor that hangs for hours
cannot make a frequent job pile up tasks and sockets. Each attempt is bounded by
``HEARTBEAT_TIMEOUT`` seconds and retried ``HEARTBEAT_RETRIES`` times with
full-jitter exponential backoff (tenacity); every error is caught and logged.

Healthchecks answers each ping with ``Ping-Body-Limit: <bytes>`` (``hc/api/views.py``)
and keeps only that many bytes of a body: failure bodies to that target are cut to
it. The URL holds the monitor's secret token, so logs show it as
``scheme://host/***`` only, httpx's own request log line included.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import __version__
from ..metrics import Metrics
from .pings import FAILURE_BODY_LIMIT, FailureReport, Ping, failure_ping, start_ping, success_ping
from .targets import SERVICE_ID, HeartbeatTarget, redact_url

if TYPE_CHECKING:
    import httpx

# httpx and tenacity are imported where a ping needs them, not here: a service whose
# jobs have no heartbeat target never loads them (about 1.5 MiB; tests/test_serve_path.py).

logger = logging.getLogger(__name__)

USER_AGENT = f"{SERVICE_ID}/{__version__} heartbeat"
# Pings waiting or in flight per target; beyond it new pings to that target are dropped.
MAX_PENDING_PINGS = 100


class _RedactHeartbeatUrls(logging.Filter):
    """Rewrites httpx's ``HTTP Request: POST <url> ...`` INFO line for heartbeat URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and self.secrets:
            record.args = tuple(self._redact(arg) for arg in record.args)
        return True

    def _redact(self, arg: object) -> object:
        import httpx

        if isinstance(arg, httpx.URL) and str(arg).startswith(tuple(self.secrets)):
            return redact_url(arg)
        return arg


def _retryable(error: BaseException) -> bool:
    import httpx

    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status >= 500 or status == 429
    return isinstance(error, httpx.TransportError | TimeoutError)


def _describe(error: BaseException) -> str:
    import httpx

    # Never str(error): httpx puts the full URL, token included, in its messages.
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    return type(error).__name__


def _body_limit(response: httpx.Response) -> int | None:
    value = response.headers.get("Ping-Body-Limit", "").strip()
    return int(value) if value.isdigit() else None


@dataclass(slots=True)
class _Queued:
    job_id: str
    ping: Ping
    # Resolved once the ping is sent (True) or given up (False).
    done: asyncio.Future[bool]


@dataclass(slots=True)
class _Lane:
    """One target's queue: the ping in flight stays first until it is done."""

    target: HeartbeatTarget
    items: deque[_Queued] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    body_limit: int = FAILURE_BODY_LIMIT


class Heartbeat:
    """Sends pings in the background; owns the HTTP client and the queues.

    Args:
        metrics: counts ``heartbeat_pings_total{job,outcome}``.
        timeout: seconds each attempt may take, connection included (``HEARTBEAT_TIMEOUT``).
        retries: attempts after the first one (``HEARTBEAT_RETRIES``).
        backoff: seconds; the wait before retry ``n`` (from 1) is uniform in
            ``[0, backoff * 2**(n-1)]`` (full jitter), capped at 30 s.
        max_pending: pings queued or in flight per target.
    """

    def __init__(
        self,
        *,
        metrics: Metrics,
        timeout: float,
        retries: int,
        backoff: float = 1.0,
        max_pending: int = MAX_PENDING_PINGS,
    ) -> None:
        self._metrics = metrics
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._max_pending = max_pending
        # Created by ``open`` (at start-up, when a job has a heartbeat target) or else at
        # the first ping: its TLS context, certifi's CA bundle loaded, costs the process
        # about 2 MiB and 60 ms, which a service whose jobs have no target never needs.
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        self._lanes: dict[str, _Lane] = {}
        self._log_filter = _RedactHeartbeatUrls()
        logging.getLogger("httpx").addFilter(self._log_filter)

    @property
    def client_open(self) -> bool:
        """Whether the HTTP client exists and is open: from the first ping to ``aclose``."""
        return self._client is not None and not self._client.is_closed

    def open(self) -> None:
        """Create the HTTP client now, before any job runs: importing httpx and loading
        the CA bundle then happen at start-up, not on the event loop in a job's start ping."""
        self._http()

    def _http(self) -> httpx.AsyncClient:
        if self._closed:
            # As httpx's closed client would: the attempt fails, is logged and counted.
            raise RuntimeError("the heartbeat is closed")
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout), headers={"User-Agent": USER_AGENT}
            )
        return self._client

    @property
    def pending(self) -> int:
        """Pings waiting for their turn or being sent, all targets together."""
        return sum(len(lane.items) for lane in self._lanes.values())

    def body_limit(self, target: HeartbeatTarget) -> int:
        """Bytes of a failure body ``target`` keeps, as its monitor last said (or the default)."""
        lane = self._lanes.get(str(target.url))
        return lane.body_limit if lane is not None else FAILURE_BODY_LIMIT

    def hide_in_logs(self, targets: Iterable[HeartbeatTarget]) -> None:
        """Redact the URLs of ``targets`` in httpx's request log lines from now on."""
        for target in targets:
            self._log_filter.secrets.add(str(target.url.copy_with(query=None)).rstrip("/"))

    async def begin(
        self, job_id: str, target: HeartbeatTarget, run_id: uuid.UUID, *, wait: float
    ) -> RunPings:
        """Queue the start ping of a run, if the protocol has one, and wait up to ``wait``
        seconds for the monitor to take it: the run's body starts after its start.

        A slower monitor gets the ping later, still before the run's other pings.
        Call ``hide_in_logs`` with ``target`` first.
        """
        pings = RunPings(self, job_id, target, run_id)
        ping = start_ping(target, pings.run_id)
        if ping is not None:
            done = self.enqueue(job_id, target, ping)
            if done is not None and wait > 0:
                await asyncio.wait({done}, timeout=wait)
        return pings

    def enqueue(
        self, job_id: str, target: HeartbeatTarget, ping: Ping
    ) -> asyncio.Future[bool] | None:
        """Queue ``ping`` behind the target's earlier pings; ``None`` if dropped.

        The future resolves to ``True`` once the monitor accepted the ping.
        """
        key = str(target.url)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(target)
        if len(lane.items) >= self._max_pending:
            self._metrics.heartbeat_pings.labels(job_id, "dropped").inc()
            logger.warning(
                "heartbeat %s ping of job %s to %s dropped: %d pings already pending",
                ping.event,
                job_id,
                target.redacted,
                len(lane.items),
            )
            return None
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        lane.items.append(_Queued(job_id, ping, done))
        if lane.worker is None or lane.worker.done():
            lane.worker = asyncio.create_task(self._work(lane), name=f"heartbeat:{job_id}")
        return done

    async def _work(self, lane: _Lane) -> None:
        try:
            while lane.items:
                item = lane.items[0]
                sent = await self.send(item.job_id, lane, item.ping)
                lane.items.popleft()
                if not item.done.done():
                    item.done.set_result(sent)
        finally:
            # Cancelled (shutdown): what is left will not be sent.
            while lane.items:
                item = lane.items.popleft()
                item.done.cancel()

    async def send(self, job_id: str, lane: _Lane, ping: Ping) -> bool:
        """Send ``ping`` now, with retries; ``True`` once the monitor accepted it.

        Raises nothing but ``CancelledError``: failures are logged and counted.
        """
        from tenacity import (
            AsyncRetrying,
            retry_if_exception,
            stop_after_attempt,
            wait_random_exponential,
        )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retries + 1),
            wait=wait_random_exponential(multiplier=self._backoff, max=30),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        attempts = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    await self._attempt(lane, ping)
        except Exception as error:
            self._metrics.heartbeat_pings.labels(job_id, "failure").inc()
            logger.warning(
                "heartbeat %s ping of job %s to %s failed after %d attempt(s): %s",
                ping.event,
                job_id,
                lane.target.redacted,
                attempts,
                _describe(error),
            )
            return False
        self._metrics.heartbeat_pings.labels(job_id, "success").inc()
        logger.debug(
            "heartbeat %s ping of job %s sent to %s", ping.event, job_id, lane.target.redacted
        )
        return True

    async def _attempt(self, lane: _Lane, ping: Ping) -> None:
        body = ping.report.body(lane.body_limit) if ping.report is not None else None
        headers = {"Content-Type": "text/plain; charset=utf-8"} if body else None
        # httpx's timeout applies per phase (connect, write, read); this bounds the whole.
        async with asyncio.timeout(self._timeout):
            response = await self._http().request(
                ping.method, ping.url, content=body, headers=headers
            )
        limit = _body_limit(response)
        if limit is not None:
            lane.body_limit = min(limit, FAILURE_BODY_LIMIT)
        response.raise_for_status()

    async def drain(self, limit: float | None) -> None:
        """Wait up to ``limit`` seconds for the queued pings, then cancel the rest.

        ``None`` waits until every ping is done, which ends: retries are bounded.
        """
        workers = {
            lane.worker
            for lane in self._lanes.values()
            if lane.worker is not None and not lane.worker.done()
        }
        if not workers:
            return
        _, late = await asyncio.wait(workers, timeout=limit)
        if late:
            left = sum(len(lane.items) for lane in self._lanes.values() if lane.worker in late)
            logger.warning("cancelling %d heartbeat pings still pending at shutdown", left)
            for task in late:
                task.cancel()
            await asyncio.wait(late)

    async def aclose(self) -> None:
        """Cancel pending pings and close the HTTP client, if a ping ever created it."""
        await self.drain(0)
        self._closed = True
        if self._client is not None:
            await self._client.aclose()
        logging.getLogger("httpx").removeFilter(self._log_filter)


class RunPings:
    """The pings of one run after its start, queued behind it on the target's queue."""

    def __init__(
        self, heartbeat: Heartbeat, job_id: str, target: HeartbeatTarget, run_id: uuid.UUID
    ) -> None:
        self._heartbeat = heartbeat
        self._job_id = job_id
        self._target = target
        self.run_id = run_id

    def succeeded(self, duration: float) -> None:
        """Queue the success ping; ``duration`` in seconds."""
        self._queue(success_ping(self._target, self.run_id, duration))

    def failed(self, report: FailureReport) -> None:
        """Queue the failure ping, if the protocol has one."""
        self._queue(failure_ping(self._target, self.run_id, report))

    def _queue(self, ping: Ping | None) -> None:
        if ping is not None:
            self._heartbeat.enqueue(self._job_id, self._target, ping)
