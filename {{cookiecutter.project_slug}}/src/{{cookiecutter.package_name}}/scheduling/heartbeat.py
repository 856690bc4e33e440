"""Heartbeat pings to an external monitor (a dead man's switch), per job run.

The URL of a job comes from ``<JOB_ID>_HEARTBEAT_URL``; its protocol from
``<JOB_ID>_HEARTBEAT_PROTOCOL``, else ``HEARTBEAT_PROTOCOL``:

- ``healthchecks``: the healthchecks.io ping API (https://healthchecks.io/docs/http_api/),
  which many services copy. ``GET <url>/start?rid=<run id>`` when the run starts,
  ``GET <url>?rid=<run id>`` on success, ``POST <url>/fail?rid=<run id>`` on failure
  with a text body: the exception type, then the tail of the traceback, at most
  10,000 bytes in all. The shared ``rid`` lets the monitor measure the duration.
- ``uptime-kuma``: an Uptime Kuma push monitor, whose push URL is
  ``/api/push/<token>`` with the query parameters ``status`` (``up`` or ``down``),
  ``msg`` and ``ping`` (ms) (route ``/api/push/:pushToken`` in Uptime Kuma's
  ``server/routers/api-router.js``): ``GET <url>?status=up&msg=OK&ping=<duration in ms>``
  on success, ``GET <url>?status=down&msg=<exception type>`` on failure.
- ``plain``: ping-on-success services (Vigilmon, UptimeSignal, cron monitors):
  ``GET <url>`` on success only; the missed ping is the alert.

A ping never breaks or stalls a job: the pings of a run are sent in order by a
background task, each attempt bounded by ``HEARTBEAT_TIMEOUT`` seconds and retried
``HEARTBEAT_RETRIES`` times with full-jitter exponential backoff (tenacity), every
error caught and logged. The URL holds the monitor's secret token, so logs show it
as ``scheme://host/***`` only, httpx's own request log line included.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import traceback
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from .. import __version__
from ..metrics import Metrics
from ..settings import ConfigurationError, HeartbeatProtocol, runtime_setting

logger = logging.getLogger(__name__)

FAILURE_BODY_LIMIT = 10_000
SERVICE_ID = "{{ cookiecutter.project_slug }}"
USER_AGENT = f"{SERVICE_ID}/{__version__} heartbeat"
# Pings waiting or in flight at once; beyond it new pings are dropped, so a monitor
# that hangs for hours cannot make a frequent job pile up tasks and sockets.
MAX_PENDING_PINGS = 100


def redact_url(url: httpx.URL) -> str:
    """``url`` without path, query or credentials: ``https://hc-ping.com/***``."""
    port = f":{url.port}" if url.port is not None else ""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}{port}/***"


@dataclass(frozen=True)
class HeartbeatTarget:
    """Where and how a job pings. ``url`` is secret: it is left out of ``repr``.

    The URLs derived from it are parsed once here: each run only adds its query
    parameters, and httpx applies them in the background task that sends the ping.
    """

    url: httpx.URL = field(repr=False)
    protocol: HeartbeatProtocol

    @property
    def redacted(self) -> str:
        return redact_url(self.url)

    @functools.cached_property
    def start_url(self) -> httpx.URL:
        return self.url.copy_with(path=self.url.path.rstrip("/") + "/start")

    @functools.cached_property
    def fail_url(self) -> httpx.URL:
        return self.url.copy_with(path=self.url.path.rstrip("/") + "/fail")

    @functools.cached_property
    def push_url(self) -> httpx.URL:
        # Uptime Kuma shows push URLs with an example query (?status=up&msg=OK&ping=).
        return self.url.copy_with(query=None)


@dataclass(frozen=True, slots=True)
class Ping:
    """One HTTP request to the monitor; ``event`` is ``start``, ``success`` or ``failure``."""

    event: str
    method: str
    url: httpx.URL = field(repr=False)
    params: Mapping[str, str] = field(default_factory=dict, repr=False)
    body: bytes | None = None


def start_ping(target: HeartbeatTarget, run_id: uuid.UUID) -> Ping | None:
    """The ping announcing a run, or ``None`` when the protocol has none."""
    if target.protocol is HeartbeatProtocol.HEALTHCHECKS:
        return Ping("start", "GET", target.start_url, {"rid": str(run_id)})
    return None


def success_ping(target: HeartbeatTarget, run_id: uuid.UUID, duration: float) -> Ping:
    """The ping of a successful run; ``duration`` in seconds."""
    if target.protocol is HeartbeatProtocol.HEALTHCHECKS:
        return Ping("success", "GET", target.url, {"rid": str(run_id)})
    if target.protocol is HeartbeatProtocol.UPTIME_KUMA:
        params = {"status": "up", "msg": "OK", "ping": str(round(duration * 1000))}
        return Ping("success", "GET", target.push_url, params)
    return Ping("success", "GET", target.url)


def failure_ping(target: HeartbeatTarget, run_id: uuid.UUID, error: BaseException) -> Ping | None:
    """The ping of a failed run, or ``None`` for ``plain`` (silence is its alert)."""
    if target.protocol is HeartbeatProtocol.HEALTHCHECKS:
        return Ping("failure", "POST", target.fail_url, {"rid": str(run_id)}, failure_body(error))
    if target.protocol is HeartbeatProtocol.UPTIME_KUMA:
        params = {"status": "down", "msg": type(error).__name__}
        return Ping("failure", "GET", target.push_url, params)
    return None


def failure_body(error: BaseException, limit: int = FAILURE_BODY_LIMIT) -> bytes:
    """UTF-8 text: the exception type on the first line, then the traceback's tail.

    At most ``limit`` bytes: the end of a traceback (the raising line and the
    message) is what an operator reads first, so the beginning is what is cut.
    """
    head = f"{type(error).__name__}\n".encode()[:limit]
    text = "".join(traceback.format_exception(error)).encode()
    tail = text[len(text) - (limit - len(head)) :] if len(text) > limit - len(head) else text
    # The cut may split a multi-byte character; drop its remains.
    return head + tail.decode("utf-8", "ignore").encode()


def resolve_targets(
    job_ids: Iterable[str], default_protocol: HeartbeatProtocol
) -> dict[str, HeartbeatTarget | None]:
    """Read each job's ``<JOB_ID>_HEARTBEAT_URL`` and ``<JOB_ID>_HEARTBEAT_PROTOCOL``.

    Sources as ``runtime_setting``: environment, ``.env``, ``SECRETS_DIR``.

    Raises:
        ConfigurationError: a URL that is not http(s) (the value is not echoed: it
            is a secret) or an unknown protocol; the message names the variable.
    """
    targets: dict[str, HeartbeatTarget | None] = {}
    for job_id in job_ids:
        prefix = job_id.upper()
        raw_url = runtime_setting(f"{prefix}_HEARTBEAT_URL")
        raw_protocol = runtime_setting(f"{prefix}_HEARTBEAT_PROTOCOL")
        try:
            protocol = HeartbeatProtocol(raw_protocol) if raw_protocol else default_protocol
        except ValueError:
            choices = ", ".join(protocol.value for protocol in HeartbeatProtocol)
            raise ConfigurationError(
                f"{prefix}_HEARTBEAT_PROTOCOL: must be one of {choices}"
            ) from None
        if raw_url is None:
            targets[job_id] = None
            continue
        try:
            url = httpx.URL(raw_url)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(f"{prefix}_HEARTBEAT_URL: must be an http:// or https:// URL")
        targets[job_id] = HeartbeatTarget(url=url, protocol=protocol)
    return targets


class _RedactHeartbeatUrls(logging.Filter):
    """Rewrites httpx's ``HTTP Request: GET <url> ...`` INFO line for heartbeat URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and self.secrets:
            record.args = tuple(self._redact(arg) for arg in record.args)
        return True

    def _redact(self, arg: object) -> object:
        if isinstance(arg, httpx.URL) and str(arg).startswith(tuple(self.secrets)):
            return redact_url(arg)
        return arg


def _retryable(error: BaseException) -> bool:
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status >= 500 or status == 429
    return isinstance(error, httpx.TransportError | TimeoutError)


def _describe(error: BaseException) -> str:
    # Never str(error): httpx puts the full URL, token included, in its messages.
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    return type(error).__name__


class Heartbeat:
    """Sends pings in the background; owns the HTTP client and the pending pings.

    Args:
        metrics: counts ``heartbeat_pings_total{job,outcome}``.
        timeout: seconds each attempt may take, connection included (``HEARTBEAT_TIMEOUT``).
        retries: attempts after the first one (``HEARTBEAT_RETRIES``).
        backoff: seconds; the wait before retry ``n`` (from 1) is uniform in
            ``[0, backoff * 2**(n-1)]`` (full jitter), capped at 30 s.
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
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), headers={"User-Agent": USER_AGENT}
        )
        self._pending: set[asyncio.Task[None]] = set()
        self._log_filter = _RedactHeartbeatUrls()
        logging.getLogger("httpx").addFilter(self._log_filter)

    @property
    def pending(self) -> int:
        """Pings waiting for their turn or being sent."""
        return len(self._pending)

    def hide_in_logs(self, targets: Iterable[HeartbeatTarget]) -> None:
        """Redact the URLs of ``targets`` in httpx's request log lines from now on."""
        for target in targets:
            self._log_filter.secrets.add(str(target.url.copy_with(query=None)).rstrip("/"))

    def begin(self, job_id: str, target: HeartbeatTarget, run_id: uuid.UUID) -> RunPings:
        """Start the pings of one run: the start ping, when the protocol has one, goes now.

        Call ``hide_in_logs`` with ``target`` first.
        """
        pings = RunPings(self, job_id, target, run_id)
        ping = start_ping(target, run_id)
        if ping is not None:
            pings.last = self.schedule(job_id, target, ping, after=None)
        return pings

    def schedule(
        self,
        job_id: str,
        target: HeartbeatTarget,
        ping: Ping,
        *,
        after: asyncio.Task[None] | None,
    ) -> asyncio.Task[None] | None:
        """Send ``ping`` in a background task once ``after`` is done; ``None`` if dropped."""
        if len(self._pending) >= self._max_pending:
            self._metrics.heartbeat_pings.labels(job_id, "dropped").inc()
            logger.warning(
                "heartbeat %s ping of job %s to %s dropped: %d pings already pending",
                ping.event,
                job_id,
                target.redacted,
                len(self._pending),
            )
            return None
        task = asyncio.create_task(
            self._send_after(job_id, target, ping, after), name=f"heartbeat:{job_id}:{ping.event}"
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _send_after(
        self,
        job_id: str,
        target: HeartbeatTarget,
        ping: Ping,
        after: asyncio.Task[None] | None,
    ) -> None:
        if after is not None:
            # A success must not overtake its start: healthchecks.io would then show
            # the run as started and alert once the grace time is over.
            await asyncio.wait({after})
        await self.send(job_id, target, ping)

    async def send(self, job_id: str, target: HeartbeatTarget, ping: Ping) -> bool:
        """Send ``ping`` now, with retries; ``True`` once the monitor accepted it.

        Raises nothing but ``CancelledError``: failures are logged and counted.
        """
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
                    await self._attempt(ping)
        except Exception as error:
            self._metrics.heartbeat_pings.labels(job_id, "failure").inc()
            logger.warning(
                "heartbeat %s ping of job %s to %s failed after %d attempt(s): %s",
                ping.event,
                job_id,
                target.redacted,
                attempts,
                _describe(error),
            )
            return False
        self._metrics.heartbeat_pings.labels(job_id, "success").inc()
        logger.debug("heartbeat %s ping of job %s sent to %s", ping.event, job_id, target.redacted)
        return True

    async def _attempt(self, ping: Ping) -> None:
        # httpx's timeout applies per phase (connect, write, read); this bounds the whole.
        async with asyncio.timeout(self._timeout):
            headers = {"Content-Type": "text/plain; charset=utf-8"} if ping.body else None
            # Merged, not passed as params=: httpx would replace the URL's own query
            # (a token, or Healthchecks' create=1) with them.
            url = ping.url.copy_merge_params(ping.params)
            response = await self._client.request(
                ping.method, url, content=ping.body, headers=headers
            )
        response.raise_for_status()

    async def drain(self, limit: float | None) -> None:
        """Wait up to ``limit`` seconds for pending pings, then cancel the rest.

        ``None`` waits until every ping is done, which ends: retries are bounded.
        """
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=limit)
        if late:
            logger.warning("cancelling %d heartbeat pings still pending at shutdown", len(late))
            for task in late:
                task.cancel()
            await asyncio.wait(late)

    async def aclose(self) -> None:
        """Cancel pending pings and close the HTTP client."""
        await self.drain(0)
        await self._client.aclose()
        logging.getLogger("httpx").removeFilter(self._log_filter)


class RunPings:
    """The pings of one run, each sent after the previous one."""

    def __init__(
        self, heartbeat: Heartbeat, job_id: str, target: HeartbeatTarget, run_id: uuid.UUID
    ) -> None:
        self._heartbeat = heartbeat
        self._job_id = job_id
        self._target = target
        self._run_id = run_id
        self.last: asyncio.Task[None] | None = None

    def succeeded(self, duration: float) -> None:
        """Queue the success ping; ``duration`` in seconds."""
        self._queue(success_ping(self._target, self._run_id, duration))

    def failed(self, error: BaseException) -> None:
        """Queue the failure ping, if the protocol has one."""
        self._queue(failure_ping(self._target, self._run_id, error))

    def _queue(self, ping: Ping | None) -> None:
        if ping is not None:
            self.last = self._heartbeat.schedule(self._job_id, self._target, ping, after=self.last)
