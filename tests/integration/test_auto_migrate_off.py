"""CHRONIK_AUTO_MIGRATE=false: a service runs no DDL; ``chronik migrate`` does it all.

The long-running pods of the distributed overlay set it, and a Job runs ``chronik
migrate`` (deploy/k8s, docs/deploy.md). Such a service refuses a store whose tables are
missing or behind with one line naming ``chronik migrate``, and once they are there it
starts without changing the schema: on SQLite the schema is compared before and after,
on PostgreSQL the service runs as a role that may not create anything.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from chronik.errors import MigrationsPendingError
from chronik.http.app import create_app
from chronik.runtime.service import Runtime, ServiceSpec
from chronik.runtime.settings import load_settings
from chronik.runtime.specs import load_specs

CHRONIK = str(Path(sys.executable).with_name("chronik"))
APP = "campaigns:spec"
#: no broker needed: the HTTP API, the projections and the processes
ROLES = "http,projections,processes"


@pytest.fixture(autouse=True)
def _no_chronik_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("CHRONIK_")]:
        monkeypatch.delenv(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store/chronik.db"
    postgres_url: str = request.getfixturevalue("postgres_url")
    schema: str = request.getfixturevalue("pg_schema")
    return f"{postgres_url}?schema={schema}"


def chronik(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHRONIK, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **(env or {})},
    )


def migrate(store_url: str, *options: str) -> subprocess.CompletedProcess[str]:
    done = chronik("migrate", "--store-url", store_url, *options)
    assert done.returncode == 0, done.stderr
    return done


def specs() -> list[ServiceSpec]:
    return load_specs(APP)


@asynccontextmanager
async def running(store_url: str, **flags: Any) -> AsyncIterator[Runtime]:
    settings = load_settings(
        {"event_store_url": store_url, "run": ROLES, "auto_migrate": False, **flags}
    ).settings
    runtime = Runtime(settings, specs())
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def create_a_campaign(runtime: Runtime) -> None:
    """A command through the HTTP API, and its read model: appends and projection writes."""
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as client:
        body = {"name": "Spring", "cost_cents": 100, "partner_behaviour": "confirm"}
        created = await client.post("/campaigns", json=body)
        assert created.status_code == 201, created.text
        position = created.headers["chronik-position"]
        shown = await client.get(
            f"/campaigns/{created.json()['id']}", headers={"Chronik-Min-Position": position}
        )
        assert shown.status_code == 200, shown.text
        assert (await client.get("/readyz")).status_code == 200


def schema_objects(store_url: str) -> list[tuple[str, ...]]:
    """Every table, view, index, sequence and function of the store, with its definition."""
    if store_url.startswith("sqlite:"):
        path = store_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name")
            return [tuple(str(v) for v in row) for row in rows]
    import psycopg

    base, schema = store_url.split("?schema=")
    with psycopg.connect(base) as conn:
        relations = conn.execute(
            "SELECT c.relkind::text, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "ORDER BY c.relname",
            (schema,),
        ).fetchall()
        functions = conn.execute(
            "SELECT 'f', p.proname || pg_get_function_identity_arguments(p.oid) FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s ORDER BY 2",
            (schema,),
        ).fetchall()
        return [tuple(r) for r in (*relations, *functions)]


def store_exists(store_url: str) -> bool:
    if store_url.startswith("sqlite:"):
        return Path(store_url.removeprefix("sqlite:///")).exists()
    import psycopg

    base, schema = store_url.split("?schema=")
    with psycopg.connect(base) as conn:
        row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        return row is not None


async def test_a_service_that_may_not_migrate_refuses_a_missing_store_and_makes_nothing(
    store_url: str,
) -> None:
    with pytest.raises(MigrationsPendingError, match="run `chronik migrate`") as refused:
        async with running(store_url):
            pass
    assert "events 0001_events" in str(refused.value)
    assert not store_exists(store_url)


async def test_a_store_migrated_without_the_app_is_refused_naming_the_projections(
    store_url: str,
) -> None:
    migrate(store_url)
    before = schema_objects(store_url)
    with pytest.raises(MigrationsPendingError) as refused:
        async with running(store_url):
            pass
    assert "projection campaign_board" in str(refused.value)
    assert "projection process_index" in str(refused.value)
    assert schema_objects(store_url) == before


async def test_after_chronik_migrate_with_the_app_the_service_starts_and_runs_no_ddl(
    store_url: str,
) -> None:
    migrate(store_url, "--app", APP)
    before = schema_objects(store_url)
    async with running(store_url) as runtime:
        await create_a_campaign(runtime)
    assert schema_objects(store_url) == before


async def test_a_projection_at_a_new_version_is_refused_until_migrate_begins_its_rebuild(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(store_url, "--app", APP)
    [spec] = specs()
    board = type(spec.projections[0])
    monkeypatch.setattr(board, "version", board.version + 1)
    with pytest.raises(MigrationsPendingError, match="projection campaign_board"):
        async with running(store_url):
            pass
    from chronik.cli.run import opened
    from chronik.runtime.migrations import plan

    async with opened(store_url) as database:
        runtime = Runtime(load_settings({"event_store_url": store_url}).settings, specs())
        await runtime.prepare(database)
        assert await runtime.engine.begin_rebuilds() == ["campaign_board"]
        steps = await plan(database, runtime.store, specs())
        assert all(step.applied for step in steps), steps
    async with running(store_url) as runtime:
        await create_a_campaign(runtime)


def test_chronik_serve_that_may_not_migrate_exits_with_one_line_naming_chronik_migrate(
    tmp_path: Path,
) -> None:
    store = tmp_path / "never" / "chronik.db"
    done = chronik(
        "serve",
        env={
            "CHRONIK_APP": APP,
            "CHRONIK_EVENT_STORE_URL": f"sqlite:///{store}",
            "CHRONIK_RUN": ROLES,
            "CHRONIK_AUTO_MIGRATE": "false",
            "CHRONIK_HTTP_PORT": "1",  # never reached: it exits before it listens
        },
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "CHRONIK_AUTO_MIGRATE is off: run `chronik migrate`" in line, line
    assert "Traceback" not in done.stderr
    assert not store.parent.exists()


# -- chronik migrate --status and --sql ------------------------------------------------


def test_migrate_status_lists_every_part_and_exits_1_while_anything_is_pending(
    store_url: str,
) -> None:
    fresh = chronik("migrate", "--status", "--store-url", store_url, "--app", APP)
    assert fresh.returncode == 1, fresh.stderr
    lines = fresh.stdout.splitlines()
    for part, name in [
        ("events", "0001_events"),
        ("read models", "projections_0001"),
        ("messages", "messaging_0001"),
        ("projection", "campaign_board"),
        ("projection", "process_index"),
    ]:
        assert any(line.startswith(part) and f" {name} " in line for line in lines), fresh.stdout
    assert lines[-1].endswith("pending")
    assert not store_exists(store_url)  # looking made nothing

    migrate(store_url)
    half = chronik("migrate", "--status", "--store-url", store_url, "--app", APP)
    assert half.returncode == 1
    assert "campaign_board" in half.stdout and "pending: tables to create" in half.stdout
    assert "0001_events" in half.stdout and "applied" in half.stdout

    migrate(store_url, "--app", APP)
    current = chronik("migrate", "--status", "--store-url", store_url, "--app", APP)
    assert current.returncode == 0, current.stdout
    assert current.stdout.splitlines()[-1].endswith("up to date")
    assert "pending" not in current.stdout


def test_migrate_sql_prints_what_would_run_and_applying_it_by_hand_brings_the_store_up_to_date(
    store_url: str,
) -> None:
    shown = chronik("migrate", "--sql", "--store-url", store_url)
    assert shown.returncode == 0, shown.stderr
    assert not store_exists(store_url)  # printed, not run
    assert "-- events: 0001_events" in shown.stdout
    assert "CREATE TABLE" in shown.stdout
    if store_url.startswith("sqlite:"):
        path = Path(store_url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True)
        with sqlite3.connect(path) as conn:
            conn.executescript(shown.stdout)
    else:
        import psycopg

        base, _ = store_url.split("?schema=")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(shown.stdout.encode())
    status = chronik("migrate", "--status", "--store-url", store_url)
    assert status.returncode == 0, status.stdout
    again = chronik("migrate", "--sql", "--store-url", store_url)
    assert again.stdout.strip().endswith("nothing to migrate"), again.stdout


def test_migrate_sql_shows_the_tables_of_the_apps_projections() -> None:
    shown = chronik(
        "migrate", "--sql", "--store-url", "sqlite:////nonexistent/x/chronik.db", "--app", APP
    )
    assert shown.returncode == 0, shown.stderr
    assert "-- projection: campaign_board" in shown.stdout
    assert "CREATE TABLE rm_campaign_board_campaigns_g1" in shown.stdout
    assert "CREATE VIEW rm_campaign_board_campaigns AS" in shown.stdout


# -- PostgreSQL: a runtime role that may not create anything ---------------------------


@pytest.fixture
def runtime_role(postgres_url: str) -> Iterator[str]:
    """A login role of the test's own, with no rights beyond connecting."""
    import psycopg

    role = f"t_runtime_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    yield role
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def _as_role(postgres_url: str, role: str, schema: str) -> str:
    base = postgres_url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
    assert base != postgres_url, "the test expects the postgres user in the test URL"
    return f"{base}?schema={schema}"


@pytest.mark.postgres
async def test_a_role_with_only_usage_and_dml_runs_the_service_the_migrate_job_prepared(
    postgres_url: str, pg_schema: str, runtime_role: str
) -> None:
    import psycopg

    owner_url = f"{postgres_url}?schema={pg_schema}"
    # The role may not create: a service that may migrate fails as it, on a new schema.
    with pytest.raises(Exception, match="permission denied"):
        async with running(_as_role(postgres_url, runtime_role, pg_schema), auto_migrate=True):
            pass
    migrate(owner_url, "--app", APP)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for grant in [
            "GRANT USAGE ON SCHEMA {s} TO {r}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}",
            "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r}",
            "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {r}",
        ]:
            conn.execute(grant.format(s=pg_schema, r=runtime_role))
        can_create = conn.execute(
            "SELECT has_schema_privilege(%s, %s, 'CREATE')", (runtime_role, pg_schema)
        ).fetchone()
    assert can_create == (False,)
    before = schema_objects(owner_url)
    async with running(_as_role(postgres_url, runtime_role, pg_schema)) as runtime:
        await create_a_campaign(runtime)
    assert schema_objects(owner_url) == before


async def test_a_requested_rebuild_in_a_service_that_may_not_migrate_errs_saying_why(
    store_url: str,
) -> None:
    migrate(store_url, "--app", APP)
    before = schema_objects(store_url)
    async with running(store_url) as runtime:
        await runtime.database.projections().request("campaign_board", "rebuild")
        deadline = time.monotonic() + 60
        while True:
            [board] = [s for s in await runtime.engine.statuses() if s.name == "campaign_board"]
            if board.state == "error":
                break
            assert time.monotonic() < deadline, board
            await asyncio.sleep(0.1)
        assert board.error is not None
        assert "a requested rebuild: run it where the role may create tables" in board.error
        assert any("campaign_board is error" in r for r in await runtime.readiness())
    assert schema_objects(store_url) == before
