"""Takes every connection slot of a PostgreSQL server, as another client might.

Run by the fault suite with the baked project's interpreter (it has asyncpg):
``python tests/fault_holder.py <postgresql URL>``. Opens connections until the
server answers "too many clients", then terminates every other client session
(the service's pool) and takes their slots too, so the service must reconnect
into a full server; prints
``holding <n>`` and holds the slots until its standard input closes.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg

APPLICATION_NAME = "fault-holder"
MOST = 500


async def fill(url: str, held: list[asyncpg.Connection]) -> None:
    """Open connections into ``held`` until the server refuses one."""
    while len(held) < MOST:
        try:
            held.append(
                await asyncpg.connect(
                    url, server_settings={"application_name": APPLICATION_NAME}, timeout=5
                )
            )
        except asyncpg.TooManyConnectionsError:
            return


async def hold(url: str) -> None:
    held: list[asyncpg.Connection] = []
    try:
        await fill(url, held)
        # The slots the service's sessions free are taken at once, before it reconnects.
        await held[0].execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND application_name <> $1",
            APPLICATION_NAME,
        )
        for _ in range(20):
            await fill(url, held)
            await asyncio.sleep(0.05)
        print(f"holding {len(held)}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await asyncio.gather(*(connection.close() for connection in held), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(hold(sys.argv[1]))
