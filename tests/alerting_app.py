"""The baked service with two jobs of its own (``served_app.py`` serves it).

Run by the end-to-end alerting test. Both jobs fire every 2 s: ``e2e_ticks`` succeeds
(grace 3 s, so a paused leader misses it within seconds); ``e2e_fails`` raises while
the file ``E2E_FAIL_FLAG`` exists.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger
from served_app import baked, serve


def main() -> int:
    fail_flag = Path(os.environ["E2E_FAIL_FLAG"])
    jobs = baked("scheduling").JobRegistry(os.environ["PACKAGE"])

    @jobs.scheduled("e2e_ticks", IntervalTrigger(seconds=2), grace=timedelta(seconds=3))
    async def ticks(context: Any) -> None:
        return None

    @jobs.scheduled("e2e_fails", IntervalTrigger(seconds=2), grace=timedelta(minutes=10))
    async def fails(context: Any) -> None:
        if fail_flag.exists():
            raise RuntimeError("failing on purpose (E2E_FAIL_FLAG exists)")

    return serve(jobs)


if __name__ == "__main__":
    sys.exit(main())
