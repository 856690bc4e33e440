"""What the launchers share: the baked service served as ``python -m <package> serve``
serves it, with a job registry of the launcher's.

A launcher (``alerting_app.py``, ``fault_app.py``) runs with the baked project's
interpreter, as ``python tests/<launcher>.py --host H --port P
--timeout-graceful-shutdown S`` (seconds), and imports this module from its own
folder. ``PACKAGE`` names the baked package. Settings, lifespan, scheduler, lease,
heartbeats, metrics and shutdown are the service's own code.
"""

from __future__ import annotations

import argparse
import importlib
import os
from types import ModuleType
from typing import Any


def baked(module: str) -> ModuleType:
    """The baked package's ``module`` (e.g. ``"scheduling"``)."""
    return importlib.import_module(f"{os.environ['PACKAGE']}.{module}")


def serve(jobs: Any) -> int:
    """Serve the app ``create_app`` builds with ``jobs`` until SIGTERM; the exit status."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout-graceful-shutdown", type=float, required=True)
    args = parser.parse_args()
    server = baked("server")
    app = baked("main").create_app(baked("settings").load_settings(), jobs=jobs)
    options = server.ServerOptions(
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=args.timeout_graceful_shutdown,
        log_level="info",
    )
    return int(server.serve(app, options))
