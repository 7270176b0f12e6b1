"""The event store contract, run against every adapter."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chronik.adapters import Database, open_database, open_event_store
from chronik.adapters.memory.eventstore import MemoryEventStore
from chronik.adapters.postgres.database import PostgresDatabase
from chronik.adapters.postgres.eventstore import PostgresEventStore
from chronik.adapters.postgres.schema import CATEGORY as PG_CATEGORY
from chronik.adapters.sqlite.eventstore import SQLiteEventStore, filtered_sql
from chronik.adapters.sqlite.schema import CATEGORY
from chronik.errors import StoreUnavailableError
from chronik.eventstore import BaseEventStore, RecordedEvent
from chronik.testing.eventstore_contract import (
    CONTRACT_TYPES,
    Deposited,
    DurableEventStoreContract,
    EventStoreContract,
    Withdrawn,
    _only_the_culprit_failed,
    _twenty_appends,
)


class TestMemoryEventStore(EventStoreContract):
    @pytest.fixture
    async def database(self) -> AsyncIterator[Database]:
        database = await open_database("memory://")
        yield database
        await database.close()

    async def reopen(self, store: BaseEventStore) -> BaseEventStore:
        return store

    def _row_index(self, store: BaseEventStore, stream_id: str, version: int) -> int:
        assert isinstance(store, MemoryEventStore)
        for index, row in enumerate(store._rows):
            if row[1] == stream_id and row[2] == version:
                return index
        raise AssertionError("no such event")

    async def corrupt(
        self, store: BaseEventStore, stream_id: str, version: int, data: bytes
    ) -> None:
        assert isinstance(store, MemoryEventStore)
        index = self._row_index(store, stream_id, version)
        row = store._rows[index]
        damaged = (*row[:7], data, *row[8:])
        store._rows[index] = damaged
        stream = store._streams[stream_id]
        stream[version - 1] = damaged

    async def stored_data(self, store: BaseEventStore, stream_id: str, version: int) -> bytes:
        assert isinstance(store, MemoryEventStore)
        return store._rows[self._row_index(store, stream_id, version)][7]


class TestSQLiteEventStore(DurableEventStoreContract):
    @pytest.fixture
    async def database(self, tmp_path: Path) -> AsyncIterator[Database]:
        self.url = f"sqlite:///{tmp_path}/events.db"
        self.opened = await open_database(self.url)
        yield self.opened
        await self.opened.close()

    async def reopen(self, store: BaseEventStore) -> BaseEventStore:
        assert isinstance(store, SQLiteEventStore)
        await self.opened.close()
        return await open_event_store(self.url, CONTRACT_TYPES)

    async def refuse_in_database(
        self, store: BaseEventStore, stream_id: str, how: str = "ABORT"
    ) -> None:
        # After the insert: the row is written when the trigger refuses it.
        with self._connect(store) as conn:
            conn.execute(
                f"CREATE TRIGGER refuse_{uuid.uuid4().hex} AFTER INSERT ON chronik_events "
                f"WHEN NEW.stream_id = '{stream_id}' "
                f"BEGIN SELECT RAISE({how}, 'refused by the test'); END"
            )

    failed_statement_says = "no such table: chronik_refused_by_the_test"

    async def fail_in_database(self, conn: Any) -> None:
        conn.execute("INSERT INTO chronik_refused_by_the_test VALUES (1)")

    async def test_a_lone_append_waits_for_another_connection_holding_the_write_lock(
        self, store: BaseEventStore
    ) -> None:
        assert isinstance(store, SQLiteEventStore)
        other = sqlite3.connect(store.path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            append = asyncio.ensure_future(store.append(f"s-{uuid.uuid4()}", [Deposited(1, "EUR")]))
            await asyncio.sleep(0.05)
            assert not append.done()  # it waits, it does not fail
            other.execute("COMMIT")
            result = await asyncio.wait_for(append, 30)
            assert result.version == 1
        finally:
            other.close()

    @pytest.mark.parametrize("how", ["FAIL", "ROLLBACK"])
    @pytest.mark.parametrize("hooked", [False, True], ids=["plain", "with-a-hook"])
    async def test_a_trigger_that_fails_or_rolls_back_fails_only_its_own_append(
        self, store: BaseEventStore, how: str, hooked: bool
    ) -> None:
        # FAIL keeps what the statement wrote so far; ROLLBACK ends the whole transaction,
        # and with it every append of the shared commit that came before.
        culprit = f"acc-{uuid.uuid4()}"
        await self.refuse_in_database(store, culprit, how)
        start = await store.head_position()

        async def nothing(conn: object, events: list[RecordedEvent]) -> None:
            return None

        if hooked:
            store.add_append_hook(nothing)
        try:
            streams, outcomes = await _twenty_appends(store, culprit)
        finally:
            store.remove_append_hook(nothing)
        failed = await _only_the_culprit_failed(store, start, streams, outcomes)
        assert isinstance(failed, StoreUnavailableError)
        assert "refused by the test" in str(failed)

    async def test_a_hook_whose_write_rolls_back_the_transaction_fails_only_its_append(
        self, store: BaseEventStore
    ) -> None:
        culprit = f"acc-{uuid.uuid4()}"
        with self._connect(store) as conn:
            conn.execute("CREATE TABLE refusals (stream_id TEXT)")
            conn.execute(
                "CREATE TRIGGER refuse_all AFTER INSERT ON refusals "
                "BEGIN SELECT RAISE(ROLLBACK, 'refused by the test'); END"
            )

        async def refuse(conn: Any, events: list[RecordedEvent]) -> None:
            if events[0].stream_id == culprit:
                conn.execute("INSERT INTO refusals VALUES (?)", (culprit,))

        start = await store.head_position()
        store.add_append_hook(refuse)
        try:
            streams, outcomes = await _twenty_appends(store, culprit)
        finally:
            store.remove_append_hook(refuse)
        failed = await _only_the_culprit_failed(store, start, streams, outcomes)
        assert "refused by the test" in str(failed)

    @pytest.mark.parametrize(
        ("by", "index"),
        [("type", "chronik_events_type"), (CATEGORY, "chronik_events_category")],
        ids=["type", "category"],
    )
    @pytest.mark.parametrize("both", [0, 2], ids=["alone", "with-categories"])
    async def test_a_filtered_read_walks_an_index_not_the_table(
        self, store: BaseEventStore, by: str, index: str, both: int
    ) -> None:
        await store.append("acc-1", [Deposited(1, "EUR")])  # the migration has run
        sql = filtered_sql(by, 3, both)
        with self._connect(store) as conn:
            plan = [
                row[3]
                for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", (None,) * (3 * (4 + both) + 1))
            ]
        scans = [step for step in plan if "chronik_events" in step]
        assert len(scans) == 3, plan
        assert all(f"USING INDEX {index}" in step for step in scans), plan

    def _connect(self, store: BaseEventStore) -> sqlite3.Connection:
        assert isinstance(store, SQLiteEventStore)
        return sqlite3.connect(store.path, isolation_level=None)

    async def corrupt(
        self, store: BaseEventStore, stream_id: str, version: int, data: bytes
    ) -> None:
        with self._connect(store) as conn:
            conn.execute(
                "UPDATE chronik_events SET data = ? WHERE stream_id = ? AND version = ?",
                (data, stream_id, version),
            )

    async def stored_data(self, store: BaseEventStore, stream_id: str, version: int) -> bytes:
        with self._connect(store) as conn:
            (data,) = conn.execute(
                "SELECT data FROM chronik_events WHERE stream_id = ? AND version = ?",
                (stream_id, version),
            ).fetchone()
        return bytes(data)


class TestPostgresEventStore(DurableEventStoreContract):
    @pytest.fixture
    async def database(self, postgres_url: str, pg_schema: str) -> AsyncIterator[Database]:
        self.url = postgres_url
        self.opened = await open_database(f"{postgres_url}?schema={pg_schema}")
        yield self.opened
        await self.opened.close()

    async def reopen(self, store: BaseEventStore) -> BaseEventStore:
        assert isinstance(store, PostgresEventStore)
        await self.opened.close()
        return await open_event_store(f"{self.url}?schema={store.schema}", CONTRACT_TYPES)

    async def refuse_in_database(self, store: BaseEventStore, stream_id: str) -> None:
        assert isinstance(store, PostgresEventStore)
        name = f"refuse_{uuid.uuid4().hex}"
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute(
                f"CREATE FUNCTION {store.schema}.{name}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
            )
            await conn.execute(
                f"CREATE TRIGGER {name} AFTER INSERT ON {store.schema}.chronik_events "
                f"FOR EACH ROW WHEN (NEW.stream_id = '{stream_id}') "
                f"EXECUTE FUNCTION {store.schema}.{name}()"
            )

    async def fail_in_database(self, conn: Any) -> None:
        await conn.execute("DO $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$")

    async def test_another_processs_append_wakes_a_waiting_reader_by_notify(
        self, store: BaseEventStore
    ) -> None:
        assert isinstance(store, PostgresEventStore)
        head = await store.head_position()
        other = await open_event_store(f"{self.url}?schema={store.schema}", CONTRACT_TYPES)
        try:
            # The first wait starts the listener, which pokes once it has run LISTEN:
            # from then on another process's NOTIFY reaches it (a condition, not a sleep).
            await asyncio.wait_for(store.wait_for_events(head, max_wait=300), 60)
            waiting = asyncio.ensure_future(store.wait_for_events(head, max_wait=300))
            await other.append(f"s-{uuid.uuid4()}", [Deposited(1, "EUR")])
            # Without a NOTIFY the wait lasts its 300 s; with one it ends at once.
            await asyncio.wait_for(waiting, 60)
        finally:
            await other.close()

    async def test_an_append_due_to_notify_carries_it_in_its_own_commit(
        self, store: BaseEventStore
    ) -> None:
        assert isinstance(store, PostgresEventStore)
        database = self.opened
        assert isinstance(database, PostgresDatabase)
        database.notify_interval = 3600.0
        database._notified_at = -math.inf  # due now
        await store.append(f"s-{uuid.uuid4()}", [Deposited(1, "EUR")])
        assert database._announced == database._committed  # carried: nothing left to send
        assert database._notifier is None or database._notifier.done()
        await store.append(f"s-{uuid.uuid4()}", [Deposited(1, "EUR")])
        assert database._announced < database._committed  # within the interval: pending
        assert database._notifier is not None and not database._notifier.done()

    @pytest.mark.parametrize(
        ("key", "index"),
        [
            (("type", False), "chronik_events_type"),
            (("type", True), "chronik_events_type"),
            ((PG_CATEGORY, False), "chronik_events_category"),
        ],
        ids=["type", "type-and-category", "category"],
    )
    async def test_a_filtered_read_walks_an_index_not_the_table(
        self, store: BaseEventStore, key: tuple[str, bool], index: str
    ) -> None:
        assert isinstance(store, PostgresEventStore)
        # A store where the followed type is 1% of 20,000 events, with its statistics.
        for n in range(20):
            await store.append(
                f"acc-{n}",
                [Deposited(i, "EUR") if i % 100 == 0 else Withdrawn(i) for i in range(1000)],
            )
        await store.append("rare-1", [Withdrawn(1)])
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute(f"ANALYZE {store.schema}.chronik_events")
            by, both = key
            names = ["contract.deposited"] if by == "type" else ["rare"]
            cats = [["acc"]] if both else []
            plans = []
            # The page bounded by a head read before, and the page with its head.
            for sql, params in [
                (store._sql_all_filtered[key], (names, 0, 1 << 62, *cats, 100, 100)),
                (store._sql_page_filtered[key], (names, 0, *cats, 100, 100)),
            ]:
                cur = await conn.execute(f"EXPLAIN {sql}", params)
                plans.append("\n".join(row[0] for row in await cur.fetchall()))
        for plan in plans:
            assert f"Index Scan using {index}" in plan, plan
            assert "Seq Scan on chronik_events" not in plan, plan

    async def corrupt(
        self, store: BaseEventStore, stream_id: str, version: int, data: bytes
    ) -> None:
        assert isinstance(store, PostgresEventStore)
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute(
                f"UPDATE {store.schema}.chronik_events SET data = %s "
                "WHERE stream_id = %s AND version = %s",
                (data, stream_id, version),
            )

    async def stored_data(self, store: BaseEventStore, stream_id: str, version: int) -> bytes:
        assert isinstance(store, PostgresEventStore)
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            cur = await conn.execute(
                f"SELECT data FROM {store.schema}.chronik_events "
                "WHERE stream_id = %s AND version = %s",
                (stream_id, version),
            )
            row = await cur.fetchone()
        assert row is not None
        return bytes(row[0])
