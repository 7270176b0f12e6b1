"""``chronik dead-letters redeliver`` with a consumer running beside it, on SQLite and
PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from runtime_process import chronik

from chronik.adapters import Database, open_broker, open_database
from chronik.cli import embedded_url
from chronik.domain import event
from chronik.eventstore import EventTypes
from chronik.messaging import (
    Broker,
    Consumer,
    Delivery,
    MessageContext,
    PublishedLanguage,
    public,
)
from chronik.messaging.envelope import encode_envelope, envelope


@public("cli_test.greeted.v1")
@dataclass(frozen=True)
class Greeted:
    name: str


@event("cli_test.greeting_seen")
@dataclass(frozen=True)
class GreetingSeen:
    name: str


@dataclass
class Running:
    database: Database
    consumer: Consumer
    failing: set[str]
    where: list[str]


@pytest.fixture(params=["sqlite", "postgres"])
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    """A consumer named greeter running on a store, polling for redeliveries."""
    if request.param == "sqlite":
        url, where = embedded_url(tmp_path), ["--data-dir", str(tmp_path)]
    else:
        postgres = request.getfixturevalue("postgres_url")
        url = f"{postgres}?schema={request.getfixturevalue('pg_schema')}"
        where = ["--store-url", url]
    database = await open_database(url)
    store = database.event_store(EventTypes([GreetingSeen]))
    failing: set[str] = set()

    async def greet(message: Greeted, context: MessageContext) -> None:
        if message.name in failing:
            raise ValueError(f"cannot greet {message.name}")
        await store.append(f"seen-{message.name}", [GreetingSeen(message.name)])

    consumer = Consumer(
        "greeter",
        store,
        PublishedLanguage([Greeted]),
        {Greeted: greet},
        storage=database.messages(),
        retries=1,
    )
    broker: Broker = await open_broker("memory://")
    await consumer.start(broker, poll_requests=0.05)
    try:
        yield Running(database, consumer, failing, where)
    finally:
        await consumer.stop()
        await broker.close()
        await database.close()


async def _dead_letter(running: Running, name: str) -> str:
    running.failing.add(name)
    body = encode_envelope(
        envelope(
            id=str(uuid.uuid4()),
            source="cli_test",
            type="cli_test.greeted.v1",
            subject=name,
            time=datetime.now(UTC),
            data={"name": name},
        )
    )
    message_id = str(uuid.uuid4())
    await running.consumer.deliver(Delivery(message_id, "cli_test.greeted.v1", body, 1))
    return message_id


async def test_redeliver_says_the_consumer_handled_the_letter_once_its_handler_is_fixed(
    running: Running,
) -> None:
    message_id = await _dead_letter(running, "ada")
    listed = await chronik("dead-letters", "list", *running.where)
    assert message_id in listed.out and "cannot greet ada" in listed.out
    running.failing.clear()
    done = await chronik("dead-letters", "redeliver", "greeter", message_id, *running.where)
    assert done.code == 0, done.err
    assert f"Redelivered: 'greeter' handled {message_id}." in done.out
    assert (await chronik("dead-letters", "list", *running.where)).out.strip() == (
        "No dead letters."
    )


async def test_redeliver_of_a_letter_that_fails_again_says_why_and_exits_1(
    running: Running,
) -> None:
    message_id = await _dead_letter(running, "bob")
    done = await chronik("dead-letters", "redeliver", "greeter", message_id, *running.where)
    assert done.code == 1, done.out + done.err
    assert "Redelivered; it failed again: ValueError: cannot greet bob" in done.out


async def test_redeliver_of_a_letter_that_is_not_there_is_one_line_and_exit_1(
    running: Running,
) -> None:
    done = await chronik("dead-letters", "redeliver", "greeter", "nope", *running.where)
    assert done.code == 1
    assert done.err.strip() == "error: consumer 'greeter' has no dead letter nope"
