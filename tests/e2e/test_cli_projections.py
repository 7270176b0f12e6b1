"""``chronik projections ...`` against real stores, with an engine running beside it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chronik.adapters import Database, open_database
from chronik.cli import embedded_url
from chronik.projections import ProjectionEngine
from chronik.testing.eventstore_contract import CONTRACT_TYPES, NOW, Deposited, Opened, Withdrawn
from chronik.testing.projection_contract import Balances, wait_for

CHRONIK = str(Path(sys.executable).with_name("chronik"))


@dataclass
class Done:
    code: int
    out: str
    err: str


async def chronik(*args: str, env: dict[str, str] | None = None) -> Done:
    process = await asyncio.create_subprocess_exec(
        CHRONIK,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


@pytest.fixture(params=["sqlite", "postgres"])
async def target(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Database, list[str]]]:
    if request.param == "sqlite":
        url = embedded_url(tmp_path)
        where = ["--data-dir", str(tmp_path)]
    else:
        postgres_url = request.getfixturevalue("postgres_url")
        schema = request.getfixturevalue("pg_schema")
        url = f"{postgres_url}?schema={schema}"
        where = ["--store-url", url]
    database = await open_database(url)
    yield database, where
    await database.close()


@pytest.fixture(autouse=True)
def _poison() -> None:
    Balances.poison = {13}


async def test_without_store_options_the_settings_name_the_store(tmp_path: Path) -> None:
    env = {"CHRONIK_DATA_DIR": str(tmp_path)}
    missing = await chronik("projections", "status", env=env)
    assert missing.code == 2, missing.err
    assert str(tmp_path / "chronik.db") in missing.err
    assert not (tmp_path / "chronik.db").exists()
    assert (await chronik("migrate", env=env)).code == 0
    done = await chronik("projections", "status", env=env)
    assert done.code == 0, done.err
    assert "No projection has run in this store yet" in done.out


async def test_status_lists_each_projection_with_its_state_and_lag(
    target: tuple[Database, list[str]],
) -> None:
    database, where = target
    store = database.event_store(CONTRACT_TYPES)
    empty = await chronik("projections", "status", *where)
    assert empty.code == 0, empty.err
    assert "No projection has run" in empty.out
    await store.append("s1", [Opened("h", "Ada", NOW), Deposited(3, "EUR"), Withdrawn(13)])
    engine = ProjectionEngine(
        store, [Balances()], backend=database.projections(), retries=1, idle_wait=0.2
    )
    await engine.start()
    try:
        assert await engine.wait_until(await store.head_position(), max_wait=10)

        async def reported() -> bool:
            row = await engine.backend.load("balances")
            return row is not None and row.state == "degraded"

        await wait_for(reported)
        done = await chronik("projections", "status", *where)
        assert done.code == 0, done.err
        line = next(x for x in done.out.splitlines() if "balances" in x)
        assert "degraded" in line
        parked = await chronik("projections", "parked", "balances", *where)
        assert "cannot withdraw 13" in parked.out and "s1 v3" in parked.out
        skipped = await chronik("projections", "skip-parked", "balances", *where)
        assert skipped.code == 0, skipped.err
        assert "Skipped 1 of 1 parked events" in skipped.out
        assert await engine.parked("balances") == []
    finally:
        await engine.stop()


async def test_rebuild_follows_the_runner_until_the_new_generation_serves(
    target: tuple[Database, list[str]],
) -> None:
    database, where = target
    store = database.event_store(CONTRACT_TYPES)
    for i in range(50):
        await store.append(f"r{i}", [Opened("h", "Ada", NOW), Deposited(i, "EUR")])
    engine = ProjectionEngine(
        store, [Balances()], backend=database.projections(), page_size=10, idle_wait=0.2
    )
    await engine.start()
    try:
        assert await engine.wait_until(await store.head_position(), max_wait=10)
        done = await chronik("projections", "rebuild", "balances", *where)
        assert done.code == 0, done.err
        assert "Rebuilt: 'balances' now serves generation 2" in done.out
        totals = await engine.read_models.get("balances", "totals", "all")
        assert totals == {"accounts": 50, "deposited": sum(range(50))}
    finally:
        await engine.stop()


async def test_a_bad_command_line_says_what_is_wrong(
    target: tuple[Database, list[str]],
) -> None:
    _, where = target
    bad_setting = await chronik("projections", "status", env={"CHRONIK_HTTP_PORT": "eighty"})
    assert bad_setting.code == 2
    assert "CHRONIK_HTTP_PORT (from env)" in bad_setting.err and "eighty" in bad_setting.err
    unknown = await chronik("projections", "rebuild", "nosuch", *where)
    assert unknown.code == 1
    assert "no projection named 'nosuch'" in unknown.err
    assert "Traceback" not in unknown.err
    bad_url = await chronik("projections", "status", "--store-url", "mysql://x")
    assert bad_url.code == 2 and "scheme 'mysql' is not supported" in bad_url.err
