"""Each administrative command is a thin layer over its admin API (the e2e tests check
what the commands print; this checks that they get it from the API)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chronik.adapters import open_database
from chronik.cli import app
from chronik.eventstore import EventTypes
from chronik.messaging import MessagingAdmin
from chronik.processes import ProcessesAdmin, process_index
from chronik.projections import ProjectionsAdmin
from chronik.testing.projection_contract import Balances

COMMANDS: list[tuple[list[str], type, str]] = [
    (["projections", "status"], ProjectionsAdmin, "status"),
    (["projections", "rebuild", "balances", "--no-wait"], ProjectionsAdmin, "rebuild"),
    (["projections", "parked", "balances"], ProjectionsAdmin, "parked"),
    (
        ["projections", "replay-parked", "balances", "--timeout", "0"],
        ProjectionsAdmin,
        "replay_parked",
    ),
    (["projections", "skip-parked", "balances", "--timeout", "0"], ProjectionsAdmin, "skip_parked"),
    (["processes", "list"], ProcessesAdmin, "instances"),
    (["processes", "show", "payment_hold/p-1"], ProcessesAdmin, "instance"),
    (["outbox", "status"], MessagingAdmin, "outbox_status"),
    (["dead-letters", "list"], MessagingAdmin, "dead_letters"),
    (["dead-letters", "redeliver", "mailer", "m-1", "--timeout", "0"], MessagingAdmin, "redeliver"),
]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A SQLite store with a projection and a process index that ran."""
    url = f"sqlite:///{tmp_path}/chronik.db"

    async def prepare() -> None:
        database = await open_database(url)
        try:
            backend = database.projections()
            await backend.setup()
            await backend.create("balances", 1, Balances.tables, Balances.indexes)
            await database.messages().setup()
            await process_index(database.event_store(EventTypes([])), backend).setup()
        finally:
            await database.close()

    asyncio.run(prepare())
    return url


@pytest.mark.parametrize(
    ("command", "api", "method"), COMMANDS, ids=[" ".join(c[0][:2]) for c in COMMANDS]
)
def test_each_admin_command_gets_what_it_shows_from_its_admin_api(
    command: list[str], api: type, method: str, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original: Callable[..., Awaitable[Any]] = getattr(api, method)

    async def spy(self: object, *args: Any, **kwargs: Any) -> Any:
        calls.append(method)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(api, method, spy)
    done = CliRunner().invoke(app, [*command, "--store-url", store_url])
    assert done.exception is None or isinstance(done.exception, SystemExit), done.output
    assert calls == [method], done.output
