"""The projection contract, run on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chronik.adapters import Database, open_database
from chronik.testing.projection_contract import InlineProjectionContract, ProjectionContract


class TestMemoryProjections(ProjectionContract, InlineProjectionContract):
    @pytest.fixture
    async def database(self) -> AsyncIterator[Database]:
        database = await open_database("memory://")
        yield database
        await database.close()


class TestSQLiteProjections(ProjectionContract, InlineProjectionContract):
    @pytest.fixture
    async def database(self, tmp_path: Path) -> AsyncIterator[Database]:
        database = await open_database(f"sqlite:///{tmp_path}/events.db")
        yield database
        await database.close()


class TestPostgresProjections(ProjectionContract, InlineProjectionContract):
    @pytest.fixture
    async def database(self, postgres_url: str, pg_schema: str) -> AsyncIterator[Database]:
        database = await open_database(f"{postgres_url}?schema={pg_schema}")
        yield database
        await database.close()
