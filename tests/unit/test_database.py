"""A database object per technology: opened by URL, it hands out the roles that share it."""

from __future__ import annotations

from pathlib import Path

import pytest

from chronik.adapters import open_database, open_event_store
from chronik.errors import StoreUnavailableError
from chronik.testing.eventstore_contract import CONTRACT_TYPES, Withdrawn


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/events.db"


async def test_each_role_is_one_object_of_its_database(url: str) -> None:
    database = await open_database(url)
    try:
        assert database.messages() is database.messages()
        assert database.projections() is database.projections()
        assert database.event_store(CONTRACT_TYPES) is not database.event_store(CONTRACT_TYPES)
    finally:
        await database.close()


async def test_every_store_of_one_database_sees_the_same_events(url: str) -> None:
    database = await open_database(url)
    try:
        first, second = (database.event_store(CONTRACT_TYPES) for _ in range(2))
        await first.append("acc-1", [Withdrawn(1)])
        assert [r.event for r in await second.read_stream("acc-1")] == [Withdrawn(1)]
    finally:
        await database.close()


async def test_closing_a_store_the_database_handed_out_leaves_the_database_open(
    url: str,
) -> None:
    database = await open_database(url)
    try:
        store = database.event_store(CONTRACT_TYPES)
        await store.append("acc-1", [Withdrawn(1)])
        await store.close()
        assert await database.event_store(CONTRACT_TYPES).head_position() == 1
    finally:
        await database.close()


async def test_closing_the_store_of_open_event_store_closes_its_database(tmp_path: Path) -> None:
    store = await open_event_store(f"sqlite:///{tmp_path}/events.db", CONTRACT_TYPES)
    await store.append("acc-1", [Withdrawn(1)])
    await store.close()
    with pytest.raises(StoreUnavailableError, match="closed"):
        await store.head_position()


async def test_closing_a_database_twice_is_closing_it_once(url: str) -> None:
    database = await open_database(url)
    await database.close()
    await database.close()
