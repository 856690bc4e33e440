"""Serving the app with uvicorn: one process, graceful shutdown, exit status 0.

On SIGTERM uvicorn stops accepting connections, lets requests in flight finish
for up to ``timeout_graceful_shutdown`` seconds, runs the lifespan shutdown (the
scheduler drains its runs), and then re-raises the signal so that the default
action ends the process: a graceful stop would exit with status 143 (-SIGTERM),
which Kubernetes and process supervisors report as an error. ``serve`` installs a
SIGTERM handler before uvicorn does; uvicorn restores it after shutting down and
re-raises into it, and the process exits 0.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from .settings import Settings


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """uvicorn's options that matter in production.

    ``timeout_graceful_shutdown`` is in seconds (``GRACEFUL_SHUTDOWN_TIMEOUT``); the
    pod's ``terminationGracePeriodSeconds`` must cover it with every other bound of
    ``shutdown_bounds``. ``forwarded_allow_ips`` (``FORWARDED_ALLOW_IPS``) names the
    proxies whose ``X-Forwarded-For``/``-Proto`` are believed.
    """

    host: str
    port: int
    proxy_headers: bool = True
    forwarded_allow_ips: str = "127.0.0.1"
    timeout_graceful_shutdown: float | None = None
    log_level: str = "info"


def shutdown_bounds(settings: Settings) -> dict[str, float]:
    """Every bound, in seconds, that can delay the exit after SIGTERM, by setting name.

    They add up: uvicorn lets requests finish (``GRACEFUL_SHUTDOWN_TIMEOUT``), then the
    lifespan stops the scheduler: runs in flight drain (``SCHEDULER_SHUTDOWN_TIMEOUT``),
    the late ones are cancelled and unwind (``SCHEDULER_UNWIND_TIMEOUT``), the leader
    lease is released and its connection closed (bounded by ``DATABASE_CONNECT_TIMEOUT``,
    see ``docs/leader-lease.md``) and pending pings flush (``HEARTBEAT_FLUSH_TIMEOUT``).
    The pod's preStop sleep comes before all of them (``k8s/base/deployment.yaml``).
    """
    return {
        "GRACEFUL_SHUTDOWN_TIMEOUT": settings.graceful_shutdown_timeout,
        "SCHEDULER_SHUTDOWN_TIMEOUT": settings.scheduler_shutdown_timeout,
        "SCHEDULER_UNWIND_TIMEOUT": settings.scheduler_unwind_timeout,
        "DATABASE_CONNECT_TIMEOUT": settings.database_connect_timeout,
        "HEARTBEAT_FLUSH_TIMEOUT": settings.heartbeat_flush_timeout,
    }


def _stopped_gracefully(signum: int, frame: FrameType | None) -> None:
    # Called when uvicorn re-raises the SIGTERM it handled: the shutdown is done.
    del signum, frame


def serve(app: ASGIApp | str, options: ServerOptions) -> int:
    """Serve ``app`` (an ASGI app or an import string) until SIGTERM or SIGINT.

    Returns 0 once the server has shut down gracefully.
    """
    previous = signal.signal(signal.SIGTERM, _stopped_gracefully)
    try:
        uvicorn.run(
            app,
            host=options.host,
            port=options.port,
            proxy_headers=options.proxy_headers,
            forwarded_allow_ips=options.forwarded_allow_ips,
            timeout_graceful_shutdown=(
                int(options.timeout_graceful_shutdown)
                if options.timeout_graceful_shutdown is not None
                else None
            ),
            log_level=options.log_level,
            # uvicorn's loggers go through the app's handler (logs.configure_logging),
            # so its access lines are JSON in production and carry the request ID.
            log_config=None,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
