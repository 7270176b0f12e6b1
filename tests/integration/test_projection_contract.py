"""The projection contract, run on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chronik.eventstore import BaseEventStore, open_event_store
from chronik.testing.eventstore_contract import CONTRACT_TYPES
from chronik.testing.projection_contract import InlineProjectionContract, ProjectionContract


class TestMemoryProjections(ProjectionContract, InlineProjectionContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[BaseEventStore]:
        store = await open_event_store("memory://", CONTRACT_TYPES)
        yield store
        await store.close()


class TestSQLiteProjections(ProjectionContract, InlineProjectionContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[BaseEventStore]:
        store = await open_event_store(f"sqlite:///{tmp_path}/events.db", CONTRACT_TYPES)
        yield store
        await store.close()


class TestPostgresProjections(ProjectionContract, InlineProjectionContract):
    @pytest.fixture
    async def store(self, postgres_url: str, pg_schema: str) -> AsyncIterator[BaseEventStore]:
        store = await open_event_store(f"{postgres_url}?schema={pg_schema}", CONTRACT_TYPES)
        yield store
        await store.close()
