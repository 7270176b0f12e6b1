"""``chronik personal-data check``: subjects a forgetting event names who are not forgotten."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chronik.adapters import open_event_store
from chronik.cli import embedded_url
from chronik.domain import event
from chronik.eventstore import BaseEventStore, EventTypes
from sales.domain import EVENTS, LeadInitialized

CHRONIK = str(Path(sys.executable).with_name("chronik"))
NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@event("sales.lead_anonymized")
@dataclass(frozen=True, slots=True)
class AnonymizedInTwoSteps:
    """LeadAnonymized as sales declared it when the route forgot the lead in a second step."""

    lead_id: str
    at: datetime


@dataclass
class Done:
    code: int
    out: str
    err: str


async def chronik(*args: str) -> Done:
    process = await asyncio.create_subprocess_exec(
        CHRONIK,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


async def name_of(store: BaseEventStore, stream_id: str) -> str:
    """The name a lead's first event reads as."""
    first = (await store.read_stream(stream_id))[0].event
    assert isinstance(first, LeadInitialized)
    return first.name


@pytest.fixture(params=["sqlite", "postgres"])
async def target(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[BaseEventStore, list[str]]]:
    if request.param == "sqlite":
        url = embedded_url(tmp_path)
        where = ["--data-dir", str(tmp_path)]
    else:
        postgres_url = request.getfixturevalue("postgres_url")
        schema = request.getfixturevalue("pg_schema")
        url = f"{postgres_url}?schema={schema}"
        where = ["--store-url", url]
    store = await open_event_store(url, EventTypes(EVENTS))
    yield store, [*where, "--app", "reference:specs"]
    await store.close()


async def test_the_check_finds_a_lead_anonymized_in_two_steps_and_repair_forgets_it(
    target: tuple[BaseEventStore, list[str]],
) -> None:
    store, where = target
    for lead in ("a1", "b2"):
        await store.append(f"lead-{lead}", [LeadInitialized(lead, "Ada Lovelace", "12345", NOW)])
    # The first step of the old route ran, the second (the forget) never did.
    await store.with_types(EventTypes([AnonymizedInTwoSteps])).append(
        "lead-a1", [AnonymizedInTwoSteps("a1", NOW)]
    )

    found = await chronik("personal-data", "check", *where)
    assert found.code == 1, found.err
    assert "1 data subject(s) named by a forgetting event are not forgotten: a1" in found.out
    assert "--repair" in found.out
    assert await name_of(store, "lead-a1") == "Ada Lovelace"

    repaired = await chronik("personal-data", "check", "--repair", *where)
    assert repaired.code == 0, repaired.err
    assert "Forgot 1 data subject(s): a1" in repaired.out
    assert await name_of(store, "lead-a1") == "[forgotten]"
    assert await name_of(store, "lead-b2") == "Ada Lovelace"

    again = await chronik("personal-data", "check", *where)
    assert again.code == 0, again.err
    assert "Every data subject a forgetting event names is forgotten." in again.out


async def test_the_check_needs_the_app_to_know_which_events_forget(tmp_path: Path) -> None:
    done = await chronik("personal-data", "check", "--data-dir", str(tmp_path))
    assert done.code == 2
    assert "CHRONIK_APP" in done.err
