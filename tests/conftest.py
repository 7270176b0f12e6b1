"""Shared fixtures: the real servers the integration tests use, found or skipped."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# The contract suites assert inside chronik.testing: have pytest explain their failures.
pytest.register_assert_rewrite("chronik.testing")

if TYPE_CHECKING:
    from chronik.adapters import Database

POSTGRES_URL = os.environ.get(
    "CHRONIK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("CHRONIK_REQUIRE_SERVICES") == "1"


def service_missing(reason: str) -> None:
    """Skip the test with a one-line reason, or fail it when CI requires the services."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (CHRONIK_REQUIRE_SERVICES=1, so this is a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    try:
        import psycopg
    except ImportError:
        service_missing("psycopg is not installed (pip install 'chronik[postgres]')")
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        service_missing(f"PostgreSQL is not reachable at {POSTGRES_URL}: {str(exc).strip()}")
    return POSTGRES_URL


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name, dropped after the test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """An empty database of each technology in turn, closed after the test."""
    from chronik.adapters import open_database

    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/chronik.db"
    else:
        postgres = request.getfixturevalue("postgres_url")
        url = f"{postgres}?schema={request.getfixturevalue('pg_schema')}"
    database = await open_database(url)
    yield database
    await database.close()
