"""Real replicas, real faults: three processes (``replica.py``) on the throwaway database.

One scenario, in order, with a 3 s lease (``SCHEDULER_LEASE_TTL``), 0.5 s retries
and a job every second whose runs take 0.5 s:

1. SIGKILL of the leader during a run: a follower takes over within TTL + retry,
   marks the interrupted run superseded and runs the latest missed fire once (the
   interrupted fire itself when no later one is due: attempt 2). A fourth process
   replaces the killed one.
2. SIGSTOP of the leader during a run for 2 x TTL, then SIGCONT: a follower takes
   over; the resumed process starts nothing and its run is superseded.
3. ``pg_terminate_backend`` of the leader's lease session during a run: the leader
   reconnects and renews; nothing else changes.
4. A failing job: every replica's ``/health`` says ``fail`` for it, the same
   verdicts for every job and the same leader.

The figures (takeover times, overlaps, fires run twice, fires missed) are derived
from ``scheduler_runs`` and from the steps the job records in fenced transactions,
and printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import execute, fetch, wait_until

REPLICA = Path(__file__).with_name("replica.py")
LEASE_TTL = 3.0
RETRY = 0.5
MISFIRE_GRACE = 10
# Seconds from a fault to the first run of the new term: TTL + retry, plus the wait
# for the next fire (1 s) and a margin for process scheduling on a busy machine.
TAKEOVER_BOUND = LEASE_TTL + RETRY + 1.0 + 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Replicas:
    """The processes of one registry, their logs and ports, by pid."""

    database_url: str
    registry: str
    folder: Path
    processes: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)

    async def start(self) -> int:
        port = free_port()
        log = self.folder / f"replica-{len(self.logs)}.log"
        self.logs.append(log)
        env = {
            **os.environ,
            "ENVIRONMENT": "development",
            "DATABASE_URL": self.database_url,
            "SECRETS_DIR": str(self.folder / "no-secrets"),
            "PORT": str(port),
            "METRICS_PORT": "0",
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "text",
            "HEALTH_CACHE_TTL": "0.5",
            "SCHEDULER_LEASE_TTL": str(LEASE_TTL),
            "SCHEDULER_LEADER_RETRY_INTERVAL": str(RETRY),
            "SCHEDULER_MISFIRE_GRACE_TIME": str(MISFIRE_GRACE),
            "SCHEDULER_SHUTDOWN_TIMEOUT": "5",
            "REPLICA_REGISTRY": self.registry,
        }
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(REPLICA), cwd=self.folder, env=env, stdout=output, stderr=output
            )
        self.processes[process.pid] = process
        self.ports[process.pid] = port
        # Live before the test goes on: a loaded machine can take seconds to import.
        await wait_until(lambda: self.live(process.pid), within=60, message=self.text())
        return process.pid

    async def live(self, pid: int) -> bool:
        """Whether replica ``pid`` answers ``/health/live``; fails when it has exited."""
        process = self.processes[pid]
        assert process.returncode is None, f"replica {pid} exited:\n{self.text()}"
        try:
            async with httpx.AsyncClient(timeout=1) as http:
                response = await http.get(f"http://127.0.0.1:{self.ports[pid]}/health/live")
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def text(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-4000:]}" for log in self.logs)

    async def leader(self) -> tuple[int, int]:
        """The pid and epoch of the live lease's holder (one of these processes)."""
        rows = await fetch(
            self.database_url,
            "SELECT holder, epoch FROM scheduler_lease"
            " WHERE name = $1 AND expires_at > clock_timestamp()",
            self.registry,
        )
        assert rows, "no live lease"
        pid = int(rows[0]["holder"].split(":")[1])
        return pid, int(rows[0]["epoch"])

    async def new_term_runs(self, epoch: int) -> bool:
        return await self.first_run_of_a_new_term(epoch) is not None

    async def ticking_since(self, at: datetime) -> bool:
        return await self.ticks_since(at) > 0

    async def first_run_of_a_new_term(self, epoch: int) -> datetime | None:
        rows = await fetch(
            self.database_url,
            "SELECT min(started_at) AS at FROM scheduler_runs"
            " WHERE registry = $1 AND job_id = 'tick' AND epoch > $2",
            self.registry,
            epoch,
        )
        at: datetime | None = rows[0]["at"]
        return at

    async def run_in_flight(self, epoch: int) -> bool:
        rows = await fetch(
            self.database_url,
            "SELECT count(*) AS n FROM scheduler_runs WHERE registry = $1 AND job_id = 'tick'"
            " AND epoch = $2 AND outcome IS NULL AND started_at < clock_timestamp() - interval '0.15 s'",
            self.registry,
            epoch,
        )
        return int(rows[0]["n"]) > 0

    async def ticks_since(self, at: datetime) -> int:
        rows = await fetch(
            self.database_url,
            "SELECT count(*) AS n FROM scheduler_runs WHERE registry = $1 AND job_id = 'tick'"
            " AND outcome = 'success' AND started_at > $2",
            self.registry,
            at,
        )
        return int(rows[0]["n"])

    async def stop(self) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            assert await asyncio.wait_for(process.wait(), 30) == 0, self.text()


async def db_now(database_url: str) -> datetime:
    now: datetime = (await fetch(database_url, "SELECT clock_timestamp() AS now"))[0]["now"]
    return now


@pytest.fixture
async def replicas(postgres_url: str, tmp_path: Path) -> AsyncIterator[Replicas]:
    await execute(
        postgres_url,
        "CREATE TABLE IF NOT EXISTS replica_steps (run_id uuid NOT NULL,"
        " fire_time timestamptz, pid integer NOT NULL, epoch bigint NOT NULL,"
        " at timestamptz NOT NULL)",
    )
    group = Replicas(postgres_url, f"replicas-{uuid.uuid4().hex[:8]}", tmp_path)
    try:
        yield group
    finally:
        for process in group.processes.values():
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_replicas_survive_kill_pause_and_a_lost_session(replicas: Replicas) -> None:
    url = replicas.database_url
    figures: dict[str, Any] = {}
    for _ in range(3):
        await replicas.start()

    async def elected() -> bool:
        rows = await fetch(url, "SELECT 1 FROM scheduler_lease WHERE name = $1", replicas.registry)
        return bool(rows)

    await wait_until(elected, within=30, message=replicas.text())
    started = await db_now(url)
    await wait_until(lambda: replicas.ticking_since(started), within=15, message="ticking")

    # 1. SIGKILL of the leader while a run is in flight.
    leader, epoch = await replicas.leader()
    await wait_until(lambda: replicas.run_in_flight(epoch), within=10, message="a run in flight")
    killed_at = await db_now(url)
    replicas.processes.pop(leader).kill()
    await wait_until(
        lambda: replicas.new_term_runs(epoch),
        within=TAKEOVER_BOUND + 5,
        message=replicas.text(),
    )
    took_over = await replicas.first_run_of_a_new_term(epoch)
    assert took_over is not None
    figures["takeover after SIGKILL (s)"] = round((took_over - killed_at).total_seconds(), 2)
    await replicas.start()
    retried = await fetch(
        url,
        "SELECT fire_time, attempt, outcome FROM scheduler_runs"
        " WHERE registry = $1 AND job_id = 'tick' AND epoch = $2 AND outcome = 'superseded'",
        replicas.registry,
        epoch,
    )
    assert retried, "the killed leader's run in flight is superseded"

    # 2. SIGSTOP of the leader while a run is in flight, for 2 x TTL.
    leader, epoch = await replicas.leader()
    await wait_until(lambda: replicas.run_in_flight(epoch), within=10, message="a run in flight")
    paused = replicas.processes[leader]
    stopped_at = await db_now(url)
    paused.send_signal(signal.SIGSTOP)
    await asyncio.sleep(2 * LEASE_TTL)
    paused.send_signal(signal.SIGCONT)
    resumed_at = await db_now(url)
    took_over = await replicas.first_run_of_a_new_term(epoch)
    assert took_over is not None, replicas.text()
    figures["takeover after SIGSTOP (s)"] = round((took_over - stopped_at).total_seconds(), 2)
    await asyncio.sleep(2)
    late = await fetch(
        url,
        "SELECT count(*) AS n FROM scheduler_runs WHERE registry = $1 AND epoch = $2"
        " AND started_at >= $3",
        replicas.registry,
        epoch,
        resumed_at,
    )
    assert late[0]["n"] == 0, "the resumed stale leader starts nothing"
    stale = await fetch(
        url,
        "SELECT outcome FROM scheduler_runs WHERE registry = $1 AND epoch = $2"
        " AND job_id = 'tick' ORDER BY started_at DESC LIMIT 1",
        replicas.registry,
        epoch,
    )
    assert stale[0]["outcome"] == "superseded", replicas.text()

    # 3. The leader's lease session terminated during a run.
    leader, epoch = await replicas.leader()
    await wait_until(lambda: replicas.run_in_flight(epoch), within=10, message="a run in flight")
    await execute(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE $1",
        f"scheduler {leader} %",
    )
    terminated_at = await db_now(url)
    await wait_until(
        lambda: replicas.ticking_since(terminated_at + timedelta(seconds=3)),
        within=15,
        message=replicas.text(),
    )
    assert (await replicas.leader()) == (leader, epoch), "the leader renewed on a new session"

    # 4. The failing job, from every replica's /health.
    async with httpx.AsyncClient(timeout=5) as http:
        reports = [
            (await http.get(f"http://127.0.0.1:{port}/health")).json()
            for pid, port in replicas.ports.items()
            if pid in replicas.processes and replicas.processes[pid].returncode is None
        ]
    assert len(reports) == 3
    verdicts = {
        (
            report["checks"]["broken:lastSuccess"][0]["status"],
            report["checks"]["tick:lastSuccess"][0]["status"],
            report["checks"]["scheduler"][0]["leaderId"],
        )
        for report in reports
    }
    assert len(verdicts) == 1, verdicts
    ((broken, tick, leader_id),) = verdicts
    assert (broken, tick) == ("fail", "pass")
    assert leader_id is not None
    assert int(leader_id.split(":")[1]) == leader
    assert {report["status"] for report in reports} == {"fail"}
    roles = Counter(report["checks"]["scheduler"][0]["observedValue"] for report in reports)
    assert roles == {"leader": 1, "follower": 2}

    await replicas.stop()

    # The figures, from the records.
    runs = await fetch(
        url,
        "SELECT fire_time, attempt, epoch, outcome, started_at, ended_at FROM scheduler_runs"
        " WHERE registry = $1 AND job_id = 'tick' ORDER BY fire_time, attempt",
        replicas.registry,
    )
    steps = await fetch(
        url,
        "SELECT s.run_id, s.pid, min(s.at) AS first, max(s.at) AS last FROM replica_steps s"
        " JOIN scheduler_runs r ON r.run_id = s.run_id AND r.registry = $1"
        " GROUP BY s.run_id, s.pid",
        replicas.registry,
    )
    completed = Counter(
        row["fire_time"] for row in runs if row["outcome"] in ("success", "failure")
    )
    figures["fires run twice"] = sum(1 for count in completed.values() if count > 1)
    figures["overlapping runs (fenced steps of two processes)"] = sum(
        1
        for one, other in combinations(steps, 2)
        if one["pid"] != other["pid"]
        and one["first"] <= other["last"]
        and other["first"] <= one["last"]
    )
    terms = [row for row in runs if row["outcome"] in ("success", "failure")]
    figures["overlapping runs (recorded, two terms)"] = sum(
        1
        for one, other in combinations(terms, 2)
        if one["epoch"] != other["epoch"]
        and one["started_at"] < other["ended_at"]
        and other["started_at"] < one["ended_at"]
    )
    fires = sorted({row["fire_time"] for row in runs})
    expected = []
    moment = fires[0]
    while moment <= fires[-1]:
        expected.append(moment)
        moment += timedelta(seconds=1)
    # A fire is covered by its own run or by a later fire's run (coalesced) that
    # started within the misfire grace time; missed otherwise.
    missed = [
        fire
        for fire in expected
        if not any(
            row["fire_time"] >= fire
            and row["started_at"] <= fire + timedelta(seconds=MISFIRE_GRACE)
            for row in runs
        )
    ]
    figures["fires missed"] = len(missed)
    figures["fires coalesced into a later run"] = len(set(expected) - set(fires))
    figures["interrupted fires rerun (attempt 2)"] = sum(1 for row in runs if row["attempt"] > 1)
    print("\nreplicas:", figures)

    assert figures["fires run twice"] == 0
    assert figures["overlapping runs (fenced steps of two processes)"] == 0
    assert figures["overlapping runs (recorded, two terms)"] == 0
    assert figures["fires missed"] == 0
    assert figures["takeover after SIGKILL (s)"] < TAKEOVER_BOUND
    assert figures["takeover after SIGSTOP (s)"] < TAKEOVER_BOUND
