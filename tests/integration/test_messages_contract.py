"""The message storage contract, run on every database adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from chronik.adapters import Database, open_database
from chronik.adapters.postgres.schema import lock_key
from chronik.messaging.port import MessageStorage
from chronik.testing.messages_contract import (
    MessageStorageContract,
    SharedMessageStorageContract,
    eventually,
)


class TestMemoryMessageStorage(MessageStorageContract):
    @pytest.fixture
    async def database(self) -> AsyncIterator[Database]:
        database = await open_database("memory://")
        yield database
        await database.close()


class TestSQLiteMessageStorage(SharedMessageStorageContract):
    @pytest.fixture
    async def database(self, tmp_path: Path) -> AsyncIterator[Database]:
        self.url = f"sqlite:///{tmp_path}/events.db"
        database = await open_database(self.url)
        yield database
        await database.close()


class TestPostgresMessageStorage(SharedMessageStorageContract):
    @pytest.fixture
    async def database(self, postgres_url: str, pg_schema: str) -> AsyncIterator[Database]:
        self.url = f"{postgres_url}?schema={pg_schema}"
        self.schema = pg_schema
        self.server = postgres_url
        database = await open_database(self.url)
        yield database
        await database.close()

    async def test_the_leadership_passes_on_when_the_server_ends_the_leaders_connection(
        self, storage: MessageStorage
    ) -> None:
        # The leader's process lives on; its session is gone (a network cut, a failover).
        key = lock_key(f"{self.schema}:relay")
        async with self.hold_leadership_elsewhere():
            assert not await _leads(storage)
            with psycopg.connect(self.server, autocommit=True) as conn:
                ended = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND granted AND ((classid::bigint << 32) | objid::bigint) = %s",
                    (key,),
                ).fetchall()
            assert ended == [(True,)], "no session held the relay's lock"

            async def taken_over() -> bool:
                return await _leads(storage)

            await eventually("the leadership to pass on after its session ended", taken_over)


async def _leads(storage: MessageStorage) -> bool:
    async with storage.relay_leadership() as leading:
        return leading
