"""The baked service with one slow job (``served_app.py`` serves it).

Run by the fault suite. The job ``slow_job`` fires every second and takes
``SLOW_JOB_SECONDS`` (a run in flight when SIGTERM arrives).
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger
from served_app import baked, serve


def main() -> int:
    seconds = float(os.environ.get("SLOW_JOB_SECONDS", "2"))
    jobs = baked("scheduling").JobRegistry(os.environ["PACKAGE"])

    @jobs.scheduled("slow_job", IntervalTrigger(seconds=1), grace=timedelta(minutes=1))
    async def slow_job(context: Any) -> None:
        await asyncio.sleep(seconds)

    return serve(jobs)


if __name__ == "__main__":
    sys.exit(main())
