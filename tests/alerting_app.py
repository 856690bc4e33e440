"""The baked service with two jobs of its own, served as ``python -m <package> serve`` serves it.

Run by the end-to-end alerting test with the baked project's interpreter:
``python tests/alerting_app.py --host H --port P --timeout-graceful-shutdown S``.
``PACKAGE`` names the baked package. Both jobs fire every 2 s: ``e2e_ticks`` succeeds
(grace 3 s, so a paused leader misses it within seconds); ``e2e_fails`` raises while
the file ``E2E_FAIL_FLAG`` exists. Everything else (settings, lifespan, scheduler,
lease, metrics) is the service's own code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any


def main() -> int:
    package = os.environ["PACKAGE"]
    main_module = importlib.import_module(f"{package}.main")
    scheduling = importlib.import_module(f"{package}.scheduling")
    server = importlib.import_module(f"{package}.server")
    settings = importlib.import_module(f"{package}.settings").load_settings()
    from apscheduler.triggers.interval import IntervalTrigger

    fail_flag = Path(os.environ["E2E_FAIL_FLAG"])
    jobs = scheduling.JobRegistry(package)

    @jobs.scheduled("e2e_ticks", IntervalTrigger(seconds=2), grace=timedelta(seconds=3))
    async def ticks(context: Any) -> None:
        return None

    @jobs.scheduled("e2e_fails", IntervalTrigger(seconds=2), grace=timedelta(minutes=10))
    async def fails(context: Any) -> None:
        if fail_flag.exists():
            raise RuntimeError("failing on purpose (E2E_FAIL_FLAG exists)")

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout-graceful-shutdown", type=float, required=True)
    args = parser.parse_args()
    app = main_module.create_app(settings, jobs=jobs)
    options = server.ServerOptions(
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=args.timeout_graceful_shutdown,
        log_level="info",
    )
    return int(server.serve(app, options))


if __name__ == "__main__":
    sys.exit(main())
