"""The event store contract, run against every adapter."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from chronik.eventstore import BaseEventStore, open_event_store
from chronik.eventstore.memory import MemoryEventStore
from chronik.eventstore.postgres import PostgresEventStore
from chronik.eventstore.sqlite import SQLiteEventStore
from chronik.testing.eventstore_contract import (
    CONTRACT_TYPES,
    DurableEventStoreContract,
    EventStoreContract,
)


class TestMemoryEventStore(EventStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[BaseEventStore]:
        store = await open_event_store("memory://", CONTRACT_TYPES)
        yield store
        await store.close()

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
    async def store(self, tmp_path: Path) -> AsyncIterator[BaseEventStore]:
        store = await open_event_store(f"sqlite:///{tmp_path}/events.db", CONTRACT_TYPES)
        yield store
        await store.close()

    async def reopen(self, store: BaseEventStore) -> BaseEventStore:
        assert isinstance(store, SQLiteEventStore)
        await store.close()
        return await SQLiteEventStore.open(store.path, CONTRACT_TYPES)

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
    async def store(self, postgres_url: str, pg_schema: str) -> AsyncIterator[BaseEventStore]:
        store = await open_event_store(f"{postgres_url}?schema={pg_schema}", CONTRACT_TYPES)
        self.url = postgres_url
        yield store
        await store.close()

    async def reopen(self, store: BaseEventStore) -> BaseEventStore:
        assert isinstance(store, PostgresEventStore)
        await store.close()
        return await PostgresEventStore.open(self.url, CONTRACT_TYPES, schema=store.schema)

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
