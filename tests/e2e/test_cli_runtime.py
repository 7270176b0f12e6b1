"""``chronik config|streams|migrate|serve|outbox|dead-letters`` against real stores.

Each command runs as a subprocess, as a user runs it, on an embedded SQLite store and on
a PostgreSQL schema of its own. Bad input gets one clear line and a non-zero exit code,
never a traceback.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from runtime_process import SAMPLE_APP, Done, chronik, serving

from chronik.adapters import Database, open_database
from chronik.adapters.sqlite.database import SQLiteDatabase
from chronik.cli import embedded_url
from chronik.eventstore import BaseEventStore, EventTypes, Repository
from chronik.messaging.port import DeadLetter, OutboxRow
from chronik.runtime.settings import Settings
from reference.tour import Ticket, TicketClosed, TicketCommented, TicketOpened

SECRET = "tok-51d0c3-never-printed"
TICKET_TYPES = EventTypes([TicketOpened, TicketCommented, TicketClosed])
TICKETS = ["a%b", "a_b", "axb", "aXYb", "b1"]


def _one_clear_line(done: Done, code: int, says: str) -> None:
    """The command failed with ``code`` and said ``says`` in one line, with no traceback."""
    assert done.code == code, (done.out, done.err)
    assert "Traceback" not in done.out + done.err
    assert len(done.err_lines) == 1, done.err
    assert says in done.err_lines[0], done.err


def _json_documents(text: str) -> list[dict[str, Any]]:
    """The JSON documents printed one after another."""
    decoder = json.JSONDecoder()
    documents: list[dict[str, Any]] = []
    index = 0
    while (index := _skip_space(text, index)) < len(text):
        document, index = decoder.raw_decode(text, index)
        documents.append(document)
    return documents


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index].isspace():
        index += 1
    return index


def _table(out: str) -> dict[str, tuple[str, str]]:
    """Rows of a rich table as {first column: (second, third)}."""
    rows: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 3:
            rows[cells[0]] = (cells[1], cells[2])
    return rows


@pytest.fixture(params=["sqlite", "postgres"])
async def target(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Database, list[str]]]:
    """An open database (of a store of tickets) and the command-line options that name it."""
    if request.param == "sqlite":
        url = embedded_url(tmp_path / "data")
        where = ["--data-dir", str(tmp_path / "data")]
    else:
        postgres_url = request.getfixturevalue("postgres_url")
        schema = request.getfixturevalue("pg_schema")
        url = f"{postgres_url}?schema={schema}"
        where = ["--store-url", url]
    database = await open_database(url)
    yield database, where
    await database.close()


async def _seed(store: BaseEventStore) -> None:
    repo = Repository(store, Ticket, prefix="ticket-")
    for ticket_id in TICKETS:
        ticket = Ticket.open(ticket_id, f"about {ticket_id}", "person-1", "Ada", datetime.now(UTC))
        ticket.comment("still broken")
        await repo.save(ticket)


# -- config show ---------------------------------------------------------------------


async def test_config_show_lists_every_setting_with_its_source_and_masks_the_token(
    tmp_path: Path,
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "api_token").write_text(SECRET)
    config = tmp_path / "chronik.yaml"
    config.write_text("log_level: debug\nhttp_port: 9100\n")
    env = {
        "CHRONIK_HTTP_PORT": "9200",
        "CHRONIK_SECRETS_DIR": str(secrets),
        "CHRONIK_CONFIG_FILE": str(config),
    }
    done = await chronik("config", "show", env=env)
    assert done.code == 0, done.err
    rows = _table(done.out)
    assert rows["CHRONIK_HTTP_PORT"] == ("9200", "env")
    assert rows["CHRONIK_LOG_LEVEL"] == ("debug", "file")
    assert rows["CHRONIK_API_TOKEN"] == ("********", "secrets")
    assert rows["CHRONIK_SERVICE"] == ("chronik", "default")
    assert rows["CHRONIK_EVENT_STORE_URL"] == ("-", "default")
    assert rows["CHRONIK_READ_AUTH"] == ("personal", "default")
    every = {f"CHRONIK_{name.upper()}" for name in Settings.model_fields}
    assert {name for name in rows if name.startswith("CHRONIK_")} == every
    assert SECRET not in done.out + done.err

    from_env = await chronik("config", "show", env={"CHRONIK_API_TOKEN": SECRET})
    assert _table(from_env.out)["CHRONIK_API_TOKEN"] == ("********", "env")
    assert SECRET not in from_env.out + from_env.err


async def test_config_show_with_a_bad_value_says_which_in_one_line_without_the_token() -> None:
    env = {"CHRONIK_HTTP_PORT": "eighty", "CHRONIK_API_TOKEN": SECRET}
    done = await chronik("config", "show", env=env)
    _one_clear_line(done, 2, "configuration: CHRONIK_HTTP_PORT (from env)")
    assert "'eighty'" in done.err
    assert SECRET not in done.out + done.err


async def test_config_show_takes_the_store_options_the_other_commands_take(
    tmp_path: Path,
) -> None:
    done = await chronik("config", "show", "--data-dir", str(tmp_path / "d"))
    assert done.code == 0, done.err
    assert _table(done.out)["CHRONIK_DATA_DIR"] == (str(tmp_path / "d"), "flag")
    url = f"postgresql://app:{SECRET}@db.internal/sales"
    done = await chronik("config", "show", "--store-url", url, env={"CHRONIK_DATA_DIR": "/x"})
    assert done.code == 0, done.err
    rows = _table(done.out)
    assert rows["CHRONIK_EVENT_STORE_URL"] == ("postgresql://app:***@db.internal/sales", "flag")
    assert rows["CHRONIK_DATA_DIR"] == ("/x", "env")
    assert SECRET not in done.out + done.err


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("CHRONIK_EVENT_STORE_URL", f"mysql://app:{SECRET}@db/x", "scheme 'mysql' is not"),
        ("CHRONIK_BROKER_URL", f"kafka://app:{SECRET}@broker/", "scheme 'kafka' is not"),
    ],
)
async def test_config_show_refuses_a_url_it_could_not_use_naming_the_setting(
    variable: str, value: str, says: str
) -> None:
    done = await chronik("config", "show", env={variable: value})
    _one_clear_line(done, 2, f"configuration: {variable} (from env): ")
    assert says in done.err
    assert SECRET not in done.out + done.err


async def test_config_show_refuses_a_misspelt_variable_naming_the_setting_meant() -> None:
    done = await chronik("config", "show", env={"CHRONIK_HTTP_PROT": "9000"})
    _one_clear_line(
        done,
        2,
        "CHRONIK_HTTP_PROT (from env): not a chronik setting (did you mean CHRONIK_HTTP_PORT?)",
    )


async def test_config_show_with_unknown_settings_allowed_warns_in_one_line() -> None:
    env = {"CHRONIK_HTTP_PROT": "9000", "CHRONIK_ALLOW_UNKNOWN_SETTINGS": "1"}
    done = await chronik("config", "show", env=env)
    assert done.code == 0, done.err
    assert done.err_lines == [
        "warning: chronik.runtime.settings: CHRONIK_HTTP_PROT (from env): not a chronik setting "
        "(did you mean CHRONIK_HTTP_PORT?); ignored"
    ]
    rows = _table(done.out)
    assert rows["CHRONIK_ALLOW_UNKNOWN_SETTINGS"] == ("True", "env")
    assert rows["CHRONIK_HTTP_PORT"] == ("8000", "default")


async def test_config_show_in_a_pod_with_kubernetes_service_links_shows_the_defaults() -> None:
    links = {
        "CHRONIK_HTTP_PORT": "tcp://10.0.0.2:8000",
        "CHRONIK_HTTP_PORT_8000_TCP": "tcp://10.0.0.2:8000",
        "CHRONIK_HTTP_SERVICE_HOST": "10.0.0.2",
        "CHRONIK_SERVICE_PORT": "80",
        "CHRONIK_REQUIRE_SERVICES": "1",
    }
    done = await chronik("config", "show", env=links)
    assert done.code == 0, done.err
    assert done.err == ""
    assert _table(done.out)["CHRONIK_HTTP_PORT"] == ("8000", "default")


async def test_config_show_hides_the_password_in_the_event_store_url() -> None:
    url = f"postgresql://app:{SECRET}@db.internal:5432/sales"
    done = await chronik("config", "show", env={"CHRONIK_EVENT_STORE_URL": url})
    assert done.code == 0, done.err
    assert "db.internal" in done.out
    assert SECRET not in done.out


# -- streams -------------------------------------------------------------------------


async def test_streams_list_shows_each_stream_with_its_version_and_filters_by_prefix(
    target: tuple[Database, list[str]],
) -> None:
    database, where = target
    store = database.event_store(TICKET_TYPES)
    empty = await chronik("streams", "list", *where)
    assert empty.code == 0, empty.err
    assert empty.out.strip() == "No streams."
    await _seed(store)
    await store.append("other-1", [TicketClosed(datetime.now(UTC))])

    everything = await chronik("streams", "list", *where)
    assert everything.code == 0, everything.err
    lines = everything.out.splitlines()
    assert sorted(lines) == sorted([f"ticket-{t}  v2" for t in TICKETS] + ["other-1  v1"])
    starting_a = await chronik("streams", "list", "--prefix", "ticket-a", *where)
    assert sorted(starting_a.out.splitlines()) == sorted(
        f"ticket-{t}  v2" for t in TICKETS if t.startswith("a")
    )
    two = await chronik("streams", "list", "--limit", "2", *where)
    assert len(two.out.splitlines()) == 2
    # The next page starts after the last id shown; --type keeps streams with such events.
    last = two.out.splitlines()[-1].split()[0]
    rest = await chronik("streams", "list", "--after", last, *where)
    assert rest.code == 0, rest.err
    assert two.out.splitlines() + rest.out.splitlines() == sorted(lines)
    closed = await chronik("streams", "list", "--type", "tour.ticket_closed", *where)
    assert closed.out.splitlines() == ["other-1  v1"], closed.out


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("ticket-a%", ["ticket-a%b  v2"]),
        ("ticket-a_", ["ticket-a_b  v2"]),
        ("%", ["No streams."]),
        ("_", ["No streams."]),
        ("ticket-%", ["No streams."]),
    ],
)
async def test_a_prefix_with_percent_or_underscore_matches_literally(
    target: tuple[Database, list[str]], prefix: str, expected: list[str]
) -> None:
    database, where = target
    store = database.event_store(TICKET_TYPES)
    await _seed(store)
    done = await chronik("streams", "list", "--prefix", prefix, *where)
    assert done.code == 0, done.err
    assert done.out.splitlines() == expected


async def test_streams_show_prints_each_event_as_stored_without_the_app(
    target: tuple[Database, list[str]],
) -> None:
    database, where = target
    store = database.event_store(TICKET_TYPES)
    await _seed(store)
    done = await chronik("streams", "show", "ticket-a%b", *where)
    assert done.code == 0, done.err
    opened, commented = _json_documents(done.out)
    assert (opened["version"], opened["type"]) == (1, "tour.ticket_opened")
    assert (commented["version"], commented["type"]) == (2, "tour.ticket_commented")
    assert opened["data"]["title"] == "about a%b"
    # Without the app, personal data is shown as encrypted: neither "Ada" nor ciphertext.
    assert opened["data"]["reporter"] == "[encrypted]"
    assert "$enc" not in done.out
    assert commented["data"] == {"text": "still broken"}
    assert commented["position"] > opened["position"]
    first = await chronik("streams", "show", "ticket-a%b", "--at", "1", *where)
    assert [d["version"] for d in _json_documents(first.out)] == [1]


async def test_streams_show_with_the_app_decodes_each_event(
    target: tuple[Database, list[str]],
) -> None:
    database, where = target
    store = database.event_store(TICKET_TYPES)
    await _seed(store)
    done = await chronik("streams", "show", "ticket-a_b", "--app", SAMPLE_APP, *where)
    assert done.code == 0, done.err
    headers = [line for line in done.out.splitlines() if line.startswith("v")]
    assert [h.split()[0] for h in headers] == ["v1", "v2"]
    assert headers[0].endswith("tour.ticket_opened")
    assert headers[1].endswith("tour.ticket_commented")
    opened, commented = _json_documents(
        "\n".join(line for line in done.out.splitlines() if not line.startswith("v"))
    )
    assert opened["reporter"] == "Ada"
    assert opened["title"] == "about a_b"
    assert commented == {"text": "still broken"}
    from_env = await chronik(
        "streams", "show", "ticket-a_b", "--at", "1", *where, env={"CHRONIK_APP": SAMPLE_APP}
    )
    assert [line.split()[0] for line in from_env.out.splitlines() if line.startswith("v")] == ["v1"]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["streams", "show", "nosuch"], 1, "error: stream 'nosuch' has no events"),
        (["streams", "show", "nosuch", "--app", SAMPLE_APP], 1, "stream 'nosuch' has no events"),
        (["streams", "show", ""], 1, "error: a stream id must not be empty"),
        (["streams", "list", "--limit", "0"], 1, "error: limit must be an int from 1"),
        (["streams", "show", "x", "--app", "nosuch.module:SPEC"], 2, "No module named 'nosuch'"),
        (["streams", "show", "x", "--app", "reference.tour:NOPE"], 2, "has no attribute 'NOPE'"),
    ],
    ids=["missing", "missing-app", "empty-id", "limit", "app-module", "app-attribute"],
)
async def test_streams_commands_given_bad_input_say_what_is_wrong_in_one_line(
    target: tuple[Database, list[str]], args: list[str], code: int, says: str
) -> None:
    _, where = target
    _one_clear_line(await chronik(*args, *where), code, says)


@pytest.mark.parametrize("command", ["streams", "serve"])
@pytest.mark.parametrize(
    "reference",
    [
        "chronik.eventstore.base:MAX_STREAM_ID_BYTES",
        "chronik.runtime.settings:load_settings",
        "chronik.runtime.specs:load_specs",
    ],
    ids=["an-int", "a-factory-of-something-else", "a-function-needing-arguments"],
)
async def test_an_app_reference_that_gives_no_specs_is_one_clear_line(
    tmp_path: Path, command: str, reference: str
) -> None:
    where = ["--data-dir", str(tmp_path)]
    args = ["streams", "show", "x", *where] if command == "streams" else ["serve", *where]
    done = await chronik(*args, env={"CHRONIK_APP": reference})
    _one_clear_line(done, 2, f"configuration: CHRONIK_APP {reference!r}")


@pytest.mark.parametrize("app", [False, True], ids=["raw", "with-the-app"])
@pytest.mark.parametrize("at", ["0", "-3"])
async def test_streams_show_refuses_a_version_below_one(
    target: tuple[Database, list[str]], at: str, app: bool
) -> None:
    database, where = target
    store = database.event_store(TICKET_TYPES)
    await _seed(store)
    with_app = ["--app", SAMPLE_APP] if app else []
    done = await chronik("streams", "show", "ticket-b1", "--at", at, *with_app, *where)
    _one_clear_line(done, 2, f"--at {at}: versions start at 1")
    assert done.out == ""


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


READ_ONLY_COMMANDS = [
    ["streams", "list"],
    ["streams", "show", "ticket-b1"],
    ["projections", "status"],
    ["projections", "parked", "balances"],
    ["projections", "rebuild", "balances"],
    ["outbox", "status"],
    ["dead-letters", "list"],
    ["processes", "list"],
    ["processes", "show", "trip/t-1"],
]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("place", ["no-directory", "empty-directory"])
async def test_a_command_on_a_data_dir_without_a_store_refuses_it_and_creates_nothing(
    tmp_path: Path, command: list[str], place: str
) -> None:
    data = tmp_path / "typo"
    if place == "empty-directory":
        data.mkdir()
    done = await chronik(*command, "--data-dir", str(data))
    _one_clear_line(done, 2, f"configuration: SQLite database '{data.resolve()}/chronik.db'")
    assert "does not exist" in done.err
    assert _entries(tmp_path) == (["typo"] if place == "empty-directory" else [])
    assert not data.exists() or _entries(data) == []


async def test_a_command_on_a_sqlite_file_without_chronik_tables_refuses_it(
    tmp_path: Path,
) -> None:
    import sqlite3

    (tmp_path / "chronik.db").touch()
    with sqlite3.connect(tmp_path / "other.db") as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    empty = await chronik("streams", "list", "--data-dir", str(tmp_path))
    _one_clear_line(empty, 2, "chronik.db' has no chronik tables")
    other = await chronik("outbox", "status", "--store-url", f"sqlite:///{tmp_path}/other.db")
    _one_clear_line(other, 2, "other.db' has no chronik tables")
    with sqlite3.connect(tmp_path / "other.db") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"notes"}
    assert (tmp_path / "chronik.db").stat().st_size == 0


@pytest.mark.postgres
@pytest.mark.parametrize("command", READ_ONLY_COMMANDS[:4], ids=" ".join)
async def test_a_command_on_a_postgres_schema_without_chronik_tables_says_so(
    postgres_url: str, pg_schema: str, command: list[str]
) -> None:
    import psycopg

    done = await chronik(*command, "--store-url", f"{postgres_url}?schema={pg_schema}")
    _one_clear_line(done, 2, f"schema '{pg_schema}' has no chronik tables")
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
            (pg_schema,),
        ).fetchone()
    assert found == (0,)


async def test_giving_both_store_options_is_refused_without_a_traceback(tmp_path: Path) -> None:
    for command in (["streams", "list"], ["outbox", "status"], ["dead-letters", "list"]):
        done = await chronik(*command, "--store-url", "memory://", "--data-dir", str(tmp_path))
        assert done.code == 2
        assert "give --store-url or --data-dir, not both" in done.err
        assert "Traceback" not in done.err


# -- migrate -------------------------------------------------------------------------


async def test_migrate_creates_the_tables_of_a_new_sqlite_store_and_can_run_again(
    tmp_path: Path,
) -> None:
    data = tmp_path / "new"
    for _ in range(2):
        done = await chronik("migrate", "--data-dir", str(data))
        assert done.code == 0, done.err
        assert f"Migrated sqlite:///{data.resolve()}/chronik.db" in done.out
    database = await open_database(embedded_url(data))
    try:
        assert isinstance(database, SQLiteDatabase)
        tables = {name for (name,) in database.query("SELECT name FROM sqlite_master", ())}
    finally:
        await database.close()
    assert {"chronik_events", "chronik_projections", "chronik_outbox", "chronik_inbox"} <= tables
    assert "chronik_dead_letters" in tables


@pytest.mark.postgres
async def test_migrate_creates_the_tables_of_a_new_postgres_schema_and_can_run_again(
    postgres_url: str, pg_schema: str
) -> None:
    import psycopg

    url = f"{postgres_url}?schema={pg_schema}"
    for _ in range(2):
        done = await chronik("migrate", "--store-url", url)
        assert done.code == 0, done.err
        assert "Migrated postgresql://" in done.out
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (pg_schema,),
        ).fetchall()
    tables = {name for (name,) in rows}
    assert {"chronik_events", "chronik_projections", "chronik_outbox", "chronik_inbox"} <= tables
    assert "chronik_dead_letters" in tables


UNREACHABLE = f"postgresql://app:{SECRET}@127.0.0.1:1/x?connect_timeout=1"


@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        (
            UNREACHABLE,
            1,
            "error: cannot connect to PostgreSQL at postgresql://app:***@127.0.0.1:1/x",
        ),
        ("mysql://x", 2, "configuration: event store URL scheme 'mysql' is not supported"),
        ("sqlite://host/x.db", 2, "configuration: sqlite URL 'sqlite://host/x.db' has a host"),
        ("postgresql://h/db?pool_min=0", 2, "pool_min='0' must be positive"),
    ],
    ids=["unreachable", "scheme", "sqlite-host", "option"],
)
async def test_migrate_of_a_store_it_cannot_use_fails_with_a_clear_error(
    url: str, code: int, says: str
) -> None:
    done = await chronik("migrate", "--store-url", url)
    assert done.code == code
    assert "Traceback" not in done.out + done.err
    assert says in done.err_lines[-1], done.err
    assert SECRET not in done.out + done.err


async def test_migrate_of_an_unreachable_postgres_is_one_line_on_stderr() -> None:
    done = await chronik("migrate", "--store-url", UNREACHABLE)
    _one_clear_line(done, 1, "error: cannot connect to PostgreSQL")


# -- outbox and dead letters ---------------------------------------------------------


async def _transaction_add_outbox(database: Database, rows: list[OutboxRow]) -> None:
    storage = database.messages()
    await storage.setup()
    if isinstance(database, SQLiteDatabase):
        async with database.transaction() as conn:
            await storage.add_outbox(conn, rows)
        return
    from chronik.adapters.postgres.database import PostgresDatabase  # needs psycopg

    assert isinstance(database, PostgresDatabase)
    async with database.transaction() as pg_conn:
        await storage.add_outbox(pg_conn, rows)


async def test_outbox_status_counts_pending_and_published_messages(
    target: tuple[Database, list[str]],
) -> None:
    database, where = target
    empty = await chronik("outbox", "status", *where)
    assert empty.code == 0, empty.err
    assert [" ".join(line.split()) for line in empty.out.splitlines()] == [
        "pending 0",
        "oldest -",
        "published 0 (kept for an hour)",
    ]
    rows = [OutboxRow(p, f"m{p}", "ticket-x", "tour.ticket_opened.v1", b"{}") for p in (1, 2, 3)]
    await _transaction_add_outbox(database, rows)
    await database.messages().mark_published([1])
    done = await chronik("outbox", "status", *where)
    assert done.code == 0, done.err
    lines = [" ".join(line.split()) for line in done.out.splitlines()]
    assert lines[0] == "pending 2"
    assert lines[1].startswith("oldest ") and lines[1].endswith(" s ago")
    assert lines[2] == "published 1 (kept for an hour)"


async def test_dead_letters_list_shows_each_letter_with_its_error(
    target: tuple[Database, list[str]],
) -> None:
    database, where = target
    empty = await chronik("dead-letters", "list", *where)
    assert empty.code == 0, empty.err
    assert empty.out.strip() == "No dead letters."
    storage = database.messages()
    await storage.setup()
    for consumer, message_id in [("billing", "m-1"), ("mailer", "m-2")]:
        await storage.add_dead_letter(
            DeadLetter(
                consumer,
                message_id,
                "sales.order_submitted.v1",
                b"{}",
                "ValueError: [bold]no such customer[/bold]",
                5,
                datetime.now(UTC),
            )
        )
    done = await chronik("dead-letters", "list", *where)
    assert done.code == 0, done.err
    assert "billing  m-1  sales.order_submitted.v1  attempts 5" in done.out
    assert "ValueError: [bold]no such customer[/bold]" in done.out
    assert "mailer  m-2" in done.out
    only = await chronik("dead-letters", "list", "--consumer", "mailer", *where)
    assert "mailer  m-2" in only.out
    assert "billing" not in only.out


@pytest.mark.parametrize("command", [["outbox", "status"], ["dead-letters", "list"]])
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://x", "configuration: event store URL scheme 'mysql' is not supported"),
        ("memory://nowhere", "memory:// takes no path"),
        ("not-a-url", "is not a URL"),
    ],
)
async def test_outbox_and_dead_letters_given_a_bad_store_say_so_in_one_line(
    command: list[str], url: str, says: str
) -> None:
    _one_clear_line(await chronik(*command, "--store-url", url), 2, says)


async def test_outbox_and_dead_letters_with_a_bad_setting_say_which_in_one_line() -> None:
    for command in (["outbox", "status"], ["dead-letters", "list"]):
        done = await chronik(*command, env={"CHRONIK_DATA_DIR": "", "CHRONIK_HTTP_PORT": "x"})
        _one_clear_line(done, 2, "configuration: CHRONIK_HTTP_PORT (from env)")


# -- serve ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_serve_starts_answers_healthz_and_stops_on_sigterm(
    target: tuple[Database, list[str]], tmp_path: Path
) -> None:
    _, where = target
    env = {"CHRONIK_SHUTDOWN_DRAIN_DELAY": "0.5", "CHRONIK_SHUTDOWN_GRACE": "6"}
    async with serving(tmp_path / "logs", env, *where) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=5) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            opened = await client.post("/tickets", json={"title": "t", "reporter": "r"})
            assert opened.status_code == 201
            deadline = time.monotonic() + 60
            while (await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "never ready"
        signalled = served.terminate()
        assert await served.exit_code(within=6) == 0
        assert time.monotonic() - signalled < 6
    lines = [json.loads(line) for line in served.stderr.splitlines()]  # every line is JSON
    events = [line["event"] for line in lines]
    assert all(line["service"] == "chronik" for line in lines)
    # uvicorn's lines too, without the coloured copy of their text it passes as extra
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    assert not any("color_message" in line for line in lines)
    [started] = [line for line in lines if line["event"] == "serving"]
    assert started["contexts"] == ["tickets"]
    assert started["url"].startswith("http://127.0.0.1:")
    assert started["logger"] == "chronik.http.serve"
    [signal] = [line for line in lines if line["event"] == "signal: not ready, draining"]
    assert signal["signal"] == 15
    assert events[-1] == "stopped"
    [opening] = [line for line in lines if line.get("route") == "/tickets"]
    assert (opening["event"], opening["method"], opening["status"]) == ("request", "POST", 201)
    assert opening["logger"] == "chronik.http.app"
    assert opening["duration_ms"] > 0
    assert len(opening["correlation_id"]) == 16 and len(opening["trace_id"]) == 32


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (["--port", "70000"], {}, 2, "CHRONIK_HTTP_PORT (from flag)"),
        (["--run", "http,bogus"], {}, 2, "CHRONIK_RUN (from flag)"),
        ([], {"CHRONIK_APP": ""}, 2, "CHRONIK_APP (or --app module:attribute) is not set"),
        (["--app", "nosuch.module:SPEC"], {}, 2, "No module named 'nosuch'"),
        (
            ["--store-url", "mysql://x"],
            {},
            2,
            "CHRONIK_EVENT_STORE_URL (from flag): event store URL scheme 'mysql' is not",
        ),
        (["--data-dir", "/dev/null/x"], {}, 1, "cannot open SQLite database"),
    ],
    ids=["port", "run", "no-app", "app", "store-url", "data-dir"],
)
async def test_serve_given_bad_input_says_what_is_wrong_in_one_line(
    args: list[str], env: dict[str, str], code: int, says: str
) -> None:
    done = await chronik("serve", *args, env={"CHRONIK_APP": SAMPLE_APP, **env}, within=30)
    _one_clear_line(done, code, says)


async def test_serve_of_an_unreachable_postgres_exits_with_a_clear_error() -> None:
    done = await chronik(
        "serve", "--store-url", UNREACHABLE, env={"CHRONIK_APP": SAMPLE_APP}, within=30
    )
    assert done.code == 1
    assert "Traceback" not in done.err
    assert done.err_lines[-1].startswith("error: CHRONIK_EVENT_STORE_URL: cannot connect to")
    assert SECRET not in done.err


async def test_serve_on_a_port_in_use_exits_non_zero_naming_the_address(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = await chronik(
            "serve",
            "--port",
            port,
            "--data-dir",
            str(tmp_path),
            env={"CHRONIK_APP": SAMPLE_APP},
            within=30,
        )
    assert done.code != 0
    assert "Traceback" not in done.err
    assert "address already in use" in done.err
