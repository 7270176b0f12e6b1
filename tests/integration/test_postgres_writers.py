"""PostgreSQL appends through several writer connections at once (``writers=K``).

Batches of appends go through up to K connections of the store's own, so several
transactions are in flight; the advisory lock that orders positions still serializes
their version checks and commits. These tests hold that lock from outside so the batches
pile up at the server, show that K of them (and no more) wait there, and check that
every guarantee holds once they go through: one winner per conflict, versions without
gaps or repeats, positions in commit order, a follower that skips nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psycopg
import pytest

from chronik import ConcurrencyError, ExpectedVersion
from chronik.adapters import open_event_store
from chronik.adapters.postgres.schema import lock_key
from chronik.eventstore import AppendResult, BaseEventStore, RecordedEvent
from chronik.testing.eventstore_contract import CONTRACT_TYPES, Withdrawn

WRITERS = 4
DEADLINE = 30.0


async def _open(url: str, schema: str, writers: int = WRITERS) -> BaseEventStore:
    return await open_event_store(f"{url}?schema={schema}&writers={writers}", CONTRACT_TYPES)


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {DEADLINE:g} s: {what}")
        await asyncio.sleep(0.02)


async def test_concurrent_appends_with_conflicts_go_through_k_writer_connections(
    postgres_url: str, pg_schema: str
) -> None:
    store = await _open(postgres_url, pg_schema)
    watcher = await psycopg.AsyncConnection.connect(postgres_url, autocommit=True)
    holder = await psycopg.AsyncConnection.connect(postgres_url)  # a transaction
    tasks: list[tuple[str, asyncio.Task[AppendResult]]] = []
    try:
        await store.append("warm-up", [Withdrawn(0)])  # the schema exists, position 1

        async def waiting_at_the_lock() -> int:
            # Only this schema's append statements: other tests may share the server.
            cur = await watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND wait_event = 'advisory' AND position(%s in query) > 0",
                (pg_schema,),
            )
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

        await holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(pg_schema),))
        waves = 6
        for wave in range(waves):
            # Each wave arrives while the earlier ones wait: it starts a batch of its own
            # on a free writer connection, or queues in the process once all K are taken.
            for k in range(2):
                claim = store.append(
                    "claimed", [Withdrawn(wave * 10 + k)], expected=ExpectedVersion.NO_STREAM
                )
                tasks.append(("claimed", asyncio.create_task(claim)))
            for k in range(3):
                shared = store.append("shared", [Withdrawn(wave * 10 + k)])
                tasks.append(("shared", asyncio.create_task(shared)))
                own = f"own-{wave}-{k}"
                events = [Withdrawn(n) for n in range(1 + k)]
                mine = store.append(own, events, expected=ExpectedVersion.NO_STREAM)
                tasks.append((own, asyncio.create_task(mine)))
            wanted = min(wave + 1, WRITERS)
            await _until(
                lambda wanted=wanted: _at_least(waiting_at_the_lock, wanted),  # type: ignore[misc]
                f"{wanted} writer connections waiting for the lock",
            )
        # Six waves, four connections: two waves wait in the process, none at the server.
        assert await waiting_at_the_lock() == WRITERS
        assert not any(task.done() for _, task in tasks)
        await holder.commit()

        gathered = asyncio.gather(*(task for _, task in tasks), return_exceptions=True)
        outcomes = await asyncio.wait_for(gathered, DEADLINE)
    finally:
        for _, task in tasks:
            task.cancel()
        await holder.close()
        await watcher.close()

    try:
        claims = [o for (s, _), o in zip(tasks, outcomes, strict=True) if s == "claimed"]
        won = [o for o in claims if isinstance(o, AppendResult)]
        lost = [o for o in claims if isinstance(o, ConcurrencyError)]
        assert len(won) == 1 and len(lost) == len(claims) - 1, claims
        assert all(e.actual == 1 for e in lost)

        to_shared = [o for (s, _), o in zip(tasks, outcomes, strict=True) if s == "shared"]
        assert all(isinstance(o, AppendResult) for o in to_shared), to_shared
        assert sorted(o.version for o in to_shared if isinstance(o, AppendResult)) == list(
            range(1, 3 * waves + 1)
        )

        stored = await store.read_all(0, limit=10_000)
        positions = [r.position for r in stored]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        by_position = {r.position: r for r in stored}
        results: dict[str, list[AppendResult]] = {}
        for (stream, _), outcome in zip(tasks, outcomes, strict=True):
            if isinstance(outcome, AppendResult):
                results.setdefault(stream, []).append(outcome)
                span = range(outcome.first_position, outcome.position + 1)
                assert [by_position[p].stream_id for p in span] == [stream] * len(span)
                assert by_position[outcome.position].version == outcome.version
            elif stream != "claimed":
                raise AssertionError(f"{stream}: {outcome!r}")
        for stream, appended in results.items():
            versions = [r.version for r in await store.read_stream(stream)]
            assert versions == list(range(1, len(versions) + 1)), stream
            assert max(r.version for r in appended) == versions[-1]
        assert len(stored) == 1 + 1 + 3 * waves + sum(1 + k for k in range(3)) * waves

        # The version checks saw every earlier commit: the next append must name 18.
        after = await store.append("shared", [Withdrawn(99)], expected=3 * waves)
        assert after.version == 3 * waves + 1
        with pytest.raises(ConcurrencyError):
            await store.append("shared", [Withdrawn(99)], expected=3 * waves)
    finally:
        await store.close()


async def _at_least(count: Callable[[], Awaitable[int]], wanted: int) -> bool:
    return await count() >= wanted


@pytest.mark.slow
async def test_a_follower_skips_nothing_while_tasks_append_through_k_writers(
    postgres_url: str, pg_schema: str
) -> None:
    store = await _open(postgres_url, pg_schema)
    reader = await _open(postgres_url, pg_schema, writers=1)
    writers_done = asyncio.Event()
    followed: list[RecordedEvent] = []
    conflicts = 0

    async def writer(n: int) -> None:
        nonlocal conflicts
        for i in range(40):
            stream = f"s-{(n + i) % 5}"
            version = (await store.read_stream(stream))[-1:]
            expected = version[0].version if version else ExpectedVersion.NO_STREAM
            try:
                await store.append(stream, [Withdrawn(i)] * (1 + i % 3), expected=expected)
            except ConcurrencyError:
                conflicts += 1
            await store.append(f"w{n}-{i}", [Withdrawn(i)])

    async def follower() -> None:
        after = 0
        while True:
            done = writers_done.is_set()
            page = await reader.read_all(after, limit=37)
            followed.extend(page)
            if page:
                after = page[-1].position
            elif done:
                return
            else:
                await asyncio.sleep(0.001)

    try:
        reading = asyncio.create_task(follower())
        await asyncio.wait_for(asyncio.gather(*(writer(n) for n in range(24))), 120)
        writers_done.set()
        await asyncio.wait_for(reading, timeout=DEADLINE)
        everything = await reader.read_all(0, limit=100_000)
        assert [r.position for r in followed] == [r.position for r in everything]
        assert [r.id for r in followed] == [r.id for r in everything]
        for s in range(5):
            versions = [r.version for r in await reader.read_stream(f"s-{s}")]
            assert versions == list(range(1, len(versions) + 1))
        assert conflicts > 0, "the writers never raced for a stream: the test proves nothing"
    finally:
        await reader.close()
        await store.close()
