"""The lease, its epoch and fencing, the run records and the shared job state, in one
process against the real PostgreSQL (real processes: ``test_scheduling_replicas.py``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from apscheduler.triggers.interval import IntervalTrigger
from pytest_httpserver import HTTPServer

from {{ cookiecutter.package_name }}.db import Database, begin, open_database
from {{ cookiecutter.package_name }}.items.schemas import ItemCreate
from {{ cookiecutter.package_name }}.items.store import open_item_store
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.postgres import libpq_dsn
from {{ cookiecutter.package_name }}.scheduling import JobContext, JobRegistry
from {{ cookiecutter.package_name }}.scheduling.jobs import cleanup_items
from {{ cookiecutter.package_name }}.scheduling.lease import Lease, StaleLeaderError
from {{ cookiecutter.package_name }}.scheduling.status import SharedStatus

from .conftest import execute, fetch, make_settings, wait_until


def lease(url: str, name: str, *, ttl: float = 1.0) -> Lease:
    return Lease(
        url,
        name=name,
        holder=f"test:{uuid.uuid4().hex[:8]}",
        ttl=ttl,
        connect_timeout=5,
        statement_timeout=10,
        application_name="test lease",
    )


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[Database]:
    async with open_database(make_settings(postgres_url)) as opened:
        yield opened


async def test_a_takeover_waits_for_a_fenced_transaction_then_fences_the_old_term(
    postgres_url: str, database: Database
) -> None:
    name = f"fence-{uuid.uuid4().hex[:8]}"
    old, new = lease(postgres_url, name), lease(postgres_url, name)
    try:
        epoch = await old.try_acquire()
        assert epoch is not None
        assert await new.try_acquire() is None, "a live lease is not taken"
        context = JobContext(
            job_id="job",
            run_id=uuid.uuid4(),
            scheduled_at=None,
            settings=make_settings(postgres_url),
            database=database,
            epoch=epoch,
            lease_name=name,
        )
        async with begin(database) as transaction:
            await context.fence(transaction)
            await asyncio.sleep(1.2)  # the lease expires meanwhile
            takeover = asyncio.create_task(new.try_acquire())
            done, _ = await asyncio.wait({takeover}, timeout=0.5)
            assert not done, "a takeover waits for the fenced transaction"
        assert await takeover == epoch + 1
        with pytest.raises(StaleLeaderError):
            async with begin(database) as transaction:
                await context.fence(transaction)
        assert not await old.renew(epoch), "the old term cannot renew"
        refused = await old.start_run("job", uuid.uuid4(), datetime.now(UTC), 1, epoch)
        assert not refused, "nor start a run"
    finally:
        await old.aclose()
        await new.aclose()


async def test_a_stale_leaders_cleanup_deletes_nothing(
    postgres_url: str, database: Database
) -> None:
    name = f"stale-{uuid.uuid4().hex[:8]}"
    old, new = lease(postgres_url, name, ttl=0.5), lease(postgres_url, name)
    try:
        epoch = await old.try_acquire()
        assert epoch is not None
        async with open_item_store(database) as store:
            item = await store.create(ItemCreate(name="kept by the fence"))
        await asyncio.sleep(0.6)  # the old term expires
        assert await new.try_acquire() == epoch + 1
        context = JobContext(
            job_id="cleanup_items",
            run_id=uuid.uuid4(),
            # Two days past a one-day retention: an unfenced run would delete the item.
            scheduled_at=item.created_at + timedelta(days=2),
            settings=make_settings(postgres_url, items_retention_days=1),
            database=database,
            epoch=epoch,
            lease_name=name,
        )
        with pytest.raises(StaleLeaderError):
            await cleanup_items(context)
        async with open_item_store(database) as store:
            assert await store.get(item.id) == item
            await store.delete(item.id)
    finally:
        await old.aclose()
        await new.aclose()


async def test_a_fire_time_is_started_once_per_attempt(postgres_url: str) -> None:
    holder = lease(postgres_url, f"once-{uuid.uuid4().hex[:8]}", ttl=10)
    try:
        epoch = await holder.try_acquire()
        assert epoch is not None
        fire = datetime(2026, 1, 1, tzinfo=UTC)
        assert await holder.start_run("job", uuid.uuid4(), fire, 1, epoch)
        assert not await holder.start_run("job", uuid.uuid4(), fire, 1, epoch)
        assert await holder.start_run("job", uuid.uuid4(), fire, 2, epoch)
    finally:
        await holder.aclose()


async def test_job_checks_share_one_query_per_cache_period(database: Database) -> None:
    jobs = JobRegistry(f"status-{uuid.uuid4().hex[:8]}")
    for job_id in ("one", "two", "three"):
        jobs.scheduled(job_id, IntervalTrigger(hours=1), grace=timedelta(minutes=1))(noop)
    status = SharedStatus(database=database, jobs=jobs, cache_ttl=60)
    snapshots = await asyncio.gather(*(status.get() for _ in range(10)))
    assert status.queries == 1
    assert all(snapshot is snapshots[0] for snapshot in snapshots)
    assert snapshots[0].error is None
    assert set(snapshots[0].jobs) == {"one", "two", "three"}


async def noop(context: JobContext) -> None:
    """Does nothing."""


async def test_a_new_leader_reruns_an_interrupted_fire_and_a_missed_fire_once(
    postgres_url: str,
) -> None:
    name = f"catch-up-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    interrupted = now - timedelta(seconds=5)
    last = now - timedelta(hours=1, seconds=5)
    runs: list[tuple[str, datetime | None, int | None]] = []
    jobs = JobRegistry(name)
    hourly = {"hours": 1, "timezone": UTC}

    @jobs.scheduled(
        "interrupted", IntervalTrigger(**hourly, start_date=interrupted), grace=timedelta(hours=1)
    )
    async def interrupted_job(context: JobContext) -> None:
        runs.append(("interrupted", context.scheduled_at, context.epoch))

    @jobs.scheduled("missed", IntervalTrigger(**hourly, start_date=last), grace=timedelta(hours=1))
    async def missed_job(context: JobContext) -> None:
        runs.append(("missed", context.scheduled_at, context.epoch))

    # A dead leader's term: its lease expired, one run without an end, one fire missed.
    await execute(
        postgres_url,
        "INSERT INTO scheduler_lease"
        " VALUES ($1, 'dead:1:x', 7, clock_timestamp(), clock_timestamp())",
        name,
    )
    for job_id, fire, ended, outcome in (
        ("interrupted", interrupted, None, None),
        ("missed", last, last, "success"),
    ):
        await execute(
            postgres_url,
            "INSERT INTO scheduler_runs (registry, job_id, run_id, fire_time, attempt, epoch,"
            " holder, started_at, ended_at, outcome)"
            " VALUES ($1, $2, $3, $4, 1, 7, 'dead:1:x', $4, $5, $6)",
            name,
            job_id,
            uuid.uuid4(),
            fire,
            ended,
            outcome,
        )
    settings = make_settings(postgres_url, scheduler_leader_retry_interval=0.1)
    for _ in range(2):  # a second election runs nothing again
        app = create_app(settings, jobs=jobs)
        async with app.router.lifespan_context(app):
            await wait_until(lambda: len(runs) >= 2, within=10, message="caught up")
            await asyncio.sleep(0.5)
    assert sorted(runs, key=str) == [
        ("interrupted", interrupted, 8),
        ("missed", last + timedelta(hours=1), 8),
    ]
    rows = await fetch(
        postgres_url,
        "SELECT job_id, fire_time, attempt, outcome FROM scheduler_runs WHERE registry = $1"
        " ORDER BY job_id, fire_time, attempt",
        name,
    )
    assert [tuple(row.values()) for row in rows] == [
        ("interrupted", interrupted, 1, "superseded"),
        ("interrupted", interrupted, 2, "success"),
        ("missed", last, 1, "success"),
        ("missed", last + timedelta(hours=1), 1, "success"),
    ]


async def test_old_runs_are_pruned(postgres_url: str) -> None:
    holder = lease(postgres_url, f"prune-{uuid.uuid4().hex[:8]}", ttl=10)
    try:
        epoch = await holder.try_acquire()
        assert epoch is not None
        assert await holder.start_run("job", uuid.uuid4(), datetime.now(UTC), 1, epoch)
        await execute(
            postgres_url,
            "UPDATE scheduler_runs SET started_at = started_at - interval '15 days'"
            " WHERE registry = $1",
            holder.name,
        )
        assert await holder.start_run("job", uuid.uuid4(), datetime.now(UTC), 2, epoch)
        assert await holder.prune(14) == 1
    finally:
        await holder.aclose()


async def test_a_leader_that_cannot_renew_steps_down_and_supersedes_its_run(
    postgres_url: str, monitor: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"cut-{uuid.uuid4().hex[:8]}"
    jobs = JobRegistry(name)
    started = asyncio.Event()

    @jobs.scheduled("slow", IntervalTrigger(seconds=0.2), grace=timedelta(minutes=1))
    async def slow(context: JobContext) -> None:
        started.set()
        await asyncio.sleep(30)

    ttl = 3.0
    settings = make_settings(
        postgres_url, scheduler_lease_ttl=ttl, scheduler_leader_retry_interval=0.2
    )
    monkeypatch.setenv("SLOW_HEARTBEAT_URL", monitor.url_for("/ping/slow"))
    app = create_app(settings, jobs=jobs)
    async with app.router.lifespan_context(app):
        await wait_until(started.is_set, within=10, message="a run in flight")
        # As a network cut would: the leader's renewals no longer complete.
        cut = await asyncpg.connect(libpq_dsn(postgres_url))
        transaction = cut.transaction()
        await transaction.start()
        try:
            await cut.execute("SELECT 1 FROM scheduler_lease WHERE name = $1 FOR UPDATE", name)
            began = time.monotonic()
            await wait_until(
                lambda: not app.state.scheduler.is_leader, within=ttl, message="stepped down"
            )
            stepped_down = time.monotonic() - began
            await wait_until(
                lambda: app.state.scheduler.runner.in_flight == 0,
                within=ttl,
                message="its run is cancelled",
            )
        finally:
            await transaction.rollback()
            await cut.close()
        rows = await fetch(
            postgres_url,
            "SELECT outcome FROM scheduler_runs WHERE registry = $1 ORDER BY started_at",
            name,
        )
        assert [row["outcome"] for row in rows] == ["superseded"]
    assert stepped_down <= ttl * 2 / 3 + 0.5
    paths = [request.path for request, _ in monitor.log]
    assert "/ping/slow/start" in paths
    assert not any(path.endswith("/fail") for path in paths), "a cut must not page anyone"
