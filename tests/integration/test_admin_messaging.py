"""``MessagingAdmin``: the outbox's status, dead letters, redelivery, on every database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from chronik.adapters import Database, open_broker
from chronik.domain import event
from chronik.errors import NotFoundError
from chronik.eventstore import BaseEventStore, EventTypes, RecordedEvent
from chronik.messaging import (
    Consumer,
    DeadLetter,
    MessageContext,
    MessagingAdmin,
    Outbox,
    PublishedLanguage,
    public,
)
from chronik.messaging.envelope import encode_envelope, envelope
from chronik.messaging.port import Broker, Delivery, MessageStorage


@public("admin_test.greeted.v1")
@dataclass(frozen=True)
class Greeted:
    name: str


@event("admin_test.greeting_seen")
@dataclass(frozen=True)
class GreetingSeen:
    name: str


LANGUAGE = PublishedLanguage([Greeted])


@pytest.fixture
async def storage(any_database: Database) -> MessageStorage:
    messages = any_database.messages()
    await messages.setup()
    return messages


@pytest.fixture
def admin(storage: MessageStorage) -> MessagingAdmin:
    return MessagingAdmin(storage, poll=0.01)


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    opened = await open_broker("memory://")
    yield opened
    await opened.close()


def _delivery(name: str) -> Delivery:
    body = encode_envelope(
        envelope(
            id=str(uuid.uuid4()),
            source="admin_test",
            type="admin_test.greeted.v1",
            subject=name,
            time=datetime.now(UTC),
            data={"name": name},
        )
    )
    message_id = str(uuid.uuid4())
    return Delivery(message_id, "admin_test.greeted.v1", body, 1)


class Greeter:
    """A consumer whose handler fails for the names in ``failing``."""

    def __init__(self, database: Database) -> None:
        self.failing: set[str] = set()
        self.store: BaseEventStore = database.event_store(EventTypes([GreetingSeen]))

        async def greet(message: Greeted, context: MessageContext) -> None:
            if message.name in self.failing:
                raise ValueError(f"cannot greet {message.name}")
            await self.store.append(f"seen-{message.name}", [GreetingSeen(message.name)])

        self.consumer = Consumer(
            "greeter",
            self.store,
            LANGUAGE,
            {Greeted: greet},
            storage=database.messages(),
            retries=1,
        )

    async def dead_letter(self, name: str) -> Delivery:
        """Deliver a message for ``name`` that its handler refuses: it goes to the dead."""
        self.failing.add(name)
        delivery = _delivery(name)
        await self.consumer.deliver(delivery)
        return delivery


@pytest.fixture
async def greeter(any_database: Database, broker: Broker) -> AsyncIterator[Greeter]:
    made = Greeter(any_database)
    await made.consumer.start(broker, poll_requests=0.02)
    yield made
    await made.consumer.stop()


async def test_outbox_status_counts_what_waits_and_what_was_published(
    any_database: Database, storage: MessageStorage, admin: MessagingAdmin
) -> None:
    empty = await admin.outbox_status()
    assert (empty.pending, empty.oldest_pending, empty.published) == (0, None, 0)
    store = any_database.event_store(EventTypes([GreetingSeen]))

    def translate(recorded: RecordedEvent) -> object | None:
        assert isinstance(recorded.event, GreetingSeen)
        return Greeted(recorded.event.name)

    outbox = Outbox(store, translate, LANGUAGE, source="admin_test", storage=storage)
    await outbox.setup()
    await store.append("s", [GreetingSeen("a"), GreetingSeen("b")])
    [first, _] = await storage.pending(10)
    await storage.mark_published([first.position])
    status = await admin.outbox_status()
    assert (status.pending, status.published) == (1, 1)
    assert status.oldest_pending is not None


async def test_dead_letters_are_listed_with_their_errors_by_consumer(
    storage: MessageStorage, admin: MessagingAdmin
) -> None:
    assert await admin.dead_letters() == []
    now = datetime.now(UTC)
    for consumer, message_id in (("mailer", "m-1"), ("biller", "b-1")):
        await storage.add_dead_letter(
            DeadLetter(consumer, message_id, "x.happened.v1", b"{}", "it broke", 5, now)
        )
    letters = await admin.dead_letters()
    assert sorted((d.consumer, d.message_id) for d in letters) == [
        ("biller", "b-1"),
        ("mailer", "m-1"),
    ]
    [mailer] = await admin.dead_letters("mailer")
    assert (mailer.error, mailer.attempts) == ("it broke", 5)


async def test_a_redelivery_the_consumer_takes_is_handled_once_the_handler_is_fixed(
    admin: MessagingAdmin, greeter: Greeter
) -> None:
    delivery = await greeter.dead_letter("ada")
    [letter] = await admin.dead_letters("greeter")
    assert "cannot greet ada" in letter.error
    greeter.failing.clear()
    redelivery = await admin.redeliver("greeter", delivery.id)
    async with asyncio.timeout(30):
        outcome = await redelivery.outcome()
    assert (outcome.handled, outcome.failed_again) == (True, None)
    assert await admin.dead_letters("greeter") == []
    assert len(await greeter.store.read_stream("seen-ada")) == 1


async def test_a_redelivery_that_fails_again_says_why(
    admin: MessagingAdmin, greeter: Greeter
) -> None:
    delivery = await greeter.dead_letter("bob")
    async with asyncio.timeout(30):
        outcome = await (await admin.redeliver("greeter", delivery.id)).outcome()
    assert not outcome.handled
    assert outcome.failed_again is not None
    assert "cannot greet bob" in outcome.failed_again.error


async def test_a_redelivery_no_consumer_takes_stays_asked_for_without_an_outcome(
    any_database: Database, admin: MessagingAdmin
) -> None:
    idle = Greeter(any_database)
    await idle.consumer.setup()
    delivery = await idle.dead_letter("cy")
    redelivery = await admin.redeliver("greeter", delivery.id)
    assert await redelivery.check() is None
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await redelivery.outcome()
    assert len(await admin.dead_letters("greeter")) == 1, "still there, still asked for"


async def test_redelivering_a_letter_that_is_not_there_names_it(admin: MessagingAdmin) -> None:
    with pytest.raises(NotFoundError, match="consumer 'greeter' has no dead letter nope"):
        await admin.redeliver("greeter", "nope")


async def test_outbox_backlog_counts_what_waits_without_the_published_rows(
    any_database: Database, storage: MessageStorage, admin: MessagingAdmin
) -> None:
    empty = await admin.outbox_backlog()
    assert (empty.pending, empty.oldest_pending) == (0, None)
    store = any_database.event_store(EventTypes([GreetingSeen]))

    def translate(recorded: RecordedEvent) -> object | None:
        assert isinstance(recorded.event, GreetingSeen)
        return Greeted(recorded.event.name)

    outbox = Outbox(store, translate, LANGUAGE, source="admin_test", storage=storage)
    await outbox.setup()
    before = datetime.now(UTC)
    await store.append("s", [GreetingSeen("a"), GreetingSeen("b"), GreetingSeen("c")])
    [first, *_] = await storage.pending(10)
    await storage.mark_published([first.position])
    backlog = await admin.outbox_backlog()
    assert backlog.pending == 2
    assert backlog.oldest_pending is not None
    assert backlog.oldest_pending >= before.replace(microsecond=0)
    assert backlog.pending == (await admin.outbox_status()).pending
