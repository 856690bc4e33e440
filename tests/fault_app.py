"""The baked service with one slow job, served as ``python -m <package> serve`` serves it.

Run by the fault suite with the baked project's interpreter:
``python tests/fault_app.py --host H --port P --timeout-graceful-shutdown S``.
``PACKAGE`` names the baked package; the job ``slow_job`` fires every second and
takes ``SLOW_JOB_SECONDS`` (a run in flight when SIGTERM arrives). Everything else
(settings, lifespan, scheduler, heartbeats, shutdown) is the service's own code.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from datetime import timedelta
from typing import Any


def main() -> int:
    package = os.environ["PACKAGE"]
    main_module = importlib.import_module(f"{package}.main")
    scheduling = importlib.import_module(f"{package}.scheduling")
    server = importlib.import_module(f"{package}.server")
    settings = importlib.import_module(f"{package}.settings").load_settings()
    from apscheduler.triggers.interval import IntervalTrigger

    seconds = float(os.environ.get("SLOW_JOB_SECONDS", "2"))
    jobs = scheduling.JobRegistry(os.environ.get("FAULT_REGISTRY", package))

    @jobs.scheduled("slow_job", IntervalTrigger(seconds=1), grace=timedelta(minutes=1))
    async def slow_job(context: Any) -> None:
        await asyncio.sleep(seconds)

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
