"""Leadership of every worker kind: two contenders, two openings of one database.

Each worker kind contends for a named lease (``relay``, ``consumer:NAME``,
``projection:NAME``). On PostgreSQL exactly one of two replicas leads; when the
server ends the leader's lock session (``pg_terminate_backend``: a network cut, a
failover) the leader stops acting and the standby takes over within a deadline. On
SQLite the relay's lease is a lock on a file, released when its holder lets go; the
other leases are granted (one process owns the file: docs/workers.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import psycopg
import pytest

from chronik.adapters import Database, open_database
from chronik.adapters.memory.broker import MemoryBroker
from chronik.adapters.postgres.schema import lock_key
from chronik.errors import LostLeadershipError
from chronik.eventstore import EventTypes
from chronik.messaging.relay import Relay
from chronik.worker import Lease, Worker

PATIENCE = 30.0


async def eventually(what: str, check: Callable[[], bool], within: float = PATIENCE) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)


class Tally(Worker):
    """A worker of any kind: each step takes one item, so acting shows."""

    kind = "tally"

    def __init__(self, name: str, lease: Callable[[], AbstractAsyncContextManager[Lease]]) -> None:
        super().__init__(name, lease=lease, backoff=0.05, max_backoff=0.2, standby_wait=0.1)
        self.items: list[int] = []
        self.done: list[int] = []
        self.lost = 0

    async def step(self) -> bool:
        if not self.items:
            return False
        self.done.append(self.items.pop(0))
        return True

    async def idle(self, seconds: float) -> None:
        await asyncio.sleep(min(seconds, 0.05))

    async def failed(self, exc: Exception, led: bool) -> None:
        if isinstance(exc, LostLeadershipError):
            self.lost += 1


def lease_of(database: Database, name: str) -> Callable[[], AbstractAsyncContextManager[Lease]]:
    """The lease ``name`` as the worker kind that uses it takes it."""
    if name.startswith("projection:"):
        return lambda: database.projections().lease(name)
    return lambda: database.messages().lease(name)


@contextlib.asynccontextmanager
async def running(*workers: Worker) -> AsyncIterator[dict[Worker, asyncio.Event]]:
    stops = {w: asyncio.Event() for w in workers}
    tasks = [asyncio.create_task(w.run(stops[w])) for w in workers]
    try:
        yield stops
    finally:
        for stop in stops.values():
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), PATIENCE)


def leader_of(workers: tuple[Tally, Tally]) -> Tally | None:
    """The one that leads while the other stands by, else None."""
    states = [w.state for w in workers]
    if sorted(states) == ["running", "standby"]:
        return workers[states.index("running")]
    return None


@contextlib.asynccontextmanager
async def two_openings(url: str) -> AsyncIterator[tuple[Database, Database]]:
    first = await open_database(url)
    second = await open_database(url)
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()


LEASES = ["relay", "consumer:orders", "projection:balances"]


@pytest.mark.parametrize("name", LEASES)
async def test_on_postgres_one_of_two_replicas_leads_and_the_other_takes_over_when_its_lock_dies(
    postgres_url: str, pg_schema: str, name: str
) -> None:
    async with two_openings(f"{postgres_url}?schema={pg_schema}") as (one, two):
        workers = (Tally(name, lease_of(one, name)), Tally(name, lease_of(two, name)))
        async with running(*workers):
            await eventually("one leads, one stands by", lambda: leader_of(workers) is not None)
            leader = leader_of(workers)
            assert leader is not None
            standby = workers[1 - workers.index(leader)]
            for worker in workers:
                worker.items = [1, 2]
            await eventually("the leader acts", lambda: leader.done == [1, 2])
            assert standby.done == [], "the standby acted beside the leader"

            # The server ends the leader's lock session; its process lives on.
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                ended = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND granted AND ((classid::bigint << 32) | objid::bigint) = %s",
                    (lock_key(f"{pg_schema}:{name}"),),
                ).fetchall()
            assert ended == [(True,)], "the leader's lock session was not found"
            began = time.monotonic()
            await eventually("the standby took over", lambda: standby.done == [1, 2])
            took = time.monotonic() - began
            await eventually("the old leader noticed", lambda: leader.lost >= 1)
            await eventually("one leads again", lambda: leader_of(workers) is standby)
            leader.items.append(3)
            standby.items.append(3)
            await eventually("the new leader acts", lambda: standby.done == [1, 2, 3])
            assert leader.done == [1, 2], "the deposed leader went on acting"
            # Bounded by the standby's retry interval and a check, not by a timeout.
            assert took < PATIENCE


async def test_on_postgres_a_relay_whose_lock_session_dies_stops_and_contends_again(
    postgres_url: str, pg_schema: str
) -> None:
    database = await open_database(f"{postgres_url}?schema={pg_schema}")
    try:
        store = database.event_store(EventTypes([]))
        storage = database.messages()
        await storage.setup()
        relay = Relay(store, MemoryBroker(), storage=storage, idle_wait=0.05, backoff=0.05)
        async with running(relay):
            await eventually("the relay leads", lambda: relay.state == "idle")
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND granted AND ((classid::bigint << 32) | objid::bigint) = %s",
                    (lock_key(f"{pg_schema}:relay"),),
                )
            await eventually(
                "the relay noticed it lost its lock",
                lambda: isinstance(relay.last_exception, LostLeadershipError),
            )
            await eventually("the relay leads again", lambda: relay.state == "idle")
            assert relay.leading
    finally:
        await database.close()


async def test_on_sqlite_one_opening_holds_the_relay_lease_until_it_lets_go(
    tmp_path: Path,
) -> None:
    async with two_openings(f"sqlite:///{tmp_path}/events.db") as (one, two):
        workers = (Tally("relay", lease_of(one, "relay")), Tally("relay", lease_of(two, "relay")))
        async with running(*workers) as stops:
            await eventually("one leads, one stands by", lambda: leader_of(workers) is not None)
            leader = leader_of(workers)
            assert leader is not None
            standby = workers[1 - workers.index(leader)]
            stops[leader].set()  # the leader stops: its lock file is let go
            await eventually("the standby took over", lambda: standby.state == "running")
            standby.items = [1]
            await eventually("the new leader acts", lambda: standby.done == [1])


@pytest.mark.parametrize("name", ["consumer:orders", "projection:balances"])
async def test_on_sqlite_the_other_leases_are_granted_to_every_opening(
    tmp_path: Path, name: str
) -> None:
    async with (
        two_openings(f"sqlite:///{tmp_path}/events.db") as (one, two),
        lease_of(one, name)() as first,
        lease_of(two, name)() as second,
    ):
        assert first.held and second.held
        await first.check()
        await second.check()
