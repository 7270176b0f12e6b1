"""open_event_store: which URLs open which store, and which are refused before any I/O."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from chronik.adapters import open_event_store
from chronik.adapters.memory.eventstore import MemoryEventStore
from chronik.adapters.sqlite.eventstore import SQLiteEventStore
from chronik.errors import ConfigurationError
from chronik.eventstore import BaseEventStore, EventTypes

TYPES = EventTypes([])
BOBBY = quote("Robert'); DROP")


@pytest.fixture
async def opened() -> AsyncIterator[list[BaseEventStore]]:
    """Stores a test opens, closed after it."""
    stores: list[BaseEventStore] = []
    yield stores
    for store in stores:
        await store.close()


async def open_and_keep(url: str, opened: list[BaseEventStore]) -> BaseEventStore:
    store = await open_event_store(url, TYPES)
    opened.append(store)
    return store


def synchronous_level(store: BaseEventStore) -> int:
    """SQLite's PRAGMA synchronous on the writer (1 NORMAL, 2 FULL): read under the port."""
    assert isinstance(store, SQLiteEventStore)
    (level,) = store._database.writer.execute("PRAGMA synchronous").fetchone()
    return int(level)


class TestMemory:
    @pytest.mark.parametrize("url", ["memory://", "memory:///", "MEMORY://"])
    async def test_memory_opens_an_empty_in_process_store(
        self, url: str, opened: list[BaseEventStore]
    ) -> None:
        store = await open_and_keep(url, opened)
        assert isinstance(store, MemoryEventStore)
        assert await store.head_position() == 0

    async def test_memory_with_a_path_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="memory:// takes no path"):
            await open_event_store("memory://somewhere", TYPES)


class TestSQLite:
    async def test_three_slashes_name_a_path_relative_to_the_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[BaseEventStore]
    ) -> None:
        monkeypatch.chdir(tmp_path)
        store = await open_and_keep("sqlite:///data/events.db", opened)
        assert isinstance(store, SQLiteEventStore)
        assert (tmp_path / "data" / "events.db").is_file()

    async def test_four_slashes_name_an_absolute_path(
        self, tmp_path: Path, opened: list[BaseEventStore]
    ) -> None:
        target = tmp_path / "abs" / "events.db"
        url = f"sqlite:///{target}"
        assert url.startswith("sqlite:////")
        store = await open_and_keep(url, opened)
        assert isinstance(store, SQLiteEventStore)
        assert store.path == target
        assert target.is_file()

    async def test_synchronous_defaults_to_full(
        self, tmp_path: Path, opened: list[BaseEventStore]
    ) -> None:
        store = await open_and_keep(f"sqlite:///{tmp_path}/events.db", opened)
        assert synchronous_level(store) == 2

    @pytest.mark.parametrize("value", ["normal", "NORMAL"])
    async def test_synchronous_normal_is_accepted_and_applied(
        self, value: str, tmp_path: Path, opened: list[BaseEventStore]
    ) -> None:
        url = f"sqlite:///{tmp_path}/events.db?synchronous={value}&lock_timeout=2.5"
        store = await open_and_keep(url, opened)
        assert synchronous_level(store) == 1

    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("sqlite:///events.db?synchronous=bogus", "synchronous='bogus' is not one of"),
            ("sqlite:///events.db?journal=wal", "option 'journal' is not known"),
            ("sqlite:///events.db?lock_timeout=abc", "lock_timeout='abc' is not a number"),
            ("sqlite:///events.db?lock_timeout=-1", "lock_timeout='-1' must be positive"),
            ("sqlite:///events.db?lock_timeout=0", "lock_timeout='0' must be positive"),
            ("sqlite://host/events.db", "has a host part"),
            ("sqlite:///", "names no database file"),
            ("sqlite:///data/", "names no database file"),
        ],
    )
    async def test_a_bad_sqlite_url_is_refused_naming_the_problem_and_creates_no_file(
        self, url: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        with pytest.raises(ConfigurationError, match=problem):
            await open_event_store(url, TYPES)
        assert os.listdir(tmp_path) == []

    @pytest.mark.parametrize("value", ["nan", "inf"])
    async def test_a_lock_timeout_that_is_not_a_finite_number_is_refused(
        self, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        with pytest.raises(ConfigurationError, match="lock_timeout"):
            await open_event_store(f"sqlite:///events.db?lock_timeout={value}", TYPES)


class TestNotAStoreURL:
    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("not a url", "is not a URL"),
            ("", "is not a URL"),
            ("mysql://x", "scheme 'mysql' is not supported"),
        ],
    )
    async def test_it_is_refused_naming_the_problem(self, url: str, problem: str) -> None:
        with pytest.raises(ConfigurationError, match=problem):
            await open_event_store(url, TYPES)


class ConnectionAttempted(Exception):
    """Raised instead of connecting: the URL was accepted as far as the driver."""


@pytest.fixture
def no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to connect to PostgreSQL raises ConnectionAttempted instead."""
    postgres = pytest.importorskip("chronik.adapters.postgres.database")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionAttempted

    monkeypatch.setattr(postgres, "_first_connection", refuse)
    monkeypatch.setattr(postgres, "AsyncConnectionPool", refuse)


@pytest.mark.usefixtures("no_connection")
class TestPostgres:
    async def test_a_well_formed_url_gets_as_far_as_connecting(self) -> None:
        # Shows the guard works: the refusals below happen before this point.
        with pytest.raises(ConnectionAttempted):
            await open_event_store(
                "postgresql://app:pw@db.example:5432/app?schema=sales&pool_min=2&pool_max=4",
                TYPES,
            )

    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("postgresql://app:hunter2@db.example:port/app", "has an invalid port"),
            ("postgresql://app:hunter2@db.example:70000/app", "has an invalid port"),
            ("postgresql://", "names no host or database"),
            ("postgres:///", "names no host or database"),
            (
                f"postgresql://app:hunter2@db.example/app?schema={BOBBY}",
                'schema "Robert\'\\); DROP" is not valid',
            ),
            ("postgresql://app@db.example/app?schema=Sales", "schema 'Sales' is not valid"),
            (
                "postgresql://app@db.example/app?pool_min=5&pool_max=2",
                "pool_min <= pool_max, got 5, 2",
            ),
            ("postgresql://app@db.example/app?pool_min=0", "pool_min='0' must be positive"),
            (
                "postgresql://app@db.example/app?pool_max=many",
                "pool_max='many' is not a whole number",
            ),
            (
                "postgresql://app@db.example/app?connect_timeout=-3",
                "connect_timeout='-3' must be positive",
            ),
        ],
    )
    async def test_a_bad_url_is_refused_before_connecting(self, url: str, problem: str) -> None:
        with pytest.raises(ConfigurationError, match=problem) as caught:
            await open_event_store(url, TYPES)
        assert "hunter2" not in str(caught.value)


@pytest.mark.postgres
async def test_driver_options_pass_through_with_their_spaces(
    postgres_url: str, pg_schema: str
) -> None:
    # libpq reads %20 as a space but '+' as itself: "-c+application_name=..." would fail.
    options = quote("-c application_name=chronik_url_test", safe="")
    url = f"{postgres_url}?schema={pg_schema}&options={options}"
    from chronik.adapters.postgres.eventstore import PostgresEventStore

    store = await open_event_store(url, TYPES)
    try:
        assert isinstance(store, PostgresEventStore)
        rows = await store._fetch("SELECT current_setting('application_name')", ())
        assert rows == [("chronik_url_test",)]
    finally:
        await store.close()


class TestRedact:
    """redact() lives beside the URL parsing: it needs no driver installed."""

    def redact(self, url: str) -> str:
        from chronik.adapters.url import redact

        return redact(url)

    def test_the_password_is_replaced_and_the_rest_is_kept(self) -> None:
        assert (
            self.redact("postgresql://app:s3cr%40t@db:5432/app?sslmode=require")
            == "postgresql://app:***@db:5432/app?sslmode=require"
        )

    def test_a_password_without_a_user_is_replaced(self) -> None:
        assert self.redact("postgresql://:s3cret@db/app") == "postgresql://:***@db/app"

    def test_a_url_without_a_password_is_unchanged(self) -> None:
        url = "postgresql://app@db:5432/app?sslmode=require"
        assert self.redact(url) == url

    def test_a_password_given_as_a_query_parameter_is_hidden(self) -> None:
        assert "s3cret" not in self.redact("postgresql://app@db/app?password=s3cret")
