"""The split mode: one process runs HTTP, another the projections, on one store.

docs/runtime.md: "the same code runs embedded or split by configuration alone"
(``CHRONIK_RUN``). Both runtimes here share a SQLite file or a PostgreSQL schema.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from chronik.http.app import create_app
from chronik.runtime.service import Runtime
from chronik.runtime.settings import load_settings
from reference.tickets import SPEC

NEW_TICKET = {"title": "Printer on fire", "reporter": "Ada"}


@pytest.fixture(autouse=True)
def _no_chronik_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("CHRONIK_")]:
        monkeypatch.delenv(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/chronik.db"
    postgres_url: str = request.getfixturevalue("postgres_url")
    schema: str = request.getfixturevalue("pg_schema")
    return f"{postgres_url}?schema={schema}"


@asynccontextmanager
async def running(**flags: Any) -> AsyncIterator[Runtime]:
    runtime = Runtime(load_settings(flags).settings, [SPEC])
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@asynccontextmanager
async def split(store_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A projections process and an HTTP process on one store; a client of the HTTP one."""
    async with (
        running(event_store_url=store_url, run="projections"),
        running(event_store_url=store_url, run="http", consistency_wait=2) as web,
    ):
        transport = httpx.ASGITransport(app=create_app(web))
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
            yield client


async def test_the_http_process_serves_writes_and_the_read_model_the_other_process_keeps(
    store_url: str,
) -> None:
    async with split(store_url) as client:
        # It runs no projection: it is ready without one, and shows none.
        assert (await client.get("/readyz")).json() == {
            "status": "ready",
            "reasons": [],
            "projections": {},
        }
        opened = await client.post("/tickets", json=NEW_TICKET)
        assert opened.status_code == 201
        deadline = time.monotonic() + 60
        while (ticket := await client.get(f"/tickets/{opened.json()['id']}")).status_code != 200:
            assert time.monotonic() < deadline, "the projections process never applied it"
            await asyncio.sleep(0.05)
        assert ticket.json()["title"] == NEW_TICKET["title"]


async def test_in_the_split_mode_a_read_with_the_position_of_a_write_sees_that_write(
    store_url: str,
) -> None:
    async with split(store_url) as client:
        opened = await client.post("/tickets", json=NEW_TICKET)
        ticket = await client.get(
            f"/tickets/{opened.json()['id']}",
            headers={"Chronik-Min-Position": opened.headers["chronik-position"]},
        )
        assert ticket.status_code == 200
