"""A job's time limit: the run cancelled past it fails as ``TimeLimitExceeded``.

The limit is ``<JOB_ID>_TIME_LIMIT`` (seconds, ``cronjob.py``); the runner applies it to
a CronJob pod's run, so that a run past it is a failure, not a hang.
"""

from __future__ import annotations

import asyncio

from .registry import JobContext, JobFunction


class TimeLimitExceeded(Exception):
    """The run lasted longer than its time limit (``<JOB_ID>_TIME_LIMIT``) and was cancelled."""


async def call_within(time_limit: float | None, func: JobFunction, context: JobContext) -> None:
    """Await ``func(context)``, cancelled after ``time_limit`` seconds (``None``: no limit).

    Raises:
        TimeLimitExceeded: the limit passed; not a ``TimeoutError`` the job itself may
            raise (a network call's), which propagates as it is.
        Exception: whatever ``func`` raises.
    """
    if time_limit is None:
        await func(context)
        return
    deadline = asyncio.timeout(time_limit)
    try:
        async with deadline:
            await func(context)
    except TimeoutError:
        if deadline.expired():
            raise TimeLimitExceeded(
                f"job {context.job_id} ran past its time limit of {time_limit:g} s"
            ) from None
        raise
