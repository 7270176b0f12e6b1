"""chronik doing the benchmark workloads through its public API, the way a user would.

Writers are asyncio tasks on one store (chronik's API is async); the store's database
is opened by URL with its default durability (SQLite WAL + synchronous=FULL; PostgreSQL with
synchronous_commit on). The domain events are built before each timed loop, as the raw
rows are. ``a_create_fsync_off`` and ``b_append_fsync_off`` turn durability off for
that row alone: ``synchronous_commit=off`` through the URL on PostgreSQL, and on SQLite,
whose URL offers no ``synchronous=off``, ``PRAGMA synchronous=OFF`` on each of the
database's connections after it opened. The messaging workloads (``h_*``) are in
``chronik_messaging``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from benchmarks.common import (
    BATCH_EVENTS,
    EVENT_LABEL,
    READ_PAGE,
    Measurement,
    Size,
    Target,
    make_payload,
    new_stream_id,
    unknown_workload,
)
from chronik import Aggregate, EventTypes, ExpectedVersion, Repository, applies, event
from chronik.adapters import Database, open_database
from chronik.eventstore import BaseEventStore
from chronik.projections import Projection, ProjectionEngine, ReadModelTx, handles


@event("bench.item_added")
@dataclass(frozen=True, slots=True)
class ItemAdded:
    label: str
    amount: int
    at: datetime


class Basket(Aggregate):
    total: int
    items: int

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total = 0
        self.items = 0

    def add(self, n: int) -> None:
        p = make_payload(n)
        self.record(ItemAdded(p.label, p.amount, p.at))

    @applies(ItemAdded)
    def _added(self, e: ItemAdded) -> None:
        self.total += e.amount
        self.items += 1


@event("bench.note_taken")
@dataclass(frozen=True, slots=True)
class NoteTaken:
    """The events g_catchup_filtered's projection does not follow: most of its store."""

    label: str
    amount: int
    at: datetime


TYPES = EventTypes([ItemAdded, NoteTaken])


def _event(n: int) -> ItemAdded:
    p = make_payload(n)
    return ItemAdded(EVENT_LABEL, p.amount, p.at)


def _url(target: Target, fsync: bool = True) -> str:
    if target.backend == "sqlite":
        return f"sqlite:///{target.sqlite_path}"
    # Query parameters chronik does not know go to libpq: this one to every connection.
    off = "" if fsync else "&options=-c%20synchronous_commit%3Doff"
    return f"{target.postgres_url}?schema={target.postgres_schema}{off}"


def _sqlite_synchronous_off(database: Database) -> None:
    """``PRAGMA synchronous=OFF`` on every SQLite connection the database holds (checked)."""
    connections = [c for c in vars(database).values() if isinstance(c, sqlite3.Connection)]
    if not connections:
        raise RuntimeError("found no SQLite connection on the database to turn fsync off")
    for conn in connections:
        conn.execute("PRAGMA synchronous = OFF")
        if conn.execute("PRAGMA synchronous").fetchone()[0] != 0:
            raise RuntimeError("SQLite did not take synchronous=OFF")


async def _timed(work: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await work()
    return time.perf_counter() - started


async def _a_create(store: BaseEventStore, size: Size) -> Measurement:
    plan = [(new_stream_id(), [_event(i)]) for i in range(size.create)]

    async def work() -> None:
        for sid, events in plan:
            await store.append(sid, events, expected=ExpectedVersion.NO_STREAM)

    return Measurement(size.create, await _timed(work))


async def _b_append(store: BaseEventStore, size: Size) -> Measurement:
    sid = new_stream_id()
    plan = [[_event(i)] for i in range(size.append)]

    async def work() -> None:
        for i, events in enumerate(plan):
            await store.append(sid, events, expected=i)

    return Measurement(size.append, await _timed(work))


async def _c_batch(store: BaseEventStore, size: Size) -> Measurement:
    batches = [[_event(i) for i in range(BATCH_EVENTS)] for _ in range(size.batches)]
    streams = [new_stream_id() for _ in batches]

    async def work() -> None:
        for sid, batch in zip(streams, batches, strict=True):
            await store.append(sid, batch, expected=ExpectedVersion.NO_STREAM)

    return Measurement(size.batches * BATCH_EVENTS, await _timed(work))


async def _fill(store: BaseEventStore, sid: str, count: int) -> None:
    for start in range(0, count, BATCH_EVENTS):
        n = min(BATCH_EVENTS, count - start)
        await store.append(sid, [_event(start + i) for i in range(n)], expected=start)


async def _d_load(store: BaseEventStore, size: Size) -> Measurement:
    repo = Repository(store, Basket)
    sid = new_stream_id()
    await _fill(store, sid, size.load_events)

    async def work() -> None:
        for _ in range(size.loads):
            basket = await repo.load(sid)
            assert basket.items == size.load_events

    return Measurement(size.loads * size.load_events, await _timed(work), ops=size.loads)


async def _d_load_snapshot(store: BaseEventStore, size: Size) -> Measurement:
    repo = Repository(store, Basket, snapshot_every=size.load_events)
    basket = Basket(new_stream_id())
    for i in range(size.load_events):
        basket.add(i)
    await repo.save(basket)
    snapshot = await store.load_snapshot(basket.id)
    assert snapshot is not None and snapshot.version == size.load_events

    async def work() -> None:
        for _ in range(size.snapshot_loads):
            loaded = await repo.load(basket.id)
            assert loaded.items == size.load_events

    return Measurement(size.snapshot_loads, await _timed(work), ops=size.snapshot_loads)


async def _e_read_all(store: BaseEventStore, size: Size) -> Measurement:
    for start in range(0, size.read_all, BATCH_EVENTS):
        n = min(BATCH_EVENTS, size.read_all - start)
        await store.append(new_stream_id(), [_event(i) for i in range(n)])
    count = 0

    async def work() -> None:
        nonlocal count
        after = 0
        while page := await store.read_all(after, limit=READ_PAGE):
            count += len(page)
            after = page[-1].position

    seconds = await _timed(work)
    assert count == size.read_all, count
    return Measurement(count, seconds)


async def _f_concurrent(store: BaseEventStore, size: Size) -> Measurement:
    plans = [
        [(new_stream_id(), [_event(i)]) for i in range(size.per_writer)]
        for _ in range(size.writers)
    ]

    async def writer(plan: list[tuple[str, list[ItemAdded]]]) -> None:
        for sid, events in plan:
            await store.append(sid, events, expected=ExpectedVersion.NO_STREAM)

    async def work() -> None:
        await asyncio.gather(*(writer(p) for p in plans))

    seconds = await _timed(work)
    assert await store.head_position() == size.writers * size.per_writer
    return Measurement(size.writers * size.per_writer, seconds)


class Items(Projection):
    """One row upsert per event, keyed by stream and version."""

    name = "bench_items"
    tables = ("items",)

    @handles(ItemAdded)
    async def _added(self, e: ItemAdded, tx: ReadModelTx) -> None:
        assert tx.current is not None
        key = f"{tx.current.stream_id}:{tx.current.version}"
        tx.put("items", key, {"label": e.label, "amount": e.amount})


async def _g_catchup(database: Database, size: Size) -> Measurement:
    store = database.event_store(TYPES)
    for start in range(0, size.catchup, BATCH_EVENTS):
        n = min(BATCH_EVENTS, size.catchup - start)
        await store.append(new_stream_id(), [_event(start + i) for i in range(n)])
    head = await store.head_position()
    engine = ProjectionEngine(store, [Items()], backend=database.projections())
    started = time.perf_counter()
    await engine.start()
    assert await engine.wait_until(head, max_wait=3600)
    seconds = time.perf_counter() - started
    rows = await engine.read_models.count("bench_items", "items")
    await engine.stop()
    assert rows == size.catchup, rows
    return Measurement(size.catchup, seconds)


# g_catchup_filtered: the share of the store the projection follows (1 event in 20).
FOLLOWED_EVERY = 20


class OtherItems(Items):
    name = "bench_items_unfiltered"


class IndexlessItems(Items):
    name = "bench_items_no_index"


async def _catch_up(
    database: Database, store: BaseEventStore, projection: Items, head: int, filtered: bool
) -> tuple[float, int]:
    engine = ProjectionEngine(store, [projection], backend=database.projections())
    if not filtered:
        # The follower as it was before filters: every event read and decoded, the
        # handler found for 1 in 20.
        engine.runners[projection.name].type_names = None  # type: ignore[assignment]
    started = time.perf_counter()
    await engine.start()
    assert await engine.wait_until(head, max_wait=3600)
    seconds = time.perf_counter() - started
    rows = await engine.read_models.count(projection.name, "items")
    await engine.stop()
    return seconds, rows


async def _drop_filter_indexes(database: Database, target: Target) -> None:
    """Drop the filtered reads' indexes: the filtered read then scans by position."""
    drop = "DROP INDEX {s}chronik_events_type; DROP INDEX {s}chronik_events_category"
    if target.backend == "sqlite":
        with sqlite3.connect(target.sqlite_path, isolation_level=None) as conn:
            conn.executescript(drop.replace("{s}", "") + ";")
        return
    import psycopg

    async with await psycopg.AsyncConnection.connect(target.postgres_url, autocommit=True) as c:
        await c.execute(drop.replace("{s}", f'"{target.postgres_schema}".'))


async def _g_catchup_filtered(database: Database, size: Size, target: Target) -> Measurement:
    """Catch a projection up over a store where its type is 1 event in 20 (5%).

    Timed three ways on the same store: filtered through the index (the row), reading
    and decoding every event (as followers did before filters), and filtered with the
    indexes dropped (a scan by position that skips the other types).
    """
    store = database.event_store(TYPES)
    followed = 0
    for start in range(0, size.catchup, BATCH_EVENTS):
        n = min(BATCH_EVENTS, size.catchup - start)
        batch: list[object] = []
        for i in range(start, start + n):
            p = make_payload(i)
            if i % FOLLOWED_EVERY == 0:
                batch.append(ItemAdded(EVENT_LABEL, p.amount, p.at))
                followed += 1
            else:
                batch.append(NoteTaken(EVENT_LABEL, p.amount, p.at))
        await store.append(new_stream_id(), batch)
    head = await store.head_position()
    filtered, rows = await _catch_up(database, store, Items(), head, filtered=True)
    assert rows == followed, (rows, followed)
    unfiltered, rows = await _catch_up(database, store, OtherItems(), head, filtered=False)
    assert rows == followed, (rows, followed)
    await _drop_filter_indexes(database, target)
    indexless, rows = await _catch_up(database, store, IndexlessItems(), head, filtered=True)
    assert rows == followed, (rows, followed)
    note = (
        f"{followed:,} of {head:,} events followed (5%); positions/s filtered by index "
        f"{head / filtered:,.0f}, unfiltered (every event read and decoded) "
        f"{head / unfiltered:,.0f}, filtered without the index {head / indexless:,.0f}: "
        f"filtered/unfiltered {unfiltered / filtered:.1f}x, "
        f"index/no index {indexless / filtered:.1f}x"
    )
    return Measurement(head, filtered, note=note)


async def _g_tail(database: Database, size: Size) -> Measurement:
    store = database.event_store(TYPES)
    engine = ProjectionEngine(store, [Items()], backend=database.projections())
    await engine.start()
    latencies: list[float] = []
    try:
        for i in range(size.tail_events):
            result = await store.append(new_stream_id(), [_event(i)])
            committed = time.perf_counter()
            assert await engine.wait_until(result.position, max_wait=10)
            latencies.append((time.perf_counter() - committed) * 1000)
            await asyncio.sleep(0.005)
    finally:
        await engine.stop()
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Measurement(size.tail_events, sum(latencies) / 1000, p50_ms=p50, p99_ms=p99)


Workload = Callable[[Database, Size], Awaitable[Measurement]]


def _on_its_store(measure: Callable[[BaseEventStore, Size], Awaitable[Measurement]]) -> Workload:
    """A workload of the event store alone, run on the database's store."""

    async def run(database: Database, size: Size) -> Measurement:
        return await measure(database.event_store(TYPES), size)

    return run


_WORKLOADS: dict[str, Workload] = {
    "a_create": _on_its_store(_a_create),
    "b_append": _on_its_store(_b_append),
    "a_create_fsync_off": _on_its_store(_a_create),
    "b_append_fsync_off": _on_its_store(_b_append),
    "c_batch": _on_its_store(_c_batch),
    "d_load": _on_its_store(_d_load),
    "d_load_snapshot": _on_its_store(_d_load_snapshot),
    "e_read_all": _on_its_store(_e_read_all),
    "f_concurrent": _on_its_store(_f_concurrent),
    "g_catchup": _g_catchup,
    "g_tail_p99_ms": _g_tail,
}
# Workloads that also need to reach under the store (to drop an index).
_TARGETED: dict[str, Callable[[Database, Size, Target], Awaitable[Measurement]]] = {
    "g_catchup_filtered": _g_catchup_filtered,
}


def run(workload: str, target: Target, size: Size) -> Measurement:
    if workload == "h_e2e_split_p99_ms":
        # Producer, relay and consumer in processes of their own: a module of its own.
        from benchmarks.systems import chronik_messaging_split

        return chronik_messaging_split.run(workload, target, size)
    if workload.startswith("h_"):
        # The messaging workloads (outbox, relay, consumer with a broker): their module.
        from benchmarks.systems import chronik_messaging

        return chronik_messaging.run(workload, target, size)
    targeted = _TARGETED.get(workload)
    measure = _WORKLOADS.get(workload)
    if targeted is not None:

        async def measure(database: Database, size: Size) -> Measurement:
            return await targeted(database, size, target)

    if measure is None:
        raise unknown_workload(workload)

    fsync = not workload.endswith("_fsync_off")

    async def main() -> Measurement:
        database = await open_database(_url(target, fsync))
        try:
            if not fsync and target.backend == "sqlite":
                _sqlite_synchronous_off(database)
            return await measure(database, size)
        finally:
            await database.close()

    return asyncio.run(main())
