"""``ProjectionsAdmin``: status, rebuild, parked events, on every database, runner beside it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from chronik.adapters import Database
from chronik.errors import NotFoundError
from chronik.eventstore import BaseEventStore
from chronik.projections import ProjectionEngine, ProjectionsAdmin, RebuildProgress
from chronik.testing.eventstore_contract import CONTRACT_TYPES, NOW, Deposited, Opened, Withdrawn
from chronik.testing.projection_contract import Balances, wait_for


@pytest.fixture(autouse=True)
def _poison() -> None:
    Balances.poison = {13}


@pytest.fixture
def store(any_database: Database) -> BaseEventStore:
    return any_database.event_store(CONTRACT_TYPES)


@pytest.fixture
async def admin(any_database: Database, store: BaseEventStore) -> ProjectionsAdmin:
    backend = any_database.projections()
    await backend.setup()
    return ProjectionsAdmin(backend, store)


async def _engine(database: Database, store: BaseEventStore, **options: float) -> ProjectionEngine:
    engine = ProjectionEngine(
        store,
        [Balances()],
        backend=database.projections(),
        retries=1,
        retry_backoff=0.01,
        idle_wait=0.1,
        **options,
    )
    await engine.start()
    return engine


@pytest.fixture
async def engine(any_database: Database, store: BaseEventStore) -> AsyncIterator[ProjectionEngine]:
    running = await _engine(any_database, store)
    yield running
    await running.stop()


async def _accounts(store: BaseEventStore, count: int, *, poisoned: bool = False) -> None:
    for i in range(count):
        events: list[object] = [Opened("h", "Ada", NOW), Deposited(i, "EUR")]
        if poisoned:
            events.append(Withdrawn(13))
        await store.append(f"acc-{uuid.uuid4().hex[:12]}", events)


async def _parked(admin: ProjectionsAdmin, engine: ProjectionEngine, count: int = 1) -> None:
    async def parked() -> bool:
        return len(await admin.parked("balances")) == count

    await wait_for(parked)
    assert await engine.wait_until(await engine.store.head_position(), max_wait=10)


async def test_status_shows_each_projection_as_the_health_computation_describes_it(
    admin: ProjectionsAdmin, store: BaseEventStore, engine: ProjectionEngine
) -> None:
    await _accounts(store, 2, poisoned=True)
    await _parked(admin, engine, 2)

    async def degraded() -> bool:
        return [s.state for s in await admin.status()] == ["degraded"]

    await wait_for(degraded)
    [status] = await admin.status()
    head = await store.head_position()
    assert (status.name, status.generation, status.version) == ("balances", 1, 1)
    assert (status.checkpoint, status.head, status.lag_events) == (head, head, 0)
    assert (status.parked, status.rebuild, status.error) == (2, None, None)
    assert status.heartbeat_at is not None
    assert await admin.head() == head
    one = await admin.status_of("balances")
    assert (one.name, one.state, one.parked, one.checkpoint) == ("balances", "degraded", 2, head)


async def test_a_runner_silent_longer_than_stale_after_shows_as_stale(
    any_database: Database, store: BaseEventStore, engine: ProjectionEngine
) -> None:
    impatient = ProjectionsAdmin(any_database.projections(), store, stale_after=0.0)

    async def stale() -> bool:
        return [s.state for s in await impatient.status()] == ["stale"]

    await wait_for(stale)


async def test_a_store_where_nothing_ran_has_no_status_and_names_the_unknown(
    admin: ProjectionsAdmin, store: BaseEventStore
) -> None:
    await _accounts(store, 1)
    assert await admin.status() == []
    assert await admin.head() == 2
    with pytest.raises(NotFoundError, match="no projection named 'nosuch'"):
        await admin.status_of("nosuch")


async def test_rebuild_gives_a_handle_that_follows_the_runner_until_the_new_generation_serves(
    any_database: Database, admin: ProjectionsAdmin, store: BaseEventStore
) -> None:
    await _accounts(store, 30)
    engine = await _engine(any_database, store, page_size=5)
    try:
        assert await engine.wait_until(await store.head_position(), max_wait=10)
        rebuild = await admin.rebuild("balances")
        assert (rebuild.name, rebuild.generation, rebuild.unattended) == ("balances", 1, False)
        async with asyncio.timeout(60):
            seen = [progress async for progress in rebuild.watch()]
        head = await store.head_position()
        assert seen, "at least the last progress"
        assert seen[-1] == RebuildProgress(head, head, seen[-1].rate, 0.0, generation=2)
        assert all(p.generation in (None, 2) for p in seen)
        assert [p.done for p in seen] == sorted(p.done for p in seen)
        assert await rebuild.serving() == 2
        assert (await admin.status_of("balances")).generation == 2
        totals = await engine.read_models.get("balances", "totals", "all")
        assert totals == {"accounts": 30, "deposited": sum(range(30))}
    finally:
        await engine.stop()


async def test_a_rebuild_no_runner_takes_is_unattended_and_never_begins(
    any_database: Database, store: BaseEventStore
) -> None:
    backend = any_database.projections()
    await backend.setup()
    await backend.create("balances", 1, Balances.tables, Balances.indexes)
    await backend.set_status("balances", "live", None)
    admin = ProjectionsAdmin(backend, store, stale_after=0.0, poll=0.01)
    rebuild = await admin.rebuild("balances")
    assert rebuild.unattended, "its heartbeat is older than stale_after"
    seen: list[RebuildProgress] = []

    async def watch() -> None:
        async with asyncio.timeout(0.2):
            async for progress in rebuild.watch():
                seen.append(progress)

    with pytest.raises(TimeoutError):
        await watch()
    assert seen and all(p.generation is None and p.done == 0 for p in seen), "never begun"
    assert (await backend.load("balances")) is not None


async def test_parked_lists_the_events_a_projection_could_not_apply_with_their_errors(
    admin: ProjectionsAdmin, store: BaseEventStore, engine: ProjectionEngine
) -> None:
    await _accounts(store, 1, poisoned=True)
    await _parked(admin, engine)
    [parked] = await admin.parked("balances")
    assert (parked.projection, parked.position, parked.version) == ("balances", 3, 3)
    assert parked.type == "contract.withdrawn"
    assert "cannot withdraw 13" in parked.error
    assert await admin.parked("nosuch") == []


async def test_replay_parked_applies_them_again_once_the_handler_is_fixed(
    admin: ProjectionsAdmin, store: BaseEventStore, engine: ProjectionEngine
) -> None:
    await _accounts(store, 2, poisoned=True)

    await _parked(admin, engine, 2)
    Balances.poison = set()
    replay = await admin.replay_parked("balances")
    assert (replay.name, len(replay.before)) == ("balances", 2)
    async with asyncio.timeout(30):
        outcome = await replay.outcome()
    assert (len(outcome.before), outcome.left, outcome.resolved) == (2, [], 2)
    accounts = await engine.read_models.find("balances", "accounts", where={"overdrawn": True})
    assert len(accounts) == 2, "each withdrew 13, more than it deposited"
    assert await admin.parked("balances") == []


async def test_replay_keeps_what_still_fails_and_skip_drops_it_unapplied(
    admin: ProjectionsAdmin, store: BaseEventStore, engine: ProjectionEngine
) -> None:
    await _accounts(store, 1, poisoned=True)
    await _parked(admin, engine)
    async with asyncio.timeout(30):
        outcome = await (await admin.replay_parked("balances")).outcome()
    assert outcome.resolved == 0
    [left] = outcome.left
    assert "cannot withdraw 13" in left.error and left.attempts >= 2
    async with asyncio.timeout(30):
        skipped = await (await admin.skip_parked("balances")).outcome()
    assert (len(skipped.before), skipped.left, skipped.resolved) == (1, [], 1)
    assert await engine.read_models.find("balances", "accounts", where={"overdrawn": True}) == []


async def test_a_request_no_runner_takes_stays_stored_and_has_no_outcome(
    any_database: Database, store: BaseEventStore
) -> None:
    backend = any_database.projections()
    await backend.setup()
    await backend.create("balances", 1, Balances.tables, Balances.indexes)
    admin = ProjectionsAdmin(backend, store, poll=0.01)
    request = await admin.skip_parked("balances")
    assert await request.check() is None
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await request.outcome()
    row = await backend.load("balances")
    assert row is not None and row.request == "skip-parked", "left for a runner to take"


async def test_requests_for_a_projection_that_never_ran_name_it(admin: ProjectionsAdmin) -> None:
    for request in (admin.rebuild, admin.replay_parked, admin.skip_parked):
        with pytest.raises(NotFoundError, match="no projection named 'nosuch' has run"):
            await request("nosuch")
