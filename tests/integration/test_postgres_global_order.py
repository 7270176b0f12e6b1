"""Guarantee 2 on PostgreSQL: a reader following all events never skips one.

The classic bug: positions come from a sequence, a transaction takes position p and
commits late, another takes p + 1 and commits first; a reader sees p + 1, moves its
checkpoint past p, and never sees p. These tests hold a slow append open on purpose.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest

from chronik.adapters import open_event_store
from chronik.eventstore import BaseEventStore, RecordedEvent
from chronik.testing.eventstore_contract import CONTRACT_TYPES, Withdrawn


async def _open(url: str, schema: str) -> BaseEventStore:
    return await open_event_store(f"{url}?schema={schema}", CONTRACT_TYPES)


async def _append_params(store: BaseEventStore, stream_id: str) -> tuple[Any, ...]:
    request = await store.prepare(stream_id, [Withdrawn(1)])
    e = request.events[0]
    return (
        stream_id,
        request.expected,
        e.id,
        e.type,
        e.schema_version,
        e.data,
        e.correlation_id,
        e.causation_id,
        e.headers,
    )


async def test_an_append_waits_for_an_earlier_uncommitted_one_and_readers_see_both_in_order(
    postgres_url: str, pg_schema: str
) -> None:
    store = await _open(postgres_url, pg_schema)
    try:
        await store.append("first", [Withdrawn(0)])
        slow = await psycopg.AsyncConnection.connect(postgres_url)  # a transaction, not autocommit
        try:
            params = await _append_params(store, "slow")
            await slow.execute(
                f"SELECT * FROM {pg_schema}.chronik_append_one(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                params,
            )
            fast = asyncio.create_task(store.append("fast", [Withdrawn(2)]))
            await asyncio.sleep(0.3)
            assert not fast.done(), "the second append must wait for the first to commit"
            assert [r.stream_id for r in await store.read_all(0)] == ["first"]
            await slow.commit()
        finally:
            await slow.close()
        result = await asyncio.wait_for(fast, timeout=5)
        seen = await store.read_all(1)
        assert [(r.stream_id, r.position) for r in seen] == [("slow", 2), ("fast", 3)]
        assert result.position == 3
    finally:
        await store.close()


async def test_the_same_scenario_skips_an_event_with_a_naive_sequence(
    postgres_url: str, pg_schema: str
) -> None:
    """Shows the scenario above catches the bug: plain nextval() without the lock loses p."""
    store = await _open(postgres_url, pg_schema)
    insert = (
        f"INSERT INTO {pg_schema}.chronik_events VALUES (nextval('{pg_schema}.chronik_positions'),"
        " %s, 1, %s, 'contract.withdrawn', 1, now(), %s, NULL, NULL, NULL)"
    )
    try:
        slow = await psycopg.AsyncConnection.connect(postgres_url)
        fast = await psycopg.AsyncConnection.connect(postgres_url, autocommit=True)
        try:
            await slow.execute(insert, ("naive-slow", uuid.uuid4(), b'{"amount": 1}'))
            await fast.execute(insert, ("naive-fast", uuid.uuid4(), b'{"amount": 2}'))
            seen = await store.read_all(0)
            checkpoint = seen[-1].position
            await slow.commit()
            later = await store.read_all(checkpoint)
        finally:
            await slow.close()
            await fast.close()
        followed = {r.stream_id for r in [*seen, *later]}
        assert followed == {"naive-fast"}, "the reader skipped the slow event"
        everything = {r.stream_id for r in await store.read_all(0)}
        assert everything == {"naive-slow", "naive-fast"}
    finally:
        await store.close()


@pytest.mark.slow
async def test_a_follower_sees_every_event_while_many_connections_append(
    postgres_url: str, pg_schema: str
) -> None:
    stores = [await _open(postgres_url, pg_schema) for _ in range(5)]
    writers_done = asyncio.Event()
    followed: list[RecordedEvent] = []

    async def writer(store: BaseEventStore, name: str) -> None:
        for i in range(60):
            await store.append(f"{name}-{i % 7}", [Withdrawn(i)] * (1 + i % 3))

    async def follower(store: BaseEventStore) -> None:
        after = 0
        while True:
            done = writers_done.is_set()
            page = await store.read_all(after, limit=37)
            followed.extend(page)
            if page:
                after = page[-1].position
            elif done:
                return
            else:
                await asyncio.sleep(0.001)

    try:
        reading = asyncio.create_task(follower(stores[0]))
        await asyncio.gather(
            *(writer(store, f"w{n}-{k}") for n, store in enumerate(stores) for k in range(3))
        )
        writers_done.set()
        await asyncio.wait_for(reading, timeout=30)
        everything = await stores[0].read_all(0, limit=100_000)
        assert len(everything) == 5 * 3 * 120
        assert [r.position for r in followed] == [r.position for r in everything]
        assert [r.id for r in followed] == [r.id for r in everything]
    finally:
        for store in stores:
            await store.close()
